//! What a metric of the records is: its entity kind, name, unit, type and meaning, as
//! each probe of gala-collect describes the metrics it writes (`--list-probes`), and as
//! the Prometheus naming (`io::prometheus::names`) reads them.

/// How a metric's number is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A level at the end of the interval (memory used, queue length).
    Gauge,
    /// How much of something happened during the interval (a counter's delta).
    Delta,
    /// A delta divided by the interval's length (per second).
    Rate,
    /// A distribution over the interval (in `histos`).
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Delta => "delta",
            MetricType::Rate => "rate",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric a probe emits.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// The entity kind it is reported on.
    pub kind: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub mtype: MetricType,
    pub help: &'static str,
}

/// Shorthand for a [`MetricSpec`] in a probe's static description.
pub const fn m(
    kind: &'static str,
    name: &'static str,
    unit: &'static str,
    mtype: MetricType,
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        kind,
        name,
        unit,
        mtype,
        help,
    }
}
