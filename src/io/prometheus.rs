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
//! own table (src/collect/serve/names.rs).
//!
//! Counters become per-interval deltas again: each sample minus the series' previous one
//! (from an earlier page, or from a look-back before the range), or the sample itself
//! when the series is new or was reset. Where Prometheus scraped less often than the
//! collector wrote, a delta covers everything since the previous scrape, so sums over a
//! range are those of the recording.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Read};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::input::Source;
use crate::collect::serve::names::{self, FamilyType, Names, Scale};
use crate::record::{Entity, Histogram, Record, Status, FORMAT_VERSION};

/// How far before the range the first page looks for each counter's previous sample
/// (Prometheus' own staleness period: a series silent for longer has ended).
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Labels Prometheus or the exporter add that are not the entity's own.
const BOOKKEEPING: &[&str] = &[
    "__name__",
    "gala_id",
    "gala_kind",
    "gala_keys",
    "gala_numbers",
    "gala_json",
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
                rebuild(&series, start, &mut baselines, &mut out, &mut send);
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

/// The whole body of one API call. Read into memory first: parsing straight from the
/// socket reader goes byte by byte and was a third of the read time.
fn get(agent: &ureq::Agent, url: &str, params: &[(&str, String)]) -> anyhow::Result<Vec<u8>> {
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

fn parse_answer(body: &[u8]) -> anyhow::Result<Vec<ApiSeries<'_>>> {
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
struct ApiSeries<'a> {
    #[serde(borrow)]
    metric: HashMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(default, borrow)]
    values: Vec<(f64, Cow<'a, str>)>,
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

/// Samples with start < ts <= end, as the parsed series of one page.
fn fetch(agent: &ureq::Agent, q: &Query, start: i64, end: i64) -> anyhow::Result<Vec<u8>> {
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

#[derive(Default)]
struct HistoParts {
    buckets: Vec<(f64, f64)>,
    sum: f64,
}

/// The last sample of every counter series, carried from page to page so that the first
/// sample of a page has a previous one. Series not seen for a whole page are forgotten:
/// memory stays bounded by the series of two pages.
#[derive(Default)]
struct Baselines {
    last: HashMap<String, (f64, u64)>,
    page: u64,
}

impl Baselines {
    /// The increase from the series' previous sample to `v`; `v` itself when the series
    /// is new or restarted from zero (a reset), as Prometheus' `increase()` takes it.
    fn delta(&mut self, key: &str, v: f64) -> f64 {
        let page = self.page;
        match self.last.get_mut(key) {
            Some(last) => {
                let delta = if v >= last.0 { v - last.0 } else { v };
                *last = (v, page);
                delta
            }
            None => {
                self.last.insert(key.to_string(), (v, page));
                v
            }
        }
    }

    fn end_page(&mut self) {
        let page = self.page;
        self.last.retain(|_, (_, seen)| *seen + 1 >= page);
        self.page += 1;
    }
}

/// What one series contributes to its entity's records.
#[derive(Clone, Copy)]
enum Role<'a> {
    /// The entity's info series: it is there at this time.
    Info,
    Plain(&'a str),
    /// A histogram bucket, by its upper bound in the record's unit.
    Bucket(&'a str, f64),
    Sum(&'a str),
    Skip,
}

/// Where one series' samples go: its entity, machine, role and, for plain metrics, the
/// rank of its name (so that sorting samples puts each record's names in order); and how
/// its values turn back into the record's.
#[derive(Clone, Copy)]
struct Target<'a> {
    entity: u32,
    machine: u32,
    rank: u32,
    role: Role<'a>,
    counter: bool,
    scale: Scale,
}

/// One sample, sortable into record order: (ts, machine, entity, name rank).
struct Sample {
    ts: i64,
    machine: u32,
    entity: u32,
    rank: u32,
    series: u32,
    value: f64,
}

/// Output is handed on in pieces of about this size, so a large page never sits in
/// memory twice (once as samples, once as NDJSON).
const CHUNK: usize = 1 << 22;

/// The role of a metric series of an entity of `kind`, and how to read its values.
fn role_of<'a>(
    name: &'a str,
    labels: &'a HashMap<Cow<'a, str>, Cow<'a, str>>,
    kind: &str,
    is_histo: &dyn Fn(&str) -> bool,
) -> Option<(Role<'a>, bool, Scale)> {
    let table = Names::get();
    let prefix = names::prefix(kind);
    let local = |family: &'a str| family.strip_prefix(prefix.as_str());
    // A histogram's part: the family is the name without its suffix.
    let part = |suffix: &str| {
        let family = name.strip_suffix(suffix)?;
        match table.metric_of(family) {
            Some((_, metric, f)) if f.ftype == FamilyType::Histogram => Some((metric, f.scale)),
            Some(_) => None,
            None if is_histo(family) => Some((local(family)?, Scale::One)),
            None => None,
        }
    };
    if let Some(le) = labels.get("le") {
        let (metric, scale) = part("_bucket")?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            scale.from_base(le.parse().ok()?)
        };
        return Some((Role::Bucket(metric, bound), true, Scale::One));
    }
    if let Some((metric, scale)) = part("_sum") {
        return Some((Role::Sum(metric), true, scale));
    }
    if part("_count").is_some() {
        // The count is the +Inf bucket; nothing more to keep.
        return Some((Role::Skip, false, Scale::One));
    }
    match table.metric_of(name) {
        Some((k, metric, f)) if names::prefix(k) == prefix => {
            Some((Role::Plain(metric), f.ftype == FamilyType::Counter, f.scale))
        }
        _ => Some((Role::Plain(local(name)?), false, Scale::One)),
    }
}

/// Turns one page of series into NDJSON records, in time order: per timestamp and
/// machine, the entities and their metrics, then a status record closing the interval.
/// Samples at or before `start` only serve as counters' previous values. `flush` takes
/// each full chunk; it returns false when nobody reads any more.
///
/// The per-sample work is kept to integers: entities, machines and metric names are
/// interned in the order records are written in, samples are sorted once, and each
/// entity's JSON is rendered once per page, not once per interval.
fn rebuild(
    series: &[ApiSeries],
    start: i64,
    baselines: &mut Baselines,
    out: &mut Vec<u8>,
    flush: &mut dyn FnMut(&mut Vec<u8>) -> bool,
) {
    let page = Page::new(series);
    let samples = page.samples(series, start, baselines);
    page.write(&samples, out, flush);
}

/// What a series is, before entities and names are numbered: its entity's id, its role,
/// whether it is a counter, and the scale of its values.
type SeriesRole<'s> = (&'s str, Role<'s>, bool, Scale);

/// One page's entities, machines and metric names, numbered in record order, and where
/// each series' samples go.
struct Page<'s> {
    machines: Vec<&'s str>,
    /// The metric names as JSON keys, by rank.
    keys: Vec<Vec<u8>>,
    entities: Vec<RenderedEntity>,
    /// By series, in the page's order; None for a series with nothing to join.
    targets: Vec<Option<Target<'s>>>,
}

impl<'s> Page<'s> {
    /// Pass 1: entities from the info series, then what every series is.
    fn new(series: &'s [ApiSeries]) -> Page<'s> {
        let entities = info_entities(series);
        let (roles, names) = series_roles(series, &entities);
        let machines: Vec<&str> = entities
            .values()
            .map(|(_, m)| *m)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let names: Vec<&str> = names.into_iter().collect();
        // Each name as a JSON key (`"name":`), escaped once per page rather than once a sample.
        let keys: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                let mut k = serde_json::to_vec(n).expect("strings serialise");
                k.push(b':');
                k
            })
            .collect();
        let entity_index: HashMap<&str, u32> = entities
            .keys()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        let entities: Vec<RenderedEntity> = entities
            .into_values()
            .map(|(e, m)| RenderedEntity::new(e, machines.binary_search(&m).unwrap_or(0) as u32))
            .collect();
        let targets: Vec<Option<Target>> = roles
            .into_iter()
            .map(|r| {
                let (id, role, counter, scale) = r?;
                let entity = entity_index[id];
                let rank = match role {
                    Role::Plain(m) => names.binary_search(&m).unwrap_or(0) as u32,
                    _ => u32::MAX,
                };
                Some(Target {
                    entity,
                    machine: entities[entity as usize].machine,
                    rank,
                    role,
                    counter,
                    scale,
                })
            })
            .collect();
        Page {
            machines,
            keys,
            entities,
            targets,
        }
    }

    /// Pass 2: every sample, counters made deltas again, sorted into record order.
    fn samples(&self, series: &[ApiSeries], start: i64, baselines: &mut Baselines) -> Vec<Sample> {
        let mut samples = Vec::with_capacity(series.iter().map(|s| s.values.len()).sum());
        let mut key = String::new();
        for (i, (s, target)) in series.iter().zip(&self.targets).enumerate() {
            let Some(t) = target else { continue };
            if t.counter {
                key.clear();
                for part in ["gala_id", "__name__", "le"] {
                    key.push_str(s.metric.get(part).map_or("", |v| v.as_ref()));
                    key.push('\0');
                }
            }
            for (time, v) in &s.values {
                let Ok(mut value) = v.parse::<f64>() else {
                    continue;
                };
                if t.counter {
                    value = baselines.delta(&key, value);
                }
                let ts = (time * 1000.0).round() as i64;
                if ts <= start {
                    continue;
                }
                samples.push(Sample {
                    ts,
                    machine: t.machine,
                    entity: t.entity,
                    rank: t.rank,
                    series: i as u32,
                    value: t.scale.from_base(value),
                });
            }
        }
        baselines.end_page();
        samples.sort_by_key(|s| (s.ts, s.machine, s.entity, s.rank));
        samples
    }

    /// Pass 3: one entity and one metric record per (ts, entity), a status per (ts, machine).
    fn write(
        &self,
        samples: &[Sample],
        out: &mut Vec<u8>,
        flush: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) {
        let mut i = 0;
        while i < samples.len() {
            let (ts, machine) = (samples[i].ts, samples[i].machine);
            while i < samples.len() && (samples[i].ts, samples[i].machine) == (ts, machine) {
                let entity = samples[i].entity;
                let end = samples[i..]
                    .iter()
                    .position(|s| (s.ts, s.entity) != (ts, entity))
                    .map_or(samples.len(), |n| i + n);
                self.entities[entity as usize].write_record(
                    ts,
                    &samples[i..end],
                    &self.targets,
                    &self.keys,
                    out,
                );
                i = end;
                if out.len() >= CHUNK && !flush(out) {
                    return;
                }
            }
            let mut extra = Map::new();
            extra.insert("source".into(), json!("prometheus"));
            Record::Status(Status {
                ts,
                tool: "gala-collect".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                format_version: FORMAT_VERSION,
                machine_id: Some(
                    self.machines
                        .get(machine as usize)
                        .unwrap_or(&"")
                        .to_string(),
                ),
                extra,
            })
            .write_json(out);
            out.push(b'\n');
        }
    }
}

/// The page's entities, by id, from their info series, each with its machine.
fn info_entities<'s>(series: &'s [ApiSeries]) -> BTreeMap<&'s str, (Entity, &'s str)> {
    let mut entities: BTreeMap<&str, (Entity, &str)> = BTreeMap::new();
    for s in series {
        let labels = &s.metric;
        let (Some(id), Some(kind), Some(name)) = (
            labels.get("gala_id"),
            labels.get("gala_kind"),
            labels.get("__name__"),
        ) else {
            continue;
        };
        if *name != names::info_family(kind) {
            continue;
        }
        let machine = labels.get("machine_id").map(|m| m.as_ref()).unwrap_or("");
        entities
            .entry(id.as_ref())
            .or_insert_with(|| (entity_from_labels(id, kind, machine, labels), machine));
    }
    entities
}

/// What every series of the page is (None: nothing to join it to), and the names of the
/// plain metrics among them.
fn series_roles<'s>(
    series: &'s [ApiSeries],
    entities: &BTreeMap<&'s str, (Entity, &'s str)>,
) -> (Vec<Option<SeriesRole<'s>>>, BTreeSet<&'s str>) {
    // Histograms no probe describes are known by their buckets.
    let histo_bases: HashSet<(&str, &str)> = series
        .iter()
        .filter(|s| s.metric.contains_key("le"))
        .filter_map(|s| {
            let name = s.metric.get("__name__")?.strip_suffix("_bucket")?;
            Some((s.metric.get("gala_id")?.as_ref(), name))
        })
        .collect();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    let mut roles: Vec<Option<SeriesRole>> = Vec::with_capacity(series.len());
    for s in series {
        let labels = &s.metric;
        let (Some(id), Some(name)) = (labels.get("gala_id"), labels.get("__name__")) else {
            roles.push(None);
            continue;
        };
        let Some((entity, _)) = entities.get(id.as_ref()) else {
            // A series whose entity has no info series in this page: nothing to join.
            roles.push(None);
            continue;
        };
        if labels.contains_key("gala_kind") && *name == names::info_family(&entity.kind) {
            roles.push(Some((id.as_ref(), Role::Info, false, Scale::One)));
            continue;
        }
        let is_histo = |family: &str| histo_bases.contains(&(id.as_ref(), family));
        let role = role_of(name, labels, &entity.kind, &is_histo);
        if let Some((Role::Plain(metric), ..)) = role {
            names.insert(metric);
        }
        roles.push(role.map(|(role, counter, scale)| (id.as_ref(), role, counter, scale)));
    }
    (roles, names)
}

/// An entity of a page with its JSON rendered once: the record for any interval is the
/// same text with its own `ts`.
struct RenderedEntity {
    machine: u32,
    /// `"id":…,"kind":…` as JSON, for the metric records.
    id_kind: Vec<u8>,
    /// The entity record after its `ts` value (`,"id":…}`); None when serde's field order
    /// ever stops putting `ts` right after `type`, and the record is written whole.
    tail: Option<Vec<u8>>,
    entity: Entity,
}

const ENTITY_HEAD: &[u8] = br#"{"type":"entity","ts":0"#;

impl RenderedEntity {
    fn new(entity: Entity, machine: u32) -> RenderedEntity {
        let mut whole = Vec::new();
        Record::Entity(entity.clone()).write_json(&mut whole);
        let tail = whole.strip_prefix(ENTITY_HEAD).map(<[u8]>::to_vec);
        let mut id_kind = br#""id":"#.to_vec();
        serde_json::to_writer(&mut id_kind, &entity.id).expect("strings serialise");
        id_kind.extend_from_slice(br#","kind":"#);
        serde_json::to_writer(&mut id_kind, &entity.kind).expect("strings serialise");
        RenderedEntity {
            machine,
            id_kind,
            tail,
            entity,
        }
    }

    /// Writes the entity record and its metric record for one interval, from that
    /// interval's samples of this entity (sorted by name rank); `keys` are the metric
    /// names as JSON keys, by rank.
    fn write_record(
        &self,
        ts: i64,
        samples: &[Sample],
        targets: &[Option<Target>],
        keys: &[Vec<u8>],
        out: &mut Vec<u8>,
    ) {
        match &self.tail {
            Some(tail) => {
                out.extend_from_slice(&ENTITY_HEAD[..ENTITY_HEAD.len() - 1]);
                out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
                out.extend_from_slice(tail);
            }
            None => Record::Entity(Entity {
                ts,
                ..self.entity.clone()
            })
            .write_json(out),
        }
        out.push(b'\n');

        // The metric record, taken back when the entity had no value at this time.
        let mark = out.len();
        out.extend_from_slice(br#"{"type":"metric","ts":"#);
        out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
        out.push(b',');
        out.extend_from_slice(&self.id_kind);
        let mut histos: BTreeMap<&str, HistoParts> = BTreeMap::new();
        let mut open = false;
        for (n, s) in samples.iter().enumerate() {
            let Some(t) = targets[s.series as usize] else {
                continue;
            };
            match t.role {
                Role::Plain(_) => {
                    // Two series with one name (labels changed mid-page): the last wins.
                    let dup = samples.get(n + 1).is_some_and(|next| next.rank == s.rank);
                    if dup || !s.value.is_finite() {
                        continue;
                    }
                    out.extend_from_slice(if open { b"," } else { br#","metrics":{"# });
                    open = true;
                    out.extend_from_slice(&keys[s.rank as usize]);
                    serde_json::to_writer(&mut *out, &s.value).expect("finite numbers serialise");
                }
                Role::Bucket(base, bound) => histos
                    .entry(base)
                    .or_default()
                    .buckets
                    .push((bound, s.value)),
                Role::Sum(base) => histos.entry(base).or_default().sum = s.value,
                Role::Info | Role::Skip => {}
            }
        }
        if open {
            out.push(b'}');
        }
        let histos: BTreeMap<&str, Histogram> = histos
            .into_iter()
            .filter_map(|(name, parts)| Some((name, histogram(parts)?)))
            .collect();
        if !histos.is_empty() {
            out.extend_from_slice(br#","histos":"#);
            serde_json::to_writer(&mut *out, &histos).expect("histograms serialise");
        } else if !open {
            out.truncate(mark);
            return;
        }
        out.extend_from_slice(b"}\n");
    }
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
    labels: &HashMap<Cow<str>, Cow<str>>,
) -> Entity {
    let key_names: Vec<&str> = labels
        .get("gala_keys")
        .map(|k| k.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let list = |name: &str| -> Vec<&str> {
        labels
            .get(name)
            .map(|k| k.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    };
    let (numbers, json) = (list("gala_numbers"), list("gala_json"));
    let typed = |k: &str, v: &str| {
        if json.contains(&k) {
            if let Ok(v) = serde_json::from_str(v) {
                return v;
            }
        }
        typed(v, numbers.contains(&k))
    };
    let mut keys = Map::new();
    for k in &key_names {
        if let Some(v) = labels.get(*k) {
            keys.insert(k.to_string(), typed(k, v));
        }
    }
    let mut rest = Map::new();
    for (k, v) in labels {
        let k: &str = k;
        if !BOOKKEEPING.contains(&k) && !key_names.contains(&k) {
            rest.insert(k.to_string(), typed(k, v));
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

/// Label values are strings; those the exporter listed in `gala_numbers` (written from
/// JSON numbers: tgid, ports) become numbers again.
fn typed(v: &str, number: bool) -> Value {
    if number {
        if let Ok(n) = v.parse::<u64>() {
            return json!(n);
        }
        if let Ok(n) = v.parse::<i64>() {
            return json!(n);
        }
        if let Some(n) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series<'a>(labels: &[(&'a str, &'a str)], values: &[(f64, &'a str)]) -> ApiSeries<'a> {
        ApiSeries {
            metric: labels
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v)))
                .collect(),
            values: values
                .iter()
                .map(|(t, v)| (*t, Cow::Borrowed(*v)))
                .collect(),
        }
    }

    /// All records of a page, in one piece.
    fn rebuilt(page: &[ApiSeries]) -> Vec<Record> {
        rebuilt_from(page, 0, &mut Baselines::default())
    }

    fn rebuilt_from(page: &[ApiSeries], start: i64, baselines: &mut Baselines) -> Vec<Record> {
        let mut out = Vec::new();
        rebuild(page, start, baselines, &mut out, &mut |_| {
            panic!("a small page fits one chunk")
        });
        std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .map(|l| Record::from_line(l).unwrap())
            .collect()
    }

    #[test]
    fn rendered_entities_are_the_records_serde_writes() {
        let mut labels = Map::new();
        labels.insert("comm".into(), json!("a \"quoted\" name"));
        let e = Entity {
            ts: 0,
            id: "m_proc_42".into(),
            kind: "proc".into(),
            machine_id: "m".into(),
            keys: [("tgid".to_string(), json!(42))].into_iter().collect(),
            labels,
        };
        let rendered = RenderedEntity::new(e.clone(), 0);
        assert!(
            rendered.tail.is_some(),
            "serde moved `ts`: the fast path is off"
        );
        let mut fast = Vec::new();
        rendered.write_record(1_700_000_000_123, &[], &[], &[], &mut fast);
        let mut slow = Vec::new();
        Record::Entity(Entity {
            ts: 1_700_000_000_123,
            ..e
        })
        .write_json(&mut slow);
        slow.extend_from_slice(b"\n");
        assert!(
            fast.starts_with(&slow),
            "{}",
            String::from_utf8_lossy(&fast)
        );
    }

    /// The series of one proc (tgid 42) as the exporter names them.
    fn proc_series(
        extra: &[(&'static str, &'static str)],
        name: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut l = vec![
            ("gala_id", "m_proc_42"),
            ("machine_id", "m"),
            ("tgid", "42"),
            ("job", "gala"),
            ("__name__", name),
        ];
        l.extend_from_slice(extra);
        l
    }

    const INFO: &[(&str, &str)] = &[
        ("gala_kind", "proc"),
        ("gala_keys", "tgid"),
        ("gala_numbers", "tgid"),
        ("comm", "redis"),
    ];

    #[test]
    fn rebuilds_entities_metrics_histograms_and_interval_ends() {
        let page = vec![
            series(
                &proc_series(INFO, "gala_proc_info"),
                &[(1.0, "1"), (2.0, "1")],
            ),
            series(
                &proc_series(&[], "gala_proc_rss_bytes"),
                &[(1.0, "1024"), (2.0, "2048")],
            ),
            series(
                &proc_series(&[("le", "1")], "gala_proc_lat_bucket"),
                &[(1.0, "2")],
            ),
            series(
                &proc_series(&[("le", "+Inf")], "gala_proc_lat_bucket"),
                &[(1.0, "5")],
            ),
            series(&proc_series(&[], "gala_proc_lat_sum"), &[(1.0, "9")]),
            series(&proc_series(&[], "gala_proc_lat_count"), &[(1.0, "5")]),
        ];
        let recs = rebuilt(&page);
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
        assert_eq!(m.metrics["rss_bytes"], 1024.0);
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
    fn counters_become_deltas_in_the_recorded_unit_across_pages_and_resets() {
        let info = || {
            series(
                &proc_series(INFO, "gala_proc_info"),
                &[(1.0, "1"), (2.0, "1"), (3.0, "1")],
            )
        };
        // cpu_time_ms, a delta in ms, is exposed as a counter in seconds.
        let counter = "gala_proc_cpu_time_seconds_total";
        let mut baselines = Baselines::default();
        // The sample at the start of the range is only the first delta's starting point.
        let first = vec![
            info(),
            series(
                &proc_series(&[], counter),
                &[(1.0, "0.5"), (2.0, "0.75"), (3.0, "1")],
            ),
        ];
        let delays = |recs: &[Record]| -> Vec<(i64, f64)> {
            recs.iter()
                .filter_map(|r| match r {
                    Record::Metric(m) => Some((m.ts, m.metrics["cpu_time_ms"])),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            delays(&rebuilt_from(&first, 1000, &mut baselines)),
            [(2000, 250.0), (3000, 250.0)]
        );
        // The next page goes on from the last sample; a drop is a reset: a new start.
        let info = series(
            &proc_series(INFO, "gala_proc_info"),
            &[(4.0, "1"), (5.0, "1")],
        );
        let next = vec![
            info,
            series(&proc_series(&[], counter), &[(4.0, "1.5"), (5.0, "0.125")]),
        ];
        assert_eq!(
            delays(&rebuilt_from(&next, 3000, &mut baselines)),
            [(4000, 500.0), (5000, 125.0)]
        );
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
