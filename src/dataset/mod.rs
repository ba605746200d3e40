//! Everything about the files on disk and their labels. Pure Rust: no egui, no tch.

pub mod probe;
pub mod scan;
pub mod stats;

pub use probe::{ImageInfo, Reason};
pub use scan::{open, source_for, CsvSource, Dataset, OpenError, Progress, Rejected, Sample, Source};
