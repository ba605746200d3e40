//! Everything about the files on disk and their labels. Pure Rust: no egui, no tch.

pub mod export;
pub mod journal;
pub mod labels;
pub mod probe;
pub mod scan;
pub mod stats;

pub use labels::LabelStore;
pub use probe::{ImageInfo, Reason};
pub use scan::{
    open, source_for, CsvSource, Dataset, OpenError, Progress, Rejected, Sample, Source,
};
