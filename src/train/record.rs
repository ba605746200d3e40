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
    new_dir(runs_dir, serde_json::to_value(model)?.as_str().unwrap_or("model"))
}

/// `parent/<UTC time>-<name>` (with `-2`, `-3`... when taken), created; never an existing folder.
pub fn new_dir(parent: &Path, name: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("cannot create the folder {}: {e}", parent.display()))?;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let stamp = crate::cli::utc(secs).replace([' ', ':'], "-").replace("-UTC", "");
    for k in 1.. {
        let dir = parent.join(if k == 1 { format!("{stamp}-{name}") } else { format!("{stamp}-{name}-{k}") });
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
pub fn write_config(run_dir: &Path, ds: &Dataset, cfg: &TrainConfig, classes: &[String], sp: &Split, size: u32) -> anyhow::Result<()> {
    let config = serde_json::json!({
        "config": cfg,
        "img_size": size,
        "dataset": { "root": ds.root, "source": ds.source, "images": ds.samples.len(), "fingerprint": fingerprint(ds) },
        "classes": classes,
        "split": { "train": sp.train.len(), "val": sp.val.iter().map(|&i| path_str(&ds.samples[i].path)).collect::<Vec<_>>() },
        "versions": { "loupe": env!("CARGO_PKG_VERSION"), "libtorch": "2.11.0", "tch": "0.24.0" },
    });
    write_atomic(&run_dir.join("config.json"), &serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// A run's `config.json`, parsed: its [`TrainConfig`] and the whole document.
pub fn read_config(run_dir: &Path) -> anyhow::Result<(TrainConfig, serde_json::Value)> {
    let path = run_dir.join("config.json");
    let text = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{} is not a run folder ({}: {e})", run_dir.display(), path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?;
    let cfg: TrainConfig = serde_json::from_value(v["config"].clone()).map_err(|e| anyhow::anyhow!("{} has no readable config: {e}", path.display()))?;
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
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
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
    vs.save(&tmp).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `val_predictions.csv`: path, label, predicted, then one probability column per class, for the
/// dataset samples `samples` with probabilities `probs`.
pub fn write_predictions(run_dir: &Path, ds: &Dataset, samples: &[usize], classes: &[String], probs: &[Vec<f32>]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "label".into(), "predicted".into()];
    header.extend(classes.iter().cloned());
    w.write_record(&header)?;
    for (&i, p) in samples.iter().zip(probs) {
        let s = &ds.samples[i];
        let mut rec = vec![path_str(&s.path), s.label.clone(), classes[argmax(p)].clone()];
        rec.extend(p.iter().map(|v| format!("{v:.6}")));
        w.write_record(&rec)?;
    }
    write_atomic(&run_dir.join("val_predictions.csv"), &w.into_inner()?)?;
    Ok(())
}
