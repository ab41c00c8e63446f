//! The Prometheus HTTP API, as far as reading series goes: one call's whole answer, and
//! the series in it, borrowed from the body.

use std::borrow::Cow;
use std::collections::HashMap;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::Query;

/// The whole body of one API call. Read into memory first: parsing straight from the
/// socket reader goes byte by byte and was a third of the read time.
pub(super) fn get(
    agent: &ureq::Agent,
    url: &str,
    params: &[(&str, String)],
) -> anyhow::Result<Vec<u8>> {
    let mut req = agent.get(url);
    for (k, v) in params {
        req = req.query(*k, v);
    }
    let mut resp = req.call().map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(4 << 30)
        .read_to_vec()
        .with_context(|| format!("HTTP {status} from {url}: reading the answer"))?;
    if body.first() != Some(&b'{') {
        bail!("HTTP {status} from {url}: not a Prometheus API answer");
    }
    Ok(body)
}

pub(super) fn parse_answer(body: &[u8]) -> anyhow::Result<Vec<ApiSeries<'_>>> {
    let parsed: ApiResponse =
        serde_json::from_slice(body).context("not a Prometheus API answer")?;
    if parsed.status != "success" {
        bail!(
            "Prometheus said {}: {}",
            parsed.error_type.as_deref().unwrap_or("error"),
            parsed.error.as_deref().unwrap_or("(no message)")
        );
    }
    Ok(parsed.data.map(|d| d.result).unwrap_or_default())
}

#[derive(Deserialize)]
struct ApiResponse<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<ApiData<'a>>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct ApiData<'a> {
    #[serde(default, borrow)]
    result: Vec<ApiSeries<'a>>,
}

#[derive(Deserialize)]
pub(super) struct ApiSeries<'a> {
    #[serde(borrow)]
    pub(super) metric: HashMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) values: Vec<(f64, Cow<'a, str>)>,
}

/// Samples with start < ts <= end, as the parsed series of one page.
pub(super) fn fetch(
    agent: &ureq::Agent,
    q: &Query,
    start: i64,
    end: i64,
) -> anyhow::Result<Vec<u8>> {
    match q.step {
        None => {
            let window_ms = (end - start).max(1);
            let expr = format!("{}[{}ms]", q.selector(), window_ms);
            get(
                agent,
                &format!("{}/api/v1/query", q.url),
                &[
                    ("query", expr),
                    ("time", format!("{:.3}", end as f64 / 1000.0)),
                ],
            )
        }
        Some(step) => {
            // query_range includes both ends: start one step in to avoid doubling.
            let step_s = step.as_secs_f64();
            get(
                agent,
                &format!("{}/api/v1/query_range", q.url),
                &[
                    ("query", q.selector()),
                    ("start", format!("{:.3}", start as f64 / 1000.0 + step_s)),
                    ("end", format!("{:.3}", end as f64 / 1000.0)),
                    ("step", format!("{step_s}")),
                ],
            )
        }
    }
}
