//! The commands that run several runs: `train --folds K` (a K-fold experiment), `resume` of an
//! experiment, and `sweep`. Runs go to a [`Backend`] (this machine, one at a time; or a Ray
//! cluster, all at once) through a [`Batch`], and their lines are printed tagged with the run.

use std::path::Path;

use crate::train::backend::{Backend, Batch};
use crate::train::client::Engine;
use crate::train::config::TrainConfig;
use crate::train::experiment::{self, Experiment, FoldNext};
use crate::train::protocol::{Event, Job};
use crate::train::runs::RunSummary;
use crate::train::sweep::{self, Outcome, Sweep};

use super::jobs::RunPrinter;

/// How each job of a batch ended: `Ok(cancelled)`, or why it failed.
type Ended = Result<bool, String>;

/// Runs `jobs` (label, job, epochs) and prints their lines; returns how each ended (a job the
/// batch never started: `Err`).
fn run_batch(backend: &Backend, jobs: Vec<(String, Job, usize)>) -> Vec<Ended> {
    let mut printers: Vec<RunPrinter> = jobs
        .iter()
        .map(|(label, _, epochs)| RunPrinter::new(format!("{label}: "), *epochs))
        .collect();
    let mut ended: Vec<Ended> = vec![Err("not started".into()); jobs.len()];
    let batch = Batch::start(
        backend.clone(),
        Engine::locate(),
        jobs.into_iter().map(|(_, j, _)| j).collect(),
        None,
    );
    let interrupted = super::jobs::interrupted();
    loop {
        if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            batch.cancel();
        }
        let (i, event) = match batch.rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(e) => e,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        printers[i].print(&event);
        match event {
            Event::Finished { cancelled, .. } => ended[i] = Ok(cancelled),
            Event::Failed { message } => ended[i] = Err(message),
            _ => {}
        }
    }
    ended
}

/// `loupe train --folds K`: a new experiment, run to its end.
pub(super) fn new_experiment(backend: &Backend, job: Job, folds: usize) -> anyhow::Result<()> {
    let Job::Train {
        dataset,
        config,
        runs_dir,
        ..
    } = job
    else {
        anyhow::bail!("an experiment is made of training runs");
    };
    let dir = Experiment::create(&runs_dir, None, dataset, config, folds)?;
    println!("{folds}-fold experiment in {}", dir.display());
    run_experiment(backend, &dir)
}

/// Runs what an experiment still needs (`loupe resume EXPERIMENT` too), then prints its
/// out-of-fold score.
pub(super) fn run_experiment(backend: &Backend, dir: &Path) -> anyhow::Result<()> {
    let e = Experiment::read(dir)?;
    let plan = e.plan(dir);
    let done = plan.iter().filter(|n| **n == FoldNext::Done).count();
    if done > 0 {
        println!(
            "{done} of {} folds already finished; running the others",
            e.folds
        );
    }
    let mut printers: Vec<RunPrinter> = (0..e.folds)
        .map(|i| RunPrinter::new(format!("fold {}/{}: ", i + 1, e.folds), e.config.epochs))
        .collect();
    let interrupted = super::jobs::interrupted();
    let oof = experiment::run(backend, &Engine::locate(), dir, &interrupted, |i, event| {
        printers[i].print(event)
    })?;
    print_oof(dir, &e, &oof);
    Ok(())
}

fn print_oof(dir: &Path, e: &Experiment, oof: &experiment::Oof) {
    let r = oof.predictions.report();
    println!("each fold's best validation macro-F1:");
    for fold in e.fold_dirs(dir) {
        if let Ok(run) = RunSummary::read(&fold) {
            let f1 = run.best().map_or(f64::NAN, |b| b.macro_f1);
            println!("  {}  {f1:.3}", run.name());
        }
    }
    println!(
        "out of fold ({} images, each predicted once by the fold that did not train on it): \
         accuracy {:.3}  macro-F1 {:.3}",
        oof.predictions.rows.len(),
        r.accuracy,
        r.macro_f1
    );
    if oof.mixed_data {
        println!(
            "note: the folds trained on different versions of the data (labels edited between \
             them): the score mixes them"
        );
    }
    println!("experiment folder:");
    println!("{}", dir.display());
}

/// `loupe sweep`: a trial per combination of `grid` (or `random` of them), each a run or an
/// experiment of `folds` folds, then the table of trials.
pub(super) fn sweep(
    backend: &Backend,
    job: Job,
    grid: &[String],
    random: Option<usize>,
    seed: u64,
    folds: usize,
) -> anyhow::Result<()> {
    let Job::Train {
        dataset,
        config,
        runs_dir,
        ..
    } = job
    else {
        anyhow::bail!("a sweep is made of training runs");
    };
    let grid = grid
        .iter()
        .map(|g| sweep::parse_grid(g))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let trials = sweep::trials(&grid, random, seed);
    // Every trial's config is checked before anything starts.
    let configs: Vec<TrainConfig> = trials
        .iter()
        .map(|t| sweep::configure(&config, &t.settings))
        .collect::<anyhow::Result<_>>()?;
    let dir = crate::util::new_dir(&runs_dir, "sweep")
        .map_err(|e| anyhow::anyhow!("cannot create the sweep folder: {e}"))?;
    let record = Sweep {
        grid: grid.clone(),
        trials: trials.clone(),
        folds,
    };
    record.write(&dir)?;
    println!(
        "sweep of {} trial(s){} in {}",
        trials.len(),
        if folds > 1 {
            format!(" of {folds} folds each")
        } else {
            String::new()
        },
        dir.display()
    );
    let mut jobs = Vec::new();
    for (t, cfg) in trials.iter().zip(&configs) {
        let what: Vec<String> = t.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {}: {}", t.name, what.join(" "));
        if folds > 1 {
            let exp = Experiment::create(&dir, Some(&t.name), dataset.clone(), cfg.clone(), folds)?;
            let e = Experiment::read(&exp)?;
            for (i, job) in e.jobs(&exp)? {
                jobs.push((
                    format!("{} fold {}/{folds}", t.name, i + 1),
                    job,
                    cfg.epochs,
                ));
            }
        } else {
            let job = Job::Train {
                dataset: dataset.clone(),
                config: cfg.clone(),
                runs_dir: dir.clone(),
                name: Some(t.name.clone()),
            };
            jobs.push((t.name.clone(), job, cfg.epochs));
        }
    }
    run_batch(backend, jobs);
    let outcomes: Vec<Outcome> = trials
        .iter()
        .map(|t| Outcome {
            trial: t.clone(),
            scores: trial_scores(&dir.join(&t.name)),
        })
        .collect();
    sweep::write_results(&dir, &grid, &outcomes)?;
    print_table(&grid, &outcomes);
    println!("sweep folder (results.csv):");
    println!("{}", dir.display());
    anyhow::ensure!(
        outcomes.iter().any(|o| o.scores.is_ok()),
        "no trial finished"
    );
    Ok(())
}

/// A trial's (macro-F1, accuracy): an experiment's out of fold, a run's best epoch.
fn trial_scores(dir: &Path) -> Result<(f64, f64), String> {
    if Experiment::is_experiment(dir) {
        let oof = experiment::join_oof(dir).map_err(|e| format!("{e:#}"))?;
        let r = oof.predictions.report();
        return Ok((r.macro_f1, r.accuracy));
    }
    let run = RunSummary::read(dir).map_err(|e| format!("{e:#}"))?;
    match (run.ended, run.best()) {
        (Some(false), Some(b)) => Ok((b.macro_f1, b.accuracy)),
        _ => Err(run.status()),
    }
}

fn print_table(grid: &[(String, Vec<String>)], rows: &[Outcome]) {
    let best = rows
        .iter()
        .filter_map(|o| o.scores.as_ref().ok().map(|s| (o, s.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(o, _)| o.trial.name.clone());
    let mut header = format!("{:<10}", "trial");
    for (k, _) in grid {
        header.push_str(&format!(" {k:>12}"));
    }
    println!("{header} {:>9} {:>9}", "macro-F1", "accuracy");
    for o in rows {
        let mut line = format!("{:<10}", o.trial.name);
        for (_, v) in &o.trial.settings {
            line.push_str(&format!(" {v:>12}"));
        }
        match &o.scores {
            Ok((f1, acc)) => line.push_str(&format!(" {f1:>9.3} {acc:>9.3}")),
            Err(why) => line.push_str(&format!("  {why}")),
        }
        if best.as_deref() == Some(o.trial.name.as_str()) {
            line.push_str("  <- best");
        }
        println!("{line}");
    }
    if let Some(b) = best {
        println!("best by macro-F1: {b}");
    }
}
