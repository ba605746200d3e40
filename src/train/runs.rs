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
        let m = self.record.config.monitor;
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
