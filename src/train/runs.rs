//! The runs of a dataset as the runs list and table show them: each run folder read once, on a
//! background thread, into a [`RunSummary`]; each K-fold experiment into an
//! [`ExperimentSummary`]; a sweep's trials as runs or experiments of their own.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use super::experiment::Experiment;
use super::record::{read_metrics, EpochMetrics, RunConfig, StepPoint, CONFIG};

/// What the runs list shows of a run folder, read from its files.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub dir: PathBuf,
    /// How lists name it: the folder's name (`sweep-folder/trial-2` inside a sweep).
    pub label: String,
    pub record: RunConfig,
    /// `config.json` as written, for people to read.
    pub config_text: String,
    pub epochs: Vec<EpochMetrics>,
    pub steps: Vec<StepPoint>,
    /// The run wrote its end: finished, stopped early or cancelled (`Some(cancelled)`); `None`
    /// while it runs, or when its process died.
    pub ended: Option<bool>,
    /// When the folder was made (seconds since the epoch).
    pub created: u64,
}

impl RunSummary {
    /// Reads a run folder: its config, epochs, steps and whether it ended.
    pub fn read(dir: &Path) -> anyhow::Result<RunSummary> {
        let record = RunConfig::read(dir)?;
        let metrics = read_metrics(dir)?;
        let created = created(dir);
        let config_text = std::fs::read_to_string(dir.join(CONFIG)).unwrap_or_default();
        Ok(RunSummary {
            dir: dir.to_path_buf(),
            label: folder_name(dir),
            record,
            config_text,
            epochs: metrics.epochs,
            steps: metrics.steps,
            ended: metrics.ended,
            created,
        })
    }

    pub fn name(&self) -> String {
        self.label.clone()
    }

    /// The best epoch by the run's monitored metric.
    pub fn best(&self) -> Option<&EpochMetrics> {
        let m = &self.record.config.monitor;
        self.epochs
            .iter()
            .max_by(|a, b| m.of(a).total_cmp(&m.of(b)))
    }

    /// Training time: the epochs' own times added up.
    pub fn seconds(&self) -> f64 {
        self.epochs.iter().map(|e| e.seconds).sum()
    }

    /// Epochs finished so far.
    pub fn done(&self) -> usize {
        self.epochs.last().map_or(0, |e| e.epoch)
    }

    /// Whether resuming can add anything: it has a checkpoint to go on from. A run cancelled
    /// before its first epoch ended has none worth resuming (start it again instead).
    pub fn resumable(&self) -> bool {
        self.done() > 0
    }

    pub fn status(&self) -> String {
        let (done, epochs) = (self.done(), self.record.config.epochs);
        match self.ended {
            Some(true) if done == 0 => "cancelled before its first epoch".into(),
            Some(true) => format!("cancelled at {done}/{epochs}"),
            Some(false) if done < epochs => format!("stopped early at {done}/{epochs}"),
            Some(false) => "finished".into(),
            None => format!("running or interrupted ({done}/{epochs})"),
        }
    }
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn created(dir: &Path) -> u64 {
    std::fs::metadata(dir)
        .and_then(|m| m.created().or_else(|_| m.modified()))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// A K-fold experiment as the runs table shows it.
#[derive(Debug, Clone)]
pub struct ExperimentSummary {
    pub dir: PathBuf,
    pub label: String,
    pub experiment: Experiment,
    /// Its folds' runs that exist, in fold order.
    pub folds: Vec<RunSummary>,
    /// Out of fold (macro-F1, accuracy), once every fold finished.
    pub oof: Option<(f64, f64)>,
    pub created: u64,
}

impl ExperimentSummary {
    pub fn read(dir: &Path) -> anyhow::Result<ExperimentSummary> {
        let experiment = Experiment::read(dir)?;
        let folds: Vec<RunSummary> = experiment
            .fold_dirs(dir)
            .iter()
            .filter_map(|d| RunSummary::read(d).ok())
            .collect();
        let finished = folds.iter().filter(|f| f.ended == Some(false)).count();
        let oof = (finished == experiment.folds)
            .then(|| super::experiment::oof_predictions(dir).ok())
            .flatten()
            .map(|p| {
                let r = p.report();
                (r.macro_f1, r.accuracy)
            });
        Ok(ExperimentSummary {
            dir: dir.to_path_buf(),
            label: folder_name(dir),
            experiment,
            folds,
            oof,
            created: created(dir),
        })
    }

    pub fn status(&self) -> String {
        let finished = self.folds.iter().filter(|f| f.ended == Some(false)).count();
        if finished == self.experiment.folds {
            "finished".into()
        } else {
            format!("{finished}/{} folds finished", self.experiment.folds)
        }
    }

    /// Training time: the folds' added up.
    pub fn seconds(&self) -> f64 {
        self.folds.iter().map(RunSummary::seconds).sum()
    }
}

/// What the runs folder holds.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub runs: Vec<RunSummary>,
    pub experiments: Vec<ExperimentSummary>,
}

/// Every run and experiment under `runs_dir` (a sweep's trials among them), newest first;
/// folders that are neither are skipped.
pub fn list_all(runs_dir: &Path) -> Listing {
    let mut out = Listing::default();
    add(runs_dir, None, &mut out);
    out.runs.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| b.label.cmp(&a.label))
    });
    out.experiments.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| b.label.cmp(&a.label))
    });
    out
}

fn add(dir: &Path, sweep: Option<&str>, out: &mut Listing) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let label = match sweep {
            Some(s) => format!("{s}/{}", folder_name(&path)),
            None => folder_name(&path),
        };
        if path.join(CONFIG).is_file() {
            if let Ok(mut r) = RunSummary::read(&path) {
                r.label = label;
                out.runs.push(r);
            }
        } else if Experiment::is_experiment(&path) {
            if let Ok(mut e) = ExperimentSummary::read(&path) {
                e.label = label;
                out.experiments.push(e);
            }
        } else if sweep.is_none() && path.join(super::sweep::SWEEP).is_file() {
            add(&path, Some(&label), out);
        }
    }
}

/// Every run under `runs_dir` (not in experiments), newest first.
pub fn list_runs(runs_dir: &Path) -> Vec<RunSummary> {
    list_all(runs_dir).runs
}

/// Where two configs differ: (field, value in `a`, value in `b`), nested fields dotted
/// (`config.lr`), fields one of them lacks shown as `–`.
pub fn config_diff(a: &serde_json::Value, b: &serde_json::Value) -> Vec<(String, String, String)> {
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten(a, String::new(), &mut fa);
    flatten(b, String::new(), &mut fb);
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            let show = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("–".into());
            (k.clone(), show(&fa), show(&fb))
        })
        .collect()
}

fn flatten(v: &serde_json::Value, prefix: String, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, key, out);
            }
        }
        // Lists (the validation paths, the classes) compare as a whole, shown by their size.
        serde_json::Value::Array(items) if items.len() > 8 => {
            let text = serde_json::to_string(items).unwrap_or_default();
            let hash = blake3::hash(text.as_bytes()).to_hex();
            out.insert(prefix, format!("{} items ({})", items.len(), &hash[..8]));
        }
        serde_json::Value::String(s) => {
            out.insert(prefix, s.clone());
        }
        other => {
            out.insert(prefix, other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Source;
    use crate::train::config::TrainConfig;
    use crate::train::metrics::report;
    use crate::train::record::{DataRecord, SplitRecord, Versions};

    fn run(epochs_done: usize, ended: Option<bool>) -> RunSummary {
        RunSummary {
            dir: "/runs/r".into(),
            label: "r".into(),
            record: RunConfig {
                config: TrainConfig {
                    epochs: 5,
                    ..Default::default()
                },
                img_size: 224,
                dataset: DataRecord {
                    root: "/d".into(),
                    source: Some(Source::ImageFolder { root: "/d".into() }),
                    images: 2,
                    fingerprint: String::new(),
                },
                classes: vec!["a".into(), "b".into()],
                split: SplitRecord {
                    train: 1,
                    val: Vec::new(),
                },
                versions: Versions::default(),
            },
            config_text: String::new(),
            epochs: (1..=epochs_done)
                .map(|epoch| EpochMetrics {
                    epoch,
                    lr: 0.1,
                    train_loss: 1.0,
                    val_loss: 1.0,
                    accuracy: 0.5,
                    macro_f1: 0.5,
                    report: report(&[0], &[0], 2),
                    columns: Vec::new(),
                    seconds: 2.5,
                })
                .collect(),
            steps: Vec::new(),
            ended,
            created: 0,
        }
    }

    #[test]
    fn a_config_diff_names_the_fields_that_differ() {
        let a = serde_json::json!({"config": {"lr": 0.001, "loss": "ce", "model": "x"}, "img_size": 96});
        let b = serde_json::json!({"config": {"lr": 0.0003, "loss": "ce", "model": "x", "flip": true}, "img_size": 96});
        assert_eq!(
            config_diff(&a, &b),
            vec![
                (
                    "config.flip".to_string(),
                    "–".to_string(),
                    "true".to_string()
                ),
                ("config.lr".into(), "0.001".into(), "0.0003".into()),
            ]
        );
        assert!(config_diff(&a, &a).is_empty());
    }

    #[test]
    fn a_run_says_where_it_stands_and_offers_resume_only_with_an_epoch_to_go_on_from() {
        let r = run(0, Some(true));
        assert_eq!(r.status(), "cancelled before its first epoch");
        assert!(!r.resumable());
        let r = run(2, Some(true));
        assert_eq!(r.status(), "cancelled at 2/5");
        assert!(r.resumable());
        assert_eq!(r.seconds(), 5.0, "the epochs' times added up");
        assert_eq!(run(3, Some(false)).status(), "stopped early at 3/5");
        assert_eq!(run(5, Some(false)).status(), "finished");
        assert_eq!(run(1, None).status(), "running or interrupted (1/5)");
    }
}
