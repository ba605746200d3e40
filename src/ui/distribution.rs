//! The Distribution tab: class balance (and per column for composite labels), image sizes,
//! formats, unreadable files, duplicates and label conflicts; each one click from Browse.

use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Plot, Points};

use super::command::{BrowseFilter, Command, Commands};
use super::plots::{finite, Extent};
use crate::dataset::stats::{Count, ASPECT_BINS};
use crate::dataset::workspace::Workspace;

#[derive(Default)]
pub struct Distribution {
    by_name: bool,
}

/// A class whose count is under this share of the largest class gets a warning.
const RARE_SHARE: f64 = 0.2;

impl Distribution {
    pub fn show(&mut self, ui: &mut egui::Ui, ws: &Workspace, cmds: &mut Commands) {
        let mut action = None;
        let s = &ws.stats;
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.heading("Classes");
                    ui.radio_value(&mut self.by_name, false, "by count");
                    ui.radio_value(&mut self.by_name, true, "by name");
                });
                match s.imbalance_ratio {
                    Some(r) => ui.label(format!(
                        "Imbalance ratio {r:.1}x (largest / smallest non-empty class)"
                    )),
                    None => ui.label("No classes with images yet"),
                };
                let max = s.classes.iter().map(|c| c.count).max().unwrap_or(0);
                let rare: Vec<&Count> = s
                    .classes
                    .iter()
                    .filter(|c| (c.count as f64) < RARE_SHARE * max as f64)
                    .collect();
                if !rare.is_empty() {
                    let names: Vec<String> = rare
                        .iter()
                        .map(|c| format!("{} ({})", c.name, c.count))
                        .collect();
                    ui.colored_label(
                        Color32::from_rgb(255, 170, 60),
                        format!(
                            "⚠ Rare classes (under {:.0}% of the largest): {}",
                            RARE_SHARE * 100.0,
                            names.join(", ")
                        ),
                    );
                }
                let mut counts = s.classes.clone();
                if self.by_name {
                    counts.sort_by(|a, b| a.name.cmp(&b.name));
                }
                if let Some(c) = bar_chart(ui, "class_chart", &counts, s.images) {
                    action = Some(BrowseFilter::Class(c));
                }
                egui::CollapsingHeader::new("Class table")
                    .default_open(false)
                    .show(ui, |ui| {
                        egui::Grid::new("class_table").striped(true).show(ui, |ui| {
                            for c in &counts {
                                if ui.link(&c.name).on_hover_text("Show in Browse").clicked() {
                                    action = Some(BrowseFilter::Class(c.name.clone()));
                                }
                                ui.label(c.count.to_string());
                                ui.label(format!(
                                    "{:.1}%",
                                    100.0 * c.count as f64 / s.images.max(1) as f64
                                ));
                                ui.end_row();
                            }
                        });
                    });

                for col in &s.columns {
                    ui.add_space(8.0);
                    ui.heading(format!("Column “{}”", col.column));
                    bar_chart(ui, &format!("col_{}", col.column), &col.counts, s.images);
                }

                ui.add_space(8.0);
                ui.heading("Image sizes");
                ui.columns(2, |cols| {
                    size_scatter(
                        &mut cols[0],
                        ws.dataset
                            .samples
                            .iter()
                            .map(|s| (s.info.width, s.info.height)),
                    );
                    aspect_histogram(&mut cols[1], &s.sizes.aspect_histogram);
                });

                ui.add_space(8.0);
                ui.heading("Formats and colour modes");
                ui.horizontal_top(|ui| {
                    count_table(ui, "formats", &s.formats);
                    ui.add_space(24.0);
                    count_table(ui, "colours", &s.color_modes);
                });

                ui.add_space(8.0);
                ui.heading(format!("Unreadable files: {}", s.unreadable.len()));
                for r in &s.unreadable_by_reason {
                    ui.label(format!("{}: {}", r.name, r.count));
                }
                if !s.unreadable.is_empty() && ui.button("Show them").clicked() {
                    action = Some(BrowseFilter::Unreadable);
                }

                ui.add_space(8.0);
                ui.heading(format!("Exact duplicates: {} groups", s.duplicates.len()));
                for (k, g) in s.duplicates.iter().take(200).enumerate() {
                    if ui
                        .link(format!("{} identical files: {}", g.len(), g.join(", ")))
                        .clicked()
                    {
                        action = Some(BrowseFilter::Paths {
                            title: format!("duplicate group {}", k + 1),
                            paths: g.clone(),
                        });
                    }
                }
                ui.add_space(8.0);
                ui.heading(format!("Label conflicts: {}", s.label_conflicts.len()));
                for (k, c) in s.label_conflicts.iter().enumerate() {
                    let text: Vec<String> = c
                        .paths
                        .iter()
                        .zip(&c.labels)
                        .map(|(p, l)| format!("{p} [{l}]"))
                        .collect();
                    if ui
                        .link(RichText::new(text.join("  =  ")).color(Color32::LIGHT_RED))
                        .clicked()
                    {
                        action = Some(BrowseFilter::Paths {
                            title: format!("conflict {}", k + 1),
                            paths: c.paths.clone(),
                        });
                    }
                }
            });
        if let Some(filter) = action {
            cmds.push(Command::Browse(filter));
        }
    }
}

/// Horizontal bar chart (names on the left, first on top) with hover count/share; returns the
/// class whose bar was clicked.
pub fn bar_chart(ui: &mut egui::Ui, id: &str, counts: &[Count], total: usize) -> Option<String> {
    let n = counts.len();
    // Bar k sits at y = n-1-k, so the list reads top-down in the order given.
    let y_of = move |k: usize| (n - 1 - k) as f64;
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(k, c)| Bar::new(y_of(k), c.count as f64).name(&c.name).width(0.7))
        .collect();
    let total = total.max(1) as f64;
    let chart = BarChart::new(id, bars)
        .horizontal()
        .element_formatter(Box::new(move |b, _| {
            format!(
                "{}\n{} images ({:.1}%)",
                b.name,
                b.value,
                100.0 * b.value / total
            )
        }));
    let names: Vec<String> = counts.iter().map(|c| c.name.clone()).collect();
    let names_fmt = names.clone();
    let name_at = move |y: f64| -> Option<String> {
        let k = y.round();
        ((y - k).abs() < 0.4 && k >= 0.0 && (k as usize) < n)
            .then(|| names_fmt[n - 1 - k as usize].clone())
    };
    let mut extent = Extent::default();
    extent.add_all(counts.iter().map(|c| [c.count as f64, 0.0]));
    let max = counts.iter().map(|c| c.count).max().unwrap_or(0).max(1) as f64;
    let resp = extent
        .include(Plot::new(id), (0.0, max), (0.0, 1.0))
        .include_x(0.0)
        .include_y(-0.5)
        .include_y(n as f64 - 0.5)
        .height((22.0 * n as f32).clamp(120.0, 640.0))
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .show_y(false)
        .show_axes([true, false])
        .show(ui, |p| {
            p.bar_chart(chart);
            // Names on the bars themselves: an axis would drop labels when classes are many.
            for (k, c) in counts.iter().enumerate() {
                let label = format!("{}  {}", c.name, c.count);
                p.text(
                    egui_plot::Text::new(&c.name, egui_plot::PlotPoint::new(0.0, y_of(k)), label)
                        .anchor(egui::Align2::LEFT_CENTER),
                );
            }
        });
    if resp.response.clicked() {
        let pos = resp.response.interact_pointer_pos()?;
        return name_at(resp.transform.value_from_position(pos).y);
    }
    None
}

/// Width x height of every image, each distinct size once (100,000 images are a few sizes).
pub fn size_scatter(ui: &mut egui::Ui, sizes: impl IntoIterator<Item = (u32, u32)>) {
    ui.label("width × height (each distinct size once)");
    let mut sizes: Vec<[f64; 2]> = sizes
        .into_iter()
        .map(|(w, h)| [f64::from(w), f64::from(h)])
        .collect();
    sizes.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    sizes.dedup();
    let mut extent = Extent::default();
    extent.add_all(sizes.iter().copied());
    extent
        .include(Plot::new("sizes"), (0.0, 1.0), (0.0, 1.0))
        .include_x(0.0)
        .include_y(0.0)
        .height(200.0)
        .x_axis_label("width")
        .y_axis_label("height")
        .data_aspect(1.0)
        .show(ui, |p| {
            p.points(Points::new("sizes", finite(sizes)).radius(2.5));
        });
}

pub fn aspect_histogram(ui: &mut egui::Ui, hist: &[usize]) {
    ui.label("aspect ratio (width / height)");
    let labels: Vec<String> = (0..hist.len())
        .map(|k| match k {
            0 => format!("<{}", ASPECT_BINS[0]),
            k if k == ASPECT_BINS.len() => format!("≥{}", ASPECT_BINS[k - 1]),
            k => format!("{}–{}", ASPECT_BINS[k - 1], ASPECT_BINS[k]),
        })
        .collect();
    let bars: Vec<Bar> = hist
        .iter()
        .enumerate()
        .map(|(k, &n)| Bar::new(k as f64, n as f64).name(&labels[k]).width(0.8))
        .collect();
    let max = hist.iter().copied().max().unwrap_or(0).max(1) as f64;
    Plot::new("aspect")
        .include_x(-0.5)
        .include_x(hist.len().max(1) as f64 - 0.5)
        .include_y(0.0)
        .include_y(max)
        .height(200.0)
        .allow_zoom(false)
        .allow_drag(false)
        .x_axis_formatter(move |m, _| {
            let k = m.value.round();
            if (m.value - k).abs() < 1e-6 && k >= 0.0 {
                labels.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |p| p.bar_chart(BarChart::new("aspect", bars)));
}

fn count_table(ui: &mut egui::Ui, id: &str, counts: &[Count]) {
    egui::Grid::new(id).striped(true).show(ui, |ui| {
        for c in counts {
            ui.label(&c.name);
            ui.label(c.count.to_string());
            ui.end_row();
        }
    });
}
