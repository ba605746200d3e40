//! The Evaluate tab: a run's validation predictions (its best checkpoint's) as a confusion
//! heatmap, a per-class table, and galleries: the images of a clicked cell, or the top losses.
//! Images are relabelled right there with the Browse keys, through the same journal.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};

use egui::{Color32, Key, Modifiers, RichText, Sense, Vec2};

use super::command::Commands;
use super::keys;
use super::thumbs::Thumbs;
use crate::dataset::scan::label_parts;
use crate::dataset::workspace::{LabelCmd, Workspace};
use crate::train::experiment::{self, Experiment};
use crate::train::metrics::Report;
use crate::train::predictions::{self, Prediction, Predictions};
use crate::train::record::{RunConfig, VAL_PREDICTIONS};
use crate::train::runs::{ExperimentSummary, RunSummary};

/// A cell of the confusion matrix: room for four digits.
const CELL: Vec2 = Vec2::new(38.0, 26.0);

/// What the gallery shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gallery {
    /// True class, predicted class: sorted by the prediction's confidence.
    Cell(usize, usize),
    TopLosses,
}

/// What the matrix, table and gallery show: the joint classes, or one label column's values.
struct Loaded {
    classes: Vec<String>,
    preds: Vec<Prediction>,
    report: Report,
}

impl Loaded {
    fn of(p: &Predictions) -> Loaded {
        Loaded {
            classes: p.classes.clone(),
            preds: p.rows.clone(),
            report: p.report(),
        }
    }
}

#[derive(Default)]
pub struct Evaluate {
    pub run: Option<PathBuf>,
    /// The run's predictions, joint and per column.
    all: Option<Predictions>,
    /// The label column shown (None: the joint classes).
    pub column: Option<usize>,
    loaded: Option<Loaded>,
    rx: Option<Receiver<(PathBuf, Result<Predictions, String>)>>,
    /// Rows of the predictions file that could not be read (left out, and said so).
    pub problems: Vec<String>,
    pub error: Option<String>,
    pub gallery: Option<Gallery>,
    pub normalized: bool,
    /// Per-class table sort: column and descending.
    sort: (usize, bool),
    /// The gallery image the keys act on (a path relative to the dataset root).
    pub selected: Option<String>,
    /// A run was loaded and Browse has not taken its scores yet.
    fresh: bool,
    /// The selection is an experiment: its predictions are out of fold.
    out_of_fold: bool,
}

impl Evaluate {
    /// Shows `run` (loads its predictions in the background).
    pub fn select(&mut self, ctx: &egui::Context, run: PathBuf) {
        if self.run.as_ref() == Some(&run) && (self.loaded.is_some() || self.rx.is_some()) {
            return;
        }
        self.run = Some(run.clone());
        self.all = None;
        self.loaded = None;
        self.gallery = None;
        self.selected = None;
        self.error = None;
        self.problems.clear();
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let _ = std::thread::Builder::new()
            .name("loupe-eval-load".into())
            .spawn(move || {
                // An experiment shows its out-of-fold predictions: every image, by the fold
                // that did not train on it.
                let result = if Experiment::is_experiment(&run) {
                    experiment::oof_predictions(&run)
                } else {
                    RunConfig::read(&run).and_then(|rc| {
                        predictions::read_labelled(&run.join(VAL_PREDICTIONS), &rc.label_columns())
                    })
                };
                let _ = tx.send((run.clone(), result.map_err(|e| format!("{e:#}"))));
                ctx.request_repaint();
            });
        self.rx = Some(rx);
    }

    pub fn loading(&self) -> bool {
        self.rx.is_some()
    }

    fn poll(&mut self) {
        let Some(rx) = &self.rx else { return };
        if let Ok((run, result)) = rx.try_recv() {
            self.rx = None;
            if self.run.as_ref() != Some(&run) {
                return; // another run was chosen meanwhile
            }
            match result {
                Ok(p) => {
                    self.problems = p.problems.clone();
                    if self.column.is_some_and(|c| c >= p.columns.len()) {
                        self.column = None;
                    }
                    self.all = Some(p);
                    self.show_column(self.column);
                    self.fresh = true;
                }
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// Shows the joint classes (`None`) or one label column.
    pub fn show_column(&mut self, column: Option<usize>) {
        let Some(all) = &self.all else { return };
        self.column = column.filter(|&c| c < all.columns.len());
        self.loaded = Some(match self.column {
            Some(c) => Loaded::of(&all.column(c)),
            None => Loaded::of(all),
        });
        self.gallery = None;
        self.selected = None;
    }

    /// The loaded run's scores per window sample, for Browse's run sorts.
    pub fn run_scores(&self, ws: &Workspace) -> Option<super::browse::RunScores> {
        let l = self.all.as_ref()?;
        let run = self
            .run
            .as_ref()?
            .file_name()?
            .to_string_lossy()
            .to_string();
        let scores = l
            .rows
            .iter()
            .filter_map(|p| {
                ws.index_of(&p.path)
                    .map(|i| (i, (p.loss(), p.probs[p.predicted])))
            })
            .collect();
        let wrong = l
            .rows
            .iter()
            .filter(|p| p.predicted != p.label)
            .filter_map(|p| ws.index_of(&p.path))
            .collect();
        Some(super::browse::RunScores { run, scores, wrong })
    }

    /// Whether a run was loaded since the last call (Browse then takes its scores).
    pub fn take_loaded(&mut self) -> bool {
        std::mem::take(&mut self.fresh)
    }

    /// The gallery's images, in display order.
    pub fn gallery_items(&self) -> Vec<&Prediction> {
        let (Some(l), Some(g)) = (&self.loaded, self.gallery) else {
            return Vec::new();
        };
        match g {
            Gallery::Cell(t, p) => {
                let mut v: Vec<&Prediction> = l
                    .preds
                    .iter()
                    .filter(|x| x.label == t && x.predicted == p)
                    .collect();
                v.sort_by(|a, b| b.probs[p].total_cmp(&a.probs[p]));
                v
            }
            Gallery::TopLosses => {
                let mut v: Vec<&Prediction> = l.preds.iter().collect();
                v.sort_by(|a, b| b.loss().total_cmp(&a.loss()));
                v.truncate(60);
                v
            }
        }
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        ws: &Workspace,
        (runs, experiments): (&[RunSummary], &[ExperimentSummary]),
        leaks: Option<&[String]>,
        thumbs: &mut Thumbs,
        cmds: &mut Commands,
    ) {
        self.poll();
        // The newest run with predictions, until the user chooses another.
        if self.run.is_none() {
            if let Some(r) = runs.iter().find(|r| !r.epochs.is_empty()) {
                self.select(ui.ctx(), r.dir.clone());
            }
        }
        ui.horizontal(|ui| {
            ui.label("Run:");
            let current = self.run.as_ref().map_or("choose a run".into(), |dir| {
                runs.iter()
                    .find(|r| &r.dir == dir)
                    .map(|r| r.label.clone())
                    .or_else(|| {
                        let e = experiments.iter().find(|e| &e.dir == dir)?;
                        Some(format!("{} (out of fold)", e.label))
                    })
                    .unwrap_or_else(|| dir.display().to_string())
            });
            let mut chosen = None;
            egui::ComboBox::from_id_salt("eval-run")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    for r in runs.iter().filter(|r| !r.epochs.is_empty()) {
                        if ui
                            .selectable_label(self.run.as_ref() == Some(&r.dir), r.name())
                            .clicked()
                        {
                            chosen = Some(r.dir.clone());
                        }
                    }
                    for e in experiments.iter().filter(|e| e.oof.is_some()) {
                        let name = format!("{} (out of fold)", e.label);
                        if ui
                            .selectable_label(self.run.as_ref() == Some(&e.dir), name)
                            .clicked()
                        {
                            chosen = Some(e.dir.clone());
                        }
                    }
                });
            if let Some(run) = chosen {
                self.select(ui.ctx(), run);
            }
            if self.loading() {
                ui.spinner();
            }
            ui.checkbox(&mut self.normalized, "row-normalised");
            if ui
                .selectable_label(self.gallery == Some(Gallery::TopLosses), "Top losses")
                .clicked()
            {
                self.gallery = Some(Gallery::TopLosses);
                self.selected = None;
            }
        });
        self.column_switch(ui);
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        if let Some(first) = self.problems.first() {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "{} row(s) of the predictions file could not be read and are left out \
                     ({first})",
                    self.problems.len()
                ),
            );
        }
        self.out_of_fold = experiments
            .iter()
            .any(|e| Some(&e.dir) == self.run.as_ref());
        if self.loaded.is_some() {
            let across = if self.out_of_fold {
                "this experiment's folds"
            } else {
                "this run's train/validation split"
            };
            leak_line(ui, leaks, across, cmds);
        }
        if self.loaded.is_none() {
            if self.run.is_none() {
                ui.label(
                    "Choose a run: its best checkpoint's validation predictions are shown here.",
                );
            }
            return;
        }
        self.keys(ui.ctx(), ws, cmds);
        egui::Panel::left("eval-matrix")
            .resizable(true)
            .default_size(520.0)
            .show(ui, |ui| {
                egui::ScrollArea::both().show(ui, |ui| {
                    self.heatmap(ui);
                    ui.separator();
                    self.table(ui);
                });
            });
        egui::CentralPanel::default_margins().show(ui, |ui| self.gallery_ui(ui, ws, thumbs));
    }

    /// For a composite label: the joint classes or one column's values (3x3 for mask, 2x2 for
    /// gender...).
    fn column_switch(&mut self, ui: &mut egui::Ui) {
        let Some(all) = &self.all else { return };
        if all.columns.is_empty() {
            return;
        }
        let names: Vec<String> = all.columns.iter().map(|c| c.name.clone()).collect();
        let mut chosen = None;
        ui.horizontal(|ui| {
            ui.label("Show:");
            if ui
                .selectable_label(self.column.is_none(), "joint classes")
                .on_hover_text("every combination of the label columns")
                .clicked()
            {
                chosen = Some(None);
            }
            for (k, name) in names.iter().enumerate() {
                if ui.selectable_label(self.column == Some(k), name).clicked() {
                    chosen = Some(Some(k));
                }
            }
        });
        if let Some(c) = chosen {
            if c != self.column {
                self.show_column(c);
            }
        }
    }

    fn heatmap(&mut self, ui: &mut egui::Ui) {
        let Some(l) = &self.loaded else { return };
        let k = l.classes.len();
        ui.label(
            RichText::new(format!(
                "{} {} · rows: label, columns: prediction",
                l.preds.len(),
                if self.out_of_fold {
                    "images, each predicted by the fold that did not train on it"
                } else {
                    "validation images"
                }
            ))
            .small(),
        );
        let max = l
            .report
            .confusion
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f32;
        let mut clicked = None;
        // Column headers stand upright (read bottom to top), so long class names neither run
        // together nor get cut; the full name is also on hover.
        let font = egui::FontId::proportional(12.0);
        let header_h = l
            .classes
            .iter()
            .map(|c| {
                ui.painter()
                    .layout_no_wrap(c.clone(), font.clone(), Color32::WHITE)
                    .size()
                    .x
            })
            .fold(0.0f32, f32::max)
            .min(220.0)
            + 6.0;
        egui::Grid::new("confusion")
            .spacing([2.0, 2.0])
            .show(ui, |ui| {
                ui.label("");
                for c in 0..k {
                    let (rect, resp) =
                        ui.allocate_exact_size(Vec2::new(CELL.x, header_h), Sense::hover());
                    let mut job = egui::text::LayoutJob::single_section(
                        l.classes[c].clone(),
                        egui::TextFormat::simple(font.clone(), ui.visuals().text_color()),
                    );
                    job.wrap = egui::text::TextWrapping::truncate_at_width(header_h - 6.0);
                    let galley = ui.painter().layout_job(job);
                    let at = egui::pos2(rect.center().x - galley.size().y / 2.0, rect.max.y - 3.0);
                    ui.painter().add(
                        egui::epaint::TextShape::new(at, galley, ui.visuals().text_color())
                            .with_angle(-std::f32::consts::FRAC_PI_2),
                    );
                    let name = l.classes[c].clone();
                    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &name));
                    resp.on_hover_text(format!("predicted {}", l.classes[c]));
                }
                ui.end_row();
                for r in 0..k {
                    ui.label(RichText::new(&l.classes[r]))
                        .on_hover_text(format!("labelled {}", l.classes[r]));
                    let row_sum: usize = l.report.confusion[r].iter().sum();
                    for c in 0..k {
                        let n = l.report.confusion[r][c];
                        let share = if row_sum == 0 {
                            0.0
                        } else {
                            n as f32 / row_sum as f32
                        };
                        let strength = if self.normalized {
                            share
                        } else {
                            n as f32 / max
                        };
                        let base = if r == c {
                            Color32::from_rgb(40, 140, 90)
                        } else {
                            Color32::from_rgb(200, 80, 60)
                        };
                        let fill = Color32::from_gray(35).lerp_to_gamma(base, strength.sqrt());
                        let text = if self.normalized {
                            format!("{:.0}%", share * 100.0)
                        } else {
                            n.to_string()
                        };
                        let selected = self.gallery == Some(Gallery::Cell(r, c));
                        let resp = ui.add(
                            egui::Button::new(RichText::new(text).color(Color32::WHITE))
                                .fill(fill)
                                .min_size(CELL)
                                .selected(selected),
                        );
                        let label = format!("{} → {}: {n}", l.classes[r], l.classes[c]);
                        resp.widget_info(|| {
                            egui::WidgetInfo::labeled(egui::Role::Button, true, &label)
                        });
                        if resp.on_hover_text(&label).clicked() {
                            clicked = Some(Gallery::Cell(r, c));
                        }
                    }
                    ui.end_row();
                }
            });
        if clicked.is_some() {
            self.gallery = clicked;
            self.selected = None;
        }
    }

    fn table(&mut self, ui: &mut egui::Ui) {
        let Some(l) = &self.loaded else { return };
        let stats: Vec<(f64, f64, f64, usize)> = l
            .report
            .per_class
            .iter()
            .map(|c| (c.precision, c.recall, c.f1, c.support))
            .collect();
        let mut order: Vec<usize> = (0..stats.len()).collect();
        let (col, desc) = self.sort;
        let key = |c: usize| -> f64 {
            match col {
                1 => stats[c].0,
                2 => stats[c].1,
                3 => stats[c].2,
                4 => stats[c].3 as f64,
                _ => 0.0,
            }
        };
        if col == 0 {
            order.sort_by(|&a, &b| l.classes[a].cmp(&l.classes[b]));
        } else {
            order.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
        }
        if desc {
            order.reverse();
        }
        let mut sort = self.sort;
        egui::Grid::new("per-class").striped(true).show(ui, |ui| {
            for (i, name) in ["class", "precision", "recall", "F1", "images"]
                .iter()
                .enumerate()
            {
                let arrow = if sort.0 == i {
                    if sort.1 {
                        " ↓"
                    } else {
                        " ↑"
                    }
                } else {
                    ""
                };
                if ui.button(format!("{name}{arrow}")).clicked() {
                    sort = if sort.0 == i {
                        (i, !sort.1)
                    } else {
                        (i, i != 0)
                    };
                }
            }
            ui.end_row();
            for c in order {
                let (p, r, f1, n) = stats[c];
                ui.label(&l.classes[c]);
                ui.label(format!("{p:.3}"));
                ui.label(format!("{r:.3}"));
                ui.label(format!("{f1:.3}"));
                ui.label(n.to_string());
                ui.end_row();
            }
        });
        self.sort = sort;
    }

    fn gallery_ui(&mut self, ui: &mut egui::Ui, ws: &Workspace, thumbs: &mut Thumbs) {
        let Some(l) = &self.loaded else { return };
        let title = match self.gallery {
            Some(Gallery::Cell(r, c)) => format!(
                "labelled {}, predicted {}: most confident first",
                l.classes[r], l.classes[c]
            ),
            Some(Gallery::TopLosses) => {
                "top losses: the validation images the run found least likely under their label"
                    .into()
            }
            None => {
                ui.label("Click a cell of the matrix to see its images, or Top losses.");
                return;
            }
        };
        ui.label(RichText::new(title).strong());
        // In a column's view the number keys set that column only (see `keys`).
        let keys = match self.column.and_then(|c| ws.dataset.label_columns.get(c)) {
            Some(name) => format!("1-9 set {name}"),
            None => "1-9 relabel".into(),
        };
        ui.label(
            RichText::new(format!(
                "click an image, then {keys} · Space keep (checked) · X exclude · Ctrl+Z undo"
            ))
            .small(),
        );
        let items: Vec<(String, usize, usize, f32)> = self
            .gallery_items()
            .into_iter()
            .map(|p| (p.path.clone(), p.label, p.predicted, p.probs[p.predicted]))
            .collect();
        let classes = l.classes.clone();
        if items.is_empty() {
            ui.label("No images here.");
            return;
        }
        // The image, then two caption lines (label and prediction; confidence and marks).
        let cell = Vec2::new(132.0, 132.0 + 32.0);
        let per_row = ((ui.available_width() / (cell.x + 6.0)) as usize).max(1);
        let wanted: Vec<(usize, PathBuf)> = items
            .iter()
            .filter_map(|(p, ..)| {
                ws.index_of(p)
                    .map(|i| (i, ws.dataset.abs_path(&ws.dataset.samples[i].path)))
            })
            .collect();
        thumbs.want(ui.ctx(), wanted);
        let mut click = None;
        egui::ScrollArea::vertical().show(ui, |ui| {
            for row in items.chunks(per_row) {
                ui.horizontal(|ui| {
                    for (path, label, predicted, conf) in row {
                        let Some(i) = ws.index_of(path) else {
                            ui.label(format!("{path}: no longer in the dataset"));
                            continue;
                        };
                        let now = match self.column {
                            Some(c) => label_parts(&ws.labels[i], ws.dataset.label_columns.len())
                                .swap_remove(c),
                            None => ws.labels[i].clone(),
                        };
                        let (rect, resp) = ui.allocate_exact_size(cell, Sense::click());
                        let selected = self.selected.as_deref() == Some(path.as_str());
                        resp.widget_info(|| {
                            egui::WidgetInfo::selected(
                                egui::Role::Image,
                                true,
                                selected,
                                format!("{path} [{now}]"),
                            )
                        });
                        let img = egui::Rect::from_min_size(rect.min, Vec2::splat(cell.x));
                        if let Some(t) = thumbs.get(i) {
                            let size = t.size_vec2();
                            let s = cell.x / size.x.max(size.y).max(1.0);
                            ui.painter().image(
                                t.id(),
                                egui::Rect::from_center_size(img.center(), size * s),
                                egui::Rect::from_min_max(
                                    egui::pos2(0.0, 0.0),
                                    egui::pos2(1.0, 1.0),
                                ),
                                Color32::WHITE,
                            );
                        }
                        if selected {
                            ui.painter().rect_stroke(
                                rect,
                                3.0,
                                egui::Stroke::new(2.0, ui.visuals().selection.stroke.color),
                                egui::StrokeKind::Inside,
                            );
                        }
                        let changed = now != classes[*label];
                        let f = ws.flags[i];
                        let mark = if f.excluded {
                            " ✗"
                        } else if f.checked {
                            " ✓"
                        } else {
                            ""
                        };
                        let color = if changed {
                            ui.visuals().warn_fg_color
                        } else {
                            ui.visuals().text_color()
                        };
                        let lines = [
                            format!(
                                "{}{} → {}",
                                if changed { "now " } else { "" },
                                now,
                                classes[*predicted]
                            ),
                            format!("{:.0}% sure{mark}", conf * 100.0),
                        ];
                        for (n, text) in lines.into_iter().enumerate() {
                            // Cut to the tile, never into the next one.
                            let mut job = egui::text::LayoutJob::single_section(
                                text,
                                egui::TextFormat::simple(egui::FontId::proportional(11.0), color),
                            );
                            job.wrap = egui::text::TextWrapping::truncate_at_width(cell.x - 4.0);
                            let at =
                                egui::pos2(rect.min.x + 2.0, img.max.y + 2.0 + 15.0 * n as f32);
                            ui.painter().galley(at, ui.painter().layout_job(job), color);
                        }
                        if resp.on_hover_text(path.as_str()).clicked() {
                            click = Some(path.clone());
                        }
                    }
                });
            }
        });
        if let Some(p) = click {
            self.selected = Some(p);
        }
    }

    fn keys(&mut self, ctx: &egui::Context, ws: &Workspace, cmds: &mut Commands) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let selected = self.selected.clone();
        let column = self.column;
        let values = self.loaded.as_ref().map(|l| l.classes.clone());
        ctx.input_mut(|i| {
            keys::undo_redo(i, cmds);
            let Some(path) = selected else { return };
            // In a column's view the number keys pick that column's value.
            match (column, &values) {
                (Some(column), Some(values)) => {
                    if let Some(value) = keys::class_key(i, values) {
                        cmds.push(LabelCmd::SetColumn {
                            paths: vec![path.clone()],
                            column,
                            value: value.clone(),
                        });
                    }
                }
                _ => {
                    if let Some(class) = keys::class_key(i, &ws.classes) {
                        cmds.push(LabelCmd::Relabel {
                            paths: vec![path.clone()],
                            class: class.clone(),
                        });
                    }
                }
            }
            if i.consume_key(Modifiers::NONE, Key::Space) {
                cmds.push(LabelCmd::Check {
                    paths: vec![path.clone()],
                    checked: true,
                });
            }
            if i.consume_key(Modifiers::NONE, Key::X) {
                cmds.push(LabelCmd::Exclude {
                    paths: vec![path],
                    excluded: true,
                });
            }
        });
    }
}

/// Copies across the run's train/validation split (`across`: which), as the Health tab's last
/// check found them: a validation picture with a copy in training scores better than the
/// leaderboard will.
fn leak_line(ui: &mut egui::Ui, leaks: Option<&[String]>, across: &str, cmds: &mut Commands) {
    ui.horizontal(|ui| match leaks {
        None => {
            ui.label(
                RichText::new("Copies across this split: not checked (Health ▸ Check pictures)")
                    .weak(),
            );
        }
        Some([]) => {
            ui.label(format!("No copies across {across} (Health check)."));
        }
        Some(paths) => {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "{} pictures are copies across {across}: its validation score is inflated",
                    paths.len()
                ),
            );
            if ui.button("Open the leaks in Browse").clicked() {
                cmds.push(super::command::Command::Browse(
                    super::command::BrowseFilter::Paths {
                        title: "leaks".into(),
                        paths: paths.to_vec(),
                    },
                ));
            }
        }
    });
}
