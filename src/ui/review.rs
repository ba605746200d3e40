//! The Issues tab: "Find label issues" runs cross-validation and confident learning on a
//! background thread, then a review queue shows the most suspicious image first, large, with the
//! given and suggested labels, their confidences and neighbours of the suggested class.
//!
//! On a composite label a suspect names one attribute ("gender: female -> male?"), and deciding
//! changes only that part of the label; a group whose photos are suspected together (a person's
//! gender wrong on all seven) is one entry, decided for all its photos in one step.
//!
//! Keys: A accepts the suggestion, 1-9 pick a value (a class), X excludes, Space keeps the given
//! label (marked checked), J/K or arrows skip. Every decision is a journal step (undo with
//! Ctrl+Z), and the queue is derived from the journal: an image is reviewed when its value
//! changed since the search, or it is excluded or checked. So decisions persist, and a new
//! search after fixes does not ask about kept images again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use egui::{Key, Modifiers, RichText};

use super::browse::Viewer;
use super::command::{Command, Commands};
use super::keys;
use super::thumbs::Thumbs;
use crate::dataset::scan::label_parts;
use crate::dataset::workspace::{LabelCmd, Workspace};
use crate::quality::confident::{Method, RankBy};
use crate::quality::issues::{self, Findings, Why};
use crate::train::client::Engine;
use crate::train::config::{
    default_weights, ModelKind, OofConfig, EMBED_SIZE, EMBED_SIZE_SMALL, SMALL_DATASET,
};
use crate::train::protocol::{Job as EngineJob, JobResult};

/// One suspected label error, as the search left it: one image, or a group's photos.
#[derive(Debug, Clone)]
pub struct Suspect {
    pub samples: Vec<usize>,
    /// The label column suspected (0 for a single label column).
    pub column: usize,
    /// Its value when the search ran.
    pub given: String,
    pub suggested: String,
    pub given_confidence: f32,
    pub suggested_confidence: f32,
    pub why: Why,
    /// The group judged as a whole.
    pub group: Option<String>,
}

enum JobMsg {
    Progress(String),
    Done(Result<(Findings, PathBuf), String>),
    /// The last search of an earlier session, reopened (None: there was none).
    Reopened(Result<Option<(Findings, PathBuf)>, String>),
}

struct Job {
    rx: Receiver<JobMsg>,
    cancel: Arc<AtomicBool>,
    progress: String,
}

impl Drop for Job {
    /// A search nobody waits for (another dataset was opened) stops instead of using the CPU.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Side of a neighbour thumbnail, in points.
const NEIGHBOUR: f32 = 96.0;

/// A probability for people: "<1%" rather than a misleading "0%".
fn percent(p: f32) -> String {
    if p < 0.01 {
        "<1%".into()
    } else {
        format!("{:.0}%", p * 100.0)
    }
}

#[derive(Default)]
pub struct Review {
    pub queue: Vec<Suspect>,
    /// Skipped (not decided) in this session: the cursor moves past them.
    skipped: std::collections::HashSet<usize>,
    job: Option<Job>,
    /// Input resolution of the embeddings (smaller is faster on a CPU); 0: by the dataset's
    /// size ([`OofConfig::for_issues`]).
    pub img_size: u32,
    /// Per-class estimate of label errors from the last search: (class, images, errors).
    pub per_class: Vec<(String, usize, usize)>,
    /// How many images confident learning flagged (the suggested place to stop).
    pub flagged: usize,
    pub status: Option<String>,
    viewer: Viewer,
    /// When set, the search runs on this instead of the default weights (tests).
    pub weights: Option<PathBuf>,
    /// A search asked for while label edits were still being written.
    waiting: bool,
    /// The engine binary searches are run with.
    pub engine: Engine,
}

impl Review {
    pub fn with_engine(engine: Engine) -> Self {
        Review {
            engine,
            ..Default::default()
        }
    }

    pub fn running(&self) -> bool {
        self.job.is_some() || self.waiting
    }

    /// Reopens the newest search kept beside the dataset, so a review goes on where it stopped
    /// (its decisions are in the journal).
    pub fn reopen(&mut self, ctx: &egui::Context, ws: &Workspace) {
        let issues_dir = ws.store_dir.join("issues");
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("loupe-issues-reopen".into())
            .spawn(move || {
                let _ = tx.send(JobMsg::Reopened(
                    issues::latest(&issues_dir).map_err(|e| format!("{e:#}")),
                ));
                ctx.request_repaint();
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        self.job = Some(Job {
            rx,
            cancel: Arc::new(AtomicBool::new(false)),
            progress: "reopening the last search".into(),
        });
    }

    /// Whether the suspect was decided since the search: each of its images relabelled (in the
    /// suspected column), excluded or checked.
    fn reviewed(ws: &Workspace, s: &Suspect) -> bool {
        s.samples.iter().all(|&i| {
            let f = ws.flags[i];
            f.excluded || f.checked || !has_value(ws, i, s.column, &s.given)
        })
    }

    /// Queue entries not yet decided, in rank order.
    pub fn remaining(&self, ws: &Workspace) -> Vec<usize> {
        (0..self.queue.len())
            .filter(|&q| !Self::reviewed(ws, &self.queue[q]))
            .collect()
    }

    /// The queue entry on screen: the most suspicious undecided one not skipped (skips wrap).
    pub fn current(&self, ws: &Workspace) -> Option<usize> {
        let remaining = self.remaining(ws);
        remaining
            .iter()
            .copied()
            .find(|&q| !self.skipped.contains(&self.queue[q].samples[0]))
            .or_else(|| remaining.first().copied())
    }

    /// Starts the search on the labels as edited (excluded images left out), once the edits sent
    /// so far are on disk, where the engine reads them.
    pub fn start(&mut self, ctx: &egui::Context, ws: &Workspace) {
        if self.job.is_some() {
            return;
        }
        if ws.pending > 0 {
            self.waiting = true;
            return;
        }
        self.waiting = false;
        let kept: std::collections::HashSet<String> = (0..ws.labels.len())
            .filter(|&i| ws.flags[i].checked)
            .map(|i| ws.path(i))
            .collect();
        let source = ws.dataset.source.absolute();
        let issues_dir = std::path::absolute(ws.store_dir.join("issues"))
            .unwrap_or_else(|_| ws.store_dir.join("issues"));
        let embeddings =
            std::path::absolute(&ws.embeddings_dir).unwrap_or_else(|_| ws.embeddings_dir.clone());
        let (img_size, weights) = (self.img_size, self.weights.clone());
        let engine = self.engine.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (c, ctx) = (cancel.clone(), ctx.clone());
        std::thread::Builder::new()
            .name("loupe-issues".into())
            .spawn(move || {
                let say = |m: JobMsg| {
                    let _ = tx.send(m);
                    ctx.request_repaint();
                };
                let weights = weights.or_else(|| default_weights(ModelKind::EfficientnetLite0));
                let Some(weights) = weights else {
                    say(JobMsg::Done(Err(
                        "no pretrained weights found: run `make test` (or \
                         scripts/fetch_weights.py) to install EfficientNet-Lite0's"
                            .into(),
                    )));
                    return;
                };
                let job = EngineJob::FindIssues {
                    dataset: source,
                    config: OofConfig {
                        img_size,
                        weights: Some(weights),
                        ..Default::default()
                    },
                    method: Method::PruneByNoiseRate,
                    rank_by: RankBy::SelfConfidence,
                    issues_dir,
                    embeddings,
                };
                let done = match engine
                    .start(&job, None)
                    .result(&c, |p| say(JobMsg::Progress(p)))
                {
                    Ok(JobResult::Issues { folder, .. }) => issues::load(&folder)
                        .map(|f| (f.without_kept(&kept), folder))
                        .map_err(|e| format!("{e:#}")),
                    Ok(_) => Err("cancelled".to_string()),
                    Err(message) => Err(message),
                };
                say(JobMsg::Done(done));
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        self.job = Some(Job {
            rx,
            cancel,
            progress: "starting the engine".into(),
        });
        self.status = None;
    }

    /// Stops a search (the engine is told to cancel; nothing is kept).
    pub fn cancel(&mut self) {
        self.waiting = false;
        if let Some(job) = &self.job {
            job.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Takes in what the search reported; `ws` maps result samples back to the window's.
    pub fn poll(&mut self, ctx: &egui::Context, ws: &Workspace) {
        if self.waiting && ws.pending == 0 {
            self.start(ctx, ws);
        }
        let Some(job) = &mut self.job else { return };
        while let Ok(msg) = job.rx.try_recv() {
            match msg {
                JobMsg::Progress(p) => job.progress = p,
                JobMsg::Done(Ok((findings, dir))) => {
                    self.set_findings(ws, &findings);
                    self.status = Some(format!(
                        "{} suspected label errors among {} images; kept in {}",
                        findings.issues.len(),
                        findings.examined,
                        dir.display()
                    ));
                    self.job = None;
                    return;
                }
                JobMsg::Done(Err(e)) => {
                    self.status = Some(format!("the search did not finish: {e}"));
                    self.job = None;
                    return;
                }
                JobMsg::Reopened(found) => {
                    match found {
                        Ok(Some((findings, dir))) => {
                            self.set_findings(ws, &findings);
                            self.status = Some(format!("the last search, from {}", dir.display()));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            self.status =
                                Some(format!("the last search could not be reopened: {e}"))
                        }
                    }
                    self.job = None;
                    return;
                }
            }
        }
    }

    /// Fills the queue from a search's findings (their paths are the window's samples): the
    /// flagged suspects first (the photos of a group suspected together as one entry, where its
    /// first one ranked), then every other image of the ranking, most likely wrong first, for a
    /// review that goes on past the suggested stop.
    pub fn set_findings(&mut self, ws: &Workspace, findings: &Findings) {
        let names = &ws.dataset.label_columns;
        let mut queue: Vec<Suspect> = Vec::new();
        let mut group_entry: std::collections::HashMap<(String, String), usize> =
            Default::default();
        for i in &findings.issues {
            let Some(sample) = ws.index_of(&i.path) else {
                continue;
            };
            if let Some(g) = &i.group {
                if let Some(&q) = group_entry.get(&(g.clone(), i.column.clone())) {
                    queue[q].samples.push(sample);
                    continue;
                }
                group_entry.insert((g.clone(), i.column.clone()), queue.len());
            }
            queue.push(Suspect {
                samples: vec![sample],
                column: names.iter().position(|c| *c == i.column).unwrap_or(0),
                given: i.given.clone(),
                suggested: i.suggested.clone(),
                given_confidence: i.self_confidence,
                suggested_confidence: i.suggested_confidence,
                why: i.why,
                group: i.group.clone(),
            });
        }
        self.flagged = queue.len();
        for r in findings.ranking.iter().filter(|r| !r.flagged) {
            let (Some(sample), Some(column)) = (
                ws.index_of(&r.path),
                names.iter().position(|c| *c == r.column),
            ) else {
                continue;
            };
            queue.push(Suspect {
                samples: vec![sample],
                column,
                given: r.given.clone(),
                suggested: r.suggested.clone(),
                given_confidence: r.p_given,
                suggested_confidence: r.p_suggested,
                why: Why::Model,
                group: None,
            });
        }
        self.queue = queue;
        self.per_class = findings.per_class.clone();
        self.skipped.clear();
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        ws: &Workspace,
        thumbs: &mut Thumbs,
        cmds: &mut Commands,
    ) {
        ui.horizontal(|ui| {
            if self.running() {
                // Progress text, no spinner: a spinner repaints every frame, taking CPU from the
                // search.
                let progress = self
                    .job
                    .as_ref()
                    .map_or("waiting for the edits to be saved", |j| j.progress.as_str());
                ui.label(progress);
                if ui.button("Cancel").clicked() {
                    cmds.push(Command::CancelIssues);
                }
            } else {
                if ui
                    .button("Find label issues")
                    .on_hover_text(
                        "Cross-validation on embeddings of the pretrained network (10 folds up \
                         to 5,000 images, 5 beyond), then confident learning",
                    )
                    .clicked()
                {
                    cmds.push(Command::FindIssues);
                }
            }
            if !self.queue.is_empty() {
                let remaining = self.remaining(ws);
                let reviewed = self.queue.len() - remaining.len();
                let flagged_left = remaining.iter().filter(|&&q| q < self.flagged).count();
                let estimated: usize = self.per_class.iter().map(|c| c.2).sum();
                ui.separator();
                ui.label(
                    RichText::new(format!(
                        "reviewed {reviewed} of {} ranked",
                        self.queue.len()
                    ))
                    .strong(),
                );
                // What confident learning flagged is where a review can reasonably stop.
                let goal = self.flagged.max(1);
                ui.add(
                    egui::ProgressBar::new(1.0 - flagged_left as f32 / goal as f32)
                        .desired_width(300.0)
                        .text(format!(
                            "suggested stop: {} flagged, {flagged_left} left",
                            self.flagged
                        )),
                )
                .on_hover_text(format!(
                    "Every image is ranked by how likely its label is wrong. Confident learning \
                     flags the first {} as likely mislabelled (it estimates {estimated} label \
                     errors in all): a good place to stop. The ranking goes on past them, less \
                     and less likely wrong.",
                    self.flagged
                ));
            }
        });
        if let Some(s) = &self.status {
            ui.label(s);
        }
        if !self.running() {
            egui::CollapsingHeader::new("Advanced")
                .id_salt("issues-advanced")
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        let l = ui.label("Embedding resolution");
                        let mut auto = self.img_size == 0;
                        if ui.checkbox(&mut auto, "by dataset size").changed() {
                            self.img_size = if auto { 0 } else { EMBED_SIZE };
                        }
                        if !auto {
                            ui.add(egui::Slider::new(&mut self.img_size, 64..=224).suffix(" px"))
                                .labelled_by(l.id);
                        }
                    });
                    ui.label(
                        RichText::new(format!(
                            "Images are shrunk to this size before the pretrained network \
                             describes them. By dataset size: {EMBED_SIZE_SMALL} px up to \
                             {SMALL_DATASET} images (more of the real errors found on MNIST), \
                             {EMBED_SIZE} px beyond, so a search on a laptop's CPU stays under \
                             two minutes."
                        ))
                        .small()
                        .weak(),
                    );
                });
        }
        if !self.per_class.is_empty() && !self.remaining(ws).is_empty() {
            egui::CollapsingHeader::new("Estimated label errors per class")
                .show(ui, |ui| self.per_class_grid(ui));
        }
        ui.separator();
        self.undo_keys(ui.ctx(), cmds);
        let Some(q) = self.current(ws) else {
            if self.queue.is_empty() {
                ui.label("No search yet. Find label issues trains on every fold but one and predicts the held-out images, so each image is judged by a model that never saw it.");
            } else {
                ui.label("All suspects reviewed. Search again after your fixes: images you kept are not asked about again.");
            }
            self.per_class_table(ui);
            return;
        };
        self.keys(ui.ctx(), ws, q, cmds);
        let s = self.queue[q].clone();
        let first = s.samples[0];
        let paths: Vec<String> = s.samples.iter().map(|&i| ws.path(i)).collect();
        let composite = ws.dataset.label_columns.len() > 1;
        let column = ws.dataset.label_columns[s.column].as_str();
        let what = match &s.group {
            Some(g) => format!("group {g}: {} photos", s.samples.len()),
            None => paths[0].clone(),
        };
        let past_stop = if q >= self.flagged {
            "   ·   past the suggested stop (not flagged)"
        } else {
            ""
        };
        ui.label(
            RichText::new(format!(
                "#{} of {}   ·   {what}{past_stop}",
                q + 1,
                self.queue.len()
            ))
            .monospace(),
        );
        ui.horizontal(|ui| {
            let attribute = if composite {
                format!("{column}: ")
            } else {
                String::new()
            };
            ui.label(
                RichText::new(format!(
                    "{attribute}given: {}  ({})",
                    s.given,
                    percent(s.given_confidence)
                ))
                .size(16.0),
            );
            ui.label(RichText::new("→").size(16.0));
            ui.label(
                RichText::new(format!(
                    "suggested: {}  ({})",
                    s.suggested,
                    percent(s.suggested_confidence)
                ))
                .size(16.0)
                .strong(),
            );
        });
        let why = match (s.why, &s.group) {
            (Why::GroupMajority, _) => {
                "its group's other photos say otherwise (probabilities: the model's)".to_string()
            }
            (Why::Model, Some(_)) => format!(
                "the model, on the group's photos together, doubts the {}",
                if composite { column } else { "label" }
            ),
            (Why::Model, None) if s.suggested == s.given => "the model, which never saw this \
                image, agrees with the label, though less surely than with most images"
                .into(),
            (Why::Model, None) => "the model, which never saw this image, doubts it".into(),
        };
        ui.label(RichText::new(why).small().weak());
        ui.horizontal(|ui| {
            let all = if s.samples.len() > 1 {
                format!(" for all {}", s.samples.len())
            } else {
                String::new()
            };
            if s.suggested != s.given
                && ui
                    .button(format!("A  accept {}{all}", s.suggested))
                    .clicked()
            {
                cmds.push(set_value(ws, paths.clone(), s.column, &s.suggested));
            }
            if ui.button("Space  keep given").clicked() {
                cmds.push(LabelCmd::Check {
                    paths: paths.clone(),
                    checked: true,
                });
            }
            if ui.button("X  exclude").clicked() {
                cmds.push(LabelCmd::Exclude {
                    paths: paths.clone(),
                    excluded: true,
                });
            }
            if ui.button("J  skip").clicked() {
                self.skipped.insert(first);
            }
            let other = if composite {
                format!("other {column}…")
            } else {
                "other class…".to_string()
            };
            egui::ComboBox::from_id_salt("review-pick")
                .selected_text(other)
                .show_ui(ui, |ui| {
                    for (k, v) in values(ws, s.column).iter().enumerate() {
                        let key = if k < 9 {
                            format!("{}  ", k + 1)
                        } else {
                            String::new()
                        };
                        if ui.selectable_label(false, format!("{key}{v}")).clicked() {
                            cmds.push(set_value(ws, paths.clone(), s.column, v));
                        }
                    }
                });
        });
        ui.separator();
        let abs = ws.dataset.abs_path(&ws.dataset.samples[first].path);
        // Neighbours: a group's other photos, else the first images whose value is the
        // suggested one, as many as fit.
        let fit =
            ((ui.available_width() / (NEIGHBOUR + ui.spacing().item_spacing.x)) as usize).max(1);
        let neighbours: Vec<usize> = if s.samples.len() > 1 {
            s.samples[1..].iter().copied().take(fit).collect()
        } else {
            (0..ws.labels.len())
                .filter(|&i| {
                    i != first && !ws.flags[i].excluded && value(ws, i, s.column) == s.suggested
                })
                .take(fit)
                .collect()
        };
        thumbs.want(
            ui.ctx(),
            std::iter::once((first, abs.clone())).chain(
                neighbours
                    .iter()
                    .map(|&i| (i, ws.dataset.abs_path(&ws.dataset.samples[i].path))),
            ),
        );
        let tex = self
            .viewer
            .get(ui.ctx(), first, abs)
            .or_else(|| thumbs.get(first).cloned());
        let side = (ui.available_height() - 140.0).clamp(120.0, 520.0);
        match tex {
            Some(t) => {
                let size = t.size_vec2();
                let scale = side / size.x.max(size.y).max(1.0);
                ui.add(egui::Image::new(&t).fit_to_exact_size(size * scale));
            }
            None => {
                ui.spinner();
            }
        }
        ui.label(if s.samples.len() > 1 {
            "the group's other photos:".to_string()
        } else if composite {
            format!("images whose {column} is {}:", s.suggested)
        } else {
            format!("images labelled {}:", s.suggested)
        });
        ui.horizontal(|ui| {
            for &i in &neighbours {
                match thumbs.get(i) {
                    Some(t) => {
                        ui.add(
                            egui::Image::new(t).fit_to_exact_size(egui::vec2(NEIGHBOUR, NEIGHBOUR)),
                        )
                        .on_hover_text(ws.path(i));
                    }
                    None => {
                        ui.spinner();
                    }
                }
            }
        });
    }

    fn per_class_table(&self, ui: &mut egui::Ui) {
        if self.per_class.is_empty() {
            return;
        }
        ui.separator();
        ui.label(RichText::new("Estimated label errors per class").strong());
        self.per_class_grid(ui);
    }

    fn per_class_grid(&self, ui: &mut egui::Ui) {
        egui::Grid::new("issues-per-class")
            .striped(true)
            .show(ui, |ui| {
                for (class, n, errors) in &self.per_class {
                    ui.label(class);
                    ui.label(format!("{errors} of {n}"));
                    ui.end_row();
                }
            });
    }

    /// Undo and redo also work once the queue is done.
    fn undo_keys(&self, ctx: &egui::Context, cmds: &mut Commands) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        ctx.input_mut(|i| {
            keys::undo_redo(i, cmds);
        });
    }

    fn keys(&mut self, ctx: &egui::Context, ws: &Workspace, q: usize, cmds: &mut Commands) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let s = &self.queue[q];
        let paths: Vec<String> = s.samples.iter().map(|&i| ws.path(i)).collect();
        let values = values(ws, s.column);
        ctx.input_mut(|i| {
            if s.suggested != s.given && i.consume_key(Modifiers::NONE, Key::A) {
                cmds.push(set_value(ws, paths.clone(), s.column, &s.suggested));
            }
            if i.consume_key(Modifiers::NONE, Key::Space) {
                cmds.push(LabelCmd::Check {
                    paths: paths.clone(),
                    checked: true,
                });
            }
            if i.consume_key(Modifiers::NONE, Key::X) {
                cmds.push(LabelCmd::Exclude {
                    paths: paths.clone(),
                    excluded: true,
                });
            }
            if let Some(v) = keys::class_key(i, &values) {
                cmds.push(set_value(ws, paths.clone(), s.column, v));
            }
            if i.consume_key(Modifiers::NONE, Key::J)
                || i.consume_key(Modifiers::NONE, Key::ArrowRight)
            {
                self.skipped.insert(s.samples[0]);
            }
            if i.consume_key(Modifiers::NONE, Key::K)
                || i.consume_key(Modifiers::NONE, Key::ArrowLeft)
            {
                // Back to the last skipped one.
                self.skipped.clear();
            }
        });
    }
}

/// Sample `i`'s value in label column `column` (its class for a single column).
fn value(ws: &Workspace, i: usize, column: usize) -> String {
    let n = ws.dataset.label_columns.len();
    label_parts(&ws.labels[i], n)
        .into_iter()
        .nth(column)
        .unwrap_or_default()
}

/// Whether sample `i`'s value in label column `column` is `v`, without building strings: the
/// queue asks this of every entry every frame.
fn has_value(ws: &Workspace, i: usize, column: usize, v: &str) -> bool {
    let n = ws.dataset.label_columns.len();
    if n == 1 {
        ws.labels[i] == v
    } else {
        value(ws, i, column) == v
    }
}

/// The values a suspect's column can take, in the keys' order (the classes for a single column).
fn values(ws: &Workspace, column: usize) -> Vec<String> {
    ws.layout()
        .columns
        .into_iter()
        .nth(column)
        .map_or_else(Vec::new, |c| c.values)
}

/// Setting a suspect's column to `value` on its images: a relabel for a single label column,
/// one attribute (the others kept) for a composite one; one undo step either way.
fn set_value(ws: &Workspace, paths: Vec<String>, column: usize, value: &str) -> LabelCmd {
    if ws.dataset.label_columns.len() > 1 {
        LabelCmd::SetColumn {
            paths,
            column,
            value: value.to_string(),
        }
    } else {
        LabelCmd::Relabel {
            paths,
            class: value.to_string(),
        }
    }
}
