//! The Distribution tab: class balance (and per column for composite labels), image sizes,
//! aspect ratios, formats, unreadable files, duplicates and label conflicts. Every bar, bin,
//! table row and a box dragged over the size chart opens Browse on exactly those images.

use egui::{Color32, RichText, Sense, Vec2};
use egui_plot::{Plot, PlotPoint, Points, Polygon};

use super::app::class_color;
use super::command::{BrowseFilter, Command, Commands};
use super::plots::{finite, Extent};
use crate::dataset::groups::GroupCheck;
use crate::dataset::stats::{aspect_bin, aspect_bin_name, Count};
use crate::dataset::workspace::{LabelCmd, Workspace};

#[derive(Default)]
pub struct Distribution {
    by_name: bool,
    /// Where a box selection on the size chart started (plot coordinates).
    size_box: Option<PlotPoint>,
}

/// A class whose count is under this share of the largest class gets a warning.
const RARE_SHARE: f64 = 0.2;

/// One bar of a [`count_bars`] chart.
pub struct BarRow<'a> {
    pub name: &'a str,
    pub count: usize,
    pub color: Color32,
}

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
                // The colours of the class panel: a class's position among all classes.
                let rows: Vec<BarRow> = counts
                    .iter()
                    .map(|c| BarRow {
                        name: &c.name,
                        count: c.count,
                        color: class_color(
                            ws.classes.iter().position(|x| *x == c.name).unwrap_or(0),
                        ),
                    })
                    .collect();
                if let Some(k) = count_bars(ui, "class_chart", &rows, s.images) {
                    action = Some(BrowseFilter::Class(counts[k].name.clone()));
                }

                for (column, col) in s.columns.iter().enumerate() {
                    ui.add_space(8.0);
                    ui.heading(format!("Column “{}”", col.column));
                    let rows: Vec<BarRow> = col
                        .counts
                        .iter()
                        .enumerate()
                        .map(|(k, c)| BarRow {
                            name: &c.name,
                            count: c.count,
                            color: class_color(k),
                        })
                        .collect();
                    if let Some(k) = count_bars(ui, &format!("col_{}", col.column), &rows, s.images)
                    {
                        action = Some(BrowseFilter::Column {
                            column,
                            value: col.counts[k].name.clone(),
                        });
                    }
                }

                ui.add_space(8.0);
                ui.heading("Image sizes");
                ui.label(
                    RichText::new("width × height, each distinct size once: drag a box to browse those images")
                        .small()
                        .weak(),
                );
                let sizes = ws
                    .dataset
                    .samples
                    .iter()
                    .map(|s| (s.info.width, s.info.height));
                if let Some(((w0, w1), (h0, h1))) = self.size_scatter(ui, sizes) {
                    let paths = ws
                        .dataset
                        .samples
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| {
                            (w0..=w1).contains(&s.info.width) && (h0..=h1).contains(&s.info.height)
                        })
                        .map(|(i, _)| ws.path(i))
                        .collect();
                    action = Some(BrowseFilter::Paths {
                        title: format!("sizes {w0}–{w1} × {h0}–{h1}"),
                        paths,
                    });
                }

                ui.add_space(8.0);
                ui.heading("Aspect ratio (width / height)");
                if let Some(k) = aspect_histogram(ui, &s.sizes.aspect_histogram) {
                    let paths = ws
                        .dataset
                        .samples
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| aspect_bin(s.info.width, s.info.height) == k)
                        .map(|(i, _)| ws.path(i))
                        .collect();
                    action = Some(BrowseFilter::Paths {
                        title: format!("aspect {}", aspect_bin_name(k)),
                        paths,
                    });
                }

                ui.add_space(8.0);
                ui.heading("Formats and colour modes");
                ui.horizontal_top(|ui| {
                    if let Some(f) = count_table(ui, "formats", &s.formats) {
                        let paths = (0..ws.dataset.samples.len())
                            .filter(|&i| ws.dataset.samples[i].info.format_name() == f)
                            .map(|i| ws.path(i))
                            .collect();
                        action = Some(BrowseFilter::Paths {
                            title: format!("format {f}"),
                            paths,
                        });
                    }
                    ui.add_space(24.0);
                    if let Some(m) = count_table(ui, "colours", &s.color_modes) {
                        let paths = (0..ws.dataset.samples.len())
                            .filter(|&i| ws.dataset.samples[i].info.color_name() == m)
                            .map(|i| ws.path(i))
                            .collect();
                        action = Some(BrowseFilter::Paths {
                            title: format!("colour mode {m}"),
                            paths,
                        });
                    }
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
                if let Some(check) = &s.groups {
                    group_table(ui, ws, check, &mut action, cmds);
                }
            });
        if let Some(filter) = action {
            cmds.push(Command::Browse(filter));
        }
    }

    /// The size chart; returns the (width, height) ranges of a box the user dragged over it,
    /// or of the size clicked.
    fn size_scatter(
        &mut self,
        ui: &mut egui::Ui,
        sizes: impl IntoIterator<Item = (u32, u32)>,
    ) -> Option<((u32, u32), (u32, u32))> {
        let plot = size_plot(ui, sizes, self.size_box);
        let resp = &plot.response;
        let at = resp
            .interact_pointer_pos()
            .map(|p| plot.transform.value_from_position(p));
        if resp.drag_started() {
            self.size_box = at;
        }
        let range = |x: f64, y: f64| {
            (
                x.min(y).max(0.0).floor() as u32,
                x.max(y).max(0.0).ceil() as u32,
            )
        };
        let (a, b) = if resp.drag_stopped() {
            (self.size_box.take()?, at?)
        } else if resp.clicked() {
            // A click is a box a few pixels wide around the pointer.
            let p = resp.interact_pointer_pos()?;
            let slack = Vec2::splat(6.0);
            (
                plot.transform.value_from_position(p - slack),
                plot.transform.value_from_position(p + slack),
            )
        } else {
            return None;
        };
        Some((range(a.x, b.x), range(a.y, b.y)))
    }
}

/// The size scatter, with the box being dragged drawn over it. Zoom, pan and the scroll wheel
/// are off: the page scrolls over it, and a drag selects.
pub fn size_plot(
    ui: &mut egui::Ui,
    sizes: impl IntoIterator<Item = (u32, u32)>,
    dragging_from: Option<PlotPoint>,
) -> egui_plot::PlotResponse<()> {
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
        .height(220.0)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .x_axis_label("width (px)")
        .y_axis_label("height (px)")
        .show(ui, |p| {
            p.points(Points::new("sizes", finite(sizes)).radius(3.0));
            if let (Some(a), Some(b)) = (dragging_from, p.pointer_coordinate()) {
                let corners = vec![[a.x, a.y], [b.x, a.y], [b.x, b.y], [a.x, b.y]];
                p.polygon(
                    Polygon::new("selection", finite(corners))
                        .fill_color(Color32::from_rgba_unmultiplied(120, 170, 255, 40)),
                );
            }
        })
}

/// Horizontal bars, one per row, first on top: the name, a bar in the row's colour, the count
/// and share. Every row is one button (labelled for screen readers and tests); returns the
/// clicked row.
pub fn count_bars(ui: &mut egui::Ui, id: &str, rows: &[BarRow], total: usize) -> Option<usize> {
    let max = rows.iter().map(|r| r.count).max().unwrap_or(0).max(1) as f32;
    let total = total.max(1) as f64;
    let name_w = 170.0f32.min(ui.available_width() * 0.35);
    let mut clicked = None;
    ui.push_id(id, |ui| {
        for (k, r) in rows.iter().enumerate() {
            let width = ui.available_width();
            let (rect, resp) = ui.allocate_exact_size(Vec2::new(width, 22.0), Sense::click());
            let share = 100.0 * r.count as f64 / total;
            let label = format!("{}: {} images ({share:.1}%)", r.name, r.count);
            resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
            if ui.is_rect_visible(rect) {
                let p = ui.painter();
                if resp.hovered() {
                    p.rect_filled(rect, 3.0, ui.visuals().widgets.hovered.weak_bg_fill);
                }
                let text = ui.visuals().strong_text_color();
                let mut job = egui::text::LayoutJob::single_section(
                    r.name.to_string(),
                    egui::TextFormat::simple(egui::FontId::proportional(13.0), text),
                );
                job.wrap = egui::text::TextWrapping::truncate_at_width(name_w - 8.0);
                let galley = p.layout_job(job);
                p.galley(
                    egui::pos2(rect.min.x + 4.0, rect.center().y - galley.size().y / 2.0),
                    galley,
                    text,
                );
                let counts = format!("{}  {share:.1}%", r.count);
                let counts_w = 90.0;
                let bar_max = (width - name_w - counts_w).max(10.0);
                let bar_w = bar_max * r.count as f32 / max;
                let bar = egui::Rect::from_min_size(
                    egui::pos2(rect.min.x + name_w, rect.min.y + 4.0),
                    Vec2::new(bar_w.max(1.0), rect.height() - 8.0),
                );
                p.rect_filled(bar, 2.0, r.color);
                p.text(
                    egui::pos2(bar.max.x + 6.0, rect.center().y),
                    egui::Align2::LEFT_CENTER,
                    counts,
                    egui::FontId::proportional(12.0),
                    ui.visuals().text_color(),
                );
            }
            if resp
                .on_hover_text(format!("{label}: click to browse them"))
                .on_hover_cursor(egui::CursorIcon::PointingHand)
                .clicked()
            {
                clicked = Some(k);
            }
        }
    });
    clicked
}

/// The aspect-ratio histogram as bars, one per bin; returns the clicked bin.
pub fn aspect_histogram(ui: &mut egui::Ui, hist: &[usize]) -> Option<usize> {
    let names: Vec<String> = (0..hist.len()).map(aspect_bin_name).collect();
    let total = hist.iter().sum();
    let rows: Vec<BarRow> = hist
        .iter()
        .enumerate()
        .map(|(k, &count)| BarRow {
            name: &names[k],
            count,
            color: Color32::from_rgb(100, 150, 200),
        })
        .collect();
    count_bars(ui, "aspect", &rows, total)
}

/// A table of counts whose names are links; returns the clicked name.
fn count_table(ui: &mut egui::Ui, id: &str, counts: &[Count]) -> Option<String> {
    let mut clicked = None;
    egui::Grid::new(id).striped(true).show(ui, |ui| {
        for c in counts {
            if ui.link(&c.name).on_hover_text("Show in Browse").clicked() {
                clicked = Some(c.name.clone());
            }
            ui.label(c.count.to_string());
            ui.end_row();
        }
    });
    clicked
}

/// With a group column: which label columns belong to the group, and the images whose value
/// differs from their group's majority, each with a button that sets it to the group's value.
fn group_table(
    ui: &mut egui::Ui,
    ws: &Workspace,
    check: &GroupCheck,
    action: &mut Option<BrowseFilter>,
    cmds: &mut Commands,
) {
    let group_col = match &ws.dataset.source {
        crate::dataset::Source::Csv(c) => c.group_col.clone().unwrap_or_default(),
        _ => String::new(),
    };
    ui.add_space(8.0);
    ui.heading(format!("Groups (column “{group_col}”)"));
    egui::Grid::new("group-columns")
        .striped(true)
        .show(ui, |ui| {
            for c in &check.columns {
                ui.label(&c.name);
                ui.label(format!(
                    "the same on every image of {:.0}% of {} groups",
                    100.0 * c.agreeing,
                    c.groups
                ));
                ui.label(if c.is_group_level() {
                    "belongs to the group"
                } else {
                    "varies within groups"
                });
                ui.end_row();
            }
        });
    let d = &check.disagreements;
    ui.label(
        RichText::new(format!(
            "{} image(s) disagree with their group's majority",
            d.len()
        ))
        .strong(),
    );
    egui::Grid::new("group-disagreements")
        .striped(true)
        .show(ui, |ui| {
            for x in d.iter().take(500) {
                let column = &check.columns[x.column].name;
                let path = ws.path(x.sample);
                if ui
                    .link(&path)
                    .on_hover_text("show the group's images in Browse")
                    .clicked()
                {
                    let paths = (0..ws.dataset.samples.len())
                        .filter(|&i| ws.dataset.samples[i].group.as_deref() == Some(&x.group))
                        .map(|i| ws.path(i))
                        .collect();
                    *action = Some(BrowseFilter::Paths {
                        title: format!("group {}", x.group),
                        paths,
                    });
                }
                ui.label(format!("{column}: {}", x.value));
                ui.label(format!(
                    "group {} says {} ({} of {})",
                    x.group, x.majority, x.support.0, x.support.1
                ));
                if ui
                    .button(format!("set to {}", x.majority))
                    .on_hover_text(format!(
                        "set this image's {column}, keeping its other columns"
                    ))
                    .clicked()
                {
                    cmds.push(LabelCmd::SetColumn {
                        paths: vec![path],
                        column: x.column,
                        value: x.majority.clone(),
                    });
                }
                ui.end_row();
            }
        });
}
