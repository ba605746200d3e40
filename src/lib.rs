//! Loupe: a desktop studio for image-classification datasets.
//!
//! Layers, data flowing one way (a test checks the imports):
//! - `util`: small helpers every layer uses; imports nothing of Loupe's.
//! - `dataset`: files on disk, labels, statistics, the label service; pure Rust.
//! - `quality`: label-quality math (confident learning) and the searches' files; pure Rust.
//! - `train`: runs without libtorch: configs, run folders, metrics, and the engine process
//!   (`protocol`, `client`) that does the work.
//! - `ui` (egui) and `cli`: the window and the commands, over the layers below.
//!
//! The engine itself is a second binary (`src/engine/`, `loupe-engine`), the only code that links
//! libtorch: the app starts it per job and survives whatever happens inside it.

pub mod cli;
pub mod dataset;
pub mod quality;
pub mod train;
pub mod ui;
pub mod util;
