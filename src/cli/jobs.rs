//! The commands that run a network: `train`, `resume`, `eval`, `predict`, `issues`, `device`.
//! Each starts an engine process (`loupe-engine`) with one job and prints what it reports; the
//! output is the same as when the engine ran inside `loupe`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use crate::dataset::{self, Source};
use crate::quality::confident::{Method, RankBy};
use crate::quality::health::Neighbours;
use crate::quality::issues::{self, Findings, Why};
use crate::train::backend::Backend;
use crate::train::client::Engine;
use crate::train::config::{DeviceChoice, ModelKind, OofConfig, TrainConfig};
use crate::train::predictions::{self, OutputFormat};
use crate::train::protocol::{Event, Job, JobResult};
use crate::train::record::RunConfig;
use crate::util::path_str;

/// `loupe train` and `loupe resume`: a run with its progress, epochs and end, here or on a
/// cluster.
pub(super) fn train(backend: &Backend, job: Job, epochs: usize) -> anyhow::Result<()> {
    let h = backend.start(&Engine::locate(), &job, None);
    let mut printer = RunPrinter::new(String::new(), epochs);
    let interrupted = interrupted();
    let mut asked = false;
    loop {
        if interrupted.load(Ordering::Relaxed) && !asked {
            h.cancel();
            asked = true;
        }
        let event = match h.rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(e) => e,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Event::Failed { message } = event {
            anyhow::bail!("training failed: {message}")
        }
        printer.print(&event);
    }
    // A script's next step (predict, eval) should not take a stopped run for a finished one.
    anyhow::ensure!(
        !asked,
        "interrupted: the run stopped with its last checkpoint (`loupe resume` goes on)"
    );
    Ok(())
}

/// Set on the first Ctrl+C, which stops the runs cleanly (within a batch, with their
/// checkpoints; on a cluster, their jobs); a second Ctrl+C ends `loupe` at once.
pub(super) fn interrupted() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        use signal_hook::consts::SIGINT;
        let _ = signal_hook::flag::register_conditional_shutdown(SIGINT, 130, flag.clone());
        let _ = signal_hook::flag::register(SIGINT, flag.clone());
    }
    flag
}

/// Prints one run's events as `loupe train` shows them; `prefix` tells runs apart when several
/// go at once (`fold 2/5: `).
pub(super) struct RunPrinter {
    prefix: String,
    epochs: usize,
    tty: bool,
    started: std::time::Instant,
    last_acc: Option<f64>,
    first_epoch: Option<usize>,
}

impl RunPrinter {
    pub(super) fn new(prefix: String, epochs: usize) -> RunPrinter {
        RunPrinter {
            prefix,
            epochs,
            tty: std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
            last_acc: None,
            first_epoch: None,
        }
    }

    /// Ends a line the step counter was drawing on.
    fn line(&self) {
        if self.tty {
            eprint!("\r");
        }
    }

    pub(super) fn print(&mut self, event: &Event) {
        let (p, epochs, tty) = (&self.prefix, self.epochs, self.tty);
        match event {
            Event::Started {
                run_dir,
                device,
                train,
                val,
                skipped,
                classes,
            } => {
                self.line();
                println!(
                    "{p}training on {device}: {train} training / {val} validation images, {} \
                     classes; run folder {}",
                    classes.len(),
                    run_dir.display()
                );
                if *skipped > 0 {
                    println!("{p}note: {skipped} image(s) could not be decoded and were skipped");
                }
            }
            Event::Progress { what, done, total } => {
                progress(tty, &format!("{p}{what}"), *done, *total)
            }
            Event::Step {
                epoch,
                step,
                steps,
                loss,
                images_per_s,
                ..
            } if tty => {
                // Counted from the first epoch of this process: a resumed run starts midway.
                let first = *self.first_epoch.get_or_insert(*epoch);
                let done = ((epoch - first) * steps + step) as f64
                    / ((epochs + 1).saturating_sub(first) * steps).max(1) as f64;
                let eta = self.started.elapsed().as_secs_f64() * (1.0 - done) / done.max(1e-9);
                let acc = self
                    .last_acc
                    .map_or(String::new(), |a: f64| format!("  val acc {a:.3}"));
                eprint!(
                    "\r{p}epoch {epoch}/{epochs}  step {step}/{steps}  loss {loss:.4}{acc}  \
                     {images_per_s:.0} img/s  ETA {}   ",
                    crate::util::clock(eta)
                );
            }
            Event::Epoch { metrics: m } => {
                self.last_acc = Some(m.accuracy);
                self.line();
                // A composite label's columns, each with its own macro-F1 (`gender 0.981`).
                let columns: String = m
                    .columns
                    .iter()
                    .map(|c| format!("  {} {:.3}", c.name, c.report.macro_f1))
                    .collect();
                println!(
                    "{p}epoch {}/{epochs}  train loss {:.4}  val loss {:.4}  accuracy {:.3}  \
                     macro-F1 {:.3}{columns}  ({:.1} s)",
                    m.epoch, m.train_loss, m.val_loss, m.accuracy, m.macro_f1, m.seconds
                );
            }
            Event::Note { text } => {
                self.line();
                println!("{p}note: {text}");
            }
            Event::Finished {
                run_dir,
                best,
                monitor,
                cancelled,
            } => {
                self.line();
                let best = best.map_or("none (no epoch finished)".into(), |b| format!("{b:.3}"));
                println!(
                    "{p}{} best {} {best}; run folder:",
                    if *cancelled { "cancelled;" } else { "done;" },
                    monitor.name()
                );
                println!("{}", run_dir.display());
            }
            Event::Failed { message } => {
                self.line();
                println!("{p}failed: {message}");
            }
            _ => {}
        }
    }
}

/// The config `loupe train` runs with: the options, the default weights when installed.
pub(super) fn train_job(
    source: Source,
    mut config: TrainConfig,
    runs_dir: PathBuf,
) -> anyhow::Result<Job> {
    if config.weights.is_none() {
        config.weights = crate::train::config::default_weights(config.model);
        if config.weights.is_none() && config.model == ModelKind::EfficientnetLite0 {
            eprintln!(
                "note: no EfficientNet-Lite0 ImageNet weights found (run `make test` or \
                 scripts/fetch_weights.py, or pass --weights); training from scratch"
            );
        }
    }
    Ok(Job::Train {
        dataset: source,
        config,
        runs_dir,
        name: None,
    })
}

/// `loupe run-job JSON`: a job as a cluster runs it, after checking that this machine sees its
/// paths (a cluster without the shared storage fails here, in words).
pub(super) fn run_job(json: &str) -> anyhow::Result<()> {
    let job: Job = serde_json::from_str(json).map_err(|e| {
        anyhow::anyhow!(
            "not a job this Loupe can read ({e}): is the cluster's Loupe the same version?"
        )
    })?;
    crate::train::ray::check_paths(&job)?;
    let epochs = match &job {
        Job::Train { config, .. } => config.epochs,
        Job::Resume { run, epochs } => epochs.unwrap_or(RunConfig::read(run)?.config.epochs),
        _ => anyhow::bail!("run-job runs training jobs only"),
    };
    train(&Backend::Local, job, epochs)
}

/// `loupe resume RUN [--epochs N]`.
pub(super) fn resume(backend: &Backend, run: PathBuf, epochs: Option<usize>) -> anyhow::Result<()> {
    let total = epochs.unwrap_or(RunConfig::read(&run)?.config.epochs);
    train(backend, Job::Resume { run, epochs }, total)
}

/// A stage's progress: a line that updates in place on a terminal; elsewhere (a log, a pipe) a
/// line when the stage is done.
fn progress(tty: bool, what: &str, done: usize, total: usize) {
    if tty {
        eprint!("\r{what} {done}/{total}   ");
    } else if done == total {
        eprintln!("{what} {done}/{total}");
    }
}

/// Runs a job other than training to its result, showing its progress on a terminal.
fn result_of(job: &Job) -> anyhow::Result<JobResult> {
    let tty = std::io::stderr().is_terminal();
    let h = Engine::locate().start(job, None);
    let mut shown = false;
    for event in h.rx.iter() {
        match event {
            Event::Progress { what, done, total } => {
                progress(tty, &what, done, total);
                shown = tty;
            }
            Event::Note { text } => eprintln!("note: {text}"),
            Event::Done { result } => {
                if shown {
                    eprintln!();
                }
                return Ok(result);
            }
            Event::Failed { message } => {
                if shown {
                    eprintln!();
                }
                anyhow::bail!(message)
            }
            _ => {}
        }
    }
    anyhow::bail!("the engine ended without a result")
}

/// `loupe eval RUN [PATH]`: the run's validation images through its best checkpoint, scored
/// from the predictions file as the Evaluate tab scores it.
pub(super) fn eval(run: PathBuf, path: Option<&Path>) -> anyhow::Result<()> {
    let dataset = path.map(dataset::source_for).transpose()?;
    let JobResult::Eval {
        predictions: file,
        skipped,
    } = result_of(&Job::Eval {
        run: run.clone(),
        dataset,
    })?
    else {
        anyhow::bail!("the engine answered another job");
    };
    let label_columns = RunConfig::read(&run)?.label_columns();
    let p = predictions::read_labelled(&file, &label_columns)?;
    println!("{}: {} validation images", run.display(), p.rows.len());
    if skipped > 0 {
        println!("note: {skipped} image(s) skipped (unreadable, or a label the run does not know)");
    }
    print_report(&p, "class");
    for (k, c) in p.columns.iter().enumerate() {
        println!("\n== {} ==", c.name);
        print_report(&p.column(k), &c.name);
    }
    println!("\npredictions written to {}", file.display());
    Ok(())
}

/// Accuracy, macro-F1, the per-class table and the confusion matrix of `p`, its classes headed
/// `what`.
fn print_report(p: &predictions::Predictions, what: &str) {
    let r = p.report();
    println!("accuracy {:.4}  macro-F1 {:.4}\n", r.accuracy, r.macro_f1);
    let width = p
        .classes
        .iter()
        .chain([&what.to_string()])
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(5);
    println!("{what:width$}  precision  recall     F1  support");
    for (c, s) in p.classes.iter().zip(&r.per_class) {
        println!(
            "{c:width$}  {:>9.3}  {:>6.3}  {:>5.3}  {:>7}",
            s.precision, s.recall, s.f1, s.support
        );
    }
    println!("\nconfusion (rows: true, columns: predicted, in order)");
    for (c, row) in p.classes.iter().zip(&r.confusion) {
        println!(
            "{c:width$}  {}",
            row.iter().map(|n| format!("{n:>5}")).collect::<String>()
        );
    }
}

/// `loupe predict RUN FOLDER --out FILE [--tta]`.
pub(super) fn predict(
    runs: Vec<PathBuf>,
    folder: PathBuf,
    out: PathBuf,
    tta: bool,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let JobResult::Predict { written, failed } = result_of(&Job::Predict {
        runs,
        folder,
        out: out.clone(),
        tta,
        format,
    })?
    else {
        anyhow::bail!("the engine answered another job");
    };
    let unreadable = if failed > 0 {
        format!(" ({failed} unreadable, see the error column)")
    } else {
        String::new()
    };
    println!(
        "{written} predictions written to {}{unreadable}",
        out.display()
    );
    Ok(())
}

/// Each image's nearest neighbours in the pretrained embedding, from an engine; the embedding
/// cache (`embeddings`) is the label-issue searches'.
pub(super) fn neighbours(
    source: Source,
    embeddings: PathBuf,
    device: DeviceChoice,
) -> anyhow::Result<Neighbours> {
    let model = ModelKind::EfficientnetLite0;
    let job = Job::Neighbours {
        dataset: source,
        config: OofConfig {
            model,
            weights: crate::train::config::default_weights(model),
            device,
            ..Default::default()
        },
        embeddings,
        k: NEIGHBOURS,
    };
    match result_of(&job)? {
        JobResult::Neighbours(nb) => Ok(nb),
        JobResult::Cancelled => anyhow::bail!("cancelled"),
        _ => anyhow::bail!("the engine answered another job"),
    }
}

/// Neighbours asked for per image: enough for the outliers' nearest same-class ones in a
/// dataset of a few classes.
const NEIGHBOURS: usize = 10;

/// `loupe device`.
pub(super) fn device(json: bool) -> anyhow::Result<()> {
    let JobResult::Device(info) = result_of(&Job::Device)? else {
        anyhow::bail!("the engine answered another job");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("{info}");
    match &info.smoke_test {
        Ok(v) => println!("libtorch smoke test on {}: ok ({v})", info.default_device),
        Err(e) => anyhow::bail!("libtorch failed a 64x64 matrix product: {e}"),
    }
    Ok(())
}

/// How `loupe issues` gets its probabilities.
pub(super) enum Probabilities {
    /// Cross-validation in the engine.
    Engine(OofConfig),
    /// A CSV the user brings (a path column, one column per class).
    Given(PathBuf),
}

/// `loupe issues`: suspected label errors, most likely wrong first, and the estimated number
/// of errors per class; the search is kept under `issues_dir`, the embedding cache in
/// `embeddings`.
pub(super) fn issues(
    source: Source,
    (issues_dir, embeddings): (PathBuf, PathBuf),
    probs: Probabilities,
    (method, rank_by): (Method, RankBy),
    out: Option<&Path>,
    top: usize,
    json: bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (findings, dir) = match probs {
        Probabilities::Engine(config) => {
            let job = Job::FindIssues {
                dataset: source,
                config,
                method,
                rank_by,
                issues_dir,
                embeddings,
            };
            let JobResult::Issues {
                folder,
                skipped,
                cached,
            } = result_of(&job)?
            else {
                anyhow::bail!("the engine answered another job");
            };
            if cached > 0 {
                eprintln!("{cached} image(s) embedded by an earlier search of this folder");
            }
            if !skipped.is_empty() {
                eprintln!(
                    "note: {} image(s) could not be decoded and were not examined",
                    skipped.len()
                );
            }
            (issues::load(&folder)?, folder)
        }
        Probabilities::Given(file) => given(&source, &file, &issues_dir, method, rank_by, started)?,
    };
    if let Some(out) = out {
        let ranked = dir.join(issues::ISSUES_CSV);
        std::fs::copy(&ranked, out).map_err(|e| {
            anyhow::anyhow!("cannot copy {} to {}: {e}", ranked.display(), out.display())
        })?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "folder": dir, "findings": findings })
            )?
        );
        return Ok(());
    }
    let flagged = findings.ranking.iter().filter(|r| r.flagged).count();
    println!(
        "{} suspected label errors among {} images ({:.1} s); every image ranked, the first {} \
         of {} ({flagged} flagged by confident learning: the suggested place to stop):",
        findings.issues.len(),
        findings.examined,
        started.elapsed().as_secs_f64(),
        top.min(findings.ranking.len()),
        findings.ranking.len(),
    );
    println!(
        "{:>5}  {:<40} {:<10} {:<16} {:<16} {:>8}",
        "rank", "path", "column", "given", "suggested", "p(given)"
    );
    // How each flagged image was judged (against its group, or with its group), by path+column.
    let why: std::collections::HashMap<(&str, &str), String> = findings
        .issues
        .iter()
        .map(|i| {
            let why = match (i.why, &i.group) {
                (Why::GroupMajority, _) => "  (against its group)".to_string(),
                (Why::Model, Some(g)) => format!("  (group {g})"),
                (Why::Model, None) => String::new(),
            };
            ((i.path.as_str(), i.column.as_str()), why)
        })
        .collect();
    for (r, row) in findings.ranking.iter().enumerate().take(top) {
        if r == flagged && r > 0 {
            println!("  ---- the flagged ones end here; below, ranked on but not flagged ----");
        }
        let note = why
            .get(&(row.path.as_str(), row.column.as_str()))
            .map_or("", String::as_str);
        println!(
            "{:>5}  {:<40} {:<10} {:<16} {:<16} {:>8.3}{note}",
            r + 1,
            row.path,
            row.column,
            row.given,
            row.suggested,
            row.p_given
        );
    }
    if findings.ranking.len() > top {
        println!(
            "  ... {} more in issues.csv (--top N prints more)",
            findings.ranking.len() - top
        );
    }
    println!("\nestimated label errors per class:");
    for (class, n, errors) in &findings.per_class {
        println!("  {class:<24} {errors:>6} of {n}");
    }
    println!("ranked list and probabilities in:\n{}", dir.display());
    Ok(())
}

/// Confident learning over the user's own probabilities (no network, no engine).
fn given(
    source: &Source,
    file: &Path,
    issues_dir: &Path,
    method: Method,
    rank_by: RankBy,
    started: std::time::Instant,
) -> anyhow::Result<(Findings, PathBuf)> {
    let (ds, notes) = dataset::open_edited(source, &Default::default(), Default::default())?;
    for n in notes {
        eprintln!("note: {n}");
    }
    let layout = dataset::Layout::of(&ds);
    let (rows, problems) = issues::read_probs_csv(file, &layout)?;
    for p in problems.iter().take(5) {
        eprintln!("note: {}: {p}", file.display());
    }
    let by_path: std::collections::HashMap<&str, &Vec<Vec<f32>>> =
        rows.iter().map(|(p, v)| (p.as_str(), v)).collect();
    let mut samples = Vec::new();
    let mut probs = vec![Vec::new(); layout.columns.len()];
    for (i, s) in ds.samples.iter().enumerate() {
        if let Some(p) = by_path.get(path_str(&s.path).as_str()) {
            samples.push(i);
            for (all, part) in probs.iter_mut().zip(p.iter()) {
                all.extend_from_slice(part);
            }
        }
    }
    let unknown = rows.len() - samples.len();
    if unknown > 0 {
        eprintln!(
            "note: {unknown} row(s) of {} name no image of the dataset",
            file.display()
        );
    }
    if samples.len() < ds.samples.len() {
        eprintln!(
            "note: {} image(s) of the dataset have no probabilities and are not examined",
            ds.samples.len() - samples.len()
        );
    }
    anyhow::ensure!(!samples.is_empty(), "no image has probabilities to examine");
    let findings = issues::find(&ds, &samples, &probs, method, rank_by);
    let how = serde_json::json!({ "pred_probs": file, "seconds": started.elapsed().as_secs_f64() });
    let dir = issues::save_run(
        issues_dir,
        "given-probs",
        &ds,
        how,
        &samples,
        &probs,
        &findings,
    )?;
    Ok((findings, dir))
}
