//! `--prometheus URL`: read the series `gala-collect --serve` exposed, back from a
//! Prometheus server, as the same entity, metric and status records a recording holds, so
//! gala-topo, gala-detect and gala-rca behave exactly as on a file.
//!
//! Samples are read raw (`query` with a range selector), never resampled, so the records
//! carry the collector's own timestamps and values; the range is paged by time windows so
//! memory stays bounded by one window, and pages stream into the ordinary record reader.
//! `--step` asks for resampled `query_range` instead, for series scraped without
//! timestamps. Entities are rebuilt from the bookkeeping labels `gala_id`, `gala_kind` and
//! `gala_keys` that the exporter adds (see src/collect/serve.rs).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::input::Source;
use crate::record::{Entity, Histogram, Metric, Record, Status, FORMAT_VERSION};

/// Labels Prometheus or the exporter add that are not the entity's own.
const BOOKKEEPING: &[&str] = &[
    "__name__",
    "gala_id",
    "gala_kind",
    "gala_keys",
    "machine_id",
    "job",
    "instance",
    "le",
];

/// `--prometheus` and its companions, shared by every reading tool.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PrometheusArgs {
    /// Read records from a Prometheus server (http://HOST:PORT) that scraped
    /// `gala-collect --serve`, instead of from files.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,

    /// With --prometheus: how far back to read (e.g. 30m, 2h; default 1h).
    #[arg(long, value_name = "TIME", requires = "prometheus", value_parser = crate::collect::cli::parse_duration)]
    pub since: Option<Duration>,

    /// With --prometheus: end of the range, ms since the epoch (default now).
    #[arg(long, value_name = "MS", requires = "prometheus")]
    pub until: Option<i64>,

    /// With --prometheus: resample at this step instead of reading raw samples (for series
    /// scraped without timestamps).
    #[arg(long, value_name = "TIME", requires = "prometheus", value_parser = crate::collect::cli::parse_duration)]
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
}

impl Query {
    pub fn from_args(args: &PrometheusArgs) -> anyhow::Result<Option<Query>> {
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
        }))
    }

    fn selector(&self) -> String {
        if self.matchers.is_empty() {
            r#"{__name__=~"gala_gopher_.+"}"#.to_string()
        } else {
            format!(r#"{{__name__=~"gala_gopher_.+",{}}}"#, self.matchers)
        }
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(default)]
    result: Vec<ApiSeries>,
}

#[derive(Deserialize)]
struct ApiSeries {
    metric: HashMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Opens the query as one input source: NDJSON produced page by page as it is read.
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
    .with_context(|| format!("cannot reach Prometheus at {}", query.url))?;
    let name = format!("{} (prometheus)", query.url);
    let pages = page_bounds(query.start_ms, query.end_ms, query.page.as_millis() as i64);
    let progress = super::progress::bar(pages.len() as u64, "reading Prometheus");
    Ok(Source {
        name,
        reader: Box::new(io::BufReader::new(PageReader {
            agent,
            query,
            pages: pages.into_iter(),
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

fn get(agent: &ureq::Agent, url: &str, params: &[(&str, String)]) -> anyhow::Result<ApiResponse> {
    let mut req = agent.get(url);
    for (k, v) in params {
        req = req.query(*k, v);
    }
    let mut resp = req.call().map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = resp.status();
    let body = resp.body_mut().with_config().limit(4 << 30).reader();
    let parsed: ApiResponse = serde_json::from_reader(body)
        .with_context(|| format!("HTTP {status} from {url}: not a Prometheus API answer"))?;
    if parsed.status != "success" {
        bail!(
            "Prometheus said {}: {}",
            parsed.error_type.as_deref().unwrap_or("error"),
            parsed.error.as_deref().unwrap_or("(no message)")
        );
    }
    Ok(parsed)
}

struct PageReader {
    agent: ureq::Agent,
    query: Query,
    pages: std::vec::IntoIter<(i64, i64)>,
    buf: Vec<u8>,
    pos: usize,
    progress: indicatif::ProgressBar,
}

impl Read for PageReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Some((start, end)) = self.pages.next() else {
                self.progress.finish_and_clear();
                return Ok(0);
            };
            let series = self
                .fetch(start, end)
                .map_err(|e| io::Error::other(format!("{e:#}")))?;
            self.buf.clear();
            self.pos = 0;
            for rec in rebuild(series) {
                rec.write_json(&mut self.buf);
                self.buf.push(b'\n');
            }
            self.progress.inc(1);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl PageReader {
    /// Samples with start < ts <= end.
    fn fetch(&self, start: i64, end: i64) -> anyhow::Result<Vec<ApiSeries>> {
        let q = &self.query;
        let resp = match q.step {
            None => {
                let window_ms = (end - start).max(1);
                let expr = format!("{}[{}ms]", q.selector(), window_ms);
                get(
                    &self.agent,
                    &format!("{}/api/v1/query", q.url),
                    &[
                        ("query", expr),
                        ("time", format!("{:.3}", end as f64 / 1000.0)),
                    ],
                )?
            }
            Some(step) => {
                // query_range includes both ends: start one step in to avoid doubling.
                let step_s = step.as_secs_f64();
                get(
                    &self.agent,
                    &format!("{}/api/v1/query_range", q.url),
                    &[
                        ("query", q.selector()),
                        ("start", format!("{:.3}", start as f64 / 1000.0 + step_s)),
                        ("end", format!("{:.3}", end as f64 / 1000.0)),
                        ("step", format!("{step_s}")),
                    ],
                )?
            }
        };
        Ok(resp.data.map(|d| d.result).unwrap_or_default())
    }
}

#[derive(Default)]
struct HistoParts {
    buckets: Vec<(f64, f64)>,
    sum: f64,
}

/// Turns one page of series into records, in time order: per timestamp and machine, the
/// entities, their metrics, then a status record closing the interval.
fn rebuild(series: Vec<ApiSeries>) -> Vec<Record> {
    // (ts, machine) → id → (entity, metrics, histogram parts)
    type Slot = (Entity, BTreeMap<String, f64>, BTreeMap<String, HistoParts>);
    let mut by_time: BTreeMap<(i64, String), BTreeMap<String, Slot>> = BTreeMap::new();
    // `_sum`/`_count` belong to a histogram only where the same entity has `_bucket`s.
    let histo_bases: std::collections::HashSet<(&str, &str)> = series
        .iter()
        .filter(|s| s.metric.contains_key("le"))
        .filter_map(|s| {
            let name = s.metric.get("__name__")?.strip_suffix("_bucket")?;
            Some((s.metric.get("gala_id")?.as_str(), name))
        })
        .collect();
    let is_histo = |id: &str, name: &str, suffix: &str| {
        name.strip_suffix(suffix)
            .is_some_and(|base| histo_bases.contains(&(id, base)))
    };
    for s in &series {
        let labels = &s.metric;
        let (Some(id), Some(kind), Some(name)) = (
            labels.get("gala_id"),
            labels.get("gala_kind"),
            labels.get("__name__"),
        ) else {
            continue;
        };
        let prefix = crate::collect::serve::family_name(kind, "");
        let Some(metric) = name.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let machine = labels.get("machine_id").cloned().unwrap_or_default();
        let entity = entity_from_labels(id, kind, &machine, labels);
        for (t, v) in &s.values {
            let ts = (t * 1000.0).round() as i64;
            let Ok(v) = v.parse::<f64>() else { continue };
            let slot = by_time
                .entry((ts, machine.clone()))
                .or_default()
                .entry(id.clone())
                .or_insert_with(|| {
                    (
                        Entity {
                            ts,
                            ..entity.clone()
                        },
                        BTreeMap::new(),
                        BTreeMap::new(),
                    )
                });
            if let (Some(base), Some(le)) = (metric.strip_suffix("_bucket"), labels.get("le")) {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                slot.2
                    .entry(base.to_string())
                    .or_default()
                    .buckets
                    .push((bound, v));
            } else if is_histo(id, name, "_sum") {
                let base = metric.strip_suffix("_sum").unwrap_or(metric);
                slot.2.entry(base.to_string()).or_default().sum = v;
            } else if is_histo(id, name, "_count") {
                // The count is the +Inf bucket; nothing more to keep.
            } else if v.is_finite() {
                slot.1.insert(metric.to_string(), v);
            }
        }
    }
    let mut out = Vec::new();
    for ((ts, machine), slots) in by_time {
        for (id, (entity, metrics, histos)) in slots {
            let kind = entity.kind.clone();
            out.push(Record::Entity(entity));
            let histos = histos
                .into_iter()
                .filter_map(|(name, parts)| Some((name, histogram(parts)?)))
                .collect();
            out.push(Record::Metric(Metric {
                ts,
                id,
                kind,
                metrics,
                histos,
            }));
        }
        let mut extra = Map::new();
        extra.insert("source".into(), json!("prometheus"));
        out.push(Record::Status(Status {
            ts,
            tool: "gala-collect".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            format_version: FORMAT_VERSION,
            machine_id: Some(machine),
            extra,
        }));
    }
    out
}

fn histogram(mut parts: HistoParts) -> Option<Histogram> {
    if parts.buckets.is_empty() {
        return None;
    }
    parts.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    let mut prev = 0.0;
    for (le, cumulative) in parts.buckets {
        counts.push((cumulative - prev).max(0.0) as u64);
        prev = cumulative;
        if le.is_finite() {
            bounds.push(le);
        }
    }
    Some(Histogram {
        bounds,
        counts,
        sum: parts.sum,
    })
}

fn entity_from_labels(
    id: &str,
    kind: &str,
    machine: &str,
    labels: &HashMap<String, String>,
) -> Entity {
    let key_names: Vec<&str> = labels
        .get("gala_keys")
        .map(|k| k.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let mut keys = Map::new();
    for k in &key_names {
        if let Some(v) = labels.get(*k) {
            keys.insert(k.to_string(), typed(v));
        }
    }
    let mut rest = Map::new();
    for (k, v) in labels {
        if !BOOKKEEPING.contains(&k.as_str()) && !key_names.contains(&k.as_str()) {
            rest.insert(k.clone(), typed(v));
        }
    }
    Entity {
        ts: 0,
        id: id.to_string(),
        kind: kind.to_string(),
        machine_id: machine.to_string(),
        keys,
        labels: rest,
    }
}

/// Label values are strings; whole numbers written by the exporter from JSON numbers
/// (tgid, ports) become numbers again. A string key that looks like a canonical integer
/// would be turned into a number too — gala's probes use none.
fn typed(v: &str) -> Value {
    let canonical = !v.is_empty()
        && v.len() <= 18
        && v.bytes().all(|b| b.is_ascii_digit())
        && (v == "0" || !v.starts_with('0'));
    if canonical {
        if let Ok(n) = v.parse::<u64>() {
            return json!(n);
        }
    }
    Value::String(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], values: &[(f64, &str)]) -> ApiSeries {
        ApiSeries {
            metric: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            values: values.iter().map(|(t, v)| (*t, v.to_string())).collect(),
        }
    }

    #[test]
    fn rebuilds_entities_metrics_histograms_and_interval_ends() {
        let base = [
            ("gala_id", "m_proc_42"),
            ("gala_kind", "proc"),
            ("gala_keys", "tgid"),
            ("machine_id", "m"),
            ("tgid", "42"),
            ("comm", "redis"),
            ("job", "gala"),
        ];
        let with = |name: &str, extra: &[(&'static str, &'static str)]| {
            let mut l: Vec<(&str, &str)> = base.to_vec();
            l.push(("__name__", Box::leak(name.to_string().into_boxed_str())));
            l.extend_from_slice(extra);
            l
        };
        let page = vec![
            series(
                &with("gala_gopher_proc_cpu_user", &[]),
                &[(1.0, "0.5"), (2.0, "0.25")],
            ),
            series(
                &with("gala_gopher_proc_lat_bucket", &[("le", "1")]),
                &[(1.0, "2")],
            ),
            series(
                &with("gala_gopher_proc_lat_bucket", &[("le", "+Inf")]),
                &[(1.0, "5")],
            ),
            series(&with("gala_gopher_proc_lat_sum", &[]), &[(1.0, "9")]),
            series(&with("gala_gopher_proc_lat_count", &[]), &[(1.0, "5")]),
        ];
        let recs = rebuild(page);
        let types: Vec<&str> = recs.iter().map(|r| r.type_name()).collect();
        assert_eq!(
            types,
            ["entity", "metric", "status", "entity", "metric", "status"]
        );
        let Record::Entity(e) = &recs[0] else {
            panic!()
        };
        assert_eq!(e.keys["tgid"], json!(42));
        assert_eq!(e.labels["comm"], json!("redis"));
        assert!(!e.labels.contains_key("job"));
        let Record::Metric(m) = &recs[1] else {
            panic!()
        };
        assert_eq!(m.ts, 1000);
        assert_eq!(m.metrics["cpu_user"], 0.5);
        assert_eq!(
            m.histos["lat"],
            Histogram {
                bounds: vec![1.0],
                counts: vec![2, 3],
                sum: 9.0
            }
        );
        assert!(!m.metrics.contains_key("lat_count"));
    }

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
