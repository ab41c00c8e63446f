//! Scoring the detectors on labelled public data (`gala-detect eval`): the NAB score on
//! the Numenta Anomaly Benchmark files and point-wise / point-adjusted F1 and HitRate on
//! the Server Machine Dataset. Thresholds are never chosen from the labels: detectors
//! run with the shipped configuration, and SMD's multivariate threshold is learned from
//! the training half alone.

pub mod nab;
pub mod smd;

use super::cli::{Bench, EvalArgs};
use super::config::Config;

/// Runs the chosen benchmarks with `cfg` (the shipped configuration unless --config,
/// --detector or --direction say otherwise) and prints their figures.
pub fn main(args: &EvalArgs, cfg: &Config) -> anyhow::Result<u8> {
    if matches!(args.bench, Bench::Nab | Bench::All) {
        let report = nab::evaluate(&args.data.join("nab"), cfg)?;
        print!("{report}");
    }
    if matches!(args.bench, Bench::Smd | Bench::All) {
        let report = smd::evaluate(&args.data.join("smd"), cfg)?;
        print!("{report}");
    }
    Ok(crate::io::exit::OK)
}
