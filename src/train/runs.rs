//! The runs of a dataset as the runs list shows them: each run folder read once, on a background
//! thread, into a [`RunSummary`].

use std::path::{Path, PathBuf};

use super::record::{read_metrics, EpochMetrics, RunConfig, StepPoint, CONFIG};

/// What the runs list shows of a run folder, read from its files.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub dir: PathBuf,
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
        let created = std::fs::metadata(dir)
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let config_text = std::fs::read_to_string(dir.join(CONFIG)).unwrap_or_default();
        Ok(RunSummary {
            dir: dir.to_path_buf(),
            record,
            config_text,
            epochs: metrics.epochs,
            steps: metrics.steps,
            ended: metrics.ended,
            created,
        })
    }

    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
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

/// Every run under `runs_dir`, newest first; folders that are not runs are skipped.
pub fn list_runs(runs_dir: &Path) -> Vec<RunSummary> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut runs: Vec<RunSummary> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(CONFIG).is_file())
        .filter_map(|e| RunSummary::read(&e.path()).ok())
        .collect();
    runs.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| b.name().cmp(&a.name()))
    });
    runs
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
