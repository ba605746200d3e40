//! The `eframe::App`: for now a dataset summary (class balance, sizes, formats, problems) that
//! appears as soon as the background scan finishes, with progress meanwhile.

use std::path::PathBuf;
use std::time::Duration;

use egui::{Color32, RichText};

use super::loading::{Loaded, Loader};
use crate::dataset::stats::Stats;
use crate::dataset::Source;

enum State {
    Loading(Loader),
    Ready(Box<Loaded>),
    Failed(String),
}

pub struct LoupeApp {
    path: PathBuf,
    state: State,
    fonts_installed: bool,
}

impl LoupeApp {
    /// Opens the dataset at `path` (a folder of class folders) in the background.
    pub fn open(ctx: egui::Context, path: PathBuf) -> Self {
        match crate::dataset::source_for(&path) {
            Ok(source) => Self::with_source(ctx, source),
            Err(e) => LoupeApp { path, state: State::Failed(e.to_string()), fonts_installed: false },
        }
    }

    pub fn with_source(ctx: egui::Context, source: Source) -> Self {
        let loader = Loader::spawn(source, move || ctx.request_repaint());
        LoupeApp { path: loader.path.clone(), state: State::Loading(loader), fonts_installed: false }
    }

    /// Whether the dataset is still being read.
    pub fn is_loading(&self) -> bool {
        matches!(self.state, State::Loading(_))
    }

    /// The loaded dataset, if any (for tests).
    pub fn loaded(&self) -> Option<&Loaded> {
        match &self.state {
            State::Ready(l) => Some(l),
            _ => None,
        }
    }

    fn poll(&mut self, ctx: &egui::Context) {
        if let State::Loading(loader) = &mut self.state {
            match loader.poll() {
                Some(Ok(loaded)) => self.state = State::Ready(Box::new(loaded)),
                Some(Err(msg)) => self.state = State::Failed(msg),
                // Progress counters change without events: look again soon, not every frame.
                None => ctx.request_repaint_after(Duration::from_millis(100)),
            }
        }
    }

    pub fn show(&mut self, ui: &mut egui::Ui) {
        if !self.fonts_installed {
            super::fonts::install(ui.ctx());
            self.fonts_installed = true;
        }
        self.poll(ui.ctx());
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(self.path.display().to_string());
                ui.separator();
                match &self.state {
                    State::Loading(l) => {
                        let (done, total) = l.counts();
                        let frac = if total == 0 { 0.0 } else { done as f32 / total as f32 };
                        ui.add(egui::ProgressBar::new(frac).desired_width(200.0).text(format!("Reading {done} / {total}")));
                    }
                    State::Ready(l) => {
                        ui.label(format!(
                            "{} images · {} classes · {} unreadable · {} ignored",
                            l.stats.images,
                            l.stats.classes.len(),
                            l.stats.unreadable.len(),
                            l.stats.ignored
                        ));
                    }
                    State::Failed(_) => {
                        ui.colored_label(Color32::LIGHT_RED, "could not open");
                    }
                }
            });
        });
        match &self.state {
            State::Loading(_) => {
                egui::CentralPanel::default_margins().show(ui, |ui| {
                    ui.centered_and_justified(|ui| ui.spinner());
                });
            }
            State::Failed(msg) => {
                let msg = msg.clone();
                egui::CentralPanel::default_margins().show(ui, |ui| {
                    ui.heading("This dataset could not be opened");
                    ui.label(msg);
                });
            }
            State::Ready(loaded) => {
                let stats = &loaded.stats;
                egui::Panel::left("classes").default_size(280.0).show(ui, |ui| class_list(ui, stats));
                egui::CentralPanel::default_margins().show(ui, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| summary(ui, stats));
                });
            }
        }
    }
}

impl eframe::App for LoupeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}

fn class_list(ui: &mut egui::Ui, stats: &Stats) {
    ui.heading("Classes");
    let max = stats.classes.iter().map(|c| c.count).max().unwrap_or(0).max(1);
    let total = stats.images.max(1);
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("class_grid").num_columns(3).striped(true).show(ui, |ui| {
            for c in &stats.classes {
                ui.label(&c.name);
                ui.label(RichText::new(c.count.to_string()).monospace());
                let share = c.count as f32 / total as f32;
                ui.add(
                    egui::ProgressBar::new(c.count as f32 / max as f32)
                        .desired_width(90.0)
                        .text(format!("{:.1}%", share * 100.0)),
                );
                ui.end_row();
            }
        });
    });
}

fn summary(ui: &mut egui::Ui, s: &Stats) {
    ui.heading(format!("{} images in {} classes", s.images, s.classes.len()));
    if let Some(r) = s.imbalance_ratio {
        let rarest: Vec<String> = s.rarest.iter().map(|c| format!("{} ({})", c.name, c.count)).collect();
        ui.label(format!("Imbalance {r:.1}x (largest / smallest class). Rarest: {}", rarest.join(", ")));
    }
    ui.add_space(8.0);
    ui.strong("Image sizes");
    ui.label(format!(
        "width {:.0}–{:.0} (median {:.0}), height {:.0}–{:.0} (median {:.0}), aspect {:.2}–{:.2}",
        s.sizes.width.min, s.sizes.width.max, s.sizes.width.median, s.sizes.height.min, s.sizes.height.max,
        s.sizes.height.median, s.sizes.aspect.min, s.sizes.aspect.max
    ));
    let common: Vec<String> = s.sizes.common.iter().take(5).map(|c| format!("{} ({})", c.name, c.count)).collect();
    ui.label(format!("Most common: {}", common.join(", ")));
    ui.add_space(8.0);
    ui.strong("Formats and colour modes");
    let list = |v: &[crate::dataset::stats::Count]| v.iter().map(|c| format!("{} {}", c.name, c.count)).collect::<Vec<_>>().join(", ");
    ui.label(list(&s.formats));
    ui.label(list(&s.color_modes));
    ui.add_space(8.0);
    ui.strong(format!("Unreadable files: {}", s.unreadable.len()));
    for u in s.unreadable.iter().take(50) {
        ui.label(format!("{} — {}", u.path, u.reason));
    }
    ui.add_space(8.0);
    ui.strong(format!(
        "Exact duplicates: {} groups; label conflicts: {}",
        s.duplicates.len(),
        s.label_conflicts.len()
    ));
    for c in s.label_conflicts.iter().take(20) {
        let pairs: Vec<String> = c.paths.iter().zip(&c.labels).map(|(p, l)| format!("{p} [{l}]")).collect();
        ui.label(pairs.join("  =  "));
    }
}
