//! Detector tests on synthetic series; see tests/gala/detect.rs for the end-to-end ones.
