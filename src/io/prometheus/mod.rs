//! `--prometheus URL`: read the series `gala-collect --serve` exposed, back from a
//! Prometheus server, as the same entity, metric and status records a recording holds, so
//! gala-topo, gala-detect and gala-rca behave exactly as on a file.
//!
//! Samples are read raw (`query` with a range selector), never resampled, so the records
//! carry the collector's own timestamps and values; the range is paged by time windows so
//! memory stays bounded by one window, and pages stream into the ordinary record reader.
//! `--step` asks for resampled `query_range` instead, for series scraped without
//! timestamps. Entities are rebuilt from each kind's `gala_<kind>_info` series, metrics
//! joined to them by `gala_id`, and names, units and types turned back by the exporter's
//! own table ([`names`], of the collector's registry).
//!
//! Counters become per-interval deltas again: each sample minus the series' previous one
//! (from an earlier page, or from a look-back before the range), or the sample itself
//! when the series is new or was reset. Where Prometheus scraped less often than the
//! collector wrote, a delta covers everything since the previous scrape, so sums over a
//! range are those of the recording.

mod api;
pub mod names;
mod naming;
mod rebuild;

use std::io::{self, Read};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use anyhow::{bail, Context};

use super::input::Source;
use api::{fetch, get, parse_answer};
use names::Names;
use rebuild::{rebuild, Baselines};

/// How far before the range the first page looks for each counter's previous sample
/// (Prometheus' own staleness period: a series silent for longer has ended).
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// `--prometheus` and its companions, shared by every reading tool.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PrometheusArgs {
    /// Read records from a Prometheus server (http://HOST:PORT) that scraped
    /// `gala-collect --serve`, instead of from files.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,

    /// With --prometheus: how far back to read (e.g. 30m, 2h; default 1h).
    #[arg(long, value_name = "TIME", requires = "prometheus", value_parser = crate::record::time::parse_duration)]
    pub since: Option<Duration>,

    /// With --prometheus: end of the range, ms since the epoch (default now).
    #[arg(long, value_name = "MS", requires = "prometheus")]
    pub until: Option<i64>,

    /// With --prometheus: resample at this step instead of reading raw samples (for series
    /// scraped without timestamps).
    #[arg(long, value_name = "TIME", requires = "prometheus", value_parser = crate::record::time::parse_duration)]
    pub step: Option<Duration>,

    /// With --prometheus: narrow by label matchers, e.g. 'machine_id="ab12"' or
    /// '{comm=~"redis.*"}'.
    #[arg(long = "match", value_name = "MATCHERS", requires = "prometheus")]
    pub matchers: Option<String>,
}

/// A query plan: what to read and how.
#[derive(Debug, Clone)]
pub struct Query {
    pub url: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step: Option<Duration>,
    pub matchers: String,
    /// Length of one page of the range.
    pub page: Duration,
    pub timeout: Duration,
    /// The exporter's names of the metrics to read back.
    pub names: &'static Names,
}

impl Query {
    pub fn from_args(
        args: &PrometheusArgs,
        names: &'static Names,
    ) -> anyhow::Result<Option<Query>> {
        let Some(url) = &args.prometheus else {
            return Ok(None);
        };
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--prometheus {url:?}: expected a URL such as http://127.0.0.1:9090");
        }
        let end_ms = args.until.unwrap_or_else(crate::record::now_ms);
        let since = args.since.unwrap_or(Duration::from_secs(3600));
        let matchers = args
            .matchers
            .as_deref()
            .map(|m| {
                m.trim()
                    .trim_start_matches('{')
                    .trim_end_matches('}')
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        Ok(Some(Query {
            url,
            start_ms: end_ms - since.as_millis() as i64,
            end_ms,
            step: args.step,
            matchers,
            page: Duration::from_secs(600),
            timeout: Duration::from_secs(60),
            names,
        }))
    }

    fn selector(&self) -> String {
        if self.matchers.is_empty() {
            r#"{__name__=~"gala_.+"}"#.to_string()
        } else {
            format!(r#"{{__name__=~"gala_.+",{}}}"#, self.matchers)
        }
    }
}

/// Opens the query as one input source: NDJSON produced page by page as it is read.
///
/// A background thread fetches and rebuilds pages while the caller analyses what came
/// before (on a fleet-sized range the two halves cost about the same); the channel holds
/// two chunks of NDJSON, so memory stays bounded by one page's samples plus a few chunks.
pub fn open(query: Query) -> anyhow::Result<Source> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(query.timeout))
        .timeout_connect(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    // Fail early and clearly when the server is not there.
    get(
        &agent,
        &format!("{}/api/v1/status/buildinfo", query.url),
        &[],
    )
    .and_then(|body| parse_answer(&body).map(drop))
    .with_context(|| format!("cannot reach Prometheus at {}", query.url))?;
    let name = format!("{} (prometheus)", query.url);
    let pages = page_bounds(query.start_ms, query.end_ms, query.page.as_millis() as i64);
    let progress = super::progress::bar(pages.len() as u64, "reading Prometheus");
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    std::thread::Builder::new()
        .name("prometheus-pages".into())
        .spawn(move || {
            let mut baselines = Baselines::default();
            for (n, (start, end)) in pages.into_iter().enumerate() {
                // The first page reaches back for the samples its counters' first deltas
                // are taken from; later pages have them from the page before.
                let from = if n == 0 { start - LOOKBACK_MS } else { start };
                let body = match fetch(&agent, &query, from, end) {
                    Ok(body) => body,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let series = match parse_answer(&body) {
                    Ok(series) => series,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let mut out = Vec::with_capacity(CHUNK + (1 << 16));
                let mut send = |out: &mut Vec<u8>| {
                    let full = std::mem::replace(out, Vec::with_capacity(CHUNK + (1 << 16)));
                    tx.send(Ok(full)).is_ok()
                };
                rebuild(
                    query.names,
                    &series,
                    start,
                    &mut baselines,
                    &mut out,
                    &mut send,
                );
                // An empty piece marks the end of a page, for the progress bar.
                if !send(&mut out) || !send(&mut Vec::new()) {
                    return;
                }
            }
        })
        .context("cannot start the Prometheus reader thread")?;
    Ok(Source {
        name,
        reader: Box::new(io::BufReader::new(PageReader {
            pages: rx,
            buf: Vec::new(),
            pos: 0,
            progress,
        })),
    })
}

fn page_bounds(start: i64, end: i64, page: i64) -> Vec<(i64, i64)> {
    let page = page.max(1000);
    let mut out = Vec::new();
    let mut t = start;
    while t < end {
        let e = (t + page).min(end);
        out.push((t, e));
        t = e;
    }
    out
}

struct PageReader {
    pages: Receiver<anyhow::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    progress: indicatif::ProgressBar,
}

impl Read for PageReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Ok(page) = self.pages.recv() else {
                self.progress.finish_and_clear();
                return Ok(0);
            };
            self.buf = page.map_err(|e| io::Error::other(format!("{e:#}")))?;
            self.pos = 0;
            if self.buf.is_empty() {
                self.progress.inc(1);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Output is handed on in pieces of about this size, so a large page never sits in
/// memory twice (once as samples, once as NDJSON).
const CHUNK: usize = 1 << 22;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_range_without_overlap() {
        assert_eq!(
            page_bounds(0, 2500, 1000),
            vec![(0, 1000), (1000, 2000), (2000, 2500)]
        );
        assert!(page_bounds(5, 5, 1000).is_empty());
    }

    #[test]
    fn unreachable_server_is_a_clear_error_not_a_hang() {
        let q = Query {
            url: "http://127.0.0.1:1".into(),
            start_ms: 0,
            end_ms: 1000,
            step: None,
            matchers: String::new(),
            page: Duration::from_secs(600),
            timeout: Duration::from_secs(2),
            names: Box::leak(Box::new(Names::new(&[]))),
        };
        let t = std::time::Instant::now();
        let err = format!("{:#}", open(q).err().unwrap());
        assert!(
            err.contains("cannot reach Prometheus at http://127.0.0.1:1"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
