//! gala-flame, end to end.
