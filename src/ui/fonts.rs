//! Fonts: egui's defaults and the system fonts, plus a bundled Hangul fallback (see
//! assets/fonts/README.md): Korean class names must render on machines without a Korean font.

use egui::epaint::text::{FontInsert, FontPriority, InsertFontFamily};

const HANGUL_FALLBACK: &[u8] = include_bytes!("../../assets/fonts/loupe-hangul-fallback.ttf");

/// Adds the fallback fonts to `ctx` (idempotent: egui skips a font it already has).
pub fn install(ctx: &egui::Context) {
    let families = [egui::FontFamily::Proportional, egui::FontFamily::Monospace]
        .into_iter()
        .map(|family| InsertFontFamily {
            family,
            priority: FontPriority::Lowest,
        })
        .collect();
    ctx.add_font(FontInsert::new(
        "loupe-hangul-fallback",
        egui::FontData::from_static(HANGUL_FALLBACK),
        families,
    ));
}
