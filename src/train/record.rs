//! A run's folder on disk, the record of what happened: created once under the runs folder and
//! never reused. Each file has one type here, one writer and one reader:
//! - `config.json` ([`RunConfig`]): everything needed to reproduce the run, the data fingerprint,
//!   the classes, the validation paths;
//! - `metrics.jsonl` ([`MetricsLine`], one JSON object per line: a step, an epoch, a resume, the
//!   end), appended as the run goes, so a crash loses at most the current line;
//! - checkpoints (`best.safetensors`, `last.safetensors`), written by the engine;
//! - predictions ([`super::predictions`]) and `confusion.json`.
//!
//! The engine process writes; the window and the command line read. Runs written by earlier
//! versions have the same shape; a folder that does not parse is named as damaged or too old.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::metrics::Report;
use super::split::Split;
use crate::dataset::{Dataset, Layout, Source};
use crate::util::{path_str, write_atomic};

pub const CONFIG: &str = "config.json";
pub const METRICS: &str = "metrics.jsonl";
pub const BEST: &str = "best.safetensors";
pub const LAST: &str = "last.safetensors";
pub const VAL_PREDICTIONS: &str = "val_predictions.csv";
pub const EVAL_PREDICTIONS: &str = "eval_predictions.csv";
pub const CONFUSION: &str = "confusion.json";

/// `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub config: TrainConfig,
    /// The resolution the run trains at (the config's `img_size`, resolved).
    pub img_size: u32,
    pub dataset: DataRecord,
    pub classes: Vec<String>,
    pub split: SplitRecord,
    #[serde(default)]
    pub versions: Versions,
}

/// Which data a run saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    pub root: PathBuf,
    /// How the dataset was opened (ImageFolder, or a CSV with its columns).
    #[serde(default)]
    pub source: Option<Source>,
    pub images: usize,
    /// [`Dataset::fingerprint`] of the data as trained on.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// How many images trained.
    pub train: usize,
    /// The validation images, relative to the dataset root (absolute for a validation folder).
    pub val: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    pub loupe: String,
    pub libtorch: String,
    pub tch: String,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            loupe: env!("CARGO_PKG_VERSION").into(),
            libtorch: "2.11.0".into(),
            tch: "0.24.0".into(),
        }
    }
}

impl RunConfig {
    /// The record of a new run of `cfg` on `ds` with split `sp`.
    pub fn new(ds: &Dataset, cfg: &TrainConfig, sp: &Split) -> RunConfig {
        RunConfig {
            config: cfg.clone(),
            img_size: cfg.size(),
            dataset: DataRecord {
                root: ds.root.clone(),
                source: Some(ds.source.clone()),
                images: ds.samples.len(),
                fingerprint: ds.fingerprint(),
            },
            classes: ds.classes.clone(),
            split: SplitRecord {
                train: sp.train.len(),
                val: sp
                    .val
                    .iter()
                    .map(|&i| path_str(&ds.samples[i].path))
                    .collect(),
            },
            versions: Versions::default(),
        }
    }

    /// Reads `dir/config.json`; the error says whether the folder is no run, or a damaged one.
    pub fn read(dir: &Path) -> anyhow::Result<RunConfig> {
        let path = dir.join(CONFIG);
        let text = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a run folder ({}: {e})",
                dir.display(),
                path.display()
            )
        })?;
        serde_json::from_slice(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is damaged, or from a Loupe too old to read ({e}); start a new run",
                path.display()
            )
        })
    }

    /// Replaces `dir/config.json` (atomically: a crash keeps the old one).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(CONFIG);
        write_atomic(&path, &serde_json::to_vec_pretty(self)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    /// The names of the run's label columns (as its source has them).
    pub fn label_columns(&self) -> Vec<String> {
        match &self.dataset.source {
            Some(Source::Csv(c)) => c.label_cols.clone(),
            _ => vec!["class".to_string()],
        }
    }

    /// The run's classes and label columns.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.classes, &self.label_columns())
    }

    /// The folder of the dataset the run trained on, as a source to open it again.
    pub fn source(&self) -> Source {
        self.dataset
            .source
            .clone()
            .unwrap_or_else(|| Source::ImageFolder {
                root: self.dataset.root.clone(),
            })
    }
}

/// One epoch's validation results, as `metrics.jsonl` keeps them and the engine reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Learning rate at the end of the epoch.
    #[serde(default, with = "lossy_f64")]
    pub lr: f64,
    #[serde(with = "lossy_f64")]
    pub train_loss: f64,
    #[serde(with = "lossy_f64")]
    pub val_loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub report: Report,
    /// Per label column of a composite label (empty for a single column): each column's
    /// report, whichever kind of heads the run has.
    #[serde(default)]
    pub columns: Vec<ColumnReport>,
    /// Seconds since the epoch began.
    pub seconds: f64,
}

/// The validation report of one label column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnReport {
    pub name: String,
    pub report: Report,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MetricsLine {
    /// An optimiser step; `step` counts from the start of the run.
    Step {
        epoch: usize,
        step: usize,
        #[serde(with = "lossy_f64")]
        loss: f64,
        #[serde(with = "lossy_f64")]
        lr: f64,
        #[serde(with = "lossy_f64")]
        images_per_s: f64,
    },
    Epoch {
        metrics: Box<EpochMetrics>,
    },
    /// The run was resumed at `epoch` (of `epochs`), on data with this fingerprint.
    Resume {
        epoch: usize,
        epochs: usize,
        fingerprint: String,
    },
    /// The run ended: finished, stopped early, or cancelled.
    End {
        cancelled: bool,
    },
}

/// `metrics.jsonl`, opened for appending.
pub struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    pub fn open(dir: &Path) -> anyhow::Result<MetricsLog> {
        let path = dir.join(METRICS);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(MetricsLog { file, path })
    }

    /// Appends one line (a single write, so lines from a crash are whole or torn, never mixed).
    pub fn append(&mut self, line: &MetricsLine) -> anyhow::Result<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }

    /// Makes what was appended durable (after each epoch).
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }
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

/// Everything `metrics.jsonl` says about a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// In step order; when a resumed run trained a step twice, the later one.
    pub steps: Vec<StepPoint>,
    /// In epoch order; when an epoch was trained twice (resumed before its end), the later one.
    pub epochs: Vec<EpochMetrics>,
    /// `Some(cancelled)` once the run wrote its end; `None` while it runs, or when its process
    /// died.
    pub ended: Option<bool>,
    /// Lines that could not be read (a torn last line after a crash).
    pub unreadable: usize,
}

/// Reads `dir/metrics.jsonl` (empty when the run has not written one yet).
pub fn read_metrics(dir: &Path) -> anyhow::Result<Metrics> {
    let path = dir.join(METRICS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Metrics::default()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let mut m = Metrics::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<MetricsLine>(line) {
            Ok(MetricsLine::Step {
                epoch,
                step,
                loss,
                lr,
                images_per_s,
            }) => m.steps.push(StepPoint {
                step,
                epoch,
                loss,
                lr,
                images_per_s,
            }),
            Ok(MetricsLine::Epoch { metrics }) => {
                m.epochs.retain(|e| e.epoch < metrics.epoch);
                m.epochs.push(*metrics);
            }
            Ok(MetricsLine::Resume { .. }) => m.ended = None,
            Ok(MetricsLine::End { cancelled }) => m.ended = Some(cancelled),
            Err(_) => m.unreadable += 1,
        }
    }
    // A resumed run counts its steps on from where it stopped: keep the later of duplicates.
    let mut by_step: Vec<StepPoint> = Vec::with_capacity(m.steps.len());
    for s in m.steps.drain(..) {
        while by_step.last().is_some_and(|p| p.step >= s.step) {
            by_step.pop();
        }
        by_step.push(s);
    }
    m.steps = by_step;
    Ok(m)
}

/// `f64` fields that may be NaN or infinite (a diverged loss): JSON has no such numbers, so they
/// are written as `null` and read back as NaN, instead of failing the whole line.
pub mod lossy_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::metrics::report;

    fn epoch(n: usize, loss: f64) -> EpochMetrics {
        EpochMetrics {
            epoch: n,
            lr: 0.1,
            train_loss: loss,
            val_loss: loss,
            accuracy: 0.5,
            macro_f1: 0.5,
            report: report(&[0, 1], &[0, 0], 2),
            columns: Vec::new(),
            seconds: 1.0,
        }
    }

    #[test]
    fn metrics_round_trip_with_a_diverged_loss_a_resume_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path()).unwrap();
        let step = |step, loss| MetricsLine::Step {
            epoch: 1,
            step,
            loss,
            lr: 0.1,
            images_per_s: 10.0,
        };
        for line in [
            step(1, 2.0),
            step(2, f64::NAN),
            MetricsLine::Epoch {
                metrics: Box::new(epoch(1, f64::INFINITY)),
            },
            MetricsLine::End { cancelled: true },
            MetricsLine::Resume {
                epoch: 1,
                epochs: 2,
                fingerprint: "f".into(),
            },
            step(2, 1.5),
            MetricsLine::Epoch {
                metrics: Box::new(epoch(1, 0.7)),
            },
        ] {
            log.append(&line).unwrap();
        }
        drop(log);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(METRICS))
            .unwrap();
        f.write_all(b"{\"kind\":\"step\",\"epo").unwrap();
        let m = read_metrics(dir.path()).unwrap();
        assert_eq!(m.steps.len(), 2);
        assert_eq!(
            m.steps[1].loss, 1.5,
            "the resumed step replaces the first try"
        );
        assert_eq!(m.epochs.len(), 1);
        assert_eq!(m.epochs[0].val_loss, 0.7);
        assert_eq!(
            m.ended, None,
            "resumed after its end: running or interrupted"
        );
        assert_eq!(m.unreadable, 1);
    }

    #[test]
    fn a_nan_loss_is_written_as_null_and_read_back_as_nan() {
        let line = serde_json::to_string(&MetricsLine::Step {
            epoch: 1,
            step: 1,
            loss: f64::NAN,
            lr: 0.1,
            images_per_s: 1.0,
        })
        .unwrap();
        assert!(line.contains("\"loss\":null"), "{line}");
        let back: MetricsLine = serde_json::from_str(&line).unwrap();
        let MetricsLine::Step { loss, .. } = back else {
            panic!("{back:?}")
        };
        assert!(loss.is_nan());
    }

    #[test]
    fn a_config_from_an_earlier_version_still_reads() {
        // The shape main wrote at 07ee6f7, trimmed to what a run of that time had.
        let old = r#"{
          "config": {"model": "small-cnn", "weights": null, "epochs": 2, "batch": 8, "lr": 0.005,
                     "img_size": 32, "freeze": false, "loss": "ce", "balance": "none",
                     "optimizer": "adamw", "weight_decay": 0.01, "head_lr": null,
                     "warmup_epochs": 1.0, "schedule": "cosine", "step_epochs": 0, "accumulate": 1,
                     "monitor": "macro-f1", "patience": 0, "val_frac": 0.2, "given_split": null,
                     "seed": 0, "device": "cpu", "cache_gb": null},
          "img_size": 32,
          "dataset": {"root": "/data/x", "source": {"ImageFolder": {"root": "/data/x"}},
                      "images": 48, "fingerprint": "abc"},
          "classes": ["a", "b"],
          "split": {"train": 38, "val": ["a/1.png"]},
          "versions": {"loupe": "0.1.0", "libtorch": "2.11.0", "tch": "0.24.0"}
        }"#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG), old).unwrap();
        let rc = RunConfig::read(dir.path()).unwrap();
        assert_eq!(rc.classes, ["a", "b"]);
        assert_eq!(rc.config.epochs, 2);
        assert_eq!(rc.split.val, ["a/1.png"]);

        std::fs::write(dir.path().join(CONFIG), "{\"config\": 3}").unwrap();
        let err = RunConfig::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("damaged, or from a Loupe too old"), "{err}");
    }
}
