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

use super::browse::RunScores;
use super::command::{BrowseFilter, Command, Commands};
use super::map::{MapView, Paint};
use super::review::Suspect;
use super::thumbs::Thumbs;
use crate::dataset::workspace::{LabelCmd, Workspace};
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
    /// The selected check's pictures, or the map of all of them.
    pub show_map: bool,
    pub colour_by: ColourBy,
    /// The map by its two principal components rather than by t-SNE (which keeps
    /// neighbourhoods, and is the default where the engine laid it out).
    pub pca: bool,
    map: MapView,
    /// The map's colours as last worked out, and what they were worked out from.
    paint: Option<MapPaint>,
    /// Counts the judgements: the map's flag colours follow them.
    judged: u64,
    /// The copies across one run's split, as [`Health::leaks_of`] last worked them out.
    leaks: Option<(std::path::PathBuf, u64, Vec<String>)>,
    /// A threshold slider being dragged, and where its knob is.
    dragging: Option<(Check, f32)>,
    /// Each check's count (in `Check::ALL` order), from the last judgement.
    counts: Vec<usize>,
    shown: Option<Shown>,
}

/// The selected check's findings as the gallery shows them, worked out once per judgement
/// and selection, not every frame: 100,000 pictures can have 200,000 findings.
struct Shown {
    check: Check,
    judged: u64,
    /// Worst first; duplicate groups together, in group order.
    found: Vec<Finding>,
    /// Where each group lies in `found` (one range for a check without groups).
    groups: Vec<std::ops::Range<usize>>,
    /// The paths to exclude so that each copy group keeps one picture (copy checks only).
    extra: Vec<String>,
}

impl Shown {
    fn of(report: &Report, ds: &Dataset, check: Check, judged: u64) -> Shown {
        let mut found: Vec<Finding> = report.of_check(check).into_iter().cloned().collect();
        // A stable sort: within a group, still worst first.
        found.sort_by_key(|f| f.group.unwrap_or(0));
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        for (i, f) in found.iter().enumerate() {
            match groups.last_mut() {
                Some(g) if found[g.start].group == f.group => g.end = i + 1,
                _ => groups.push(i..i + 1),
            }
        }
        let extra = if matches!(
            check,
            Check::ExactDuplicate | Check::NearDuplicate | Check::LabelConflict
        ) {
            let refs: Vec<&Finding> = found.iter().collect();
            crate::quality::health::extra_copies(ds, &refs)
                .into_iter()
                .map(|i| path_str(&ds.samples[i].path))
                .collect()
        } else {
            Vec::new()
        };
        Shown {
            check,
            judged,
            found,
            groups,
            extra,
        }
    }
}

/// What colours the points of the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourBy {
    Class,
    /// The check selected in the list.
    Flag,
    /// The latest label-issue search's suspects.
    Suspicion,
    /// Right and wrong in the validation predictions of the run loaded in Evaluate.
    Run,
}

impl ColourBy {
    const ALL: [ColourBy; 4] = [
        ColourBy::Class,
        ColourBy::Flag,
        ColourBy::Suspicion,
        ColourBy::Run,
    ];

    fn name(self) -> &'static str {
        match self {
            ColourBy::Class => "class",
            ColourBy::Flag => "selected check",
            ColourBy::Suspicion => "label suspicion",
            ColourBy::Run => "run's mistakes",
        }
    }
}

/// What else the window knows that the map can colour by.
#[derive(Default, Clone, Copy)]
pub struct Layers<'a> {
    /// The Issues tab's queue.
    pub suspects: &'a [Suspect],
    /// The run loaded in Evaluate.
    pub run: Option<&'a RunScores>,
}

/// The map's colours for one colouring, and everything it was worked out from.
struct MapPaint {
    key: PaintKey,
    colours: Vec<Color32>,
    on_top: Vec<usize>,
    /// Each point's sample in the workspace.
    samples: Vec<Option<usize>>,
    legend: Vec<(String, Color32)>,
    /// Why there is nothing to colour by (no search yet, no run loaded).
    missing: Option<&'static str>,
    version: u64,
}

#[derive(PartialEq, Clone)]
struct PaintKey {
    by: ColourBy,
    generation: u64,
    judged: u64,
    selected: Check,
    suspects: usize,
    run: Option<(String, usize)>,
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
            show_map: false,
            colour_by: ColourBy::Class,
            pca: false,
            map: MapView::default(),
            paint: None,
            judged: 0,
            leaks: None,
            dragging: None,
            counts: Vec::new(),
            shown: None,
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
        let embeddings_dir =
            std::path::absolute(&ws.embeddings_dir).unwrap_or_else(|_| ws.embeddings_dir.clone());
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
                        embeddings: embeddings_dir,
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
                    self.map.reset();
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

    /// The pictures in duplicate groups that straddle `run`'s split (`vals`: its validation
    /// paths; for an experiment, each fold's), by the last check; None before any check.
    pub fn leaks_of(&mut self, run: &std::path::Path, vals: &[&[String]]) -> Option<&[String]> {
        let (checked, report) = (self.checked.as_ref()?, self.report.as_ref()?);
        let fresh = self
            .leaks
            .as_ref()
            .is_some_and(|(dir, judged, _)| dir == run && *judged == self.judged);
        if !fresh {
            // A group that straddles any fold's split: one copy trained a model that another
            // copy then scored.
            let mut paths = std::collections::BTreeSet::new();
            for val in vals {
                let val: std::collections::HashSet<String> = val.iter().cloned().collect();
                let found =
                    crate::quality::health::leak_findings(&checked.dataset, &report.findings, &val);
                paths.extend(
                    found
                        .iter()
                        .map(|f| path_str(&checked.dataset.samples[f.sample].path)),
                );
            }
            self.leaks = Some((run.to_path_buf(), self.judged, paths.into_iter().collect()));
        }
        self.leaks.as_ref().map(|(_, _, paths)| paths.as_slice())
    }

    fn judge(&mut self) {
        self.judged += 1;
        self.report = self.checked.as_ref().map(|c| {
            let mut r = Report::judge(&c.dataset, &c.inputs, &self.thresholds);
            if let Some((_, val)) = &self.leak_run {
                r.add_leaks(&c.dataset, val);
            }
            r
        });
        self.counts = Check::ALL
            .iter()
            .map(|&c| {
                self.report
                    .as_ref()
                    .map_or(0, |r| r.findings.iter().filter(|f| f.check == c).count())
            })
            .collect();
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        ws: &Workspace,
        runs: &[RunSummary],
        layers: Layers,
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
        // The checks on the left; the selected one's pictures, or the map, get the rest.
        egui::Panel::left("health-checks")
            .resizable(false)
            .show(ui, |ui| {
                egui::Grid::new("health-checks")
                    .num_columns(4)
                    .striped(true)
                    .show(ui, |ui| {
                        for (i, c) in Check::ALL.into_iter().enumerate() {
                            let count = self.counts.get(i).copied().unwrap_or(0);
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
                                    .selected_text(
                                        current.as_deref().map_or("pick a run".into(), name),
                                    )
                                    .show_ui(ui, |ui| {
                                        if ui.selectable_label(current.is_none(), "none").clicked()
                                        {
                                            leak_pick = Some(None);
                                        }
                                        for r in runs {
                                            let on = current.as_deref() == Some(r.dir.as_path());
                                            if ui.selectable_label(on, name(&r.dir)).clicked() {
                                                leak_pick = Some(Some((
                                                    r.dir.clone(),
                                                    r.record.split.val.clone(),
                                                )));
                                            }
                                        }
                                    });
                            } else if Check::THRESHOLDED.contains(&c) {
                                let mut v = match self.dragging {
                                    Some((d, v)) if d == c => v,
                                    _ => self.thresholds.get(c),
                                };
                                let slider =
                                    egui::Slider::new(&mut v, slider_range(c)).max_decimals(2);
                                ui.spacing_mut().slider_width = 90.0;
                                let resp =
                                    ui.add(slider).on_hover_text("flagged from this score up");
                                // Judged when the knob is let go, not at every step of a drag:
                                // judging 100,000 pictures takes 0.3 s.
                                if resp.dragged() {
                                    if resp.changed() {
                                        self.dragging = Some((c, v));
                                    }
                                } else if resp.drag_stopped() || resp.changed() {
                                    self.dragging = None;
                                    moved = Some((c, v));
                                }
                            } else {
                                ui.label("");
                            }
                            ui.end_row();
                        }
                    })
            });
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.show_map, false, "Pictures of the check");
            ui.selectable_value(&mut self.show_map, true, "Map of all pictures");
        });
        if self.show_map {
            self.map_view(ui, ws, layers, thumbs, cmds);
        } else {
            if self
                .shown
                .as_ref()
                .is_none_or(|s| s.check != self.selected || s.judged != self.judged)
            {
                let ds = &self.checked.as_ref().expect("judged from a check").dataset;
                self.shown = Some(Shown::of(report, ds, self.selected, self.judged));
            }
            self.gallery(ui, ws, thumbs, cmds);
        }
        if let Some((c, v)) = moved {
            self.set_threshold(c, v);
        }
        if let Some(run) = leak_pick {
            self.check_leaks(run);
        }
    }

    /// The embeddings in 2-D, coloured as chosen; a box drawn on it opens its pictures in Browse.
    fn map_view(
        &mut self,
        ui: &mut egui::Ui,
        ws: &Workspace,
        layers: Layers,
        thumbs: &mut Thumbs,
        cmds: &mut Commands,
    ) {
        let Some(nb) = self
            .checked
            .as_ref()
            .and_then(|c| c.inputs.neighbours.as_ref())
            .filter(|nb| nb.map.len() == nb.paths.len())
        else {
            ui.label(
                "The map places every picture by its pretrained embedding: tick \
                 \"near-duplicates and outliers\" and Check again.",
            );
            return;
        };
        ui.horizontal(|ui| {
            ui.label("Colour by");
            egui::ComboBox::from_id_salt("health-map-colour")
                .selected_text(self.colour_by.name())
                .show_ui(ui, |ui| {
                    for c in ColourBy::ALL {
                        ui.selectable_value(&mut self.colour_by, c, c.name());
                    }
                });
            if ui.button("See all").clicked() {
                self.map.reset();
            }
            if !nb.tsne.is_empty() {
                ui.separator();
                let before = self.pca;
                ui.selectable_value(&mut self.pca, false, "t-SNE")
                    .on_hover_text("neighbourhoods kept: pictures that look alike sit together");
                ui.selectable_value(&mut self.pca, true, "PCA")
                    .on_hover_text("the two directions of largest spread: distances stay honest");
                if self.pca != before {
                    self.map.reset();
                }
            }
        });
        let key = PaintKey {
            by: self.colour_by,
            generation: ws.generation,
            judged: self.judged,
            selected: self.selected,
            suspects: layers.suspects.len(),
            run: layers.run.map(|r| (r.run.clone(), r.scores.len())),
        };
        if self.paint.as_ref().is_none_or(|p| p.key != key) {
            let version = self.paint.as_ref().map_or(0, |p| p.version + 1);
            let checked = self.checked.as_ref().expect("the map is of a check");
            let report = self.report.as_ref().expect("a check is judged");
            self.paint = Some(paint(
                key,
                version,
                checked,
                report,
                ws,
                layers,
                ui.visuals(),
            ));
        }
        let paint = self.paint.as_ref().expect("worked out above");
        ui.add(
            egui::Label::new(
                RichText::new(
                    "Drag a box to open its pictures in Browse · scroll to zoom · right-drag to \
                     pan · double-click to see all",
                )
                .weak(),
            )
            .wrap(),
        );
        ui.horizontal_wrapped(|ui| {
            if let Some(why) = paint.missing {
                ui.colored_label(ui.visuals().warn_fg_color, why);
            }
            for (name, colour) in &paint.legend {
                ui.label(RichText::new(format!("● {name}")).color(*colour));
            }
        });
        let points = if self.pca || nb.tsne.len() != nb.paths.len() {
            &nb.map
        } else {
            &nb.tsne
        };
        let out = self.map.show(
            ui,
            points,
            &Paint {
                colours: &paint.colours,
                on_top: &paint.on_top,
                version: paint.version,
            },
        );
        if let (Some(p), Some(resp)) = (out.hovered, out.response) {
            let sample = paint.samples[p];
            if let Some(i) = sample {
                thumbs.want(
                    ui.ctx(),
                    [(i, ws.dataset.abs_path(&ws.dataset.samples[i].path))],
                );
            }
            resp.on_hover_ui_at_pointer(|ui| {
                if let Some(t) = sample.and_then(|i| thumbs.get(i)) {
                    let size = t.size_vec2();
                    let s = 160.0 / size.x.max(size.y).max(1.0);
                    ui.image((t.id(), size * s));
                }
                ui.label(&nb.paths[p]);
                if let Some(i) = sample {
                    ui.label(format!("label: {}", ws.labels[i]));
                }
            });
        }
        if let Some(picked) = out.selected.filter(|p| !p.is_empty()) {
            cmds.push(Command::Browse(BrowseFilter::Paths {
                title: format!("map: {} pictures", picked.len()),
                paths: picked.iter().map(|&p| nb.paths[p].clone()).collect(),
            }));
        }
    }

    /// The selected check's pictures: worst first, or one row per duplicate group.
    fn gallery(&self, ui: &mut egui::Ui, ws: &Workspace, thumbs: &mut Thumbs, cmds: &mut Commands) {
        let (Some(checked), Some(shown)) = (&self.checked, &self.shown) else {
            return;
        };
        let found = &shown.found;
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
            if !shown.extra.is_empty()
                && ui
                    .button(format!(
                        "Keep one of each group, exclude the other {}",
                        shown.extra.len()
                    ))
                    .on_hover_text(
                        "keeps each group's largest picture; one step, Ctrl+Z brings them back",
                    )
                    .clicked()
            {
                cmds.push(Command::Label(LabelCmd::Exclude {
                    paths: shown.extra.clone(),
                    excluded: true,
                }));
            }
        });
        // Duplicate groups each start a row; other checks are one run of tiles. Rows are cut
        // to the width, so every row has the same height and only the visible ones are drawn.
        let per_row = ((ui.available_width() / (TILE + 8.0)) as usize).max(1);
        let rows: Vec<&[Finding]> = shown
            .groups
            .iter()
            .flat_map(|g| found[g.clone()].chunks(per_row))
            .collect();
        let row_height = TILE + 30.0;
        egui::ScrollArea::vertical().show_rows(ui, row_height, rows.len(), |ui, range| {
            // The visible rows and two more below, in the order they are drawn.
            let ahead = range.start..(range.end + 2).min(rows.len());
            let wanted: Vec<(usize, std::path::PathBuf)> = rows[ahead]
                .iter()
                .flat_map(|r| r.iter())
                .filter_map(|f| {
                    let i = ws.index_of(&path(f))?;
                    Some((i, ws.dataset.abs_path(&ws.dataset.samples[i].path)))
                })
                .collect();
            thumbs.want(ui.ctx(), wanted);
            for row in &rows[range] {
                ui.horizontal(|ui| {
                    for f in row.iter() {
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

/// The map's colours for `key.by`: every point muted but those the colouring is about, which
/// are drawn on top.
fn paint(
    key: PaintKey,
    version: u64,
    checked: &Checked,
    report: &Report,
    ws: &Workspace,
    layers: Layers,
    visuals: &egui::Visuals,
) -> MapPaint {
    let nb = checked
        .inputs
        .neighbours
        .as_ref()
        .expect("the map is of the neighbours");
    let samples: Vec<Option<usize>> = nb.paths.iter().map(|p| ws.index_of(p)).collect();
    let muted = visuals.weak_text_color().gamma_multiply(0.5);
    let hot = Color32::from_rgb(230, 70, 60);
    let mut colours = vec![muted; samples.len()];
    let mut on_top = Vec::new();
    let mut legend = Vec::new();
    let mut missing = None;
    match key.by {
        ColourBy::Class => {
            let class: std::collections::HashMap<&str, usize> = ws
                .classes
                .iter()
                .enumerate()
                .map(|(k, c)| (c.as_str(), k))
                .collect();
            for (p, s) in samples.iter().enumerate() {
                if let Some(&k) = s.and_then(|i| class.get(ws.labels[i].as_str())) {
                    colours[p] = super::app::class_color(k);
                }
            }
            legend = ws
                .classes
                .iter()
                .enumerate()
                .map(|(k, c)| (c.clone(), super::app::class_color(k)))
                .collect();
        }
        ColourBy::Flag => {
            let point: std::collections::HashMap<&str, usize> = nb
                .paths
                .iter()
                .enumerate()
                .map(|(p, path)| (path.as_str(), p))
                .collect();
            for f in report.of_check(key.selected) {
                let path = path_str(&checked.dataset.samples[f.sample].path);
                if let Some(&p) = point.get(path.as_str()) {
                    colours[p] = hot;
                    on_top.push(p);
                }
            }
            legend.push((key.selected.name().to_string(), hot));
        }
        ColourBy::Suspicion => {
            if layers.suspects.is_empty() {
                missing = Some("no label-issue search yet (Issues tab)");
            }
            let mut level = std::collections::HashMap::new();
            for s in layers.suspects {
                for &i in &s.samples {
                    level.insert(i, 1.0 - s.given_confidence);
                }
            }
            for (p, s) in samples.iter().enumerate() {
                if let Some(&v) = s.and_then(|i| level.get(&i)) {
                    colours[p] = Color32::from_rgb(250, 200, 60).lerp_to_gamma(hot, v);
                    on_top.push(p);
                }
            }
            legend.push(("suspected".into(), Color32::from_rgb(250, 200, 60)));
            legend.push(("very likely wrong".into(), hot));
        }
        ColourBy::Run => {
            let right = Color32::from_rgb(85, 168, 104);
            match layers.run {
                None => missing = Some("no run loaded (Evaluate tab)"),
                Some(run) => {
                    for (p, s) in samples.iter().enumerate() {
                        let Some(i) = *s else { continue };
                        if run.wrong.contains(&i) {
                            colours[p] = hot;
                            on_top.push(p);
                        } else if run.scores.contains_key(&i) {
                            colours[p] = right;
                        }
                    }
                    legend.push((format!("{}: right", run.run), right));
                    legend.push(("wrong".into(), hot));
                    legend.push(("not validated".into(), muted));
                }
            }
        }
    }
    MapPaint {
        key,
        colours,
        on_top,
        samples,
        legend,
        missing,
        version,
    }
}
