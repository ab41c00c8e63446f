//! Scoring the detectors on labelled public data (`gala-detect eval`): the NAB score on
//! the Numenta Anomaly Benchmark files and point-wise / point-adjusted F1 and HitRate on
//! the Server Machine Dataset. Thresholds are never chosen from the labels: detectors
//! run with the shipped configuration, and SMD's multivariate threshold is learned from
//! the training half alone.

pub mod nab;
pub mod smd;

use std::io::Write;
use std::path::PathBuf;

use super::cli::{Bench, EvalArgs};
use super::config::Config;
use super::detectors::{Direction, Params};

/// Runs the chosen benchmarks with `cfg` (the shipped configuration unless --config,
/// --detector or --direction say otherwise) and prints their figures.
pub fn main(args: &EvalArgs, cfg: &Config) -> anyhow::Result<u8> {
    // No built-in default: the data is not shipped with the tools, and a path baked in at
    // build time would name a folder of the build machine.
    let data = match (&args.data, std::env::var_os("GALA_DATA")) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) if !dir.is_empty() => PathBuf::from(dir),
        _ => anyhow::bail!(
            "eval needs the benchmark data: give --data DIR (a folder with nab/ and smd/) or set GALA_DATA"
        ),
    };
    // Written, not print!ed: a closed pipe (`| head -1`) is then an error the shared
    // wrapper ends quietly with, not a panic.
    let mut out = std::io::stdout().lock();
    if matches!(args.bench, Bench::Nab | Bench::All) {
        let report = nab::evaluate(&data.join("nab"), cfg)?;
        out.write_all(report.as_bytes())?;
        out.flush()?;
    }
    if matches!(args.bench, Bench::Smd | Bench::All) {
        let report = smd::evaluate(&data.join("smd"), cfg)?;
        out.write_all(report.as_bytes())?;
    }
    out.flush()?;
    Ok(crate::io::exit::OK)
}

/// A direction as the configuration file spells it.
pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Up => "up",
        Direction::Down => "down",
        Direction::Both => "both",
    }
}

/// Detector parameters as the configuration file writes them (`q = 0.0001, init = 500`),
/// only those set; the detector's own defaults fill in the rest.
pub fn describe_params(p: &Params) -> String {
    let fields = match serde_json::to_value(p) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => return "parameters unprintable".to_string(),
    };
    let set: Vec<String> = fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    if set.is_empty() {
        "default parameters".to_string()
    } else {
        set.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_read_like_the_configuration() {
        let p = Params {
            q: Some(1e-4),
            init: Some(500),
            period: Some("1d".into()),
            ..Params::default()
        };
        let text = describe_params(&p);
        for part in ["q = 0.0001", "init = 500", "period = \"1d\""] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
        assert!(!text.contains("None") && !text.contains("Params"), "{text}");
        assert_eq!(describe_params(&Params::default()), "default parameters");
    }
}
