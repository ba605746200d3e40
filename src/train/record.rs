//! A run's folder on disk: created once under the runs directory and never reused; `config.json`
//! (everything needed to reproduce the run), `metrics.jsonl` (one JSON object per step, epoch or
//! resume), checkpoints written atomically, validation predictions. Reading it back is what lets
//! a run be resumed, compared and evaluated.

use std::path::{Path, PathBuf};

use tch::nn;

use super::engine::{EpochMetrics, TrainConfig};
use super::metrics::argmax;
use super::models::ModelKind;
use super::split::Split;
use crate::dataset::labels::write_atomic;
use crate::dataset::stats::path_str;
use crate::dataset::Dataset;

/// `runs_dir/<UTC time>-<model>`, never an existing folder.
pub fn new_run_dir(runs_dir: &Path, model: ModelKind) -> anyhow::Result<PathBuf> {
    new_dir(
        runs_dir,
        serde_json::to_value(model)?.as_str().unwrap_or("model"),
    )
}

/// `parent/<UTC time>-<name>` (with `-2`, `-3`... when taken), created; never an existing folder.
pub fn new_dir(parent: &Path, name: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(parent)
        .map_err(|e| anyhow::anyhow!("cannot create the folder {}: {e}", parent.display()))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = crate::cli::utc(secs)
        .replace([' ', ':'], "-")
        .replace("-UTC", "");
    for k in 1.. {
        let dir = parent.join(if k == 1 {
            format!("{stamp}-{name}")
        } else {
            format!("{stamp}-{name}-{k}")
        });
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => anyhow::bail!("cannot create the folder {}: {e}", dir.display()),
        }
    }
    unreachable!("an unbounded counter always finds a free name")
}

/// A fingerprint of the (path, label) list: two runs with the same one saw the same data.
pub fn fingerprint(ds: &Dataset) -> String {
    let mut h = blake3::Hasher::new();
    for s in &ds.samples {
        h.update(path_str(&s.path).as_bytes());
        h.update(b"\t");
        h.update(s.label.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// `config.json`: the config, the data (source, fingerprint), the classes, the split (the
/// validation paths) and the versions.
pub fn write_config(
    run_dir: &Path,
    ds: &Dataset,
    cfg: &TrainConfig,
    classes: &[String],
    sp: &Split,
    size: u32,
) -> anyhow::Result<()> {
    let config = serde_json::json!({
        "config": cfg,
        "img_size": size,
        "dataset": { "root": ds.root, "source": ds.source, "images": ds.samples.len(), "fingerprint": fingerprint(ds) },
        "classes": classes,
        "split": { "train": sp.train.len(), "val": sp.val.iter().map(|&i| path_str(&ds.samples[i].path)).collect::<Vec<_>>() },
        "versions": { "loupe": env!("CARGO_PKG_VERSION"), "libtorch": "2.11.0", "tch": "0.24.0" },
    });
    write_atomic(
        &run_dir.join("config.json"),
        &serde_json::to_vec_pretty(&config)?,
    )?;
    Ok(())
}

/// A run's `config.json`, parsed: its [`TrainConfig`] and the whole document.
pub fn read_config(run_dir: &Path) -> anyhow::Result<(TrainConfig, serde_json::Value)> {
    let path = run_dir.join("config.json");
    let text = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a run folder ({}: {e})",
            run_dir.display(),
            path.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?;
    let cfg: TrainConfig = serde_json::from_value(v["config"].clone())
        .map_err(|e| anyhow::anyhow!("{} has no readable config: {e}", path.display()))?;
    Ok((cfg, v))
}

/// The validation paths recorded in a run's config.
pub fn val_paths(config: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(config["split"]["val"].clone()).unwrap_or_default()
}

/// The finished epochs in `metrics.jsonl`, in order. A torn last line (a crash mid-write) is
/// ignored; when an epoch was trained twice (resumed before its end) the later one counts.
pub fn read_epochs(run_dir: &Path) -> anyhow::Result<Vec<EpochMetrics>> {
    let path = run_dir.join("metrics.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["kind"] == "epoch" {
            if let Ok(m) = serde_json::from_value::<EpochMetrics>(v["metrics"].clone()) {
                epochs.retain(|e| e.epoch < m.epoch);
                epochs.push(m);
            }
        }
    }
    Ok(epochs)
}

/// Saves to a temporary file first: a full disk or a crash leaves the previous checkpoint.
pub fn save_atomic(vs: &nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `val_predictions.csv`: path, label, predicted, then one probability column per class, for the
/// dataset samples `samples` with probabilities `probs`.
pub fn write_predictions(
    run_dir: &Path,
    ds: &Dataset,
    samples: &[usize],
    classes: &[String],
    probs: &[Vec<f32>],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "label".into(), "predicted".into()];
    header.extend(classes.iter().cloned());
    w.write_record(&header)?;
    for (&i, p) in samples.iter().zip(probs) {
        let s = &ds.samples[i];
        let mut rec = vec![
            path_str(&s.path),
            s.label.clone(),
            classes[argmax(p)].clone(),
        ];
        rec.extend(p.iter().map(|v| format!("{v:.6}")));
        w.write_record(&rec)?;
    }
    write_atomic(&run_dir.join("val_predictions.csv"), &w.into_inner()?)?;
    Ok(())
}

/// One training step as `metrics.jsonl` has it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    /// Optimiser steps since the run began.
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub images_per_s: f64,
}

/// What the runs list shows of a run folder, read from its files.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub config: TrainConfig,
    /// `config.json` as written, for people to read.
    pub config_text: String,
    pub classes: Vec<String>,
    pub epochs: Vec<EpochMetrics>,
    pub steps: Vec<StepPoint>,
    /// The run wrote its end: finished, stopped early or cancelled (`Some(cancelled)`); `None`
    /// while it runs, or when its process died.
    pub ended: Option<bool>,
    /// When the folder was made (seconds since the epoch).
    pub created: u64,
}

impl RunSummary {
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    }

    /// The best epoch by the run's monitored metric.
    pub fn best(&self) -> Option<&EpochMetrics> {
        let m = self.config.monitor;
        self.epochs.iter().max_by(|a, b| {
            m.score(a.macro_f1, a.accuracy, a.val_loss)
                .total_cmp(&m.score(b.macro_f1, b.accuracy, b.val_loss))
        })
    }

    pub fn seconds(&self) -> f64 {
        self.epochs.last().map_or(0.0, |e| e.seconds)
    }

    pub fn status(&self) -> String {
        let done = self.epochs.last().map_or(0, |e| e.epoch);
        match self.ended {
            Some(true) => format!("cancelled at {done}/{}", self.config.epochs),
            Some(false) if done < self.config.epochs => {
                format!("stopped early at {done}/{}", self.config.epochs)
            }
            Some(false) => "finished".into(),
            None => format!("running or interrupted ({done}/{})", self.config.epochs),
        }
    }
}

/// Reads a run folder: its config, epochs, steps and whether it ended.
pub fn summarize(dir: &Path) -> anyhow::Result<RunSummary> {
    let (config, doc) = read_config(dir)?;
    let classes: Vec<String> = serde_json::from_value(doc["classes"].clone()).unwrap_or_default();
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    let (mut steps, mut ended) = (Vec::new(), None);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["kind"].as_str() {
            Some("step") => steps.push(StepPoint {
                step: v["step"].as_u64().unwrap_or(0) as usize,
                epoch: v["epoch"].as_u64().unwrap_or(0) as usize,
                loss: v["loss"].as_f64().unwrap_or(f64::NAN),
                lr: v["lr"].as_f64().unwrap_or(f64::NAN),
                images_per_s: v["images_per_s"].as_f64().unwrap_or(f64::NAN),
            }),
            Some("end") => ended = Some(v["cancelled"].as_bool().unwrap_or(false)),
            Some("resume") => ended = None,
            _ => {}
        }
    }
    // A resumed run counts its steps on from where it stopped: keep the later of duplicates.
    steps.sort_by_key(|s| s.step);
    steps.dedup_by(|later, earlier| {
        let same = later.step == earlier.step;
        if same {
            *earlier = *later;
        }
        same
    });
    let created = std::fs::metadata(dir)
        .and_then(|m| m.created().or_else(|_| m.modified()))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let config_text = std::fs::read_to_string(dir.join("config.json")).unwrap_or_default();
    Ok(RunSummary {
        dir: dir.to_path_buf(),
        config,
        config_text,
        classes,
        epochs: read_epochs(dir)?,
        steps,
        ended,
        created,
    })
}

/// Every run under `runs_dir`, newest first; folders that are not runs are skipped.
pub fn list_runs(runs_dir: &Path) -> Vec<RunSummary> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut runs: Vec<RunSummary> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").is_file())
        .filter_map(|e| summarize(&e.path()).ok())
        .collect();
    runs.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| b.name().cmp(&a.name()))
    });
    runs
}
