//! gala-detect end to end.
