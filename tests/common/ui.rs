//! The app driven through egui_kittest, as every UI test sets it up: its own engine binary and
//! thumbnail cache (never the user's home), the system fonts eframe adds, frames stepped until
//! the app's background work says it is done.

use std::path::Path;
use std::time::Instant;

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use loupe::dataset::Source;
use loupe::ui::{LoupeApp, Setup};

/// The setup of a test app: the engine cargo built, thumbnails cached under `root`'s hidden
/// `.thumbs` (scans skip hidden folders).
pub fn setup(root: &Path) -> Setup {
    Setup {
        engine: super::engine(),
        thumb_cache: Some(root.join(".thumbs")),
        sample: None,
    }
}

/// The app on the dataset at `root` (a test's temporary folder), in a window of `size`.
pub fn open(root: &Path, size: [f32; 2]) -> Harness<'static, LoupeApp> {
    open_in(root, root, size)
}

/// The app on the dataset at `root` (a folder, or a CSV), thumbnails cached under `cache`.
pub fn open_in(root: &Path, cache: &Path, size: [f32; 2]) -> Harness<'static, LoupeApp> {
    harness(
        LoupeApp::open_with(egui::Context::default(), root.to_path_buf(), setup(cache)),
        size,
    )
}

/// The app on `source`, thumbnails cached under `cache`.
pub fn open_source(source: Source, cache: &Path, size: [f32; 2]) -> Harness<'static, LoupeApp> {
    harness(
        LoupeApp::with_source(egui::Context::default(), source, setup(cache)),
        size,
    )
}

/// The app as eframe runs it: with the system font provider eframe adds (`system_fonts`).
pub fn harness(app: LoupeApp, size: [f32; 2]) -> Harness<'static, LoupeApp> {
    Harness::builder()
        .with_size(size)
        .with_context_setup(|ctx| {
            ctx.add_font_provider(std::sync::Arc::new(
                egui_system_font_provider::SystemFontProvider::new(),
            ))
        })
        .build_ui_state(|ui, app: &mut LoupeApp| app.show(ui), app)
}

/// Steps frames until `done` holds (the app's workers run on real threads), then two more so
/// what they changed is drawn.
pub fn settle(h: &mut Harness<'_, LoupeApp>, done: impl Fn(&LoupeApp) -> bool) {
    let t = Instant::now();
    h.step();
    while !done(h.state()) {
        assert!(t.elapsed() < super::HANG, "the app never got there");
        std::thread::sleep(std::time::Duration::from_millis(5));
        h.step();
    }
    h.step();
    h.step();
}

/// Nothing in the background: the dataset open, no search or run list pending, edits written.
pub fn idle(app: &LoupeApp) -> bool {
    !app.is_loading()
        && app.workspace().is_some()
        && !app.review.running()
        && !app.train.loading_runs()
        && app.pending_writes() == 0
}

/// Steps until a widget labelled `label` is there (a modal takes a few frames to appear).
pub fn shown(h: &mut Harness<'_, LoupeApp>, label: &str) {
    for _ in 0..20 {
        h.step();
        if h.query_by_label(label).is_some() {
            return;
        }
    }
    panic!("{label} never appeared");
}

/// A primary-button drag from `a` to `b`, as the pointer does it.
pub fn drag(h: &mut Harness<'_, LoupeApp>, a: egui::Pos2, b: egui::Pos2) {
    h.hover_at(a);
    h.step();
    h.event(egui::Event::PointerButton {
        pos: a,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: egui::Modifiers::NONE,
    });
    h.step();
    for k in 1..=5 {
        h.hover_at(a + (b - a) * (k as f32 / 5.0));
        h.step();
    }
    h.event(egui::Event::PointerButton {
        pos: b,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: egui::Modifiers::NONE,
    });
    h.step();
}
