//! Command-line interface: argument definitions and the commands that are not the GUI. Each
//! command is a thin layer over the same library calls the GUI makes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::dataset::export::{self, ExportFormat};
use crate::dataset::labels::{self, LabelStore, Step};
use crate::dataset::stats::path_str;
use crate::dataset::{self, stats, CsvSource, Dataset, Source};
use crate::quality::confident::{Method, RankBy};
use crate::quality::issues;
use crate::quality::oof::{self, OofConfig};
use crate::train::engine::{
    self, Balance, DeviceChoice, Event, LossKind, OptimizerKind, TrainConfig,
};
use crate::train::given_split::{self, GivenSplit};
use crate::train::models::ModelKind;
use crate::train::schedule::{Monitor, ScheduleKind};

#[derive(Debug, Parser)]
#[command(
    name = "loupe",
    version,
    about = "A desktop studio for image-classification datasets",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Dataset to open in the desktop app (a folder of class folders).
    #[arg(default_value = "sample_data")]
    pub path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Summarise a dataset: classes, balance, sizes, formats, unreadable files, duplicates.
    Stats {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Print one JSON object instead of the readable summary.
        #[arg(long)]
        json: bool,
    },
    /// Relabel files (one undo step): `--to CLASS FILE...`, or `--from-csv FIXES.csv` (path,label).
    Relabel {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// The class to give every FILE (created if new).
        #[arg(
            long,
            required_unless_present = "from_csv",
            conflicts_with = "from_csv"
        )]
        to: Option<String>,
        /// A CSV with columns path,label: the way a teammate shares a list of fixes.
        #[arg(long)]
        from_csv: Option<PathBuf>,
        /// Files to relabel, relative to PATH (or paths that lie inside it).
        #[arg(required_unless_present = "from_csv")]
        files: Vec<PathBuf>,
    },
    /// Mark files excluded: kept on disk, left out of training and export (one undo step).
    Exclude {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Take the files back in instead.
        #[arg(long)]
        include: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Undo the last label edit step (also one made in the app or another session).
    Undo {
        #[command(flatten)]
        dataset: DatasetArgs,
    },
    /// Redo the last undone step.
    Redo {
        #[command(flatten)]
        dataset: DatasetArgs,
    },
    /// List the label edit steps, oldest first.
    History {
        #[command(flatten)]
        dataset: DatasetArgs,
        #[arg(long)]
        json: bool,
    },
    /// Write the cleaned dataset (edits applied, excluded files left out) into a new folder.
    Export {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// A new or empty folder outside the dataset.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "imagefolder")]
        format: ExportFormat,
    },
    /// Train a classifier on the dataset (label edits applied, excluded images left out).
    Train {
        #[command(flatten)]
        dataset: DatasetArgs,
        #[command(flatten)]
        opts: TrainArgs,
        /// Validation images from a separate folder of class folders, instead of a random split.
        #[arg(long, conflicts_with = "split_column")]
        val_dir: Option<PathBuf>,
        /// CSV column that gives each row's side: val / valid / validation / test validate.
        #[arg(long, requires = "csv")]
        split_column: Option<String>,
        /// Where run folders go (default: the dataset's .loupe/runs).
        #[arg(long)]
        runs: Option<PathBuf>,
    },
    /// Continue a run from its last checkpoint, on the data and validation images it had.
    Resume {
        run: PathBuf,
        /// Train up to this many epochs in all (default: the run's own).
        #[arg(long)]
        epochs: Option<usize>,
    },
    /// Evaluate a run on its validation images: metrics, per-class table, confusion matrix;
    /// writes RUN/eval_predictions.csv.
    Eval {
        run: PathBuf,
        /// The dataset (default: the one the run was trained on).
        path: Option<PathBuf>,
    },
    /// Predict the class of every image under FOLDER with a run's best checkpoint.
    Predict {
        run: PathBuf,
        folder: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Average with the mirrored image (test-time augmentation).
        #[arg(long)]
        tta: bool,
    },
    /// Find suspected label errors: cross-validated probabilities (or yours, --pred-probs), then
    /// confident learning. Writes a ranked issues.csv (path,given,suggested,self_confidence,rank).
    Issues {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Cross-validation folds.
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[arg(long, value_enum, default_value = "efficientnet-lite0")]
        model: ModelKind,
        /// Pretrained weights (.safetensors); EfficientNet-Lite0's ImageNet weights by default.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Fine-tune the network per fold, instead of a linear head on frozen embeddings.
        #[arg(long)]
        full: bool,
        /// Epochs per fold (with --full).
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// Input resolution (default: 128 for embeddings, the model's with --full).
        #[arg(long, default_value_t = 0)]
        img_size: u32,
        #[arg(long, value_enum, default_value = "prune-by-noise-rate")]
        method: Method,
        #[arg(long, value_enum, default_value = "self-confidence")]
        rank_by: RankBy,
        /// Skip training: rank these probabilities (CSV: a path column, one column per class).
        #[arg(long)]
        pred_probs: Option<PathBuf>,
        /// Also write the ranked list here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print one JSON object instead of the readable summary.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Show which compute device libtorch sees (CUDA GPUs or CPU).
    Device {
        #[arg(long)]
        json: bool,
    },
}

/// How to open a dataset: a folder of class folders, or a CSV of labels.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// The dataset folder (ImageFolder: one folder per class), or the folder the CSV lives in.
    pub path: PathBuf,
    /// A CSV of labels; relative to PATH unless it exists as given. Image paths inside it are
    /// relative to the CSV's folder.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// CSV column holding the image path.
    #[arg(long, default_value = "path", requires = "csv")]
    pub path_col: String,
    /// CSV label column(s); several, comma-separated, combine into one class (a/b/c).
    #[arg(long, default_value = "label", value_delimiter = ',', requires = "csv")]
    pub label_col: Vec<String>,
    /// CSV column that groups samples (e.g. a person id) so splits keep them together.
    #[arg(long, requires = "csv")]
    pub group_col: Option<String>,
}

impl DatasetArgs {
    pub fn source(&self) -> anyhow::Result<Source> {
        let Some(csv) = &self.csv else {
            return Ok(dataset::source_for(&self.path)?);
        };
        let csv = if csv.is_absolute() || csv.exists() && !self.path.join(csv).exists() {
            csv.clone()
        } else {
            self.path.join(csv)
        };
        Ok(Source::Csv(CsvSource {
            csv,
            path_col: self.path_col.clone(),
            label_cols: self.label_col.clone(),
            group_col: self.group_col.clone(),
        }))
    }
}

/// The engine's options as `loupe train` takes them.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[arg(long, value_enum, default_value = "efficientnet-lite0")]
    model: ModelKind,
    /// Pretrained weights (.safetensors, torchvision/timm names); the head is replaced.
    /// EfficientNet-Lite0 uses its ImageNet weights by default when they are installed.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Optimiser step every N batches (effective batch N x --batch).
    #[arg(long, default_value_t = 1)]
    accumulate: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Learning rate of the new classifier head (default: --lr).
    #[arg(long)]
    head_lr: Option<f64>,
    #[arg(long, value_enum, default_value = "cosine")]
    schedule: ScheduleKind,
    /// Warm-up epochs before the schedule.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Training resolution (default: the model's, 224; 64 for small-cnn).
    #[arg(long, default_value_t = 0)]
    img_size: u32,
    /// Train only the classifier head (feature extraction).
    #[arg(long)]
    freeze: bool,
    #[arg(long, value_enum, default_value = "ce")]
    loss: LossKind,
    #[arg(long, value_enum, default_value = "none")]
    balance: Balance,
    #[arg(long, value_enum, default_value = "adamw")]
    optimizer: OptimizerKind,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// The metric that picks the best checkpoint.
    #[arg(long, value_enum, default_value = "macro-f1")]
    monitor: Monitor,
    /// Stop after N epochs without a better --monitor (0: never).
    #[arg(long, default_value_t = 0)]
    patience: usize,
    #[arg(long, default_value_t = 0.2)]
    val_frac: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// Memory for decoded images, in GB; a larger dataset is decoded batch by batch
    /// (default: half the available memory).
    #[arg(long)]
    cache_gb: Option<f64>,
}

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        TrainConfig {
            model: self.model,
            weights: self
                .weights
                .clone()
                .or_else(|| crate::train::models::default_weights(self.model)),
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            img_size: self.img_size,
            freeze: self.freeze,
            loss: self.loss,
            balance: self.balance,
            optimizer: self.optimizer,
            weight_decay: self.weight_decay,
            head_lr: self.head_lr,
            warmup_epochs: self.warmup,
            schedule: self.schedule,
            step_epochs: 0,
            accumulate: self.accumulate,
            monitor: self.monitor,
            patience: self.patience,
            val_frac: self.val_frac,
            given_split: None,
            seed: self.seed,
            device: self.device,
            cache_gb: self.cache_gb,
        }
    }
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Stats { dataset, json } => stats_cmd(&dataset, json),
        Command::Relabel {
            dataset,
            to,
            from_csv,
            files,
        } => {
            let (ds, mut store) = open_labeled(&dataset)?;
            let changes: Vec<(String, String)> = match (to, from_csv) {
                (Some(to), _) => resolve_files(&ds, &files)?
                    .into_iter()
                    .map(|p| (p, to.clone()))
                    .collect(),
                (None, Some(csv)) => read_fixes(&ds, &csv)?,
                (None, None) => unreachable!("clap requires --to or --from-csv"),
            };
            let note = match changes.first() {
                Some((_, to)) if changes.iter().all(|(_, t)| t == to) => {
                    format!("relabel {} file(s) to {to}", changes.len())
                }
                _ => format!("relabel {} file(s) from a list", changes.len()),
            };
            report_step(store.relabel(&changes, &note)?.as_ref(), &store)
        }
        Command::Exclude {
            dataset,
            include,
            files,
        } => {
            let (ds, mut store) = open_labeled(&dataset)?;
            let paths = resolve_files(&ds, &files)?;
            let note = format!(
                "{} {} file(s)",
                if include { "include" } else { "exclude" },
                paths.len()
            );
            report_step(
                store.set_excluded(&paths, !include, &note)?.as_ref(),
                &store,
            )
        }
        Command::Undo { dataset } => {
            let (_, mut store) = open_labeled(&dataset)?;
            let step = store.undo()?;
            println!("undid step {}: {}", step.seq, step.note);
            Ok(())
        }
        Command::Redo { dataset } => {
            let (_, mut store) = open_labeled(&dataset)?;
            let step = store.redo()?;
            println!("redid step {}: {}", step.seq, step.note);
            Ok(())
        }
        Command::History { dataset, json } => {
            let (_, store) = open_labeled(&dataset)?;
            print_history(&store, json)
        }
        Command::Export {
            dataset,
            out,
            format,
        } => {
            let (ds, store) = open_labeled(&dataset)?;
            let effective = store.effective(&ds);
            let r = export::export(&effective, &out, format)?;
            println!(
                "exported {} images in {} classes to {} ({} hardlinked, {} copied; {} excluded left out)",
                r.images,
                r.classes,
                out.display(),
                r.hardlinked,
                r.copied,
                ds.samples.len() - effective.samples.len()
            );
            Ok(())
        }
        Command::Train {
            dataset,
            opts,
            val_dir,
            split_column,
            runs,
        } => {
            let (ds, store) = open_labeled(&dataset)?;
            let mut cfg = opts.config();
            if cfg.weights.is_none() && cfg.model == ModelKind::EfficientnetLite0 {
                eprintln!("note: no EfficientNet-Lite0 ImageNet weights found (run `make test` or scripts/fetch_weights.py, or pass --weights); training from scratch");
            }
            cfg.given_split = match (val_dir, split_column) {
                (Some(dir), _) => Some(GivenSplit::Folder(dir)),
                (None, Some(column)) => Some(GivenSplit::Column(column)),
                (None, None) => None,
            };
            let (ds, val) = given_split::prepare(store.effective(&ds), cfg.given_split.as_ref())?;
            let runs_dir = runs.unwrap_or_else(|| store.dir().join("runs"));
            train_cmd(ds, cfg, engine::Start::New { runs_dir, val })
        }
        Command::Resume { run, epochs } => {
            let (mut cfg, doc) = crate::train::record::read_config(&run)?;
            if let Some(e) = epochs {
                cfg.epochs = e;
            }
            let source: Source = serde_json::from_value(doc["dataset"]["source"].clone())
                .context("the run's config does not say which dataset it trained on")?;
            let opened = dataset::open(&source, &Default::default())?;
            let ds = if labels::has_overlay(&opened) {
                LabelStore::open(&opened)?.effective(&opened)
            } else {
                opened
            };
            let (ds, _) = given_split::prepare(ds, cfg.given_split.as_ref())?;
            train_cmd(ds, cfg, engine::Start::Resume(run))
        }
        Command::Eval { run, path } => eval_cmd(&run, path.as_deref()),
        Command::Predict {
            run,
            folder,
            out,
            tta,
        } => predict_cmd(&run, &folder, &out, tta),
        Command::Issues {
            dataset,
            folds,
            model,
            weights,
            full,
            epochs,
            img_size,
            method,
            rank_by,
            pred_probs,
            out,
            json,
            seed,
            device,
        } => {
            let (ds, store) = open_labeled(&dataset)?;
            let ds = store.effective(&ds);
            let cfg = OofConfig {
                folds,
                model,
                weights: weights.or_else(|| crate::train::models::default_weights(model)),
                img_size,
                full,
                epochs,
                seed,
                device,
            };
            issues_cmd(
                &ds,
                &store.dir().join("issues"),
                &cfg,
                pred_probs.as_deref(),
                method,
                rank_by,
                out.as_deref(),
                json,
            )
        }
        Command::Device { json } => {
            let info = crate::train::device::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("{info}");
                let v = crate::train::device::smoke_test()
                    .context("libtorch failed a 64x64 matrix product")?;
                println!("libtorch smoke test on {}: ok ({v})", info.default_device);
            }
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct StatsReport<'a> {
    root: String,
    label_columns: &'a [String],
    #[serde(flatten)]
    stats: &'a stats::Stats,
}

/// Opens the dataset and its label overlay, telling the user (on stderr) about anything the
/// overlay had to recover from or where it lives.
fn open_labeled(args: &DatasetArgs) -> anyhow::Result<(Dataset, LabelStore)> {
    let ds = dataset::open(&args.source()?, &Default::default())?;
    let store = LabelStore::open(&ds)?;
    for w in &store.warnings {
        eprintln!("note: {w}");
    }
    Ok((ds, store))
}

/// Turns FILE arguments into dataset-relative paths: as given relative to the dataset root, or
/// a path (absolute or from the current folder) that lies inside it.
fn resolve_files(ds: &Dataset, files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let root = ds.root.canonicalize().unwrap_or_else(|_| ds.root.clone());
    Ok(files
        .iter()
        .map(|f| {
            let given: PathBuf = f
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            let inside = || {
                f.canonicalize()
                    .ok()
                    .and_then(|abs| abs.strip_prefix(&root).ok().map(Path::to_path_buf))
            };
            let rel = if f.is_relative() && ds.root.join(f).exists() {
                given
            } else {
                inside().unwrap_or(given)
            };
            path_str(&rel)
        })
        .collect())
}

/// A fixes CSV: columns `path,label` (header required), paths relative to the dataset root.
fn read_fixes(ds: &Dataset, csv_path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut r = csv::Reader::from_path(csv_path)
        .with_context(|| format!("cannot read {}", csv_path.display()))?;
    let headers = r.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| {
                format!(
                    "{} needs the columns path,label; it has: {}",
                    csv_path.display(),
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
    };
    let (pi, li) = (col("path")?, col("label")?);
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{} line {}", csv_path.display(), i + 2))?;
        files.push(PathBuf::from(rec.get(pi).unwrap_or("").trim()));
        labels.push(rec.get(li).unwrap_or("").trim().to_string());
    }
    Ok(resolve_files(ds, &files)?.into_iter().zip(labels).collect())
}

fn report_step(step: Option<&Step>, store: &LabelStore) -> anyhow::Result<()> {
    let Some(step) = step else {
        println!("nothing changed");
        return Ok(());
    };
    for c in &step.new_classes {
        println!("new class: {c}");
    }
    for e in &step.edits {
        match e {
            dataset::journal::Edit::Label { path, from, to } => println!("{path}: {from} -> {to}"),
            dataset::journal::Edit::Excluded { path, to, .. } => {
                println!("{path}: {}", if *to { "excluded" } else { "included" })
            }
            dataset::journal::Edit::Unsure { path, to, .. } => {
                println!("{path}: {}", if *to { "unsure" } else { "sure" })
            }
            dataset::journal::Edit::Checked { path, to, .. } => println!(
                "{path}: {}",
                if *to { "checked, kept" } else { "unchecked" }
            ),
        }
    }
    println!(
        "step {}: {} (saved in {})",
        step.seq,
        step.note,
        store.dir().display()
    );
    Ok(())
}

fn print_history(store: &LabelStore, json: bool) -> anyhow::Result<()> {
    if json {
        #[derive(Serialize)]
        struct H<'a> {
            seq: u64,
            time: u64,
            note: &'a str,
            edits: usize,
            undone: bool,
        }
        let h: Vec<H> = store
            .history()
            .map(|s| H {
                seq: s.seq,
                time: s.time,
                note: &s.note,
                edits: s.edits.len(),
                undone: s.undone,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(());
    }
    let mut any = false;
    for s in store.history() {
        any = true;
        println!(
            "{:>4}  {}  {}  ({} edit{}){}",
            s.seq,
            utc(s.time),
            s.note,
            s.edits.len(),
            if s.edits.len() == 1 { "" } else { "s" },
            if s.undone { "  [undone]" } else { "" }
        );
    }
    if !any {
        println!("no label edits yet");
    }
    Ok(())
}

fn train_cmd(ds: Dataset, cfg: TrainConfig, start: engine::Start) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let epochs = cfg.epochs;
    let h = engine::spawn(ds, cfg, start);
    let started = std::time::Instant::now();
    let mut last_acc = None;
    let mut first_epoch = None;
    for event in h.rx.iter() {
        match event {
            Event::Started {
                run_dir,
                device,
                train,
                val,
                skipped,
                classes,
            } => {
                println!("training on {device}: {train} training / {val} validation images, {} classes; run folder {}", classes.len(), run_dir.display());
                if skipped > 0 {
                    println!("note: {skipped} image(s) could not be decoded and were skipped");
                }
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
                let first = *first_epoch.get_or_insert(epoch);
                let done = ((epoch - first) * steps + step) as f64
                    / ((epochs + 1 - first) * steps).max(1) as f64;
                let eta = started.elapsed().as_secs_f64() * (1.0 - done) / done.max(1e-9);
                let acc = last_acc.map_or(String::new(), |a: f64| format!("  val acc {a:.3}"));
                eprint!("\repoch {epoch}/{epochs}  step {step}/{steps}  loss {loss:.4}{acc}  {images_per_s:.0} img/s  ETA {}   ", duration(eta));
            }
            Event::Epoch(m) => {
                last_acc = Some(m.accuracy);
                if tty {
                    eprint!("\r");
                }
                println!(
                    "epoch {}/{epochs}  train loss {:.4}  val loss {:.4}  accuracy {:.3}  macro-F1 {:.3}  ({:.1} s)",
                    m.epoch, m.train_loss, m.val_loss, m.accuracy, m.macro_f1, m.seconds
                );
            }
            Event::Note(note) => {
                if tty {
                    eprint!("\r");
                }
                println!("note: {note}");
            }
            Event::Finished {
                run_dir,
                best,
                monitor,
                cancelled,
            } => {
                println!(
                    "{} best {} {best:.3}; run folder:",
                    if cancelled { "cancelled;" } else { "done;" },
                    monitor.name()
                );
                println!("{}", run_dir.display());
            }
            Event::Failed(msg) => anyhow::bail!("training failed: {msg}"),
            _ => {}
        }
    }
    h.join();
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn issues_cmd(
    ds: &Dataset,
    issues_dir: &Path,
    cfg: &OofConfig,
    pred_probs: Option<&Path>,
    method: Method,
    rank_by: RankBy,
    out: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (samples, probs) = match pred_probs {
        Some(file) => {
            let (rows, problems) = issues::read_probs_csv(file, &ds.classes)?;
            for p in problems.iter().take(5) {
                eprintln!("note: {}: {p}", file.display());
            }
            let by_path: std::collections::HashMap<&str, &Vec<f32>> =
                rows.iter().map(|(p, v)| (p.as_str(), v)).collect();
            let (mut samples, mut probs) = (Vec::new(), Vec::new());
            for (i, s) in ds.samples.iter().enumerate() {
                if let Some(p) = by_path.get(path_str(&s.path).as_str()) {
                    samples.push(i);
                    probs.extend_from_slice(p);
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
            (samples, probs)
        }
        None => {
            let cancel = std::sync::atomic::AtomicBool::new(false);
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let progress = |p: oof::Progress| match p {
                oof::Progress::Embedding { done, total } if tty => {
                    eprint!("\rembedding {done}/{total} images   ")
                }
                oof::Progress::Fold { fold, folds } => {
                    eprintln!("{}fold {fold}/{folds}", if tty { "\r" } else { "" })
                }
                oof::Progress::Epoch {
                    fold,
                    epoch,
                    epochs,
                } => eprintln!("fold {fold}: epoch {epoch}/{epochs}"),
                _ => {}
            };
            let oof = oof::out_of_fold(ds, cfg, issues_dir, &progress, &cancel)?
                .expect("nothing cancels the command line");
            if !oof.skipped.is_empty() {
                eprintln!(
                    "note: {} image(s) could not be decoded and were not examined",
                    oof.skipped.len()
                );
            }
            (oof.samples, oof.probs)
        }
    };
    anyhow::ensure!(!samples.is_empty(), "no image has probabilities to examine");
    let findings = issues::find(ds, &samples, &probs, method, rank_by);
    let name = if pred_probs.is_some() {
        "given-probs".to_string()
    } else {
        serde_json::to_value(cfg.model)?
            .as_str()
            .unwrap_or("model")
            .to_string()
    };
    let how = serde_json::json!({ "oof": if pred_probs.is_some() { serde_json::Value::Null } else { serde_json::to_value(cfg)? }, "pred_probs": pred_probs, "seconds": started.elapsed().as_secs_f64() });
    let dir = issues::save_run(issues_dir, &name, ds, how, &samples, &probs, &findings)?;
    if let Some(out) = out {
        issues::write_csv(out, &findings)?;
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
    println!(
        "{} suspected label errors among {} images ({:.1} s):",
        findings.issues.len(),
        findings.examined,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:>5}  {:<40} {:<16} {:<16} {:>6}",
        "rank", "path", "given", "suggested", "p(given)"
    );
    for i in findings.issues.iter().take(20) {
        println!(
            "{:>5}  {:<40} {:<16} {:<16} {:>6.3}",
            i.rank, i.path, i.given, i.suggested, i.self_confidence
        );
    }
    if findings.issues.len() > 20 {
        println!("  ... {} more in the CSV", findings.issues.len() - 20);
    }
    println!("\nestimated label errors per class:");
    for (class, n, errors) in &findings.per_class {
        println!("  {class:<24} {errors:>6} of {n}");
    }
    println!("ranked list and probabilities in:\n{}", dir.display());
    Ok(())
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn eval_cmd(run_dir: &Path, path: Option<&Path>) -> anyhow::Result<()> {
    let run = crate::train::runs::Run::open(run_dir, tch::Device::cuda_if_available())?;
    let source = match (path, &run.source) {
        (Some(p), _) => dataset::source_for(p)?,
        (None, Some(s)) => s.clone(),
        (None, None) => dataset::source_for(&run.dataset_root)?,
    };
    let opened = dataset::open(&source, &Default::default())?;
    let ds = if labels::has_overlay(&opened) {
        LabelStore::open(&opened)?.effective(&opened)
    } else {
        opened
    };
    let (ds, _) = given_split::prepare(ds, run.config.given_split.as_ref())?;
    let by_path: std::collections::HashMap<String, usize> = ds
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (path_str(&s.path), i))
        .collect();
    let picked: Vec<usize> = run
        .val_paths
        .iter()
        .filter_map(|p| by_path.get(p).copied())
        .collect();
    anyhow::ensure!(
        !picked.is_empty(),
        "none of the run's {} validation images is in {}",
        run.val_paths.len(),
        ds.root.display()
    );
    let files: Vec<PathBuf> = picked
        .iter()
        .map(|&i| ds.abs_path(&ds.samples[i].path))
        .collect();
    let probs = run.predict(&files, run.config.batch, false);
    let class_idx: std::collections::HashMap<&str, usize> = run
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let (mut truth, mut preds) = (Vec::new(), Vec::new());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "label".into(), "predicted".into()];
    header.extend(run.classes.iter().cloned());
    w.write_record(&header)?;
    let mut unknown = 0;
    for (&i, p) in picked.iter().zip(&probs) {
        let (Ok(p), Some(&t)) = (p, class_idx.get(ds.samples[i].label.as_str())) else {
            unknown += 1;
            continue;
        };
        let pred = crate::train::metrics::argmax(p);
        truth.push(t);
        preds.push(pred);
        let mut rec = vec![
            path_str(&ds.samples[i].path),
            ds.samples[i].label.clone(),
            run.classes[pred].clone(),
        ];
        rec.extend(p.iter().map(|v| format!("{v:.6}")));
        w.write_record(&rec)?;
    }
    crate::dataset::labels::write_atomic(&run.dir.join("eval_predictions.csv"), &w.into_inner()?)?;
    let r = crate::train::metrics::report(&truth, &preds, run.classes.len());
    println!("{}: {} validation images", run.dir.display(), truth.len());
    if unknown > 0 {
        println!("note: {unknown} image(s) skipped (unreadable, or a label the run does not know)");
    }
    println!("accuracy {:.4}  macro-F1 {:.4}\n", r.accuracy, r.macro_f1);
    let width = run
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    println!("{:width$}  precision  recall     F1  support", "class");
    for (c, s) in run.classes.iter().zip(&r.per_class) {
        println!(
            "{c:width$}  {:>9.3}  {:>6.3}  {:>5.3}  {:>7}",
            s.precision, s.recall, s.f1, s.support
        );
    }
    println!("\nconfusion (rows: true, columns: predicted, in class order)");
    for (c, row) in run.classes.iter().zip(&r.confusion) {
        println!(
            "{c:width$}  {}",
            row.iter().map(|n| format!("{n:>5}")).collect::<String>()
        );
    }
    println!(
        "\npredictions written to {}",
        run.dir.join("eval_predictions.csv").display()
    );
    Ok(())
}

fn predict_cmd(run_dir: &Path, folder: &Path, out: &Path, tta: bool) -> anyhow::Result<()> {
    let run = crate::train::runs::Run::open(run_dir, tch::Device::cuda_if_available())?;
    anyhow::ensure!(folder.is_dir(), "{} is not a folder", folder.display());
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(folder)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && dataset::probe::has_image_extension(e.path()))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no images found in {}", folder.display());
    let probs = run.predict(&files, run.config.batch, tta);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "predicted".into(), "confidence".into()];
    header.extend(run.classes.iter().cloned());
    header.push("error".into());
    w.write_record(&header)?;
    let mut failed = 0;
    for (f, p) in files.iter().zip(&probs) {
        let rel = path_str(f.strip_prefix(folder).unwrap_or(f));
        let mut rec = vec![rel];
        match p {
            Ok(p) => {
                let k = crate::train::metrics::argmax(p);
                let conf = p.get(k).copied().unwrap_or(0.0);
                rec.push(run.classes[k].clone());
                rec.push(format!("{conf:.6}"));
                rec.extend(p.iter().map(|v| format!("{v:.6}")));
                rec.push(String::new());
            }
            Err(e) => {
                failed += 1;
                rec.extend(std::iter::repeat_n(String::new(), run.classes.len() + 2));
                rec.push(e.clone());
            }
        }
        w.write_record(&rec)?;
    }
    crate::dataset::labels::write_atomic(out, &w.into_inner()?)?;
    println!(
        "{} predictions written to {}{}",
        files.len() - failed,
        out.display(),
        if failed > 0 {
            format!(" ({failed} unreadable, see the error column)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `YYYY-MM-DD HH:MM` UTC from Unix seconds (civil-from-days, Howard Hinnant's algorithm).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

fn stats_cmd(args: &DatasetArgs, json: bool) -> anyhow::Result<()> {
    let source = args.source()?;
    let opened = dataset::open(&source, &Default::default())?;
    // Statistics reflect the label edits; a dataset never edited gets no overlay folder from this.
    let ds = if labels::has_overlay(&opened) {
        let store = LabelStore::open(&opened)?;
        for w in &store.warnings {
            eprintln!("note: {w}");
        }
        store.effective(&opened)
    } else {
        opened
    };
    let hashes = stats::hash_samples(&ds);
    let s = stats::compute_with_hashes(&ds, Some(&hashes));
    let mut out = std::io::stdout().lock();
    if json {
        let report = StatsReport {
            root: ds.root.display().to_string(),
            label_columns: &ds.label_columns,
            stats: &s,
        };
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_summary(&mut out, &ds.root, &ds.label_columns, &s)?;
    }
    Ok(())
}

fn write_summary(
    out: &mut impl Write,
    root: &Path,
    columns: &[String],
    s: &stats::Stats,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} images in {} classes ({} unreadable, {} ignored)",
        root.display(),
        s.images,
        s.classes.len(),
        s.unreadable.len(),
        s.ignored
    )?;
    writeln!(out, "\nClasses ({}):", columns.join(" / "))?;
    let width = s
        .classes
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    write_counts(out, &s.classes, s.images, width)?;
    match s.imbalance_ratio {
        Some(r) => writeln!(
            out,
            "Imbalance: {r:.2}x (largest / smallest non-empty class)"
        )?,
        None => writeln!(out, "Imbalance: n/a")?,
    }
    let rarest: Vec<String> = s
        .rarest
        .iter()
        .map(|c| format!("{} ({})", c.name, c.count))
        .collect();
    writeln!(out, "Rarest: {}", rarest.join(", "))?;
    for col in &s.columns {
        writeln!(out, "\nColumn {}:", col.column)?;
        let w = col
            .counts
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0);
        write_counts(out, &col.counts, s.images, w)?;
    }
    if s.images > 0 {
        let z = &s.sizes;
        writeln!(out, "\nSizes:")?;
        writeln!(
            out,
            "  width   {:>7.0} .. {:<7.0} median {:.0}",
            z.width.min, z.width.max, z.width.median
        )?;
        writeln!(
            out,
            "  height  {:>7.0} .. {:<7.0} median {:.0}",
            z.height.min, z.height.max, z.height.median
        )?;
        writeln!(
            out,
            "  aspect  {:>7.2} .. {:<7.2} median {:.2}",
            z.aspect.min, z.aspect.max, z.aspect.median
        )?;
        let common: Vec<String> = z
            .common
            .iter()
            .take(5)
            .map(|c| format!("{} ({})", c.name, c.count))
            .collect();
        writeln!(out, "  most common: {}", common.join(", "))?;
        let join = |v: &[stats::Count]| {
            v.iter()
                .map(|c| format!("{} {}", c.name, c.count))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(out, "Formats: {}", join(&s.formats))?;
        writeln!(out, "Colour modes: {}", join(&s.color_modes))?;
    }
    if !s.unreadable.is_empty() {
        writeln!(out, "\nUnreadable ({}):", s.unreadable.len())?;
        for u in &s.unreadable {
            writeln!(out, "  {}: {}", u.path, u.reason)?;
        }
    }
    writeln!(
        out,
        "\nDuplicates: {} groups of identical files ({} files)",
        s.duplicates.len(),
        s.duplicates.iter().map(Vec::len).sum::<usize>()
    )?;
    for g in s.duplicates.iter().take(10) {
        writeln!(out, "  {}", g.join("  =  "))?;
    }
    writeln!(
        out,
        "Label conflicts: {} (identical files with different labels)",
        s.label_conflicts.len()
    )?;
    for c in s.label_conflicts.iter().take(10) {
        let pairs: Vec<String> = c
            .paths
            .iter()
            .zip(&c.labels)
            .map(|(p, l)| format!("{p} [{l}]"))
            .collect();
        writeln!(out, "  {}", pairs.join("  =  "))?;
    }
    Ok(())
}

fn write_counts(
    out: &mut impl Write,
    counts: &[stats::Count],
    total: usize,
    width: usize,
) -> std::io::Result<()> {
    let max = counts.iter().map(|c| c.count).max().unwrap_or(0).max(1);
    for c in counts {
        let share = 100.0 * c.count as f64 / total.max(1) as f64;
        let bar = "#".repeat((30 * c.count).div_ceil(max));
        let pad = width.saturating_sub(c.name.chars().count());
        writeln!(
            out,
            "  {}{} {:>7} {:>5.1}%  {}",
            c.name,
            " ".repeat(pad),
            c.count,
            share,
            bar
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_795_355_520), "2026-11-22 13:52 UTC");
    }
}
