//! gala-detect: anomaly detection on metric records and CSV series (issue: gala-detect).
