//! The training engine: a named worker thread that owns everything tch (VarStore, model,
//! optimiser: tch tensors are not `Sync`, grad mode is per thread) and reports typed [`Event`]s
//! over a bounded channel. A cancel flag stops it within one batch, keeping the last checkpoint.
//! A panic inside libtorch becomes a `Failed` event: the caller survives.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use super::metrics::{self, argmax, Report};
use super::models::{self, ModelKind};
use super::pipeline::Cache;
use super::split::{self, SplitMix64};
use crate::dataset::stats::path_str;
use crate::dataset::Dataset;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    Ce,
    /// Cross-entropy with label smoothing 0.1.
    Smooth,
    /// Focal loss, gamma 2.
    Focal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    None,
    /// Loss weights inversely proportional to class frequency.
    Weights,
    /// Draw training images with probability inversely proportional to their class frequency.
    Sampler,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

/// Everything that decides a run; saved in the run's `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub model: ModelKind,
    /// Pretrained weights (.safetensors); the head is replaced for the dataset's classes.
    pub weights: Option<PathBuf>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Training resolution; 0 means the model's default.
    pub img_size: u32,
    /// Train only the head (the backbone frozen, BatchNorm in eval mode).
    pub freeze: bool,
    pub loss: LossKind,
    pub balance: Balance,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    /// Linear warm-up, then cosine decay to zero, per step.
    pub warmup_epochs: f64,
    pub val_frac: f64,
    pub seed: u64,
    pub device: DeviceChoice,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelKind::EfficientnetLite0,
            weights: None,
            epochs: 10,
            batch: 32,
            lr: 1e-3,
            img_size: 0,
            freeze: false,
            loss: LossKind::Ce,
            balance: Balance::None,
            optimizer: OptimizerKind::Adamw,
            weight_decay: 0.01,
            warmup_epochs: 1.0,
            val_frac: 0.2,
            seed: 0,
            device: DeviceChoice::Auto,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub report: Report,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub enum Event {
    Started { run_dir: PathBuf, device: String, train: usize, val: usize, skipped: usize, classes: Vec<String> },
    Step { epoch: usize, step: usize, steps: usize, loss: f64, lr: f64, images_per_s: f64 },
    Epoch(Box<EpochMetrics>),
    Checkpoint { path: PathBuf, best: bool },
    Finished { run_dir: PathBuf, best_macro_f1: f64, cancelled: bool },
    Failed(String),
}

pub struct RunHandle {
    pub rx: Receiver<Event>,
    pub cancel: Arc<AtomicBool>,
    /// Images decoded into the cache so far (progress before the first step).
    pub decoded: Arc<AtomicUsize>,
    join: Option<JoinHandle<()>>,
}

impl RunHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Waits for the worker to end.
    pub fn join(mut self) {
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.cancel();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Starts training on `ds` (pass the effective dataset: edited labels, excluded left out) in a
/// new folder under `runs_dir`.
pub fn spawn(ds: Dataset, cfg: TrainConfig, runs_dir: PathBuf) -> RunHandle {
    let (tx, rx) = mpsc::sync_channel(256);
    let cancel = Arc::new(AtomicBool::new(false));
    let decoded = Arc::new(AtomicUsize::new(0));
    let (c, d) = (cancel.clone(), decoded.clone());
    let join = std::thread::Builder::new()
        .name("loupe-train".into())
        .spawn(move || {
            let fail_tx = tx.clone();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&ds, &cfg, &runs_dir, &tx, &c, &d)));
            let msg = match result {
                Ok(Ok(())) => return,
                Ok(Err(e)) => format!("{e:#}"),
                Err(panic) => panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "the training thread panicked".into()),
            };
            let _ = fail_tx.send(Event::Failed(explain(&msg)));
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    RunHandle { rx, cancel, decoded, join: Some(join) }
}

/// libtorch's messages, in words that say what to do.
fn explain(msg: &str) -> String {
    if msg.contains("CUDA out of memory") || msg.contains("out of memory") {
        format!("the GPU ran out of memory: try a smaller --batch or --img-size ({})", msg.lines().next().unwrap_or(msg))
    } else if msg.contains("No space left on device") {
        format!("the disk is full; the previous checkpoint is intact ({msg})")
    } else {
        msg.to_string()
    }
}

fn pick_device(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => anyhow::bail!("--device cuda was asked for, but libtorch sees no CUDA GPU (see `loupe device`)"),
    }
}

fn run(ds: &Dataset, cfg: &TrainConfig, runs_dir: &Path, tx: &SyncSender<Event>, cancel: &AtomicBool, decoded: &AtomicUsize) -> anyhow::Result<()> {
    let send = |e: Event| {
        let _ = tx.send(e);
    };
    let classes: Vec<String> = ds.classes.clone();
    anyhow::ensure!(classes.len() >= 2, "training needs at least two classes; this dataset has {}", classes.len());
    let class_of: std::collections::HashMap<&str, i64> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();
    let labels: Vec<i64> = ds.samples.iter().map(|s| class_of[s.label.as_str()]).collect();
    let groups: Vec<Option<String>> = ds.samples.iter().map(|s| s.group.clone()).collect();
    let labels_u: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let sp = split::stratified(&labels_u, Some(&groups), cfg.val_frac, cfg.seed);
    anyhow::ensure!(!sp.train.is_empty() && !sp.val.is_empty(), "the split left {} training and {} validation images: the dataset is too small", sp.train.len(), sp.val.len());

    let device = pick_device(cfg.device)?;
    tch::manual_seed(cfg.seed as i64);
    let size = if cfg.img_size == 0 { cfg.model.default_size() } else { cfg.img_size };
    let run_dir = new_run_dir(runs_dir, cfg.model)?;
    write_config(&run_dir, ds, cfg, &classes, &sp, size)?;

    // The cache is one allocation: refuse clearly rather than be killed by the OS. (Streaming
    // through a decoding pool for datasets larger than memory is not implemented yet.)
    let need = Cache::bytes_for(ds.samples.len(), size);
    if let Some(avail) = available_memory() {
        anyhow::ensure!(
            need <= avail / 2,
            "decoding {} images at {size}x{size} needs {:.1} GB of memory, and {:.1} GB is available: use a smaller --img-size or fewer images",
            ds.samples.len(),
            need as f64 / 1e9,
            avail as f64 / 1e9
        );
    }
    let pick = |idx: &[usize]| idx.iter().map(|&i| labels[i]).collect::<Vec<_>>();
    let train = Cache::build(ds, &sp.train, &pick(&sp.train), size, decoded);
    let val = Cache::build(ds, &sp.val, &pick(&sp.val), size, decoded);
    anyhow::ensure!(!train.is_empty() && !val.is_empty(), "no decodable images left for training or validation");
    send(Event::Started {
        run_dir: run_dir.clone(),
        device: format!("{device:?}"),
        train: train.len(),
        val: val.len(),
        skipped: train.skipped.len() + val.skipped.len(),
        classes: classes.clone(),
    });

    let mut vs = nn::VarStore::new(device);
    let net = cfg.model.build(&vs.root(), classes.len() as i64);
    if let Some(w) = &cfg.weights {
        let report = models::load_pretrained(&mut vs, cfg.model, w)?;
        anyhow::ensure!(report.complete(), "the weights in {} do not fit {:?}: missing {:?}, mis-shaped {:?}", w.display(), cfg.model, report.missing, report.mismatched);
    }
    if cfg.freeze {
        for (name, var) in vs.variables() {
            if !name.starts_with(cfg.model.head()) {
                let _ = var.set_requires_grad(false);
            }
        }
    }
    let mut opt = match cfg.optimizer {
        OptimizerKind::Sgd => nn::sgd(0.9, 0.0, cfg.weight_decay, true).build(&vs, cfg.lr)?,
        OptimizerKind::Adam => nn::adam(0.9, 0.999, cfg.weight_decay).build(&vs, cfg.lr)?,
        OptimizerKind::Adamw => nn::adamw(0.9, 0.999, cfg.weight_decay).build(&vs, cfg.lr)?,
    };
    let counts: Vec<usize> = (0..classes.len()).map(|c| train.labels.iter().filter(|&&l| l as usize == c).count()).collect();
    let class_weights = (cfg.balance == Balance::Weights).then(|| {
        let n = train.len() as f64;
        let w: Vec<f32> = counts.iter().map(|&c| if c == 0 { 0.0 } else { (n / (classes.len() as f64 * c as f64)) as f32 }).collect();
        Tensor::from_slice(&w).to_device(device)
    });
    let norm = cfg.model.normalization();
    let steps_per_epoch = train.len().div_ceil(cfg.batch.max(1));
    let total_steps = (steps_per_epoch * cfg.epochs).max(1);
    let warmup = (cfg.warmup_epochs * steps_per_epoch as f64) as usize;
    let mut rng = SplitMix64::new(cfg.seed ^ 0x5EED);
    let mut metrics_file = std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("metrics.jsonl"))?;
    let mut best = f64::NEG_INFINITY;
    let mut step = 0usize;

    for epoch in 1..=cfg.epochs {
        let started = Instant::now();
        let order = epoch_order(&train.labels, &counts, cfg.balance, &mut rng);
        let mut loss_sum = 0.0;
        for (k, chunk) in order.chunks(cfg.batch.max(1)).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return finish(&vs, &run_dir, best, true, tx);
            }
            let t = Instant::now();
            let lr = schedule(cfg.lr, step, warmup, total_steps);
            opt.set_lr(lr);
            let (x, y) = train.batch(chunk, device, norm, true);
            let logits = net.forward_t(&x, !cfg.freeze);
            let loss = loss_fn(&logits, &y, cfg.loss, class_weights.as_ref())?;
            opt.zero_grad();
            loss.f_backward()?;
            opt.step();
            let loss_v = loss.f_double_value(&[])?;
            loss_sum += loss_v * chunk.len() as f64;
            step += 1;
            let ips = chunk.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);
            writeln!(metrics_file, "{}", serde_json::json!({"kind": "step", "epoch": epoch, "step": step, "loss": loss_v, "lr": lr, "images_per_s": ips}))?;
            send(Event::Step { epoch, step: k + 1, steps: steps_per_epoch, loss: loss_v, lr, images_per_s: ips });
        }
        let (val_loss, probs) = evaluate(net.as_ref(), &val, device, norm, cfg.batch)?;
        let preds: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
        let truth: Vec<usize> = val.labels.iter().map(|&l| l as usize).collect();
        let report = metrics::report(&truth, &preds, classes.len());
        let m = EpochMetrics {
            epoch,
            train_loss: loss_sum / train.len() as f64,
            val_loss,
            accuracy: report.accuracy,
            macro_f1: report.macro_f1,
            report,
            seconds: started.elapsed().as_secs_f64(),
        };
        writeln!(metrics_file, "{}", serde_json::json!({"kind": "epoch", "metrics": &m}))?;
        metrics_file.sync_data()?;
        save_atomic(&vs, &run_dir.join("last.safetensors"))?;
        send(Event::Checkpoint { path: run_dir.join("last.safetensors"), best: false });
        if m.macro_f1 > best {
            best = m.macro_f1;
            save_atomic(&vs, &run_dir.join("best.safetensors"))?;
            write_predictions(&run_dir, ds, &val, &classes, &probs)?;
            crate::dataset::labels::write_atomic(&run_dir.join("confusion.json"), &serde_json::to_vec_pretty(&m.report.confusion)?)?;
            send(Event::Checkpoint { path: run_dir.join("best.safetensors"), best: true });
        }
        send(Event::Epoch(Box::new(m)));
    }
    finish(&vs, &run_dir, best, false, tx)
}

/// `MemAvailable` from /proc/meminfo (Linux), in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn finish(vs: &nn::VarStore, run_dir: &Path, best: f64, cancelled: bool, tx: &SyncSender<Event>) -> anyhow::Result<()> {
    save_atomic(vs, &run_dir.join("last.safetensors"))?;
    let _ = tx.send(Event::Finished { run_dir: run_dir.to_path_buf(), best_macro_f1: best.max(0.0), cancelled });
    Ok(())
}

/// Linear warm-up to `base`, then cosine decay to zero.
pub fn schedule(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// Cache positions of one epoch: shuffled, or drawn by inverse class frequency (sampler).
fn epoch_order(labels: &[i64], counts: &[usize], balance: Balance, rng: &mut SplitMix64) -> Vec<usize> {
    if balance == Balance::Sampler {
        // Pick a class uniformly, then an image of it: each class is seen equally often.
        let by_class: Vec<Vec<usize>> = (0..counts.len()).map(|c| (0..labels.len()).filter(|&i| labels[i] as usize == c).collect()).collect();
        let present: Vec<&Vec<usize>> = by_class.iter().filter(|v| !v.is_empty()).collect();
        return (0..labels.len()).map(|_| {
            let class = present[rng.below(present.len())];
            class[rng.below(class.len())]
        }).collect();
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    rng.shuffle(&mut order);
    order
}

fn loss_fn(logits: &Tensor, y: &Tensor, kind: LossKind, weights: Option<&Tensor>) -> anyhow::Result<Tensor> {
    Ok(match kind {
        LossKind::Ce => logits.f_cross_entropy_loss(y, weights, Reduction::Mean, -100, 0.0)?,
        LossKind::Smooth => logits.f_cross_entropy_loss(y, weights, Reduction::Mean, -100, 0.1)?,
        LossKind::Focal => {
            // FL = -(1 - p_t)^gamma log p_t, gamma = 2 (Lin et al. 2017).
            let logp = logits.f_log_softmax(1, Kind::Float)?.f_gather(1, &y.unsqueeze(1), false)?.squeeze_dim(1);
            let pt = logp.exp();
            let mut fl = -((pt.ones_like() - &pt).pow_tensor_scalar(2.0) * &logp);
            if let Some(w) = weights {
                fl = fl * w.index_select(0, y);
            }
            fl.f_mean(Kind::Float)?
        }
    })
}

/// Validation loss and per-image class probabilities.
fn evaluate(net: &dyn nn::ModuleT, val: &Cache, device: Device, norm: ([f64; 3], [f64; 3]), batch: usize) -> anyhow::Result<(f64, Vec<Vec<f32>>)> {
    let mut probs = Vec::with_capacity(val.len());
    let mut loss = 0.0;
    let all: Vec<usize> = (0..val.len()).collect();
    tch::no_grad(|| -> anyhow::Result<()> {
        for chunk in all.chunks(batch.max(1)) {
            let (x, y) = val.batch(chunk, device, norm, false);
            let logits = net.forward_t(&x, false);
            loss += logits.f_cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0)?.f_double_value(&[])?;
            let p = logits.f_softmax(1, Kind::Float)?.to_device(Device::Cpu);
            let rows = p.size()[0];
            for r in 0..rows {
                probs.push(Vec::<f32>::try_from(p.get(r))?);
            }
        }
        Ok(())
    })?;
    Ok((loss / val.len() as f64, probs))
}

/// Saves to a temporary file first: a full disk or a crash leaves the previous checkpoint.
fn save_atomic(vs: &nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `runs_dir/<UTC time>-<model>`, never an existing folder.
fn new_run_dir(runs_dir: &Path, model: ModelKind) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(runs_dir).map_err(|e| anyhow::anyhow!("cannot create the runs folder {}: {e}", runs_dir.display()))?;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let stamp = crate::cli::utc(secs).replace([' ', ':'], "-").replace("-UTC", "");
    let name = serde_json::to_value(model)?.as_str().unwrap_or("model").to_string();
    for k in 1.. {
        let dir = runs_dir.join(if k == 1 { format!("{stamp}-{name}") } else { format!("{stamp}-{name}-{k}") });
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => anyhow::bail!("cannot create the run folder {}: {e}", dir.display()),
        }
    }
    unreachable!("an unbounded counter always finds a free name")
}

/// `config.json`: everything needed to reproduce the run, including a fingerprint of the
/// (path, label) list and the validation paths of the split.
fn write_config(run_dir: &Path, ds: &Dataset, cfg: &TrainConfig, classes: &[String], sp: &split::Split, size: u32) -> anyhow::Result<()> {
    let mut h = blake3::Hasher::new();
    for s in &ds.samples {
        h.update(path_str(&s.path).as_bytes());
        h.update(b"\t");
        h.update(s.label.as_bytes());
        h.update(b"\n");
    }
    let config = serde_json::json!({
        "config": cfg,
        "img_size": size,
        "dataset": { "root": ds.root, "source": ds.source, "images": ds.samples.len(), "fingerprint": h.finalize().to_hex().to_string() },
        "classes": classes,
        "split": { "train": sp.train.len(), "val": sp.val.iter().map(|&i| path_str(&ds.samples[i].path)).collect::<Vec<_>>() },
        "versions": { "loupe": env!("CARGO_PKG_VERSION"), "libtorch": "2.11.0", "tch": "0.24.0" },
    });
    crate::dataset::labels::write_atomic(&run_dir.join("config.json"), &serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// `val_predictions.csv`: path, label, predicted, then one probability column per class.
fn write_predictions(run_dir: &Path, ds: &Dataset, val: &Cache, classes: &[String], probs: &[Vec<f32>]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "label".into(), "predicted".into()];
    header.extend(classes.iter().cloned());
    w.write_record(&header)?;
    for (k, p) in probs.iter().enumerate() {
        let s = &ds.samples[val.samples[k]];
        let mut rec = vec![path_str(&s.path), s.label.clone(), classes[argmax(p)].clone()];
        rec.extend(p.iter().map(|v| format!("{v:.6}")));
        w.write_record(&rec)?;
    }
    crate::dataset::labels::write_atomic(&run_dir.join("val_predictions.csv"), &w.into_inner()?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert!((schedule(1.0, 0, 4, 20) - 0.25).abs() < 1e-12);
        assert!((schedule(1.0, 3, 4, 20) - 1.0).abs() < 1e-12);
        assert!((schedule(1.0, 4, 4, 20) - 1.0).abs() < 1e-12);
        assert!((schedule(1.0, 12, 4, 20) - 0.5).abs() < 1e-12);
        assert!(schedule(1.0, 20, 4, 20).abs() < 1e-12);
    }
}
