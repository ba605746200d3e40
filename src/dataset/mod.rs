//! Everything about the files on disk and their labels: the scan, statistics, the label overlay
//! (journal, undo) and the label service the window and the command line share (`workspace`,
//! `loader`). Pure Rust: no egui, no tch; nothing of Loupe's above it.

pub mod columns;
pub mod export;
pub mod groups;
pub mod journal;
pub mod labels;
pub mod loader;
pub mod probe;
pub mod scan;
pub mod stats;
pub mod workspace;

pub use columns::{Column, Layout};
pub use labels::{open_edited, LabelStore};
pub use probe::{ImageInfo, Reason};
pub use scan::{
    open, open_with, source_for, CsvSource, Dataset, OpenError, OpenOptions, Progress, Rejected,
    Sample, Source,
};
