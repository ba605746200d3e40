//! The Health tab: what is wrong with the pictures. "Check pictures" gathers the pixel
//! statistics, content hashes and (optionally) the embeddings' nearest neighbours on a
//! background thread; then every check is a row with its count and, where a threshold decides
//! it, a slider. Moving a slider judges the gathered inputs again on the spot (nothing is read).
//! The selected check's pictures show worst first, duplicate groups side by side; a click opens
//! them in Browse, where the usual keys relabel, exclude and undo.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use egui::{Color32, RichText, Sense, Vec2};

use super::command::{BrowseFilter, Command, Commands};
use super::thumbs::Thumbs;
use crate::dataset::workspace::Workspace;
use crate::dataset::Dataset;
use crate::quality::health::{Check, Finding, Inputs, Report, Thresholds};
use crate::train::client::Engine;
use crate::train::config::{default_weights, ModelKind, OofConfig};
use crate::train::protocol::{Job as EngineJob, JobResult};
use crate::train::runs::RunSummary;
use crate::util::path_str;

/// What was checked: the dataset as it was then (labels as edited), and what was read.
struct Checked {
    dataset: Dataset,
    inputs: Inputs,
    /// The workspace's generation when the check started: later edits make it stale.
    generation: u64,
}

enum Msg {
    Progress(String),
    /// What was read, and why the embedding checks did not run (when they did not).
    Done(Box<Checked>, Option<String>),
}

struct Job {
    rx: Receiver<Msg>,
    cancel: Arc<AtomicBool>,
    progress: String,
}

impl Drop for Job {
    /// A check nobody waits for (another dataset was opened) stops instead of using the CPU.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

pub struct Health {
    job: Option<Job>,
    checked: Option<Checked>,
    pub report: Option<Report>,
    pub thresholds: Thresholds,
    pub selected: Check,
    /// Also near-duplicates and outliers (an engine job over the pretrained embeddings).
    pub embeddings: bool,
    pub status: Option<String>,
    pub engine: Engine,
    /// The run whose train/validation split is checked for leaks, with its validation paths.
    leak_run: Option<(std::path::PathBuf, Vec<String>)>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            job: None,
            checked: None,
            report: None,
            thresholds: Thresholds::default(),
            selected: Check::Blurry,
            embeddings: true,
            status: None,
            engine: Engine::default(),
            leak_run: None,
        }
    }
}

/// Side of a thumbnail, in points.
const TILE: f32 = 112.0;

/// Where a check's slider can go.
fn slider_range(c: Check) -> std::ops::RangeInclusive<f32> {
    match c {
        Check::OddSize | Check::OddAspect => 0.0..=4.0,
        Check::Outlier => 0.5..=1.0,
        _ => 0.0..=1.0,
    }
}

impl Health {
    pub fn with_engine(engine: Engine) -> Self {
        Health {
            engine,
            ..Default::default()
        }
    }

    pub fn running(&self) -> bool {
        self.job.is_some()
    }

    /// Gathers the inputs in the background, on the labels as the window has them now.
    pub fn start(&mut self, ctx: &egui::Context, ws: &Workspace) {
        if self.job.is_some() {
            return;
        }
        let mut dataset = (*ws.dataset).clone();
        for (s, label) in dataset.samples.iter_mut().zip(&ws.labels) {
            s.label = label.clone();
        }
        let cache = ws.store_dir.join("health");
        let work_dir = std::path::absolute(ws.store_dir.join("issues"))
            .unwrap_or_else(|_| ws.store_dir.join("issues"));
        let source = ws.dataset.source.absolute();
        let (embeddings, engine) = (self.embeddings, self.engine.clone());
        let generation = ws.generation;
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (c, ctx) = (cancel.clone(), ctx.clone());
        std::thread::Builder::new()
            .name("loupe-health".into())
            .spawn(move || {
                let say = |m: Msg| {
                    let _ = tx.send(m);
                    ctx.request_repaint();
                };
                say(Msg::Progress("reading every picture".into()));
                let mut inputs = Inputs::gather(&dataset, Some(&cache));
                let mut skipped = Some("not asked for".to_string());
                if embeddings && !c.load(Ordering::Relaxed) {
                    let model = ModelKind::EfficientnetLite0;
                    let job = EngineJob::Neighbours {
                        dataset: source,
                        config: OofConfig {
                            model,
                            weights: default_weights(model),
                            ..Default::default()
                        },
                        work_dir,
                        k: 10,
                    };
                    skipped = match engine
                        .start(&job, None)
                        .result(&c, |p| say(Msg::Progress(p)))
                    {
                        Ok(JobResult::Neighbours(nb)) => {
                            inputs.neighbours = Some(nb);
                            None
                        }
                        Ok(_) => Some("cancelled".into()),
                        Err(e) => Some(e),
                    };
                }
                say(Msg::Done(
                    Box::new(Checked {
                        dataset,
                        inputs,
                        generation,
                    }),
                    skipped,
                ));
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        self.job = Some(Job {
            rx,
            cancel,
            progress: "starting".into(),
        });
    }

    /// Takes in what the background check reported.
    pub fn poll(&mut self) {
        let Some(job) = &mut self.job else { return };
        while let Ok(msg) = job.rx.try_recv() {
            match msg {
                Msg::Progress(p) => job.progress = p,
                Msg::Done(checked, skipped) => {
                    self.status = skipped
                        .filter(|why| why != "not asked for")
                        .map(|why| format!("near-duplicates and outliers skipped: {why}"));
                    self.checked = Some(*checked);
                    self.job = None;
                    self.judge();
                    return;
                }
            }
        }
    }

    /// Moves a threshold and judges again (no file is read).
    pub fn set_threshold(&mut self, c: Check, v: f32) {
        self.thresholds.set(c, v);
        self.judge();
    }

    /// Checks the duplicate groups against a run's split (its folder and validation paths), or
    /// stops checking.
    pub fn check_leaks(&mut self, run: Option<(std::path::PathBuf, Vec<String>)>) {
        self.leak_run = run;
        self.judge();
    }

    fn judge(&mut self) {
        self.report = self.checked.as_ref().map(|c| {
            let mut r = Report::judge(&c.dataset, &c.inputs, &self.thresholds);
            if let Some((_, val)) = &self.leak_run {
                r.add_leaks(&c.dataset, val);
            }
            r
        });
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        ws: &Workspace,
        runs: &[RunSummary],
        thumbs: &mut Thumbs,
        cmds: &mut Commands,
    ) {
        ui.horizontal(|ui| {
            let label = if self.report.is_some() {
                "Check again"
            } else {
                "Check pictures"
            };
            if ui
                .add_enabled(self.job.is_none(), egui::Button::new(label))
                .clicked()
            {
                cmds.push(Command::CheckHealth);
            }
            ui.checkbox(&mut self.embeddings, "near-duplicates and outliers")
                .on_hover_text(
                    "embeds every picture with the pretrained network (cached with the label \
                     searches'); without it: pixel checks and exact copies only",
                );
            if let Some(job) = &self.job {
                ui.spinner();
                ui.label(&job.progress);
            }
        });
        if let Some(s) = &self.status {
            ui.colored_label(ui.visuals().warn_fg_color, s);
        }
        let Some(report) = &self.report else {
            ui.label(
                "Dark, washed-out, blurry or empty pictures, greyscale ones in a colour dataset, \
                 odd sizes and shapes, copies (exact and near) and copies with different labels, \
                 and pictures far from their class.",
            );
            return;
        };
        ui.label(format!(
            "{} pictures checked · {} unreadable",
            report.images,
            report.unreadable.len()
        ));
        // Label conflicts and leaks were judged on the labels of then.
        if self
            .checked
            .as_ref()
            .is_some_and(|c| c.generation != ws.generation)
        {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "labels changed since this check: Check again for today's label conflicts",
            );
        }
        ui.separator();
        let mut moved = None;
        let mut leak_pick = None;
        egui::Grid::new("health-checks")
            .num_columns(4)
            .striped(true)
            .show(ui, |ui| {
                for c in Check::ALL {
                    let count = report.of_check(c).len();
                    let text = if report.ran(c) {
                        format!("{}  {count}", c.name())
                    } else {
                        format!("{}  (not run)", c.name())
                    };
                    ui.selectable_value(&mut self.selected, c, text)
                        .on_hover_text(c.meaning());
                    if c == Check::Leak {
                        // Duplicates across a run's train/validation split.
                        let current = self.leak_run.as_ref().map(|(dir, _)| dir.clone());
                        let name = |d: &std::path::Path| {
                            d.file_name().map_or_else(
                                || d.display().to_string(),
                                |n| n.to_string_lossy().into_owned(),
                            )
                        };
                        egui::ComboBox::from_id_salt("health-leak-run")
                            .selected_text(current.as_deref().map_or("pick a run".into(), name))
                            .show_ui(ui, |ui| {
                                if ui.selectable_label(current.is_none(), "none").clicked() {
                                    leak_pick = Some(None);
                                }
                                for r in runs {
                                    let on = current.as_deref() == Some(r.dir.as_path());
                                    if ui.selectable_label(on, name(&r.dir)).clicked() {
                                        leak_pick =
                                            Some(Some((r.dir.clone(), r.record.split.val.clone())));
                                    }
                                }
                            });
                    } else if Check::THRESHOLDED.contains(&c) {
                        let mut v = self.thresholds.get(c);
                        let slider = egui::Slider::new(&mut v, slider_range(c))
                            .text("flag at")
                            .max_decimals(2);
                        if ui.add(slider).changed() {
                            moved = Some((c, v));
                        }
                    } else {
                        ui.label("");
                    }
                    ui.end_row();
                }
            });
        ui.separator();
        let found: Vec<Finding> = report
            .of_check(self.selected)
            .into_iter()
            .cloned()
            .collect();
        self.gallery(ui, ws, thumbs, cmds, &found);
        if let Some((c, v)) = moved {
            self.set_threshold(c, v);
        }
        if let Some(run) = leak_pick {
            self.check_leaks(run);
        }
    }

    /// The selected check's pictures: worst first, or one row per duplicate group.
    fn gallery(
        &self,
        ui: &mut egui::Ui,
        ws: &Workspace,
        thumbs: &mut Thumbs,
        cmds: &mut Commands,
        found: &[Finding],
    ) {
        let Some(checked) = &self.checked else { return };
        let path = |f: &Finding| path_str(&checked.dataset.samples[f.sample].path);
        let name = self.selected.name();
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("{name}: {} pictures", found.len())).strong());
            if !found.is_empty() && ui.button("Open them in Browse").clicked() {
                cmds.push(Command::Browse(BrowseFilter::Paths {
                    title: format!("health: {name}"),
                    paths: found.iter().map(path).collect(),
                }));
            }
        });
        // Duplicate groups each start a row; other checks are one run of tiles. Rows are cut
        // to the width, so every row has the same height and only the visible ones are drawn.
        let per_row = ((ui.available_width() / (TILE + 8.0)) as usize).max(1);
        let mut rows: Vec<Vec<&Finding>> = Vec::new();
        if found.iter().any(|f| f.group.is_some()) {
            let mut by_group: std::collections::BTreeMap<usize, Vec<&Finding>> = Default::default();
            for f in found {
                by_group.entry(f.group.unwrap_or(0)).or_default().push(f);
            }
            for g in by_group.into_values() {
                rows.extend(g.chunks(per_row).map(<[_]>::to_vec));
            }
        } else {
            rows.extend(
                found
                    .iter()
                    .collect::<Vec<_>>()
                    .chunks(per_row)
                    .map(<[_]>::to_vec),
            );
        }
        let row_height = TILE + 30.0;
        egui::ScrollArea::vertical().show_rows(ui, row_height, rows.len(), |ui, range| {
            // The visible rows and two more below, in the order they are drawn.
            let ahead = range.start..(range.end + 2).min(rows.len());
            let wanted: Vec<(usize, std::path::PathBuf)> = rows[ahead]
                .iter()
                .flatten()
                .filter_map(|f| {
                    let i = ws.index_of(&path(f))?;
                    Some((i, ws.dataset.abs_path(&ws.dataset.samples[i].path)))
                })
                .collect();
            thumbs.want(ui.ctx(), wanted);
            for row in &rows[range] {
                ui.horizontal(|ui| {
                    for f in row {
                        let p = path(f);
                        let (rect, resp) =
                            ui.allocate_exact_size(Vec2::new(TILE, row_height), Sense::click());
                        resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &p));
                        let img = egui::Rect::from_min_size(rect.min, Vec2::splat(TILE));
                        if let Some(t) = ws.index_of(&p).and_then(|i| thumbs.get(i)) {
                            let size = t.size_vec2();
                            let s = TILE / size.x.max(size.y).max(1.0);
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
                        let caption = [
                            p.clone(),
                            match f.group {
                                Some(g) => format!("{:.2} · group {g}", f.score),
                                None => format!("{:.2}", f.score),
                            },
                        ];
                        for (n, text) in caption.into_iter().enumerate() {
                            let mut job = egui::text::LayoutJob::single_section(
                                text,
                                egui::TextFormat::simple(
                                    egui::FontId::proportional(11.0),
                                    ui.visuals().text_color(),
                                ),
                            );
                            job.wrap = egui::text::TextWrapping::truncate_at_width(TILE - 2.0);
                            let at =
                                egui::pos2(rect.min.x + 1.0, img.max.y + 1.0 + 14.0 * n as f32);
                            let color = ui.visuals().text_color();
                            ui.painter().galley(at, ui.painter().layout_job(job), color);
                        }
                        if resp.clicked() {
                            // A group opens whole; a single picture opens alone.
                            let paths = match f.group {
                                Some(g) => found
                                    .iter()
                                    .filter(|o| o.group == Some(g))
                                    .map(path)
                                    .collect(),
                                None => vec![p.clone()],
                            };
                            cmds.push(Command::Browse(BrowseFilter::Paths {
                                title: format!("health: {name}"),
                                paths,
                            }));
                        }
                    }
                });
            }
        });
    }
}
