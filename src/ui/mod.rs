//! The desktop app (egui/eframe). Panels read state and push commands (`command`), which the
//! app applies in one place per frame; nothing here touches the filesystem on the UI thread:
//! datasets open on a background thread (`dataset::loader`), edits go to the labels worker
//! (`dataset::workspace`), runs and searches are engine processes (`train::client`).

mod app;
pub mod browse;
pub mod command;
pub mod csv_dialog;
pub mod distribution;
pub mod evaluate;
mod export;
pub mod fonts;
pub mod health;
mod keys;
pub mod map;
pub mod plots;
pub mod review;
pub mod runs_table;
pub mod thumbs;
pub mod train;

pub use app::{LoupeApp, Setup, Tab};

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// When the process started (set first thing in `main`), for the time-to-first-frame figure of
/// the frame-time overlay.
pub static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Opens the window (on `path`, or on the start page) and blocks until it is closed.
pub fn run(path: Option<PathBuf>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Loupe")
            .with_inner_size([1100.0, 720.0])
            .with_min_inner_size([480.0, 320.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Loupe",
        options,
        Box::new(move |cc| Ok(Box::new(LoupeApp::new(cc, path)))),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "could not open a window: {e}. Is a display available (DISPLAY or WAYLAND_DISPLAY)?"
        )
    })
}
