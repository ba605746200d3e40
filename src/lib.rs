//! Loupe: a desktop studio for image-classification datasets.
//!
//! Layers, data flowing one way: `dataset` (files, labels, statistics; pure Rust) ->
//! `train` (everything that touches tch) -> `ui` (egui). `main.rs` only parses arguments.

pub mod cli;
pub mod dataset;
pub mod quality;
pub mod train;
pub mod ui;
