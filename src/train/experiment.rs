//! A K-fold experiment's folder, one writer and one reader per file:
//! - `experiment.json` ([`Experiment`]): the dataset, the number of folds and the config every
//!   fold runs with;
//! - `fold-1` ... `fold-K`: ordinary run folders (see [`super::record`]), each validating on its
//!   fold ([`GivenSplit::Fold`]) and training on the others;
//! - `oof_predictions.csv`, once every fold has finished: the folds' validation predictions
//!   joined, so every image is predicted exactly once by a model that never trained on it (the
//!   out-of-fold, or cross-validated, score). Same layout as a run's `val_predictions.csv`, read
//!   with [`super::predictions::read_labelled`].
//!
//! Folds are ordinary runs so that they run anywhere a run runs (an engine here, a job on a
//! cluster), resume as runs resume, and open in Evaluate and `loupe predict` as runs do.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, Batch};
use super::client::{Engine, EngineHandle, Wake};
use super::config::TrainConfig;
use super::given_split::GivenSplit;
use super::predictions::{self, Predictions};
use super::protocol::{Event, Job};
use super::record::{RunConfig, VAL_PREDICTIONS};
use super::runs::RunSummary;
use super::schedule::Monitor;
use crate::dataset::Source;
use crate::util::write_atomic;

pub const EXPERIMENT: &str = "experiment.json";
pub const OOF_PREDICTIONS: &str = "oof_predictions.csv";

/// `experiment.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub dataset: Source,
    pub folds: usize,
    /// What every fold runs with; its split is the fold's.
    pub config: TrainConfig,
}

/// What a fold needs next.
#[derive(Debug, Clone, PartialEq)]
pub enum FoldNext {
    /// It finished (or stopped early): its predictions count.
    Done,
    /// It was interrupted or cancelled after an epoch: go on from its last checkpoint.
    Resume,
    /// Never started, or stopped before its first epoch (its folder, with nothing in it worth
    /// keeping, is replaced).
    Start,
}

impl Experiment {
    /// Makes a new experiment folder under `runs_dir` (`name`, or a dated name) and writes its
    /// record.
    pub fn create(
        runs_dir: &Path,
        name: Option<&str>,
        dataset: Source,
        config: TrainConfig,
        folds: usize,
    ) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(folds >= 2, "--folds needs 2 or more (1 is a single run)");
        anyhow::ensure!(
            config.given_split.is_none(),
            "folds choose the validation images themselves: drop --val-dir / --split-column"
        );
        let dir = match name {
            Some(name) => crate::util::named_dir(runs_dir, name),
            None => crate::util::new_dir(runs_dir, &format!("{folds}fold-{}", config.model.id())),
        }
        .map_err(|e| anyhow::anyhow!("cannot create the experiment folder: {e}"))?;
        let e = Experiment {
            dataset,
            folds,
            config,
        };
        let path = dir.join(EXPERIMENT);
        write_atomic(&path, &serde_json::to_vec_pretty(&e)?)
            .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))?;
        Ok(dir)
    }

    /// Reads `dir/experiment.json`.
    pub fn read(dir: &Path) -> anyhow::Result<Experiment> {
        let path = dir.join(EXPERIMENT);
        let text = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "{} is not an experiment folder ({}: {e})",
                dir.display(),
                path.display()
            )
        })?;
        serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("{} is damaged ({e})", path.display()))
    }

    pub fn is_experiment(dir: &Path) -> bool {
        dir.join(EXPERIMENT).is_file()
    }

    /// The folder name of fold `index` (from 0).
    pub fn fold_name(index: usize) -> String {
        format!("fold-{}", index + 1)
    }

    /// The config fold `index` runs with.
    pub fn fold_config(&self, index: usize) -> TrainConfig {
        TrainConfig {
            given_split: Some(GivenSplit::Fold {
                folds: self.folds,
                index,
                seed: self.config.seed,
            }),
            ..self.config.clone()
        }
    }

    /// What each fold needs next, from its folder.
    pub fn plan(&self, dir: &Path) -> Vec<FoldNext> {
        (0..self.folds)
            .map(|i| {
                let fold = dir.join(Self::fold_name(i));
                match RunSummary::read(&fold) {
                    Ok(r) if r.ended == Some(false) => FoldNext::Done,
                    Ok(r) if r.resumable() => FoldNext::Resume,
                    _ => FoldNext::Start,
                }
            })
            .collect()
    }

    /// The jobs that finish the experiment in `dir`, with their fold indices: new folds, and
    /// resumed ones. A fold folder with no finished epoch is removed to start afresh.
    pub fn jobs(&self, dir: &Path) -> anyhow::Result<Vec<(usize, Job)>> {
        let mut jobs = Vec::new();
        for (i, next) in self.plan(dir).into_iter().enumerate() {
            let fold = dir.join(Self::fold_name(i));
            match next {
                FoldNext::Done => {}
                FoldNext::Resume => jobs.push((
                    i,
                    Job::Resume {
                        run: fold,
                        epochs: None,
                    },
                )),
                FoldNext::Start => {
                    if fold.exists() {
                        std::fs::remove_dir_all(&fold).map_err(|e| {
                            anyhow::anyhow!(
                                "cannot clear {} to start it again: {e}",
                                fold.display()
                            )
                        })?;
                    }
                    jobs.push((
                        i,
                        Job::Train {
                            dataset: self.dataset.clone(),
                            config: self.fold_config(i),
                            runs_dir: dir.to_path_buf(),
                            name: Some(Self::fold_name(i)),
                        },
                    ));
                }
            }
        }
        Ok(jobs)
    }

    /// The folds' run folders that exist, in fold order.
    pub fn fold_dirs(&self, dir: &Path) -> Vec<PathBuf> {
        (0..self.folds)
            .map(|i| dir.join(Self::fold_name(i)))
            .filter(|d| RunConfig::read(d).is_ok())
            .collect()
    }

    /// The label columns of the experiment's predictions (those of its first fold).
    pub fn label_columns(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        Ok(RunConfig::read(&dir.join(Self::fold_name(0)))?.label_columns())
    }
}

/// Runs what the experiment in `dir` still needs on `backend`, passing each fold's events to
/// `on_event` (with the fold's index) as they come; stops the folds once `cancel` is set. Then
/// joins the out-of-fold predictions. The error says which folds failed or were cancelled
/// (their finished siblings are kept, and `loupe resume` runs the rest).
pub fn run(
    backend: &Backend,
    engine: &Engine,
    dir: &Path,
    cancel: &AtomicBool,
    mut on_event: impl FnMut(usize, &Event),
) -> anyhow::Result<Oof> {
    let e = Experiment::read(dir)?;
    let (folds, jobs): (Vec<usize>, Vec<Job>) = e.jobs(dir)?.into_iter().unzip();
    let batch = Batch::start(backend.clone(), engine.clone(), jobs, None);
    let (mut failed, mut cancelled) = (Vec::new(), false);
    loop {
        if cancel.load(Ordering::Relaxed) {
            batch.cancel();
        }
        match batch.rx.recv_timeout(Duration::from_millis(100)) {
            Ok((i, event)) => {
                match &event {
                    Event::Finished {
                        cancelled: true, ..
                    } => cancelled = true,
                    Event::Failed { message } => {
                        failed.push(format!("fold {}: {message}", folds[i] + 1))
                    }
                    _ => {}
                }
                on_event(folds[i], &event);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(first) = failed.first() {
        anyhow::bail!(
            "{} fold(s) failed ({first}); the finished folds are kept: `loupe resume {}` runs \
             the rest",
            failed.len(),
            dir.display()
        );
    }
    if cancelled || cancel.load(Ordering::Relaxed) {
        anyhow::bail!(
            "cancelled; the finished folds are kept and the cancelled ones resume from their \
             checkpoints: `loupe resume {}`",
            dir.display()
        );
    }
    join_oof(dir)
}

/// A new experiment, made and run on a background thread, as one stream of events for a
/// consumer of one run's (the window's live curves): the folds' events, one fold at a time in
/// view (when several run at once, the others' starts and ends show as notes), then the
/// experiment's end: `Finished` with the out-of-fold macro-F1 and the experiment folder, or
/// `Failed` with the reason. Stopping the handle stops every fold.
pub fn start_new(
    backend: Backend,
    engine: Engine,
    new: (PathBuf, Source, TrainConfig, usize),
    wake: Option<Wake>,
) -> EngineHandle {
    let (tx, rx) = std::sync::mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let handle = EngineHandle::remote(rx, Arc::new(move || c.store(true, Ordering::Relaxed)));
    let emit = move |e: Event| {
        let _ = tx.send(e);
        if let Some(w) = &wake {
            w();
        }
    };
    let (runs_dir, dataset, config, folds) = new;
    std::thread::Builder::new()
        .name("loupe-experiment".into())
        .spawn(move || {
            if let Err(message) = backend.check() {
                return emit(Event::Failed { message });
            }
            let dir = match Experiment::create(&runs_dir, None, dataset, config, folds) {
                Ok(dir) => dir,
                Err(e) => {
                    return emit(Event::Failed {
                        message: format!("{e:#}"),
                    })
                }
            };
            let mut view = FoldView::default();
            let result = run(&backend, &engine, &dir, &cancel, |i, e| {
                for out in view.pass(i, folds, e) {
                    emit(out);
                }
            });
            emit(match result {
                Ok(oof) => {
                    let r = oof.predictions.report();
                    emit(Event::Note {
                        text: format!(
                            "out of fold ({} images): accuracy {:.3}, macro-F1 {:.3}",
                            oof.predictions.rows.len(),
                            r.accuracy,
                            r.macro_f1
                        ),
                    });
                    Event::Finished {
                        run_dir: dir,
                        best: Some(r.macro_f1),
                        monitor: Monitor::MacroF1,
                        cancelled: false,
                    }
                }
                Err(_) if cancel.load(Ordering::Relaxed) => Event::Finished {
                    run_dir: dir,
                    best: None,
                    monitor: Monitor::MacroF1,
                    cancelled: true,
                },
                Err(e) => Event::Failed {
                    message: format!("{e:#}"),
                },
            });
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    handle
}

/// Which fold's events reach a one-run view: the first started and not ended; when it ends,
/// another running fold (its start repeated, so the view begins again on it).
#[derive(Default)]
struct FoldView {
    focus: Option<usize>,
    started: std::collections::BTreeMap<usize, Event>,
}

impl FoldView {
    fn pass(&mut self, fold: usize, folds: usize, e: &Event) -> Vec<Event> {
        let name = format!("fold {}/{folds}", fold + 1);
        let mut out = Vec::new();
        match e {
            Event::Started { .. } => {
                let mut started = e.clone();
                if let Event::Started { device, .. } = &mut started {
                    *device = format!("{device} · {name}");
                }
                self.started.insert(fold, started.clone());
                if self.focus.is_none() {
                    self.focus = Some(fold);
                    out.push(started);
                } else {
                    out.push(Event::Note {
                        text: format!("{name} started"),
                    });
                }
            }
            Event::Finished {
                best,
                monitor,
                cancelled,
                ..
            } => {
                self.started.remove(&fold);
                let best = best.map_or("no epoch".into(), |b| format!("{} {b:.3}", monitor.name()));
                out.push(Event::Note {
                    text: format!(
                        "{name} {}: best {best}",
                        if *cancelled { "stopped" } else { "finished" }
                    ),
                });
                out.extend(self.refocus(fold));
            }
            Event::Failed { message } => {
                self.started.remove(&fold);
                out.push(Event::Note {
                    text: format!("{name} failed: {message}"),
                });
                out.extend(self.refocus(fold));
            }
            other if self.focus == Some(fold) => out.push(other.clone()),
            Event::Note { text } => out.push(Event::Note {
                text: format!("{name}: {text}"),
            }),
            _ => {}
        }
        out
    }

    /// After `ended` ended: the next running fold in view, if `ended` was.
    fn refocus(&mut self, ended: usize) -> Option<Event> {
        if self.focus != Some(ended) {
            return None;
        }
        self.focus = self.started.keys().next().copied();
        self.focus.map(|f| self.started[&f].clone())
    }
}

/// The experiment's out-of-fold predictions: the joined file, joined now if it is not there
/// yet.
pub fn oof_predictions(dir: &Path) -> anyhow::Result<Predictions> {
    let file = dir.join(OOF_PREDICTIONS);
    if file.is_file() {
        let e = Experiment::read(dir)?;
        return predictions::read_labelled(&file, &e.label_columns(dir)?);
    }
    Ok(join_oof(dir)?.predictions)
}

/// The out-of-fold score of a finished experiment.
#[derive(Debug, Clone)]
pub struct Oof {
    pub predictions: Predictions,
    /// Set when the folds trained on different data (labels edited between folds): their
    /// predictions are still joined, but the score mixes two datasets.
    pub mixed_data: bool,
}

/// Joins the folds' validation predictions into `dir/oof_predictions.csv` and scores them.
/// Every fold must have finished; an image predicted by two folds is an error (the folds were
/// not a partition).
pub fn join_oof(dir: &Path) -> anyhow::Result<Oof> {
    let e = Experiment::read(dir)?;
    let plan = e.plan(dir);
    let missing: Vec<String> = plan
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != FoldNext::Done)
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "fold(s) {} of {} have not finished: run `loupe resume {}`",
        missing.join(", "),
        dir.display(),
        dir.display()
    );
    let mut header: Option<csv::StringRecord> = None;
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut fingerprints = std::collections::BTreeSet::new();
    for i in 0..e.folds {
        let fold = dir.join(Experiment::fold_name(i));
        fingerprints.insert(RunConfig::read(&fold)?.dataset.fingerprint);
        let file = fold.join(VAL_PREDICTIONS);
        let mut r = csv::Reader::from_path(&file)
            .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", file.display()))?;
        let h = r.headers()?.clone();
        match &header {
            None => {
                w.write_record(&h)?;
                header = Some(h);
            }
            Some(first) => anyhow::ensure!(
                *first == h,
                "{} has other classes than fold 1",
                file.display()
            ),
        }
        for rec in r.records() {
            w.write_record(&rec?)?;
        }
    }
    let out = dir.join(OOF_PREDICTIONS);
    write_atomic(&out, &w.into_inner()?)
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", out.display()))?;
    let predictions = predictions::read_labelled(&out, &e.label_columns(dir)?)?;
    let mut seen = std::collections::HashSet::new();
    if let Some(p) = predictions.rows.iter().find(|p| !seen.insert(&p.path)) {
        anyhow::bail!(
            "{} is predicted by two folds: the folds of {} overlap",
            p.path,
            dir.display()
        );
    }
    Ok(Oof {
        predictions,
        mixed_data: fingerprints.len() > 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_config_names_its_fold_and_the_experiment_seed() {
        let e = Experiment {
            dataset: Source::ImageFolder { root: "/d".into() },
            folds: 5,
            config: TrainConfig {
                seed: 9,
                ..Default::default()
            },
        };
        assert_eq!(
            e.fold_config(2).given_split,
            Some(GivenSplit::Fold {
                folds: 5,
                index: 2,
                seed: 9
            })
        );
        assert_eq!(Experiment::fold_name(0), "fold-1");
    }

    #[test]
    fn an_experiment_refuses_one_fold_and_a_given_split() {
        let dir = tempfile::tempdir().unwrap();
        let src = Source::ImageFolder { root: "/d".into() };
        let create = |cfg, folds| Experiment::create(dir.path(), None, src.clone(), cfg, folds);
        assert!(create(TrainConfig::default(), 1).is_err());
        let cfg = TrainConfig {
            given_split: Some(GivenSplit::Column("split".into())),
            ..Default::default()
        };
        assert!(create(cfg, 5).is_err());
        let made = create(TrainConfig::default(), 3).unwrap();
        let e = Experiment::read(&made).unwrap();
        assert_eq!(e.folds, 3);
        assert_eq!(e.plan(&made), vec![FoldNext::Start; 3]);
        assert!(join_oof(&made).is_err(), "no fold has finished");
        std::fs::create_dir(made.join("fold-2")).unwrap();
        let jobs = e.jobs(&made).unwrap();
        assert_eq!(jobs.len(), 3);
        assert!(
            !made.join("fold-2").exists(),
            "an empty fold folder is cleared"
        );
        assert!(matches!(&jobs[1].1, Job::Train { name: Some(n), .. } if n == "fold-2"));
    }
}
