//! The engine protocol: how `loupe` (the window or the command line) and a `loupe-engine`
//! process talk. JSON lines both ways:
//! - the engine first writes [`Event::Hello`] (its protocol and version) on stdout;
//! - the client writes one [`Job`] line on the engine's stdin, then [`Control`] lines (cancel);
//!   closing stdin means cancel too (the client is gone);
//! - the engine writes [`Event`]s on stdout, ending with exactly one of `Finished`, `Done` or
//!   `Failed`, then exits. Its stderr is for people (libtorch's warnings).
//!
//! Nothing here assumes the engine runs on this machine except the paths in a job: the run
//! folder on disk stays the source of truth, the events only report progress.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config::{OofConfig, TrainConfig};
use super::predictions::OutputFormat;
use super::record::{lossy_f64, EpochMetrics};
use super::schedule::Monitor;
use crate::dataset::Source;
use crate::quality::confident::{Method, RankBy};
use crate::quality::health::Neighbours;

/// Bumped whenever a message changes shape: an engine of another protocol is refused.
pub const PROTOCOL: u32 = 1;

/// The version both binaries are built as; they must match.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Work for one engine process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "kebab-case")]
pub enum Job {
    /// A new run on the dataset as edited (its label overlay on disk), in a new folder under
    /// `runs_dir`: `runs_dir/name` when a name is given (the client then knows where to look:
    /// folds of an experiment, jobs on a cluster), else a dated name.
    Train {
        dataset: Source,
        config: TrainConfig,
        runs_dir: PathBuf,
        #[serde(default)]
        name: Option<String>,
    },
    /// Continue the run in `run` from its last checkpoint, up to `epochs` in all (default: its
    /// own), on the validation images it had.
    Resume { run: PathBuf, epochs: Option<usize> },
    /// Predict the run's validation images with its best checkpoint, on `dataset` (default: the
    /// one it trained on); writes `eval_predictions.csv` in the run folder.
    Eval {
        run: PathBuf,
        dataset: Option<Source>,
    },
    /// Predict every image under `folder` with the runs' best checkpoints (several: the mean
    /// of their probabilities); writes `out` as `format` says.
    Predict {
        runs: Vec<PathBuf>,
        folder: PathBuf,
        out: PathBuf,
        tta: bool,
        #[serde(default)]
        format: OutputFormat,
    },
    /// Label issues of the dataset as edited: out-of-fold class probabilities for every image,
    /// then confident learning; the search is kept in a new folder under `issues_dir` (which
    /// also holds the folds' runs), the embedding cache in `embeddings`.
    FindIssues {
        dataset: Source,
        config: OofConfig,
        method: Method,
        rank_by: RankBy,
        issues_dir: PathBuf,
        embeddings: PathBuf,
    },
    /// Each image's `k` most similar images in the pretrained embedding of the dataset as
    /// edited (the embedding cache in `embeddings`, shared with label-issue searches).
    Neighbours {
        dataset: Source,
        config: OofConfig,
        embeddings: PathBuf,
        k: usize,
    },
    /// Which devices libtorch sees, with a smoke test.
    Device,
}

/// Lines the client sends after the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "control", rename_all = "kebab-case")]
pub enum Control {
    /// Stop within one batch, keeping the last checkpoint.
    Cancel,
}

/// What an engine reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Hello {
        protocol: u32,
        version: String,
    },
    /// A training run has its folder and data.
    Started {
        run_dir: PathBuf,
        device: String,
        train: usize,
        val: usize,
        skipped: usize,
        classes: Vec<String>,
    },
    /// Work before the first step or of a non-training job: decoding, embedding, folds.
    Progress {
        what: String,
        done: usize,
        total: usize,
    },
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
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
    Checkpoint {
        path: PathBuf,
        best: bool,
    },
    /// Something the user should know that does not stop the work: streaming instead of
    /// caching, a smaller batch after running out of GPU memory, early stopping, a resume.
    Note {
        text: String,
    },
    /// A training run ended. `best` is the best value of the monitored metric in its own units
    /// (none when no epoch finished).
    Finished {
        run_dir: PathBuf,
        best: Option<f64>,
        monitor: Monitor,
        cancelled: bool,
    },
    /// Any other job ended.
    Done {
        result: JobResult,
    },
    /// The job failed; `message` says what to do.
    Failed {
        message: String,
    },
}

impl Event {
    /// Whether this is the last event of a job.
    pub fn is_last(&self) -> bool {
        matches!(
            self,
            Event::Finished { .. } | Event::Done { .. } | Event::Failed { .. }
        )
    }
}

/// The result of a job other than training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JobResult {
    Device(DeviceInfo),
    Eval {
        predictions: PathBuf,
        /// Validation images that could not be read or have a label the run does not know.
        skipped: usize,
    },
    Predict {
        written: usize,
        failed: usize,
    },
    /// A label-issue search, kept in `folder` (read it with `quality::issues::load`).
    Issues {
        folder: PathBuf,
        /// (path, reason) of images that could not be decoded.
        skipped: Vec<(String, String)>,
        /// Images whose embedding came from the cache.
        cached: usize,
    },
    Neighbours(Neighbours),
    /// Cancelled before it finished: nothing was written.
    Cancelled,
}

/// What libtorch sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    /// The device training would use by default: `cuda:0` or `cpu`.
    pub default_device: String,
    /// libtorch's CPU thread count.
    pub cpu_threads: i32,
    /// A 64x64 matrix product on the default device: its sum, or the error.
    pub smoke_test: Result<f64, String>,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cuda_available {
            write!(
                f,
                "CUDA: {} device(s), cuDNN {}",
                self.cuda_devices,
                if self.cudnn_available { "yes" } else { "no" }
            )?;
        } else {
            write!(f, "CUDA: not available (training runs on the CPU)")?;
        }
        write!(
            f,
            "; default device {}; {} CPU threads",
            self.default_device, self.cpu_threads
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::metrics::report;

    /// Every message survives the trip through a JSON line unchanged, NaN losses included.
    #[test]
    fn messages_round_trip_as_json_lines() {
        let events = vec![
            Event::Hello {
                protocol: PROTOCOL,
                version: VERSION.into(),
            },
            Event::Started {
                run_dir: "/r".into(),
                device: "Cpu".into(),
                train: 8,
                val: 2,
                skipped: 1,
                classes: vec!["a".into(), "b".into()],
            },
            Event::Progress {
                what: "decoding".into(),
                done: 3,
                total: 10,
            },
            Event::Step {
                epoch: 1,
                step: 2,
                steps: 5,
                loss: 0.5,
                lr: 1e-3,
                images_per_s: 99.0,
            },
            Event::Epoch {
                metrics: Box::new(EpochMetrics {
                    epoch: 1,
                    lr: 1e-3,
                    train_loss: 0.4,
                    val_loss: 0.3,
                    accuracy: 1.0,
                    macro_f1: 1.0,
                    report: report(&[0, 1], &[0, 1], 2),
                    columns: Vec::new(),
                    seconds: 2.5,
                }),
            },
            Event::Checkpoint {
                path: "/r/best.safetensors".into(),
                best: true,
            },
            Event::Note { text: "n".into() },
            Event::Finished {
                run_dir: "/r".into(),
                best: None,
                monitor: Monitor::MacroF1,
                cancelled: true,
            },
            Event::Done {
                result: JobResult::Device(DeviceInfo {
                    cuda_available: false,
                    cuda_devices: 0,
                    cudnn_available: false,
                    default_device: "cpu".into(),
                    cpu_threads: 2,
                    smoke_test: Ok(262144.0),
                }),
            },
            Event::Done {
                result: JobResult::Issues {
                    folder: "/d/.loupe/issues/x".into(),
                    skipped: vec![("x.png".into(), "truncated".into())],
                    cached: 1,
                },
            },
            Event::Failed {
                message: "m".into(),
            },
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e, "{line}");
        }
        let step = serde_json::to_string(&Event::Step {
            epoch: 1,
            step: 1,
            steps: 1,
            loss: f64::NAN,
            lr: 0.0,
            images_per_s: 0.0,
        })
        .unwrap();
        let Event::Step { loss, .. } = serde_json::from_str(&step).unwrap() else {
            panic!()
        };
        assert!(loss.is_nan());

        let jobs = vec![
            Job::Train {
                dataset: Source::ImageFolder { root: "/d".into() },
                config: TrainConfig::default(),
                runs_dir: "/d/.loupe/runs".into(),
                name: Some("fold-1".into()),
            },
            Job::Resume {
                run: "/r".into(),
                epochs: Some(4),
            },
            Job::Eval {
                run: "/r".into(),
                dataset: None,
            },
            Job::Predict {
                runs: vec!["/r".into(), "/s".into()],
                folder: "/f".into(),
                out: "/o.csv".into(),
                tta: true,
                format: OutputFormat::Submission {
                    id_col: "id".into(),
                    class_col: "label".into(),
                    by_index: true,
                    template: Some("/t.csv".into()),
                },
            },
            Job::FindIssues {
                dataset: Source::ImageFolder { root: "/d".into() },
                config: OofConfig::default(),
                method: Method::PruneByNoiseRate,
                rank_by: RankBy::SelfConfidence,
                issues_dir: "/d/.loupe/issues".into(),
                embeddings: "/d/.loupe/embeddings".into(),
            },
            Job::Device,
        ];
        for j in jobs {
            let line = serde_json::to_string(&j).unwrap();
            assert_eq!(serde_json::from_str::<Job>(&line).unwrap(), j, "{line}");
        }
        let cancel = serde_json::to_string(&Control::Cancel).unwrap();
        assert_eq!(cancel, r#"{"control":"cancel"}"#);
    }
}
