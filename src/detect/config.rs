//! The KPI and rule configuration: which metrics of which entity kinds are KPIs, which
//! way they go wrong, which detector watches them; the system rules and their
//! thresholds; how incidents are merged. The shipped defaults (config/detect.toml,
//! compiled in) are documented line by line; `--config FILE` replaces them and
//! `gala-detect --print-config` prints them as a starting point.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::detectors::{Detector, Direction, Kind, Params};

/// The shipped configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/detect.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub incident: IncidentConfig,
    /// The detector every CSV column (and, with `--every-metric`, every metric) gets.
    #[serde(default)]
    pub series: SeriesDefault,
    #[serde(default)]
    pub multivariate: MultiConfig,
    #[serde(default, rename = "kpi")]
    pub kpis: Vec<Kpi>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentConfig {
    /// Normal points in a row that close an incident.
    #[serde(default = "default_gap")]
    pub gap: u32,
    /// Entities not seen for this long (stream time) are forgotten, e.g. "10m".
    #[serde(default = "default_forget")]
    pub forget: String,
}

fn default_gap() -> u32 {
    3
}

fn default_forget() -> String {
    "10m".into()
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            gap: default_gap(),
            forget: default_forget(),
        }
    }
}

/// A detector with its direction and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    pub detector: Kind,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub params: Params,
    /// Unit of the values, for descriptions: us, ms, s, bytes, pct (0..100), ratio (0..1).
    #[serde(default)]
    pub unit: Option<String>,
}

impl DetectorSpec {
    pub fn build(&self) -> Result<Detector, String> {
        Detector::new(self.detector, self.direction, &self.params)
    }

    /// The detector of one of `columns` series judged together (`--multivariate`): the
    /// risk `q` is the entity's, shared among its columns (Bonferroni), so that a machine
    /// of 38 metrics does not raise 38 times the false alarms of one.
    pub fn build_one_of(&self, columns: usize) -> Result<Detector, String> {
        let mut params = self.params.clone();
        params.q = params.q.map(|q| q / columns.max(1) as f64);
        Detector::new(self.detector, self.direction, &params)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(from = "SeriesToml")]
pub struct SeriesDefault {
    pub spec: DetectorSpec,
    /// Abnormal points in a row before a column's anomaly opens, as a KPI's `sustain`.
    pub sustain: u32,
}

/// `[series]` as written: a detector spec and its `sustain`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesToml {
    detector: Kind,
    #[serde(default)]
    direction: Direction,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default = "one")]
    sustain: u32,
}

impl From<SeriesToml> for SeriesDefault {
    fn from(t: SeriesToml) -> Self {
        SeriesDefault {
            spec: DetectorSpec {
                detector: t.detector,
                direction: t.direction,
                params: t.params,
                unit: t.unit,
            },
            sustain: t.sustain,
        }
    }
}

impl Default for SeriesDefault {
    fn default() -> Self {
        SeriesDefault {
            spec: DetectorSpec {
                detector: Kind::Nsigma,
                direction: Direction::Both,
                params: Params::default(),
                unit: None,
            },
            sustain: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiConfig {
    /// Entity kinds watched as a whole (all their metrics together).
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub params: Params,
    /// Abnormal rows in a row before an entity's anomaly opens, as a KPI's `sustain`.
    #[serde(default = "one")]
    pub sustain: u32,
}

impl Default for MultiConfig {
    fn default() -> Self {
        MultiConfig {
            kinds: Vec::new(),
            params: Params::default(),
            sustain: 1,
        }
    }
}

/// One KPI: a metric of an entity kind and the detector that watches it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kpi {
    pub kind: String,
    pub metric: String,
    pub detector: Kind,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub params: Params,
    #[serde(default)]
    pub unit: Option<String>,
    /// Abnormal intervals in a row before the KPI's anomaly opens (it then starts at the
    /// first of them): 1 reports at once; 2 makes a one-interval blip no anomaly.
    #[serde(default = "one")]
    pub sustain: u32,
    /// A count metric of the same record (`a|b` as for `metric`) that must reach
    /// `min_count` for an interval to be judged or learned: the p99 of three requests is
    /// their maximum, not a percentile. Absent from a record: the interval is judged.
    #[serde(default)]
    pub count: Option<String>,
    #[serde(default)]
    pub min_count: f64,
}

impl Kpi {
    pub fn spec(&self) -> DetectorSpec {
        DetectorSpec {
            detector: self.detector,
            direction: self.direction,
            params: self.params.clone(),
            unit: self.unit.clone(),
        }
    }
}

/// A fixed-threshold check that needs no history.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// Entity kind the metric belongs to (metric rules).
    #[serde(default)]
    pub kind: Option<String>,
    /// Metric name; `a|b` takes the first present (collectors name things differently).
    #[serde(default)]
    pub metric: Option<String>,
    /// Optional denominator: the rule then judges metric/per.
    #[serde(default)]
    pub per: Option<String>,
    /// Below this denominator the ratio means nothing and the rule stays quiet.
    #[serde(default)]
    pub min_per: Option<f64>,
    /// Event rules: the name of the event (`oom_kill`) instead of kind and metric.
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
    /// Intervals in a row the condition must hold.
    #[serde(default = "one")]
    pub sustain: u32,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "warning")]
    pub severity: String,
    /// Why the threshold is where it is (documentation; also shown by --print-config).
    #[serde(default)]
    pub why: String,
}

fn one() -> u32 {
    1
}

fn warning() -> String {
    "warning".into()
}

impl Config {
    pub fn shipped() -> Config {
        Config::parse(DEFAULT_CONFIG).expect("the shipped config/detect.toml is valid")
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Catches what serde cannot: detectors that cannot be built, rules without a
    /// threshold or a subject.
    fn check(&self) -> anyhow::Result<()> {
        self.series
            .spec
            .build()
            .map_err(|e| anyhow::anyhow!("[series]: {e}"))?;
        for k in &self.kpis {
            k.spec()
                .build()
                .map_err(|e| anyhow::anyhow!("kpi {}/{}: {e}", k.kind, k.metric))?;
        }
        for r in &self.rules {
            if r.above.is_none() && r.below.is_none() && r.event.is_none() {
                anyhow::bail!("rule {}: needs `above` or `below`", r.name);
            }
            match (&r.event, &r.kind, &r.metric) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                _ => anyhow::bail!(
                    "rule {}: give either `event`, or both `kind` and `metric`",
                    r.name
                ),
            }
        }
        crate::record::time::parse_seconds(&self.incident.forget)
            .map_err(|e| anyhow::anyhow!("[incident] forget: {e}"))?;
        Ok(())
    }

    /// KPI index by (kind, metric).
    pub fn kpi_index(&self) -> HashMap<(String, String), usize> {
        self.kpis
            .iter()
            .enumerate()
            .map(|(i, k)| ((k.kind.clone(), k.metric.clone()), i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_every_rule_has_a_reason() {
        let cfg = Config::shipped();
        assert!(cfg.kpis.len() >= 6);
        assert!(cfg.rules.len() >= 18);
        for r in &cfg.rules {
            assert!(!r.why.is_empty(), "rule {} has no `why`", r.name);
        }
    }

    #[test]
    fn bad_configs_are_refused_with_the_place() {
        let e = Config::parse("[[rule]]\nname = \"x\"\nkind = \"disk\"\nmetric = \"util\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("rule x"), "{e}");
        let e = Config::parse("[[kpi]]\nkind = \"a\"\nmetric = \"b\"\ndetector = \"nope\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = Config::parse(
            "[[kpi]]\nkind = \"a\"\nmetric = \"b\"\ndetector = \"seasonal\"\nparams = { period = \"1x\" }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
        let e = Config::parse("[incident]\nforget = \"500ms\"\n").unwrap_err();
        assert!(e.to_string().contains("whole number of seconds"), "{e}");
    }

    #[test]
    fn config_spans_take_every_unit_and_a_bare_number_as_seconds() {
        for forget in ["600", "10m", "600s", "1d", "1w"] {
            Config::parse(&format!("[incident]\nforget = \"{forget}\"\n")).unwrap();
        }
        let seasonal = |period: &str, slot: &str| {
            Config::parse(&format!(
                "[[kpi]]\nkind = \"a\"\nmetric = \"b\"\ndetector = \"seasonal\"\nparams = {{ period = \"{period}\", slot = \"{slot}\" }}\n"
            ))
        };
        seasonal("86400", "900").unwrap();
        seasonal("1d", "15m").unwrap();
        // The slot must be shorter than the period: a bare 900 is 900 s, not 900 points.
        assert!(seasonal("600", "900").is_err());
    }
}
