//! The Train tab: a form over the engine's options with presets, folds and where to run, Start /
//! Stop, live curves of the run (or experiment) this window started, the list of every run of
//! the dataset (the command line's too) to overlay, open, resume, rename or delete, and the
//! runs table (`super::runs_table`).
//!
//! A run is an engine process (`loupe-engine`): this tab drains its events each frame, and if
//! the process dies the run ends with the reason, the window lives on. The panel itself only
//! pushes commands; `apply` carries them out (the app calls it). Run folders are listed, renamed
//! and deleted on background threads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Instant;

use egui::RichText;
use egui_plot::{Legend, Line, Plot};

use super::command::{Command, Commands};
use super::plots::{finite, Extent};
use crate::dataset::workspace::Workspace;
use crate::train::backend::Backend;
use crate::train::client::{Engine, EngineHandle};
use crate::train::config::{
    default_weights, Balance, DeviceChoice, Heads, LossKind, ModelKind, OptimizerKind, TrainConfig,
};
use crate::train::protocol::{Event, Job, JobResult};
use crate::train::ray::Cluster;
use crate::train::record::{EpochMetrics, StepPoint};
use crate::train::runs::{list_all, Listing, RunSummary};
use crate::train::schedule::Monitor;
use crate::util::{clock, utc};

/// Presets: a name, and the config it sets (on top of the defaults). `weights`: the installed
/// ImageNet weights of EfficientNet-Lite0, if any (found once, off the UI thread).
pub fn presets(weights: Option<PathBuf>) -> Vec<(&'static str, TrainConfig)> {
    vec![
        (
            "Quick, CPU",
            TrainConfig {
                model: ModelKind::SmallCnn,
                img_size: 64,
                epochs: 5,
                batch: 32,
                lr: 5e-3,
                device: DeviceChoice::Cpu,
                ..Default::default()
            },
        ),
        (
            "Pretrained head only, CPU",
            TrainConfig {
                model: ModelKind::EfficientnetLite0,
                weights: weights.clone(),
                freeze: true,
                lr: 1e-2,
                epochs: 3,
                device: DeviceChoice::Cpu,
                ..Default::default()
            },
        ),
        (
            "Fine-tune pretrained, GPU",
            TrainConfig {
                model: ModelKind::EfficientnetLite0,
                weights,
                epochs: 10,
                batch: 64,
                device: DeviceChoice::Auto,
                ..Default::default()
            },
        ),
    ]
}

/// The run this window started, as its events describe it.
pub struct Live {
    handle: Option<EngineHandle>,
    pub run_dir: Option<PathBuf>,
    pub device: String,
    /// (fractional epoch, loss) per step.
    pub steps: Vec<(f64, f64)>,
    pub lrs: Vec<(f64, f64)>,
    pub epochs: Vec<EpochMetrics>,
    pub notes: Vec<String>,
    /// Work before the first step (decoding the images), as "what done/total".
    pub preparing: Option<String>,
    pub images_per_s: f64,
    /// Epoch and step within it of the last step, and the steps per epoch.
    pub at: (usize, usize, usize),
    pub total_epochs: usize,
    pub started: Instant,
    pub outcome: Option<Result<String, String>>,
    /// GPU memory in use, as nvidia-smi reports it while a CUDA run goes.
    pub gpu_memory: Option<String>,
    gpu_rx: Option<Receiver<String>>,
    gpu_stop: Arc<AtomicBool>,
}

impl Live {
    fn new(handle: EngineHandle, total_epochs: usize) -> Live {
        let mut live = Live::new_detached(total_epochs);
        live.handle = Some(handle);
        live
    }

    fn new_detached(total_epochs: usize) -> Live {
        Live {
            handle: None,
            run_dir: None,
            device: String::new(),
            steps: Vec::new(),
            lrs: Vec::new(),
            epochs: Vec::new(),
            notes: Vec::new(),
            preparing: Some("starting the engine".into()),
            images_per_s: 0.0,
            at: (0, 0, 0),
            total_epochs,
            started: Instant::now(),
            outcome: None,
            gpu_memory: None,
            gpu_rx: None,
            gpu_stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A run as these events describe it, with no process behind it (a finished run's replay;
    /// the tests draw awkward runs with it).
    pub fn from_events(events: impl IntoIterator<Item = Event>, total_epochs: usize) -> Live {
        let (tx, rx) = mpsc::channel();
        for e in events {
            let _ = tx.send(e);
        }
        let mut live = Live::new_detached(total_epochs);
        live.take_all(&rx);
        live
    }

    pub fn running(&self) -> bool {
        self.handle.is_some()
    }

    /// The engine's process id while it runs (tests end it to see the window survive).
    pub fn pid(&self) -> Option<u32> {
        self.handle.as_ref().and_then(EngineHandle::pid)
    }

    /// Seconds left, from the pace so far.
    fn eta(&self) -> Option<f64> {
        let (epoch, step, steps) = self.at;
        if steps == 0 || epoch == 0 {
            return None;
        }
        let done = (epoch - 1) as f64 + step as f64 / steps as f64;
        let total = self.total_epochs as f64;
        (done > 0.0).then(|| self.started.elapsed().as_secs_f64() / done * (total - done).max(0.0))
    }

    fn drain(&mut self) {
        let Some(h) = self.handle.take() else { return };
        let ended = self.take_all(&h.rx);
        if !ended {
            self.handle = Some(h);
        }
    }

    /// Takes in the events waiting in `rx`; true when the last one came (the run ended).
    fn take_all(&mut self, rx: &Receiver<Event>) -> bool {
        let mut ended = false;
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Started {
                    run_dir,
                    device,
                    train,
                    val,
                    skipped,
                    ..
                } => {
                    if device.starts_with("CUDA") && self.gpu_rx.is_none() {
                        self.gpu_rx = Some(watch_gpu_memory(self.gpu_stop.clone()));
                    }
                    // Another run in the same stream (the next fold of an experiment): its
                    // curves start afresh.
                    if self.run_dir.as_ref().is_some_and(|d| *d != run_dir) {
                        self.steps.clear();
                        self.lrs.clear();
                        self.epochs.clear();
                        self.at = (0, 0, 0);
                    }
                    self.run_dir = Some(run_dir);
                    self.device = device;
                    self.preparing = None;
                    if skipped > 0 {
                        self.notes.push(format!(
                            "{skipped} image(s) could not be decoded and are left out"
                        ));
                    }
                    self.notes
                        .push(format!("{train} training and {val} validation images"));
                }
                Event::Progress { what, done, total } => {
                    self.preparing = Some(format!("{what} {done} / {total}"));
                }
                Event::Step {
                    epoch,
                    step,
                    steps,
                    loss,
                    lr,
                    images_per_s,
                } => {
                    let x = (epoch - 1) as f64 + step as f64 / steps.max(1) as f64;
                    self.steps.push((x, loss));
                    self.lrs.push((x, lr));
                    self.images_per_s = images_per_s;
                    self.at = (epoch, step, steps);
                }
                Event::Epoch { metrics } => self.epochs.push(*metrics),
                Event::Note { text } => self.notes.push(text),
                Event::Finished {
                    best,
                    monitor,
                    cancelled,
                    ..
                } => {
                    let what = if cancelled { "stopped" } else { "finished" };
                    let best = best.map_or("no epoch finished".to_string(), |b| {
                        format!("best {} {b:.4}", monitor.name())
                    });
                    self.outcome = Some(Ok(format!("{what}: {best}")));
                    ended = true;
                }
                Event::Failed { message } => {
                    self.outcome = Some(Err(message));
                    ended = true;
                }
                Event::Hello { .. } | Event::Checkpoint { .. } | Event::Done { .. } => {}
            }
        }
        if let Some(rx) = &self.gpu_rx {
            while let Ok(m) = rx.try_recv() {
                self.gpu_memory = Some(m);
            }
        }
        if ended {
            self.preparing = None;
            self.gpu_stop.store(true, Ordering::Relaxed);
            self.gpu_rx = None;
        }
        ended
    }
}

impl Drop for Live {
    /// A run nobody watches any more (another dataset was opened, the window closed) is told to
    /// stop: dropping the handle cancels the engine, which keeps its last checkpoint.
    fn drop(&mut self) {
        self.gpu_stop.store(true, Ordering::Relaxed);
    }
}

/// Polls `nvidia-smi` every two seconds (libtorch does not report CUDA memory through tch) until
/// `stop` is set or the receiver is dropped. Without nvidia-smi nothing is sent.
fn watch_gpu_memory(stop: Arc<AtomicBool>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("loupe-gpu-memory".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("nvidia-smi")
                    .args([
                        "--query-gpu=memory.used,memory.total",
                        "--format=csv,noheader",
                    ])
                    .output();
                let Ok(out) = out else { return };
                let line = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .replace(", ", " of ");
                if !line.is_empty() && tx.send(format!("GPU memory {line}")).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
        });
    rx
}

/// Debiased exponential moving average (as TensorBoard's): the first values are not pulled
/// towards zero, and the same `weight` smooths a short and a long run alike.
pub fn smooth(values: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let (mut acc, mut norm) = (0.0, 0.0);
    values
        .iter()
        .filter(|(_, y)| y.is_finite())
        .map(|&(x, y)| {
            acc = acc * weight + (1.0 - weight) * y;
            norm = norm * weight + (1.0 - weight);
            (x, acc / norm)
        })
        .collect()
}

/// Steps from disk as (fractional epoch, value) pairs.
fn by_epoch(steps: &[StepPoint], value: impl Fn(&StepPoint) -> f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(steps.len());
    let mut i = 0;
    while i < steps.len() {
        let epoch = steps[i].epoch;
        let end = steps[i..]
            .iter()
            .position(|s| s.epoch != epoch)
            .map_or(steps.len(), |p| i + p);
        let n = end - i;
        for (k, s) in steps[i..end].iter().enumerate() {
            out.push((
                (epoch.max(1) - 1) as f64 + (k + 1) as f64 / n as f64,
                value(s),
            ));
        }
        i = end;
    }
    out
}

enum Confirm {
    Delete(PathBuf),
    Close,
    /// "Run again" on data that changed since the run: (its folder, what the run saw, now).
    RunAgain(PathBuf),
}

/// What Start starts: one run, or a K-fold experiment (runs folder, dataset, config, folds).
enum Launch {
    Job(Job),
    Experiment(PathBuf, crate::dataset::Source, TrainConfig, usize),
}

/// What the central panel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Curves,
    Table,
}

/// What a background thread found: the device line and the presets (which need to know whether
/// pretrained weights are installed).
struct Setup {
    device_line: String,
    presets: Vec<(&'static str, TrainConfig)>,
}

pub struct TrainTab {
    pub cfg: TrainConfig,
    /// K-fold experiment when more than 1.
    pub folds: usize,
    /// Run on a Ray cluster (the form's cluster settings) instead of this machine.
    pub on_ray: bool,
    pub cluster: Cluster,
    pub view: View,
    table: super::runs_table::RunsTable,
    pub live: Option<Live>,
    pub runs: Vec<RunSummary>,
    pub experiments: Vec<crate::train::runs::ExperimentSummary>,
    runs_rx: Option<Receiver<Listing>>,
    /// Runs whose curves are overlaid.
    pub overlay: BTreeSet<PathBuf>,
    pub smoothing: f64,
    pub log_scale: bool,
    setup_rx: Option<Receiver<Setup>>,
    pub device_line: String,
    presets: Vec<(&'static str, TrainConfig)>,
    weights_rx: Option<Receiver<Option<PathBuf>>>,
    pub message: Option<Result<String, String>>,
    confirm: Option<Confirm>,
    renaming: Option<(PathBuf, String)>,
    config_view: Option<(String, String)>,
    /// The window asked to close while a run was going; the app closes it once this is answered.
    pub close_confirmed: bool,
    /// A rename or delete under way on a background thread.
    fs_rx: Option<Receiver<Result<String, String>>>,
    /// A run asked for while label edits were still being written: it starts once they are
    /// on disk, where the engine reads them.
    waiting: Option<(Launch, usize)>,
    /// The engine binary runs are started with.
    pub engine: Engine,
    runs_dir: PathBuf,
    /// The dataset's label columns (several for a composite label).
    columns: Vec<String>,
}

impl Default for TrainTab {
    fn default() -> Self {
        let presets = presets(None);
        TrainTab {
            cfg: presets[0].1.clone(),
            folds: 1,
            on_ray: false,
            cluster: Cluster::default(),
            view: View::Curves,
            table: Default::default(),
            live: None,
            runs: Vec::new(),
            experiments: Vec::new(),
            runs_rx: None,
            overlay: BTreeSet::new(),
            smoothing: 0.6,
            log_scale: false,
            setup_rx: None,
            device_line: "looking for a GPU…".into(),
            presets,
            weights_rx: None,
            message: None,
            confirm: None,
            renaming: None,
            config_view: None,
            close_confirmed: false,
            fs_rx: None,
            waiting: None,
            engine: Engine::default(),
            runs_dir: PathBuf::new(),
            columns: Vec::new(),
        }
    }
}

impl TrainTab {
    pub fn with_engine(engine: Engine) -> Self {
        TrainTab {
            engine,
            ..Default::default()
        }
    }

    pub fn running(&self) -> bool {
        self.live.as_ref().is_some_and(Live::running) || self.waiting.is_some()
    }

    /// Starts looking for devices, weights and run folders (background threads).
    pub fn open(&mut self, ctx: &egui::Context, ws: &Workspace) {
        // Absolute, as the engine reports run folders: the list then knows the live run (its
        // status, and no rename or delete while it runs) when the app was opened on a relative
        // path (`make run` opens `sample_data`).
        let runs_dir = ws.store_dir.join("runs");
        self.runs_dir = std::path::absolute(&runs_dir).unwrap_or(runs_dir);
        self.columns = ws.dataset.label_columns.clone();
        let (tx, rx) = mpsc::channel();
        let (c, engine) = (ctx.clone(), self.engine.clone());
        let _ = std::thread::Builder::new()
            .name("loupe-train-setup".into())
            .spawn(move || {
                let device_line = device_line(&engine);
                let presets = presets(default_weights(ModelKind::EfficientnetLite0));
                let _ = tx.send(Setup {
                    device_line,
                    presets,
                });
                c.request_repaint();
            });
        self.setup_rx = Some(rx);
        self.refresh(ctx);
    }

    /// Reads the run folders again, in the background.
    pub fn refresh(&mut self, ctx: &egui::Context) {
        let dir = self.runs_dir.clone();
        let (tx, rx) = mpsc::channel();
        let c = ctx.clone();
        let _ = std::thread::Builder::new()
            .name("loupe-runs".into())
            .spawn(move || {
                let _ = tx.send(list_all(&dir));
                c.request_repaint();
            });
        self.runs_rx = Some(rx);
    }

    pub fn loading_runs(&self) -> bool {
        self.runs_rx.is_some()
    }

    /// Takes in what the background threads and the run reported.
    pub fn poll(&mut self, ctx: &egui::Context, ws: &Workspace) {
        if let Some(rx) = &self.setup_rx {
            if let Ok(setup) = rx.try_recv() {
                self.device_line = setup.device_line;
                // The form keeps what the user set; only the weights are filled in once found.
                if self.cfg.weights.is_none() && self.cfg.model == ModelKind::EfficientnetLite0 {
                    self.cfg.weights = setup.presets[1].1.weights.clone();
                }
                self.presets = setup.presets;
                self.setup_rx = None;
            }
        }
        if let Some(rx) = &self.runs_rx {
            if let Ok(listing) = rx.try_recv() {
                self.runs = listing.runs;
                self.experiments = listing.experiments;
                self.runs_rx = None;
            }
        }
        if let Some(rx) = &self.fs_rx {
            if let Ok(done) = rx.try_recv() {
                self.message = Some(done);
                self.fs_rx = None;
                self.refresh(ctx);
            }
        }
        if let Some(rx) = &self.weights_rx {
            if let Ok(picked) = rx.try_recv() {
                if picked.is_some() {
                    self.cfg.weights = picked;
                }
                self.weights_rx = None;
            }
        }
        if ws.pending == 0 {
            if let Some((job, epochs)) = self.waiting.take() {
                self.launch(ctx, job, epochs);
            }
        }
        let was_running = self.live.as_ref().is_some_and(Live::running);
        let had_dir = self.live.as_ref().is_some_and(|l| l.run_dir.is_some());
        if let Some(live) = &mut self.live {
            live.drain();
            if live.running() {
                // Steps arrive without input events: look again once a second. Where the window
                // is drawn in software (a VM, Xvfb) every frame costs the run CPU: on 2 cores an
                // epoch took 8-11 s at 4 frames/s, 4.6-5.2 s at 1/s (the CLI: 4.2-4.8 s).
                ctx.request_repaint_after(std::time::Duration::from_secs(1));
            }
        }
        let is_running = self.live.as_ref().is_some_and(Live::running);
        let has_dir = self.live.as_ref().is_some_and(|l| l.run_dir.is_some());
        // The list shows a run from its start, and its final state at its end.
        if (was_running && !is_running) || (!had_dir && has_dir) {
            self.refresh(ctx);
        }
    }

    /// Carries out a run command (the app calls this, in one place per frame).
    pub fn apply(&mut self, ctx: &egui::Context, ws: &Workspace, cmd: Command) {
        match cmd {
            Command::StartRun(config) => {
                if self.running() {
                    return;
                }
                let epochs = config.epochs;
                let dataset = ws.dataset.source.absolute();
                let runs_dir = self.runs_dir.clone();
                let launch = if self.folds > 1 {
                    Launch::Experiment(runs_dir, dataset, config, self.folds)
                } else {
                    Launch::Job(Job::Train {
                        dataset,
                        config,
                        runs_dir,
                        name: None,
                    })
                };
                self.queue(ctx, ws, launch, epochs);
            }
            Command::RunAgain(dir, confirmed) => {
                if self.running() {
                    return;
                }
                let again = if let Some(r) = self.runs.iter().find(|r| r.dir == dir) {
                    Some((
                        r.record.config.clone(),
                        1,
                        r.record.dataset.fingerprint.clone(),
                    ))
                } else {
                    self.experiments.iter().find(|e| e.dir == dir).map(|e| {
                        let seen = e
                            .folds
                            .first()
                            .map(|f| f.record.dataset.fingerprint.clone());
                        (
                            e.experiment.config.clone(),
                            e.experiment.folds,
                            seen.unwrap_or_default(),
                        )
                    })
                };
                let Some((config, folds, seen)) = again else {
                    return;
                };
                if !confirmed && !seen.is_empty() && seen != ws.fingerprint() {
                    self.confirm = Some(Confirm::RunAgain(dir));
                    return;
                }
                self.cfg = config.clone();
                self.folds = folds;
                self.apply(ctx, ws, Command::StartRun(config));
            }
            Command::ResumeRun(dir) => {
                if self.running() {
                    return;
                }
                let Some(run) = self.runs.iter().find(|r| r.dir == dir) else {
                    return;
                };
                // A finished run goes on to twice its epochs, or to the form's when that is more.
                let mut epochs = run.record.config.epochs;
                if run.done() >= epochs {
                    epochs = (epochs * 2).max(self.cfg.epochs);
                }
                let job = Job::Resume {
                    run: dir,
                    epochs: Some(epochs),
                };
                self.queue(ctx, ws, Launch::Job(job), epochs);
            }
            Command::StopRun => {
                if self.waiting.take().is_some() {
                    return;
                }
                if let Some(h) = self.live.as_ref().and_then(|l| l.handle.as_ref()) {
                    h.cancel();
                }
            }
            Command::RenameRun(from, name) => {
                let valid =
                    !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
                if !valid {
                    self.message =
                        Some(Err("a run name cannot be empty or contain a slash".into()));
                    return;
                }
                if self.is_live(&from) {
                    self.message = Some(Err("stop the run before renaming it".into()));
                    return;
                }
                let to = from.with_file_name(&name);
                self.overlay.remove(&from);
                self.in_background(ctx, move || {
                    if to.exists() {
                        return Err(format!("{} already exists", to.display()));
                    }
                    std::fs::rename(&from, &to)
                        .map(|_| format!("renamed to {name}"))
                        .map_err(|e| format!("cannot rename {}: {e}", from.display()))
                });
            }
            Command::DeleteRun(dir) => {
                if self.is_live(&dir) {
                    self.message = Some(Err("stop the run before deleting it".into()));
                    return;
                }
                self.overlay.remove(&dir);
                self.in_background(ctx, move || {
                    std::fs::remove_dir_all(&dir)
                        .map(|_| "run deleted".to_string())
                        .map_err(|e| format!("cannot delete {}: {e}", dir.display()))
                });
            }
            _ => {}
        }
    }

    fn is_live(&self, dir: &Path) -> bool {
        self.live
            .as_ref()
            .is_some_and(|l| l.running() && l.run_dir.as_deref() == Some(dir))
    }

    /// Starts `launch` once the label edits sent so far are on disk.
    fn queue(&mut self, ctx: &egui::Context, ws: &Workspace, launch: Launch, epochs: usize) {
        self.message = None;
        if ws.pending == 0 {
            self.launch(ctx, launch, epochs);
        } else {
            self.waiting = Some((launch, epochs));
        }
    }

    /// Where runs go: this machine, or the cluster the form names.
    pub fn backend(&self) -> Backend {
        if self.on_ray {
            Backend::Ray(self.cluster.clone())
        } else {
            Backend::Local
        }
    }

    fn launch(&mut self, ctx: &egui::Context, launch: Launch, epochs: usize) {
        let c = ctx.clone();
        // Events wake the window at most once a second (see `poll`): a repaint per step would
        // take the run's CPU where the window is drawn in software.
        let wake: crate::train::client::Wake =
            Arc::new(move || c.request_repaint_after(std::time::Duration::from_secs(1)));
        let handle = match launch {
            Launch::Job(job) => self.backend().start(&self.engine, &job, Some(wake)),
            Launch::Experiment(runs_dir, dataset, config, folds) => {
                crate::train::experiment::start_new(
                    self.backend(),
                    self.engine.clone(),
                    (runs_dir, dataset, config, folds),
                    Some(wake),
                )
            }
        };
        self.live = Some(Live::new(handle, epochs));
    }

    pub fn show(&mut self, ui: &mut egui::Ui, cmds: &mut Commands) {
        self.dialogs(ui.ctx(), cmds);
        egui::Panel::top("train-view").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.view, View::Curves, "Train and curves");
                ui.selectable_value(&mut self.view, View::Table, "Runs table");
            });
        });
        if self.view == View::Table {
            // The whole width: a column per setting.
            egui::CentralPanel::default_margins().show(ui, |ui| {
                self.table.show(ui, &self.runs, &self.experiments, cmds)
            });
            return;
        }
        egui::Panel::left("train-form")
            .resizable(true)
            .default_size(330.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.form(ui, cmds);
                    ui.separator();
                    self.runs_list(ui, cmds);
                });
            });
        egui::CentralPanel::default_margins().show(ui, |ui| self.curves(ui));
    }

    fn form(&mut self, ui: &mut egui::Ui, cmds: &mut Commands) {
        ui.heading("Train");
        ui.label(RichText::new(&self.device_line).small());
        ui.horizontal_wrapped(|ui| {
            for (name, preset) in &self.presets {
                let active = self.cfg == *preset;
                if ui.selectable_label(active, *name).clicked() {
                    self.cfg = preset.clone();
                }
            }
        });
        let running = self.running();
        ui.add_enabled_ui(!running, |ui| {
            egui::Grid::new("train-options")
                .num_columns(2)
                .show(ui, |ui| self.options(ui));
        });
        ui.horizontal(|ui| {
            if running {
                // No spinner: it repaints every frame, taking CPU from the run.
                if ui.button("■ Stop").clicked() {
                    cmds.push(Command::StopRun);
                }
                ui.label("training…");
            } else if ui.button("▶ Start").clicked() {
                cmds.push(Command::StartRun(self.cfg.clone()));
            }
        });
        if let Some(m) = &self.message {
            match m {
                Ok(t) => ui.label(t),
                Err(e) => ui.colored_label(ui.visuals().error_fg_color, e),
            };
        }
    }

    fn options(&mut self, ui: &mut egui::Ui) {
        /// A row of the form: the name, then the widget, labelled by the name (screen readers
        /// and kittest find it by that name).
        fn row(
            ui: &mut egui::Ui,
            name: &str,
            widget: impl FnOnce(&mut egui::Ui) -> egui::Response,
        ) {
            let label = ui.label(name);
            widget(ui).labelled_by(label.id);
            ui.end_row();
        }
        fn choice<T: Copy + PartialEq>(
            ui: &mut egui::Ui,
            id: &str,
            value: &mut T,
            options: &[T],
            title: impl Fn(T) -> &'static str,
        ) -> egui::Response {
            egui::ComboBox::from_id_salt(id)
                .selected_text(title(*value))
                .show_ui(ui, |ui| {
                    for &o in options {
                        ui.selectable_value(value, o, title(o));
                    }
                })
                .response
        }
        let c = &mut self.cfg;
        row(ui, "model", |ui| {
            choice(ui, "model", &mut c.model, &ModelKind::ALL, ModelKind::title)
        });
        let mut pick_weights = false;
        row(ui, "weights", |ui| {
            ui.horizontal(|ui| {
                let name = c
                    .weights
                    .as_ref()
                    .and_then(|w| w.file_name())
                    .map_or("none (from scratch)".into(), |n| {
                        n.to_string_lossy().to_string()
                    });
                ui.label(name);
                pick_weights = ui
                    .small_button("…")
                    .on_hover_text("choose a .safetensors file")
                    .clicked();
                if c.weights.is_some()
                    && ui
                        .small_button("×")
                        .on_hover_text("no weights: train from scratch")
                        .clicked()
                {
                    c.weights = None;
                }
            })
            .response
        });
        row(ui, "epochs", |ui| {
            ui.add(egui::DragValue::new(&mut c.epochs).range(1..=1000))
        });
        row(ui, "batch", |ui| {
            ui.add(egui::DragValue::new(&mut c.batch).range(1..=4096))
        });
        row(ui, "learning rate", |ui| {
            ui.add(
                egui::DragValue::new(&mut c.lr)
                    .speed(1e-4)
                    .range(1e-6..=1.0)
                    .max_decimals(5),
            )
            .on_hover_text(format!(
                "the new head learns at {:.1e}: ten times this when fine-tuning pretrained \
                 weights (--head-lr to choose)",
                c.head_lr()
            ))
        });
        row(ui, "augmentation", |ui| {
            ui.horizontal(|ui| {
                ui.checkbox(&mut c.flip, "flips");
                ui.label("crops keep ≥");
                ui.add(
                    egui::DragValue::new(&mut c.crop_scale)
                        .speed(0.01)
                        .range(0.05..=1.0)
                        .max_decimals(2),
                )
                .on_hover_text("share of the picture's area a random crop keeps; 1: shifts only");
                ui.label("jitter");
                ui.add(
                    egui::DragValue::new(&mut c.jitter)
                        .speed(0.01)
                        .range(0.0..=0.5)
                        .max_decimals(2),
                )
                .on_hover_text("random brightness and contrast change, ± this share")
            })
            .response
        });
        let size = c.size();
        row(ui, "image size", |ui| {
            ui.add(
                egui::DragValue::new(&mut c.img_size)
                    .range(0..=1024)
                    .custom_formatter(move |v, _| {
                        if v == 0.0 {
                            format!("{size} (the model's)")
                        } else {
                            format!("{v}")
                        }
                    }),
            )
            .on_hover_text("pixels per side; 0 uses the model's own")
        });
        if self.columns.len() > 1 {
            row(ui, "heads", |ui| {
                let all = [Heads::Columns, Heads::Joint];
                choice(ui, "heads", &mut c.heads, &all, Heads::title).on_hover_text(format!(
                    "{} label columns: one softmax head each on a shared backbone (the losses \
                     summed), or one head over every combination",
                    self.columns.join(", ")
                ))
            });
        }
        row(ui, "best checkpoint by", |ui| {
            let mut options = vec![Monitor::MacroF1, Monitor::Accuracy, Monitor::ValLoss];
            if self.columns.len() > 1 {
                options.extend(self.columns.iter().cloned().map(Monitor::ColumnF1));
            }
            egui::ComboBox::from_id_salt("monitor")
                .selected_text(c.monitor.name())
                .show_ui(ui, |ui| {
                    for o in options {
                        let name = o.name();
                        ui.selectable_value(&mut c.monitor, o, name);
                    }
                })
                .response
        });
        row(ui, "backbone", |ui| {
            ui.checkbox(&mut c.freeze, "frozen (head only)")
        });
        row(ui, "loss", |ui| {
            let all = [LossKind::Ce, LossKind::Smooth, LossKind::Focal];
            choice(ui, "loss", &mut c.loss, &all, LossKind::title)
        });
        row(ui, "imbalance", |ui| {
            let all = [Balance::None, Balance::Weights, Balance::Sampler];
            choice(ui, "balance", &mut c.balance, &all, Balance::title)
        });
        row(ui, "optimiser", |ui| {
            let all = [
                OptimizerKind::Sgd,
                OptimizerKind::Adam,
                OptimizerKind::Adamw,
            ];
            choice(
                ui,
                "optimizer",
                &mut c.optimizer,
                &all,
                OptimizerKind::title,
            )
        });
        row(ui, "device", |ui| {
            let all = [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda];
            choice(ui, "device", &mut c.device, &all, DeviceChoice::title)
        });
        row(ui, "validation", |ui| {
            ui.add(egui::Slider::new(&mut c.val_frac, 0.05..=0.5).text("of each class"))
        });
        row(ui, "seed", |ui| ui.add(egui::DragValue::new(&mut c.seed)));
        row(ui, "folds", |ui| {
            ui.add(egui::DragValue::new(&mut self.folds).range(1..=20))
                .on_hover_text(
                    "more than 1: a K-fold experiment (stratified, people kept whole), scored \
                     out of fold",
                )
        });
        row(ui, "run on", |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.on_ray, false, "this machine");
                ui.selectable_value(&mut self.on_ray, true, "Ray cluster")
            })
            .inner
        });
        if self.on_ray {
            let k = &mut self.cluster;
            row(ui, "Ray address", |ui| {
                ui.text_edit_singleline(&mut k.address)
            });
            row(ui, "Ray command", |ui| {
                ui.text_edit_singleline(&mut k.command).on_hover_text(
                    "how a job starts Loupe on the cluster; {args} stands for its arguments. The \
                     dataset and the runs folder must be on storage the cluster shares, at the \
                     same paths",
                )
            });
            row(ui, "GPUs per job", |ui| {
                ui.add(
                    egui::DragValue::new(&mut k.gpus)
                        .range(0.0..=8.0)
                        .speed(0.25),
                )
            });
        }
        if pick_weights {
            let (tx, rx) = mpsc::channel();
            let ctx = ui.ctx().clone();
            let _ = std::thread::Builder::new()
                .name("loupe-dialog".into())
                .spawn(move || {
                    let _ = tx.send(
                        rfd::FileDialog::new()
                            .set_title("Pretrained weights")
                            .add_filter("safetensors", &["safetensors"])
                            .pick_file(),
                    );
                    ctx.request_repaint();
                });
            self.weights_rx = Some(rx);
        }
    }

    fn runs_list(&mut self, ui: &mut egui::Ui, cmds: &mut Commands) {
        ui.horizontal(|ui| {
            ui.heading("Runs");
            if ui
                .small_button("⟲")
                .on_hover_text("read the run folders again")
                .clicked()
            {
                self.refresh(ui.ctx());
            }
        });
        if self.runs.is_empty() {
            ui.label(if self.loading_runs() {
                "reading the run folders…"
            } else {
                "No runs yet."
            });
            return;
        }
        let current = self
            .live
            .as_ref()
            .filter(|l| l.running())
            .and_then(|l| l.run_dir.clone());
        let mut action: Option<(PathBuf, &'static str)> = None;
        for run in &self.runs {
            let monitor = &run.record.config.monitor;
            let best = run.best().map_or("–".to_string(), |e| {
                format!("{} {:.3}", monitor.name(), monitor.value(monitor.of(e)))
            });
            let live = self
                .live
                .as_ref()
                .filter(|_| current.as_deref() == Some(run.dir.as_path()));
            let status = match live {
                Some(l) => format!("running, epoch {}/{}", l.at.0.max(1), l.total_epochs),
                None => run.status(),
            };
            ui.group(|ui| {
                ui.horizontal(|ui| {
                    let mut on = self.overlay.contains(&run.dir);
                    if ui
                        .checkbox(&mut on, run.name())
                        .on_hover_text("overlay its curves")
                        .changed()
                    {
                        if on {
                            self.overlay.insert(run.dir.clone());
                        } else {
                            self.overlay.remove(&run.dir);
                        }
                    }
                });
                let mut facts = vec![run.record.config.model.title().to_string(), status];
                if live.is_none() {
                    facts.push(best);
                    facts.push(clock(run.seconds()));
                }
                facts.push(utc(run.created));
                ui.label(RichText::new(facts.join(" · ")).small());
                ui.horizontal(|ui| {
                    let mut buttons = vec![("config", "config")];
                    if run.resumable() {
                        buttons.push(("resume", "resume"));
                    }
                    buttons.extend([("rename", "rename"), ("delete", "delete")]);
                    for (label, what) in buttons {
                        if ui.small_button(label).clicked() {
                            action = Some((run.dir.clone(), what));
                        }
                    }
                });
            });
        }
        if let Some((dir, what)) = action {
            match what {
                "config" => {
                    let run = self.runs.iter().find(|r| r.dir == dir);
                    self.config_view = run.map(|r| (r.name(), r.config_text.clone()));
                }
                "resume" => cmds.push(Command::ResumeRun(dir)),
                "rename" => {
                    self.renaming = Some((
                        dir.clone(),
                        dir.file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default(),
                    ))
                }
                _ => self.confirm = Some(Confirm::Delete(dir)),
            }
        }
    }

    fn dialogs(&mut self, ctx: &egui::Context, cmds: &mut Commands) {
        if let Some((title, text)) = &self.config_view {
            let mut open = true;
            egui::Window::new(format!("config of {title}"))
                .open(&mut open)
                .default_size([520.0, 480.0])
                .show(ctx, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| ui.monospace(text.as_str()));
                });
            if !open {
                self.config_view = None;
            }
        }
        if let Some((dir, name)) = &mut self.renaming {
            let mut done = None;
            egui::Modal::new(egui::Id::unique("rename-run")).show(ctx, |ui| {
                ui.label("New name of the run folder:");
                ui.text_edit_singleline(name);
                ui.horizontal(|ui| {
                    if ui.button("Rename").clicked() {
                        done = Some(true);
                    }
                    if ui.button("Cancel").clicked() {
                        done = Some(false);
                    }
                });
            });
            if let Some(rename) = done {
                if rename {
                    cmds.push(Command::RenameRun(dir.clone(), name.clone()));
                }
                self.renaming = None;
            }
        }
        match &self.confirm {
            Some(Confirm::Delete(dir)) => {
                let dir = dir.clone();
                let mut done = None;
                egui::Modal::new(egui::Id::unique("delete-run")).show(ctx, |ui| {
                    ui.label(format!(
                        "Delete the run {} with its checkpoints? This cannot be undone.",
                        dir.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    ui.horizontal(|ui| {
                        if ui.button("Delete").clicked() {
                            done = Some(true);
                        }
                        if ui.button("Keep").clicked() {
                            done = Some(false);
                        }
                    });
                });
                if let Some(yes) = done {
                    self.confirm = None;
                    if yes {
                        cmds.push(Command::DeleteRun(dir));
                    }
                }
            }
            Some(Confirm::Close) => {
                let mut done = None;
                egui::Modal::new(egui::Id::unique("close-while-training")).show(ctx, |ui| {
                    ui.label(
                        "A training run is going. Stop it and close Loupe? Its last checkpoint \
                         is kept and it can be resumed.",
                    );
                    ui.horizontal(|ui| {
                        if ui.button("Stop and close").clicked() {
                            done = Some(true);
                        }
                        if ui.button("Keep training").clicked() {
                            done = Some(false);
                        }
                    });
                });
                if let Some(yes) = done {
                    self.confirm = None;
                    if yes {
                        cmds.push(Command::StopRun);
                        self.close_confirmed = true;
                    }
                }
            }
            Some(Confirm::RunAgain(dir)) => {
                let dir = dir.clone();
                let mut done = None;
                egui::Modal::new(egui::Id::unique("run-again-changed")).show(ctx, |ui| {
                    ui.label(format!(
                        "The labels or files changed since {} ran: a run now trains on other \
                         data, and its scores do not compare one to one. Run it again anyway?",
                        dir.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    ui.horizontal(|ui| {
                        if ui.button("Run on the data as it is now").clicked() {
                            done = Some(true);
                        }
                        if ui.button("Cancel").clicked() {
                            done = Some(false);
                        }
                    });
                });
                if let Some(yes) = done {
                    self.confirm = None;
                    if yes {
                        cmds.push(Command::RunAgain(dir, true));
                    }
                }
            }
            None => {}
        }
    }

    /// Runs a file operation off the UI thread; its message shows when done, then the list is
    /// read again.
    fn in_background(
        &mut self,
        ctx: &egui::Context,
        job: impl FnOnce() -> Result<String, String> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let _ = std::thread::Builder::new()
            .name("loupe-runs-edit".into())
            .spawn(move || {
                let _ = tx.send(job());
                ctx.request_repaint();
            });
        self.fs_rx = Some(rx);
    }

    /// The window was asked to close during a run: ask first.
    pub fn ask_to_close(&mut self) {
        self.confirm = Some(Confirm::Close);
    }

    fn curves(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99).text("smoothing"));
            ui.checkbox(&mut self.log_scale, "log scale (loss)");
            if let Some(live) = &self.live {
                ui.separator();
                if let Some(p) = live.preparing.as_ref().filter(|_| live.running()) {
                    ui.label(p);
                } else if live.running() {
                    let (e, s, n) = live.at;
                    let eta = live
                        .eta()
                        .map_or(String::new(), |t| format!(" · ETA {}", clock(t)));
                    let gpu = live
                        .gpu_memory
                        .as_ref()
                        .map_or(String::new(), |m| format!(" · {m}"));
                    ui.label(format!(
                        "epoch {e}/{} · step {s}/{n} · {:.0} img/s{eta} · {}{gpu}",
                        live.total_epochs, live.images_per_s, live.device
                    ));
                } else if let Some(o) = &live.outcome {
                    match o {
                        Ok(t) => ui.label(t.as_str()),
                        Err(e) => ui.colored_label(
                            ui.visuals().error_fg_color,
                            format!("the run failed: {e}"),
                        ),
                    };
                }
            }
        });
        if let Some(n) = self.live.as_ref().and_then(|l| l.notes.last()) {
            ui.label(RichText::new(n).small());
        }
        let log = self.log_scale;
        let y = move |v: f64| if log { v.max(1e-12).log10() } else { v };
        let overlay: Vec<&RunSummary> = self
            .runs
            .iter()
            .filter(|r| self.overlay.contains(&r.dir))
            .collect();
        let half = ((ui.available_height() - 30.0) / 2.0).max(80.0);
        let fmt_y = move |mark: egui_plot::GridMark, _r: &std::ops::RangeInclusive<f64>| {
            if log {
                format!("{:.3}", 10f64.powf(mark.value))
            } else {
                format!("{:.3}", mark.value)
            }
        };

        // Every series once, as plain points: the lines and the plot ranges are made from them.
        let (mut loss, mut scores, mut lrs): (Series, Series, Series) = Default::default();
        if let Some(live) = &self.live {
            let pts = |v: &[(f64, f64)]| v.iter().map(|&(x, v)| [x, y(v)]).collect::<Vec<_>>();
            loss.push((
                "training loss".into(),
                pts(&live.steps),
                1.0,
                Some(egui::Color32::from_gray(110)),
            ));
            loss.push((
                "training loss (smoothed)".into(),
                pts(&smooth(&live.steps, self.smoothing)),
                2.0,
                None,
            ));
            loss.push((
                "validation loss".into(),
                live.epochs
                    .iter()
                    .map(|m| [m.epoch as f64, y(m.val_loss)])
                    .collect(),
                2.0,
                None,
            ));
            scores.push((
                "accuracy".into(),
                live.epochs
                    .iter()
                    .map(|m| [m.epoch as f64, m.accuracy])
                    .collect(),
                2.0,
                None,
            ));
            scores.push((
                "macro-F1".into(),
                live.epochs
                    .iter()
                    .map(|m| [m.epoch as f64, m.macro_f1])
                    .collect(),
                2.0,
                None,
            ));
            scores.extend(column_f1(&live.epochs, "", 1.5));
            lrs.push((
                "learning rate".into(),
                live.lrs.iter().map(|&(x, v)| [x, v]).collect(),
                1.0,
                None,
            ));
        }
        for r in &overlay {
            let steps = by_epoch(&r.steps, |s| s.loss);
            loss.push((
                format!("{} (smoothed)", r.name()),
                smooth(&steps, self.smoothing)
                    .into_iter()
                    .map(|(x, v)| [x, y(v)])
                    .collect(),
                1.0,
                None,
            ));
            loss.push((
                format!("{} validation", r.name()),
                r.epochs
                    .iter()
                    .map(|m| [m.epoch as f64, y(m.val_loss)])
                    .collect(),
                1.0,
                None,
            ));
            scores.push((
                format!("{} macro-F1", r.name()),
                r.epochs
                    .iter()
                    .map(|m| [m.epoch as f64, m.macro_f1])
                    .collect(),
                1.0,
                None,
            ));
            scores.push((
                format!("{} accuracy", r.name()),
                r.epochs
                    .iter()
                    .map(|m| [m.epoch as f64, m.accuracy])
                    .collect(),
                1.0,
                None,
            ));
            scores.extend(column_f1(&r.epochs, &format!("{} ", r.name()), 1.0));
            lrs.push((
                format!("{} learning rate", r.name()),
                by_epoch(&r.steps, |s| s.lr)
                    .into_iter()
                    .map(|(x, v)| [x, v])
                    .collect(),
                1.0,
                None,
            ));
        }
        let epochs = self.live.as_ref().map_or(1, |l| l.total_epochs.max(1)) as f64;
        let draw = |ui: &mut egui::Ui, plot: Plot<'_>, series: Series, default_y: (f64, f64)| {
            let mut extent = Extent::default();
            for (_, pts, ..) in &series {
                extent.add_all(pts.iter().copied());
            }
            extent
                .include(plot, (0.0, epochs), default_y)
                .legend(Legend::default())
                .x_axis_label("epoch")
                .show(ui, |p| {
                    for (name, pts, width, color) in series {
                        let mut line = Line::new(name, finite(pts)).width(width);
                        if let Some(c) = color {
                            line = line.color(c);
                        }
                        p.line(line);
                    }
                });
        };
        ui.columns(2, |cols| {
            cols[0].label(RichText::new("Loss").strong());
            draw(
                &mut cols[0],
                Plot::new("loss").height(half).y_axis_formatter(fmt_y),
                loss,
                if log { (-1.0, 0.5) } else { (0.0, 2.5) },
            );
            cols[1].label(RichText::new("Validation accuracy and macro-F1").strong());
            draw(
                &mut cols[1],
                Plot::new("scores")
                    .height(half)
                    .include_y(0.0)
                    .include_y(1.0),
                scores,
                (0.0, 1.0),
            );
        });
        ui.label(RichText::new("Learning rate").strong());
        draw(
            ui,
            Plot::new("lr").height(half.min(160.0)),
            lrs,
            (0.0, self.cfg.lr.max(1e-6)),
        );
    }
}

/// Plot lines as plain points: name, points, width, colour (`None`: the plot's own).
type Series = Vec<(String, Vec<[f64; 2]>, f32, Option<egui::Color32>)>;

/// One macro-F1 curve per label column of a composite label (`gender F1`), named after
/// `prefix`.
fn column_f1(epochs: &[EpochMetrics], prefix: &str, width: f32) -> Series {
    let names: Vec<&str> = epochs
        .last()
        .map(|m| m.columns.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    names
        .into_iter()
        .map(|name| {
            let pts = epochs
                .iter()
                .filter_map(|m| {
                    let c = m.columns.iter().find(|c| c.name == name)?;
                    Some([m.epoch as f64, c.report.macro_f1])
                })
                .collect();
            (format!("{prefix}{name} F1"), pts, width, None)
        })
        .collect()
}

/// The device line of the form: what libtorch sees, asked of an engine process.
fn device_line(engine: &Engine) -> String {
    let events = engine.start(&Job::Device, None).wait();
    for e in events {
        match e {
            Event::Done {
                result: JobResult::Device(info),
            } => {
                return if info.cuda_available {
                    format!(
                        "CUDA: {} GPU(s), cuDNN {}",
                        info.cuda_devices,
                        if info.cudnn_available { "yes" } else { "no" }
                    )
                } else {
                    format!(
                        "no CUDA GPU visible to libtorch: training runs on the CPU ({} threads)",
                        info.cpu_threads
                    )
                }
            }
            Event::Failed { message } => return message,
            _ => {}
        }
    }
    "the engine did not say which device it sees".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debiased_smoothing_starts_at_the_first_value_and_follows_a_step() {
        let values: Vec<(f64, f64)> = (0..50)
            .map(|i| (i as f64, if i < 25 { 2.0 } else { 1.0 }))
            .collect();
        let s = smooth(&values, 0.9);
        assert_eq!(s[0].1, 2.0, "no pull towards zero at the start");
        assert!((s[24].1 - 2.0).abs() < 1e-12);
        assert!(s[26].1 < 2.0 && s[26].1 > 1.0);
        assert!((s[49].1 - 1.0).abs() < 0.1);
        // No smoothing is the identity.
        assert_eq!(smooth(&values, 0.0), values);
    }

    #[test]
    fn steps_from_disk_spread_evenly_over_their_epoch() {
        let st = |epoch, step| StepPoint {
            step,
            epoch,
            loss: step as f64,
            lr: 0.1,
            images_per_s: 1.0,
        };
        let pts = by_epoch(
            &[st(1, 1), st(1, 2), st(2, 3), st(2, 4), st(2, 5), st(2, 6)],
            |s| s.loss,
        );
        let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
        assert_eq!(xs, vec![0.5, 1.0, 1.25, 1.5, 1.75, 2.0]);
    }
}
