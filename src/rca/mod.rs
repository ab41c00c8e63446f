//! gala-rca: root-cause inference from a KPI anomaly down to the resource behind it.
