//! The Train tab: a form over the engine's options with presets, Start / Stop, live curves of
//! the run this window started, and the list of every run of the dataset (the command line's
//! too) to overlay, open, resume, rename or delete.
//!
//! The engine runs on its own thread (`loupe-train`) and reports events; this tab only drains
//! them each frame. Run folders are listed and read on a background thread.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use egui::RichText;
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::workspace::Workspace;
use crate::train::engine::{
    self, Balance, DeviceChoice, EpochMetrics, Event, LossKind, OptimizerKind, RunHandle, Start,
    TrainConfig,
};
use crate::train::models::{self, ModelKind};
use crate::train::record::{self, RunSummary, StepPoint};

/// Presets: a name, and the config it sets (on top of the defaults).
pub fn presets() -> Vec<(&'static str, TrainConfig)> {
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
                weights: models::default_weights(ModelKind::EfficientnetLite0),
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
                weights: models::default_weights(ModelKind::EfficientnetLite0),
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
    handle: Option<RunHandle>,
    pub run_dir: Option<PathBuf>,
    pub device: String,
    /// (fractional epoch, loss) per step.
    pub steps: Vec<(f64, f64)>,
    pub lrs: Vec<(f64, f64)>,
    pub epochs: Vec<EpochMetrics>,
    pub notes: Vec<String>,
    pub images_per_s: f64,
    /// Epoch and step within it of the last step, and the steps per epoch.
    pub at: (usize, usize, usize),
    pub total_epochs: usize,
    pub started: Instant,
    pub outcome: Option<Result<String, String>>,
    /// GPU memory in use, as nvidia-smi reports it while a CUDA run goes.
    pub gpu_memory: Option<String>,
    gpu_rx: Option<Receiver<String>>,
}

impl Live {
    pub fn running(&self) -> bool {
        self.handle.is_some()
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
        let Some(h) = &self.handle else { return };
        let mut ended = false;
        while let Ok(ev) = h.rx.try_recv() {
            match ev {
                Event::Started {
                    run_dir,
                    device,
                    train,
                    val,
                    skipped,
                    ..
                } => {
                    if device.starts_with("Cuda") {
                        self.gpu_rx = Some(watch_gpu_memory(h.cancel.clone()));
                    }
                    self.run_dir = Some(run_dir);
                    self.device = device;
                    if skipped > 0 {
                        self.notes.push(format!(
                            "{skipped} image(s) could not be decoded and are left out"
                        ));
                    }
                    self.notes
                        .push(format!("{train} training and {val} validation images"));
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
                Event::Epoch(m) => self.epochs.push(*m),
                Event::Checkpoint { .. } => {}
                Event::Note(n) => self.notes.push(n),
                Event::Finished {
                    best,
                    monitor,
                    cancelled,
                    ..
                } => {
                    let what = if cancelled { "stopped" } else { "finished" };
                    let best = if best.is_nan() {
                        "no epoch finished".to_string()
                    } else {
                        format!("best {} {best:.4}", monitor.name())
                    };
                    self.outcome = Some(Ok(format!("{what}: {best}")));
                    ended = true;
                }
                Event::Failed(msg) => {
                    self.outcome = Some(Err(msg));
                    ended = true;
                }
            }
        }
        if let Some(rx) = &self.gpu_rx {
            while let Ok(m) = rx.try_recv() {
                self.gpu_memory = Some(m);
            }
        }
        if ended {
            // The worker sends its last event just before it returns: joining is immediate.
            self.handle = None;
            self.gpu_rx = None;
        }
    }
}

/// Polls `nvidia-smi` every two seconds (libtorch does not report CUDA memory through tch) until
/// the run is cancelled or the receiver is dropped. Without nvidia-smi nothing is sent.
fn watch_gpu_memory(cancel: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("loupe-gpu-memory".into())
        .spawn(move || {
            while !cancel.load(std::sync::atomic::Ordering::Relaxed) {
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

impl Drop for Live {
    /// A run nobody watches any more (another dataset was opened) is cancelled; waiting for its
    /// thread to notice (up to one batch) happens off the UI thread.
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.cancel();
            let _ = std::thread::Builder::new()
                .name("loupe-train-stop".into())
                .spawn(move || drop(h));
        }
    }
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
}

pub struct TrainTab {
    pub cfg: TrainConfig,
    pub live: Option<Live>,
    pub runs: Vec<RunSummary>,
    runs_rx: Option<Receiver<Vec<RunSummary>>>,
    /// Runs whose curves are overlaid.
    pub overlay: BTreeSet<PathBuf>,
    pub smoothing: f64,
    pub log_scale: bool,
    device_rx: Option<Receiver<String>>,
    pub device_line: String,
    weights_rx: Option<Receiver<Option<PathBuf>>>,
    pub message: Option<Result<String, String>>,
    confirm: Option<Confirm>,
    renaming: Option<(PathBuf, String)>,
    config_view: Option<(String, String)>,
    /// The window asked to close while a run was going; the app closes it once this is answered.
    pub close_confirmed: bool,
    /// A rename or delete under way on a background thread.
    fs_rx: Option<Receiver<Result<String, String>>>,
}

impl Default for TrainTab {
    fn default() -> Self {
        TrainTab {
            cfg: presets().remove(0).1,
            live: None,
            runs: Vec::new(),
            runs_rx: None,
            overlay: BTreeSet::new(),
            smoothing: 0.6,
            log_scale: false,
            device_rx: None,
            device_line: "looking for a GPU…".into(),
            weights_rx: None,
            message: None,
            confirm: None,
            renaming: None,
            config_view: None,
            close_confirmed: false,
            fs_rx: None,
        }
    }
}

pub fn runs_dir(ws: &Workspace) -> PathBuf {
    ws.store_dir.join("runs")
}

impl TrainTab {
    pub fn running(&self) -> bool {
        self.live.as_ref().is_some_and(Live::running)
    }

    /// Starts looking for devices and run folders (background threads).
    pub fn open(&mut self, ctx: &egui::Context, ws: &Workspace) {
        let (tx, rx) = mpsc::channel();
        let c = ctx.clone();
        let _ = std::thread::Builder::new()
            .name("loupe-device".into())
            .spawn(move || {
                let info = crate::train::device::probe();
                let line = if info.cuda_available {
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
                };
                let _ = tx.send(line);
                c.request_repaint();
            });
        self.device_rx = Some(rx);
        self.refresh(ctx, ws);
    }

    /// Reads the run folders again, in the background.
    pub fn refresh(&mut self, ctx: &egui::Context, ws: &Workspace) {
        let dir = runs_dir(ws);
        let (tx, rx) = mpsc::channel();
        let c = ctx.clone();
        let _ = std::thread::Builder::new()
            .name("loupe-runs".into())
            .spawn(move || {
                let _ = tx.send(record::list_runs(&dir));
                c.request_repaint();
            });
        self.runs_rx = Some(rx);
    }

    pub fn loading_runs(&self) -> bool {
        self.runs_rx.is_some()
    }

    /// Takes in what the background threads and the run reported.
    pub fn poll(&mut self, ctx: &egui::Context, ws: &Workspace) {
        if let Some(rx) = &self.device_rx {
            if let Ok(line) = rx.try_recv() {
                self.device_line = line;
                self.device_rx = None;
            }
        }
        if let Some(rx) = &self.runs_rx {
            if let Ok(runs) = rx.try_recv() {
                self.runs = runs;
                self.runs_rx = None;
            }
        }
        if let Some(rx) = &self.fs_rx {
            if let Ok(done) = rx.try_recv() {
                self.message = Some(done);
                self.fs_rx = None;
                self.refresh(ctx, ws);
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
        let was_running = self.running();
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
        let has_dir = self.live.as_ref().is_some_and(|l| l.run_dir.is_some());
        // The list shows a run from its start, and its final state at its end.
        if (was_running && !self.running()) || (!had_dir && has_dir) {
            self.refresh(ctx, ws);
        }
    }

    /// Starts a run on the current labels (excluded images left out).
    pub fn start(&mut self, ws: &Workspace, start: Start, cfg: TrainConfig) {
        if self.running() {
            return;
        }
        let ds = Workspace::effective(&ws.dataset, &ws.labels, &ws.flags, &ws.classes);
        let total_epochs = cfg.epochs;
        let handle = engine::spawn(ds, cfg, start);
        self.live = Some(Live {
            handle: Some(handle),
            run_dir: None,
            device: String::new(),
            steps: Vec::new(),
            lrs: Vec::new(),
            epochs: Vec::new(),
            notes: Vec::new(),
            images_per_s: 0.0,
            at: (0, 0, 0),
            total_epochs,
            started: Instant::now(),
            outcome: None,
            gpu_memory: None,
            gpu_rx: None,
        });
        self.message = None;
    }

    pub fn stop(&mut self) {
        if let Some(h) = self.live.as_ref().and_then(|l| l.handle.as_ref()) {
            h.cancel();
        }
    }

    pub fn show(&mut self, ui: &mut egui::Ui, ws: &Workspace) {
        self.dialogs(ui.ctx());
        egui::Panel::left("train-form")
            .resizable(true)
            .default_size(330.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.form(ui, ws);
                    ui.separator();
                    self.runs_list(ui, ws);
                });
            });
        egui::CentralPanel::default_margins().show(ui, |ui| self.curves(ui));
    }

    fn form(&mut self, ui: &mut egui::Ui, ws: &Workspace) {
        ui.heading("Train");
        ui.label(RichText::new(&self.device_line).small());
        ui.horizontal_wrapped(|ui| {
            for (name, preset) in presets() {
                if ui.button(name).clicked() {
                    self.cfg = preset;
                }
            }
        });
        let running = self.running();
        ui.add_enabled_ui(!running, |ui| {
            egui::Grid::new("train-options")
                .num_columns(2)
                .show(ui, |ui| {
                    let c = &mut self.cfg;
                    ui.label("model");
                    egui::ComboBox::from_id_salt("model")
                        .selected_text(format!("{:?}", c.model))
                        .show_ui(ui, |ui| {
                            for m in [
                                ModelKind::SmallCnn,
                                ModelKind::EfficientnetLite0,
                                ModelKind::Resnet18,
                                ModelKind::Resnet34,
                                ModelKind::Resnet50,
                            ] {
                                ui.selectable_value(&mut c.model, m, format!("{m:?}"));
                            }
                        });
                    ui.end_row();
                    ui.label("weights");
                    ui.horizontal(|ui| {
                        let name = c
                            .weights
                            .as_ref()
                            .and_then(|w| w.file_name())
                            .map_or("none (from scratch)".into(), |n| {
                                n.to_string_lossy().to_string()
                            });
                        ui.label(name);
                        if ui
                            .small_button("…")
                            .on_hover_text("choose a .safetensors file")
                            .clicked()
                        {
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
                        if c.weights.is_some()
                            && ui
                                .small_button("×")
                                .on_hover_text("no weights: train from scratch")
                                .clicked()
                        {
                            c.weights = None;
                        }
                    });
                    ui.end_row();
                    ui.label("epochs");
                    ui.add(egui::DragValue::new(&mut c.epochs).range(1..=1000));
                    ui.end_row();
                    ui.label("batch");
                    ui.add(egui::DragValue::new(&mut c.batch).range(1..=4096));
                    ui.end_row();
                    ui.label("learning rate");
                    ui.add(
                        egui::DragValue::new(&mut c.lr)
                            .speed(1e-4)
                            .range(1e-6..=1.0)
                            .max_decimals(5),
                    );
                    ui.end_row();
                    ui.label("image size");
                    ui.add(egui::DragValue::new(&mut c.img_size).range(0..=1024))
                        .on_hover_text("0: the model's default");
                    ui.end_row();
                    ui.label("backbone");
                    ui.checkbox(&mut c.freeze, "frozen (head only)");
                    ui.end_row();
                    ui.label("loss");
                    egui::ComboBox::from_id_salt("loss")
                        .selected_text(format!("{:?}", c.loss))
                        .show_ui(ui, |ui| {
                            for l in [LossKind::Ce, LossKind::Smooth, LossKind::Focal] {
                                ui.selectable_value(&mut c.loss, l, format!("{l:?}"));
                            }
                        });
                    ui.end_row();
                    ui.label("imbalance");
                    egui::ComboBox::from_id_salt("balance")
                        .selected_text(format!("{:?}", c.balance))
                        .show_ui(ui, |ui| {
                            for b in [Balance::None, Balance::Weights, Balance::Sampler] {
                                ui.selectable_value(&mut c.balance, b, format!("{b:?}"));
                            }
                        });
                    ui.end_row();
                    ui.label("optimiser");
                    egui::ComboBox::from_id_salt("optimizer")
                        .selected_text(format!("{:?}", c.optimizer))
                        .show_ui(ui, |ui| {
                            for o in [
                                OptimizerKind::Sgd,
                                OptimizerKind::Adam,
                                OptimizerKind::Adamw,
                            ] {
                                ui.selectable_value(&mut c.optimizer, o, format!("{o:?}"));
                            }
                        });
                    ui.end_row();
                    ui.label("device");
                    egui::ComboBox::from_id_salt("device")
                        .selected_text(format!("{:?}", c.device))
                        .show_ui(ui, |ui| {
                            for d in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda] {
                                ui.selectable_value(&mut c.device, d, format!("{d:?}"));
                            }
                        });
                    ui.end_row();
                    ui.label("validation");
                    ui.add(egui::Slider::new(&mut c.val_frac, 0.05..=0.5).text("of each class"));
                    ui.end_row();
                    ui.label("seed");
                    ui.add(egui::DragValue::new(&mut c.seed));
                    ui.end_row();
                });
        });
        ui.horizontal(|ui| {
            if running {
                // No spinner: it repaints every frame, taking CPU from the run.
                if ui.button("■ Stop").clicked() {
                    self.stop();
                }
                ui.label("training…");
            } else if ui.button("▶ Start").clicked() {
                let start = Start::New {
                    runs_dir: runs_dir(ws),
                    val: None,
                };
                self.start(ws, start, self.cfg.clone());
            }
        });
        if let Some(m) = &self.message {
            match m {
                Ok(t) => ui.label(t),
                Err(e) => ui.colored_label(ui.visuals().error_fg_color, e),
            };
        }
    }

    fn runs_list(&mut self, ui: &mut egui::Ui, ws: &Workspace) {
        ui.horizontal(|ui| {
            ui.heading("Runs");
            if ui
                .small_button("⟲")
                .on_hover_text("read the run folders again")
                .clicked()
            {
                self.refresh(ui.ctx(), ws);
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
            let best = run.best().map_or("–".to_string(), |e| {
                format!(
                    "{} {:.3}",
                    run.config.monitor.name(),
                    run.config
                        .monitor
                        .value(run.config.monitor.score(e.macro_f1, e.accuracy, e.val_loss))
                )
            });
            let status = if current.as_deref() == Some(run.dir.as_path()) {
                "running".to_string()
            } else {
                run.status()
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
                ui.label(
                    RichText::new(format!(
                        "{:?} · {status} · {best} · {:.0} s · {}",
                        run.config.model,
                        run.seconds(),
                        crate::cli::utc(run.created)
                    ))
                    .small(),
                );
                ui.horizontal(|ui| {
                    for (label, what) in [
                        ("config", "config"),
                        ("resume", "resume"),
                        ("rename", "rename"),
                        ("delete", "delete"),
                    ] {
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
                "resume" => self.resume(ws, &dir),
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

    /// Resumes a run to twice its epochs, or to the form's epoch count when that is larger.
    pub fn resume(&mut self, ws: &Workspace, dir: &Path) {
        match record::read_config(dir) {
            Ok((mut cfg, _)) => {
                let done = self
                    .runs
                    .iter()
                    .find(|r| r.dir == dir)
                    .and_then(|r| r.epochs.last().map(|e| e.epoch))
                    .unwrap_or(0);
                if done >= cfg.epochs {
                    cfg.epochs = (cfg.epochs * 2).max(self.cfg.epochs);
                }
                self.start(ws, Start::Resume(dir.to_path_buf()), cfg);
            }
            Err(e) => self.message = Some(Err(format!("{e:#}"))),
        }
    }

    fn dialogs(&mut self, ctx: &egui::Context) {
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
            match done {
                Some(true) => {
                    let valid = !name.is_empty()
                        && !name.contains(['/', '\\'])
                        && name != "."
                        && name != "..";
                    let to = dir.with_file_name(name.as_str());
                    let (from, name) = (dir.clone(), name.clone());
                    self.renaming = None;
                    if valid {
                        self.overlay.remove(&from);
                        self.in_background(ctx, move || {
                            if to.exists() {
                                return Err(format!("{} already exists", to.display()));
                            }
                            std::fs::rename(&from, &to)
                                .map(|_| format!("renamed to {name}"))
                                .map_err(|e| format!("cannot rename {}: {e}", from.display()))
                        });
                    } else {
                        self.message =
                            Some(Err("a run name cannot be empty or contain a slash".into()));
                    }
                }
                Some(false) => self.renaming = None,
                None => {}
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
                    let running_here = self.live.as_ref().is_some_and(|l| {
                        l.running() && l.run_dir.as_deref() == Some(dir.as_path())
                    });
                    if yes && running_here {
                        self.message = Some(Err("stop the run before deleting it".into()));
                    } else if yes {
                        self.overlay.remove(&dir);
                        self.in_background(ctx, move || {
                            std::fs::remove_dir_all(&dir)
                                .map(|_| "run deleted".to_string())
                                .map_err(|e| format!("cannot delete {}: {e}", dir.display()))
                        });
                    }
                }
            }
            Some(Confirm::Close) => {
                let mut done = None;
                egui::Modal::new(egui::Id::unique("close-while-training")).show(ctx, |ui| {
                    ui.label("A training run is going. Stop it and close Loupe? Its last checkpoint is kept and it can be resumed.");
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
                        self.stop();
                        self.close_confirmed = true;
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
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99).text("smoothing"));
            ui.checkbox(&mut self.log_scale, "log scale (loss)");
            if let Some(live) = &self.live {
                ui.separator();
                if live.running() {
                    let (e, s, n) = live.at;
                    let eta = live
                        .eta()
                        .map_or(String::new(), |t| format!(" · ETA {}", fmt_secs(t)));
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
        if let Some(live) = &self.live {
            if let Some(n) = live.notes.last() {
                ui.label(RichText::new(n).small());
            }
        }
        let log = self.log_scale;
        let y = |v: f64| if log { v.max(1e-12).log10() } else { v };
        let overlay: Vec<&RunSummary> = self
            .runs
            .iter()
            .filter(|r| self.overlay.contains(&r.dir))
            .collect();
        let half = (ui.available_height() - 30.0) / 2.0;
        let fmt_y = move |mark: egui_plot::GridMark, _r: &std::ops::RangeInclusive<f64>| {
            if log {
                format!("{:.3}", 10f64.powf(mark.value))
            } else {
                format!("{:.3}", mark.value)
            }
        };
        ui.columns(2, |cols| {
            Plot::new("loss")
                .height(half)
                .legend(Legend::default())
                .x_axis_label("epoch")
                .y_axis_formatter(fmt_y)
                .show(&mut cols[0], |p| {
                    if let Some(live) = &self.live {
                        p.line(
                            Line::new(
                                "training loss",
                                PlotPoints::from_iter(live.steps.iter().map(|&(x, v)| [x, y(v)])),
                            )
                            .color(egui::Color32::from_gray(110)),
                        );
                        p.line(
                            Line::new(
                                "training loss (smoothed)",
                                PlotPoints::from_iter(
                                    smooth(&live.steps, self.smoothing)
                                        .into_iter()
                                        .map(|(x, v)| [x, y(v)]),
                                ),
                            )
                            .width(2.0),
                        );
                        p.line(
                            Line::new(
                                "validation loss",
                                PlotPoints::from_iter(
                                    live.epochs.iter().map(|m| [m.epoch as f64, y(m.val_loss)]),
                                ),
                            )
                            .width(2.0),
                        );
                    }
                    for r in &overlay {
                        let steps = by_epoch(&r.steps, |s| s.loss);
                        p.line(Line::new(
                            format!("{} (smoothed)", r.name()),
                            PlotPoints::from_iter(
                                smooth(&steps, self.smoothing)
                                    .into_iter()
                                    .map(|(x, v)| [x, y(v)]),
                            ),
                        ));
                        p.line(Line::new(
                            format!("{} validation", r.name()),
                            PlotPoints::from_iter(
                                r.epochs.iter().map(|m| [m.epoch as f64, y(m.val_loss)]),
                            ),
                        ));
                    }
                });
            Plot::new("scores")
                .height(half)
                .legend(Legend::default())
                .x_axis_label("epoch")
                .include_y(0.0)
                .include_y(1.0)
                .show(&mut cols[1], |p| {
                    if let Some(live) = &self.live {
                        p.line(
                            Line::new(
                                "accuracy",
                                PlotPoints::from_iter(
                                    live.epochs.iter().map(|m| [m.epoch as f64, m.accuracy]),
                                ),
                            )
                            .width(2.0),
                        );
                        p.line(
                            Line::new(
                                "macro-F1",
                                PlotPoints::from_iter(
                                    live.epochs.iter().map(|m| [m.epoch as f64, m.macro_f1]),
                                ),
                            )
                            .width(2.0),
                        );
                    }
                    for r in &overlay {
                        p.line(Line::new(
                            format!("{} macro-F1", r.name()),
                            PlotPoints::from_iter(
                                r.epochs.iter().map(|m| [m.epoch as f64, m.macro_f1]),
                            ),
                        ));
                        p.line(Line::new(
                            format!("{} accuracy", r.name()),
                            PlotPoints::from_iter(
                                r.epochs.iter().map(|m| [m.epoch as f64, m.accuracy]),
                            ),
                        ));
                    }
                });
        });
        Plot::new("lr")
            .height(half.min(160.0))
            .legend(Legend::default())
            .x_axis_label("epoch")
            .show(ui, |p| {
                if let Some(live) = &self.live {
                    p.line(Line::new(
                        "learning rate",
                        PlotPoints::from_iter(live.lrs.iter().map(|&(x, v)| [x, v])),
                    ));
                }
                for r in &overlay {
                    p.line(Line::new(
                        format!("{} learning rate", r.name()),
                        PlotPoints::from_iter(
                            by_epoch(&r.steps, |s| s.lr)
                                .into_iter()
                                .map(|(x, v)| [x, v]),
                        ),
                    ));
                }
            });
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
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
