//! Learning-rate schedules and early stopping: pure bookkeeping, no tensors, so a resumed run
//! can replay its finished epochs and arrive at the same state.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// Cosine decay to zero over the run.
    Cosine,
    /// Times 0.1 every `step_epochs` epochs.
    Step,
    /// Times 0.1 when the monitored metric has not improved for two epochs.
    Plateau,
}

/// The metric that picks the best checkpoint (and drives plateau and early stopping). Written
/// as `macro-f1`, `accuracy`, `val-loss`, or `f1:COLUMN` for the macro-F1 of one label column
/// of a composite label (`f1:gender`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Monitor {
    MacroF1,
    Accuracy,
    ValLoss,
    /// The validation macro-F1 of one label column.
    ColumnF1(String),
}

impl std::str::FromStr for Monitor {
    type Err = String;

    /// `macro-f1`, `accuracy`, `val-loss`, `f1:COLUMN`, or a bare column name.
    fn from_str(s: &str) -> Result<Monitor, String> {
        Ok(match s.trim() {
            "macro-f1" => Monitor::MacroF1,
            "accuracy" => Monitor::Accuracy,
            "val-loss" => Monitor::ValLoss,
            "" => return Err("name a metric: macro-f1, accuracy, val-loss or f1:COLUMN".into()),
            other => Monitor::ColumnF1(other.strip_prefix("f1:").unwrap_or(other).to_string()),
        })
    }
}

impl TryFrom<String> for Monitor {
    type Error = String;
    fn try_from(s: String) -> Result<Monitor, String> {
        s.parse()
    }
}

impl From<Monitor> for String {
    fn from(m: Monitor) -> String {
        match m {
            Monitor::MacroF1 => "macro-f1".into(),
            Monitor::Accuracy => "accuracy".into(),
            Monitor::ValLoss => "val-loss".into(),
            Monitor::ColumnF1(c) => format!("f1:{c}"),
        }
    }
}

impl Monitor {
    /// The metric of an epoch as a score (higher is better); NaN when the epoch does not have
    /// it (a column the run did not score).
    pub fn of(&self, m: &super::record::EpochMetrics) -> f64 {
        match self {
            Monitor::MacroF1 => m.macro_f1,
            Monitor::Accuracy => m.accuracy,
            Monitor::ValLoss => -m.val_loss,
            Monitor::ColumnF1(c) => m
                .columns
                .iter()
                .find(|col| &col.name == c)
                .map_or(f64::NAN, |col| col.report.macro_f1),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Monitor::MacroF1 => "validation macro-F1".into(),
            Monitor::Accuracy => "validation accuracy".into(),
            Monitor::ValLoss => "validation loss".into(),
            Monitor::ColumnF1(c) => format!("validation macro-F1 of {c}"),
        }
    }

    /// A score back in the metric's own units.
    pub fn value(&self, score: f64) -> f64 {
        if *self == Monitor::ValLoss {
            -score
        } else {
            score
        }
    }
}

/// An improvement smaller than this is none (as PyTorch's ReduceLROnPlateau threshold).
const MIN_DELTA: f64 = 1e-4;
const PLATEAU_PATIENCE: usize = 2;
const DECAY: f64 = 0.1;

/// Where a run stands: the learning rate for each step, the best score so far and how long ago.
#[derive(Debug, Clone)]
pub struct Policy {
    kind: ScheduleKind,
    base: f64,
    warmup: usize,
    total: usize,
    steps_per_epoch: usize,
    step_epochs: usize,
    /// Plateau: the factor applied so far.
    scale: f64,
    plateau_bad: usize,
    pub best: Option<f64>,
    /// Epochs since `best` last improved.
    pub since_best: usize,
}

impl Policy {
    /// `warmup` steps of linear warm-up, then `kind` over `epochs` of `steps_per_epoch` steps.
    /// `step_epochs` 0 means a third of the run.
    pub fn new(
        kind: ScheduleKind,
        base: f64,
        warmup: usize,
        epochs: usize,
        steps_per_epoch: usize,
        step_epochs: usize,
    ) -> Policy {
        let step_epochs = if step_epochs == 0 {
            (epochs / 3).max(1)
        } else {
            step_epochs
        };
        Policy {
            kind,
            base,
            warmup,
            total: (epochs * steps_per_epoch).max(1),
            steps_per_epoch: steps_per_epoch.max(1),
            step_epochs,
            scale: 1.0,
            plateau_bad: 0,
            best: None,
            since_best: 0,
        }
    }

    /// The learning rate of optimiser step `step` (0-based, counted over the whole run).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.base * (step + 1) as f64 / self.warmup as f64;
        }
        match self.kind {
            ScheduleKind::Cosine => {
                let t = (step - self.warmup) as f64
                    / self.total.saturating_sub(self.warmup).max(1) as f64;
                self.base * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
            }
            ScheduleKind::Step => {
                self.base * DECAY.powi((step / self.steps_per_epoch / self.step_epochs) as i32)
            }
            ScheduleKind::Plateau => self.base * self.scale,
        }
    }

    /// Records an epoch's score (higher is better); true when it is a new best.
    pub fn end_epoch(&mut self, score: f64) -> bool {
        let improved = self.best.is_none_or(|b| score > b + MIN_DELTA);
        if improved {
            self.best = Some(score);
            self.since_best = 0;
            self.plateau_bad = 0;
        } else {
            self.since_best += 1;
            self.plateau_bad += 1;
            if self.kind == ScheduleKind::Plateau && self.plateau_bad >= PLATEAU_PATIENCE {
                self.scale *= DECAY;
                self.plateau_bad = 0;
            }
        }
        improved
    }

    /// Early stopping: `patience` epochs (0 = never) without a new best.
    pub fn should_stop(&self, patience: usize) -> bool {
        patience > 0 && self.since_best >= patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::metrics::report;
    use crate::train::record::{ColumnReport, EpochMetrics};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn warmup_then_cosine() {
        // 20 steps: 2 epochs of 10, 4 of them warm-up.
        let p = Policy::new(ScheduleKind::Cosine, 1.0, 4, 2, 10, 0);
        assert!(close(p.lr(0), 0.25));
        assert!(close(p.lr(3), 1.0));
        assert!(close(p.lr(4), 1.0));
        assert!(close(p.lr(12), 0.5));
        assert!(p.lr(20).abs() < 1e-12);
    }

    #[test]
    fn step_decays_every_step_epochs() {
        let p = Policy::new(ScheduleKind::Step, 1.0, 0, 9, 10, 0);
        assert!(close(p.lr(0), 1.0) && close(p.lr(29), 1.0));
        assert!(close(p.lr(30), 0.1) && close(p.lr(59), 0.1));
        assert!((p.lr(60) - 0.01).abs() < 1e-15);
        let p = Policy::new(ScheduleKind::Step, 1.0, 0, 9, 10, 2);
        assert!(close(p.lr(19), 1.0) && close(p.lr(20), 0.1));
    }

    #[test]
    fn plateau_decays_after_two_flat_epochs_and_early_stopping_counts_them() {
        let mut p = Policy::new(ScheduleKind::Plateau, 1.0, 0, 10, 5, 0);
        assert!(p.end_epoch(0.5));
        assert!(p.end_epoch(0.6));
        assert!(!p.end_epoch(0.6), "equal is no improvement");
        assert!(close(p.lr(100), 1.0));
        assert!(!p.should_stop(3));
        assert!(!p.end_epoch(0.59));
        assert!(close(p.lr(100), 0.1), "two epochs without improvement");
        assert!(!p.end_epoch(0.55));
        assert!(p.should_stop(3) && !p.should_stop(0) && !p.should_stop(4));
        assert!(p.end_epoch(0.7));
        assert_eq!(p.since_best, 0);
        assert!(close(p.lr(100), 0.1), "a decay is not undone");
    }

    #[test]
    fn val_loss_is_monitored_lower_is_better() {
        let m = Monitor::ValLoss;
        let mut p = Policy::new(ScheduleKind::Cosine, 1.0, 0, 3, 1, 0);
        let epoch = |val_loss, f1| EpochMetrics {
            epoch: 1,
            lr: 0.1,
            train_loss: 1.0,
            val_loss,
            accuracy: f1,
            macro_f1: f1,
            report: report(&[0], &[0], 1),
            columns: vec![ColumnReport {
                name: "gender".into(),
                report: report(&[0, 1], &[0, 1], 2),
            }],
            seconds: 1.0,
        };
        assert!(p.end_epoch(m.of(&epoch(1.0, 0.0))));
        assert!(p.end_epoch(m.of(&epoch(0.5, 0.0))));
        assert!(!p.end_epoch(m.of(&epoch(0.7, 0.9))));
        assert!(close(m.value(p.best.unwrap()), 0.5));
        let gender: Monitor = "f1:gender".parse().unwrap();
        assert_eq!(gender, Monitor::ColumnF1("gender".into()));
        assert_eq!(gender.of(&epoch(1.0, 0.0)), 1.0);
        assert!(Monitor::ColumnF1("age".into())
            .of(&epoch(1.0, 0.0))
            .is_nan());
        for m in ["macro-f1", "val-loss", "accuracy", "f1:age"] {
            let parsed: Monitor = m.parse().unwrap();
            assert_eq!(String::from(parsed), m);
        }
        assert_eq!(
            serde_json::to_string(&Monitor::ColumnF1("age".into())).unwrap(),
            "\"f1:age\""
        );
    }
}
