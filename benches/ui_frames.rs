//! Frame times of the real app state while scrolling the Browse grid of 100,000 images.
//!
//! `cargo bench --bench ui_frames`. Uses the folder `benches/scan.rs` generates (run that first,
//! or set LOUPE_BENCH_DIR). Drives `LoupeApp` headlessly with egui_kittest: each frame scrolls
//! the grid by 240 px with a mouse-wheel event, and the time of the whole egui pass (layout,
//! tiles, thumbnail uploads, the app's own work) is measured. Rendering on the GPU is not in
//! these numbers. Thumbnails decode on their worker threads meanwhile, as in the app.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use loupe::ui::{LoupeApp, Setup};

fn main() {
    let root = std::env::var_os("LOUPE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/scan100k")
        });
    assert!(
        root.join(".complete").exists(),
        "run `cargo bench --bench scan` first to generate {}",
        root.display()
    );
    let t = Instant::now();
    let app = LoupeApp::open_with(egui::Context::default(), root.clone(), Setup::default());
    // (The harness runs frames until the app settles, i.e. through the whole load: the time to
    // the first frame is measured on the real binary instead, see benches/RESULTS.md.)
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .with_max_steps(1_000_000)
        .build_ui_state(|ui, app: &mut LoupeApp| app.show(ui), app);
    while h.state().is_loading() || h.state().workspace().is_none() {
        std::thread::sleep(Duration::from_millis(5));
        h.step();
    }
    let loaded = t.elapsed();
    println!(
        "ui_frames: {} ({} images)",
        root.display(),
        h.state().workspace().unwrap().stats.images
    );
    println!(
        "dataset ready in the app after {:.2} s (scan, content hashes, overlay)",
        loaded.as_secs_f64()
    );

    let grid = egui::pos2(700.0, 400.0);
    h.hover_at(grid);
    for _ in 0..30 {
        h.step();
    }
    let mut times = Vec::new();
    for _ in 0..600 {
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, -240.0),
            modifiers: egui::Modifiers::NONE,
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
        });
        let t = Instant::now();
        h.step();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "scrolling, 600 frames of 240 px: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.95),
        pct(0.99),
        times[times.len() - 1]
    );
}
