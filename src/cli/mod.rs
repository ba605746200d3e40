//! Command-line interface: argument definitions and dispatch. Each command is a thin layer over
//! the library calls the window makes: `data` for the commands that read or edit data (in this
//! process), `jobs` for those that run a network (in an engine process).

mod data;
mod jobs;
mod many;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::dataset::export::ExportFormat;
use crate::dataset::{self, CsvSource, Source};
use crate::quality::confident::{Method, RankBy};
use crate::train::backend::Backend;
use crate::train::config::{
    Balance, DeviceChoice, Heads, LossKind, ModelKind, OofConfig, OptimizerKind, TrainConfig,
};
use crate::train::given_split::GivenSplit;
use crate::train::predictions::OutputFormat;
use crate::train::ray::Cluster;
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
    /// Dataset to open in the desktop app: a folder of class folders, or a CSV of labels
    /// (without one, the window starts on a page to choose one).
    pub path: Option<PathBuf>,
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
    /// What is wrong with the pictures: dark, light, blurry, low-information, greyscale (in a
    /// colour dataset), odd size or aspect, exact and near-duplicate copies (and those whose
    /// labels disagree), outliers far from their class. Pixel statistics are cached in the
    /// dataset's `.loupe/health/`, embeddings with the label-issue searches'.
    Health {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Print one JSON object instead of the readable summary.
        #[arg(long)]
        json: bool,
        /// Write every finding as path,check,score,group.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Move a check's threshold (flagged when score >= VALUE), e.g. blurry=0.9; repeatable.
        #[arg(long = "threshold", value_name = "KIND=VALUE")]
        thresholds: Vec<String>,
        /// A run folder: list the duplicate groups that straddle its train/validation split.
        #[arg(long)]
        run: Option<PathBuf>,
        /// Pixel checks and exact copies only: no embeddings, so no near-duplicates or outliers
        /// (seconds instead of minutes on a large dataset without a cached embedding).
        #[arg(long)]
        pixels_only: bool,
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
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
        /// K runs on stratified, group-aware folds, kept in one experiment folder with their
        /// joined out-of-fold predictions (1: a single run).
        #[arg(long, default_value_t = 1)]
        folds: usize,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Continue a run from its last checkpoint, on the data and validation images it had; or
    /// an experiment's unfinished folds.
    Resume {
        run: PathBuf,
        /// Train up to this many epochs in all (default: the run's own).
        #[arg(long)]
        epochs: Option<usize>,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// A run (or, with --folds, an experiment) per combination of settings, then a table of
    /// the trials with their scores: `loupe sweep DATA --grid lr=1e-4,3e-4 --grid loss=ce,focal`.
    Sweep {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// OPTION=VALUE,VALUE...: any option of `loupe train` (lr, loss, balance, img-size,
        /// model, epochs, batch, weight-decay, crop-scale, ...); repeatable.
        #[arg(long, required = true)]
        grid: Vec<String>,
        /// Run only N of the combinations, drawn at random (--seed).
        #[arg(long)]
        random: Option<usize>,
        #[command(flatten)]
        opts: TrainArgs,
        /// Where the sweep folder goes (default: the dataset's .loupe/runs).
        #[arg(long)]
        runs: Option<PathBuf>,
        /// Folds per trial (1: a single run per trial).
        #[arg(long, default_value_t = 1)]
        folds: usize,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Runs one engine job given as JSON (what a Ray job's entrypoint calls on the cluster).
    #[command(hide = true)]
    RunJob { job: String },
    /// Evaluate a run on its validation images: metrics, per-class table, confusion matrix;
    /// writes RUN/eval_predictions.csv.
    Eval {
        run: PathBuf,
        /// The dataset (default: the one the run was trained on).
        path: Option<PathBuf>,
    },
    /// Predict the class of every image under FOLDER with the best checkpoint of a run, or
    /// the mean of several runs' probabilities (an ensemble): `loupe predict RUN... FOLDER`.
    Predict {
        /// The runs, then the folder of images.
        #[arg(required = true, num_args = 2.., value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Also predict each image mirrored left-right and average (test-time augmentation).
        #[arg(long)]
        tta: bool,
        /// probs: every class's probability; labels: path,label; submission: an id column
        /// and a class column (--id-col, --class-col, --label-format, --template).
        #[arg(long, value_enum, default_value = "probs")]
        format: FormatArg,
        /// The submission's id column (with --template: the column of its ids).
        #[arg(long, default_value = "id")]
        id_col: String,
        /// The submission's class column.
        #[arg(long, default_value = "label")]
        class_col: String,
        /// The class as its name or as its index among the run's classes.
        #[arg(long, value_enum, default_value = "name")]
        label_format: LabelFormatArg,
        /// The competition's sample submission: its ids, in its order, each naming a picture
        /// by relative path, file name or file stem.
        #[arg(long)]
        template: Option<PathBuf>,
    },
    /// Find suspected label errors: cross-validated probabilities (or yours, --pred-probs), then
    /// confident learning. Ranks every image by how likely its label is wrong, the flagged ones
    /// (confident learning's estimate of the errors) first, in issues.csv
    /// (path,column,given,suggested,score,rank,flagged,p_given,p_suggested).
    Issues {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Cross-validation folds (default: 10 up to 5,000 images, 5 beyond or with --full).
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        folds: usize,
        #[arg(long, value_enum, default_value = "efficientnet-lite0")]
        model: ModelKind,
        /// Pretrained weights (.safetensors); EfficientNet-Lite0's ImageNet weights by default.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Fine-tune the network per fold, instead of a linear head on frozen embeddings; the
        /// embeddings' heads still run (when EfficientNet-Lite0's weights are installed) and
        /// the two are blended (a geometric mean weighted by how well each explains the given
        /// labels): together they rank real errors better than either.
        #[arg(long)]
        full: bool,
        /// Epochs per fold (with --full).
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// With --full: random resized crops keep at least this share of a picture's area (1:
        /// random shifts only, for small pictures such as digits).
        #[arg(long, default_value_t = TrainConfig::default().crop_scale)]
        crop_scale: f64,
        /// With --full: no random horizontal flips (for pictures whose side matters: text,
        /// digits, arrows).
        #[arg(long)]
        no_flip: bool,
        /// Input resolution (default: embeddings at 224 px up to 10,000 images, 128 beyond;
        /// the model's with --full).
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
        /// Print the first N of the ranking (past the flagged ones when N is larger).
        #[arg(long, default_value_t = 20)]
        top: usize,
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
    /// Learning rate (of the pretrained layers when fine-tuning).
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    lr: f64,
    /// Learning rate of the new classifier head (default: 10 x --lr when fine-tuning
    /// pretrained weights, --lr otherwise).
    #[arg(long)]
    head_lr: Option<f64>,
    #[arg(long, value_enum, default_value = "cosine")]
    schedule: ScheduleKind,
    /// Warm-up epochs before the schedule.
    #[arg(long, default_value_t = TrainConfig::default().warmup_epochs)]
    warmup: f64,
    /// Random resized crops keep at least this share of a picture's area (1: random shifts
    /// only, for small pictures such as digits).
    #[arg(long, default_value_t = TrainConfig::default().crop_scale)]
    crop_scale: f64,
    /// No random horizontal flips (for pictures whose side matters: text, digits, arrows).
    #[arg(long)]
    no_flip: bool,
    /// Random brightness and contrast change of up to this fraction (0: none).
    #[arg(long, default_value_t = TrainConfig::default().jitter)]
    jitter: f64,
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
    /// The metric that picks the best checkpoint: macro-f1 (of the joint classes), accuracy,
    /// val-loss, or f1:COLUMN for one label column's macro-F1 (f1:gender).
    #[arg(long, default_value = "macro-f1")]
    monitor: Monitor,
    /// With several label columns: one head per column (the joint class from their answers),
    /// or one head over the combined classes.
    #[arg(long, value_enum, default_value = "columns")]
    heads: Heads,
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
            weights: self.weights.clone(),
            heads: self.heads,
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
            crop_scale: self.crop_scale,
            flip: !self.no_flip,
            jitter: self.jitter,
            step_epochs: 0,
            accumulate: self.accumulate,
            monitor: self.monitor.clone(),
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
        Command::Stats { dataset, json } => data::stats(&dataset, json),
        Command::Health {
            dataset,
            json,
            out,
            thresholds,
            run,
            pixels_only,
            device,
        } => {
            let embeddings = (!pixels_only).then_some(device);
            data::health(
                &dataset,
                json,
                out.as_deref(),
                &thresholds,
                embeddings,
                run.as_deref(),
            )
        }
        Command::Relabel {
            dataset,
            to,
            from_csv,
            files,
        } => data::relabel(&dataset, to, from_csv, &files),
        Command::Exclude {
            dataset,
            include,
            files,
        } => data::exclude(&dataset, include, &files),
        Command::Undo { dataset } => data::undo(&dataset),
        Command::Redo { dataset } => data::redo(&dataset),
        Command::History { dataset, json } => data::history(&dataset, json),
        Command::Export {
            dataset,
            out,
            format,
        } => data::export(&dataset, &out, format),
        Command::Train {
            dataset,
            opts,
            val_dir,
            split_column,
            runs,
            folds,
            backend,
        } => {
            let backend = backend.backend()?;
            let (_, store) = data::open_labeled(&dataset)?;
            let mut cfg = opts.config();
            cfg.given_split = match (val_dir, split_column) {
                (Some(dir), _) => Some(GivenSplit::Folder(absolute(dir))),
                (None, Some(column)) => Some(GivenSplit::Column(column)),
                (None, None) => None,
            };
            let runs_dir = absolute(runs.unwrap_or_else(|| store.dir().join("runs")));
            let epochs = cfg.epochs;
            let job = jobs::train_job(dataset.source()?.absolute(), cfg, runs_dir)?;
            if folds > 1 {
                many::new_experiment(&backend, job, folds)
            } else {
                jobs::train(&backend, job, epochs)
            }
        }
        Command::Resume {
            run,
            epochs,
            backend,
        } => {
            let backend = backend.backend()?;
            let run = absolute(run);
            if crate::train::experiment::Experiment::is_experiment(&run) {
                many::run_experiment(&backend, &run)
            } else {
                jobs::resume(&backend, run, epochs)
            }
        }
        Command::Sweep {
            dataset,
            grid,
            random,
            opts,
            runs,
            folds,
            backend,
        } => {
            let backend = backend.backend()?;
            let (_, store) = data::open_labeled(&dataset)?;
            let cfg = opts.config();
            let seed = cfg.seed;
            let runs_dir = absolute(runs.unwrap_or_else(|| store.dir().join("runs")));
            let job = jobs::train_job(dataset.source()?.absolute(), cfg, runs_dir)?;
            many::sweep(&backend, job, &grid, random, seed, folds)
        }
        Command::RunJob { job } => jobs::run_job(&job),
        Command::Eval { run, path } => jobs::eval(absolute(run), path.as_deref()),
        Command::Predict {
            mut paths,
            out,
            tta,
            format,
            id_col,
            class_col,
            label_format,
            template,
        } => {
            let folder = paths.pop().expect("clap asks for two paths or more");
            let format = match format {
                FormatArg::Probs => OutputFormat::Probs,
                FormatArg::Labels => OutputFormat::Labels,
                FormatArg::Submission => OutputFormat::Submission {
                    id_col,
                    class_col,
                    by_index: label_format == LabelFormatArg::Index,
                    template: template.map(absolute),
                },
            };
            // An experiment stands for its folds: their mean is the fold ensemble.
            let mut runs = Vec::new();
            for p in paths.into_iter().map(absolute) {
                match crate::train::experiment::Experiment::read(&p) {
                    Ok(e) => runs.extend(e.fold_dirs(&p)),
                    Err(_) => runs.push(p),
                }
            }
            jobs::predict(runs, absolute(folder), absolute(out), tta, format)
        }
        Command::Issues {
            dataset,
            folds,
            model,
            weights,
            full,
            epochs,
            crop_scale,
            no_flip,
            img_size,
            method,
            rank_by,
            pred_probs,
            out,
            top,
            json,
            seed,
            device,
        } => {
            let (_, store) = data::open_labeled(&dataset)?;
            let probs = match pred_probs {
                Some(file) => jobs::Probabilities::Given(file),
                None => jobs::Probabilities::Engine(OofConfig {
                    folds,
                    model,
                    weights: weights.or_else(|| crate::train::config::default_weights(model)),
                    img_size,
                    full,
                    epochs,
                    crop_scale,
                    flip: !no_flip,
                    blend_weights: full
                        .then(|| {
                            crate::train::config::default_weights(ModelKind::EfficientnetLite0)
                        })
                        .flatten(),
                    seed,
                    device,
                }),
            };
            jobs::issues(
                dataset.source()?.absolute(),
                (
                    absolute(store.dir().join("issues")),
                    absolute(store.embeddings_dir().to_path_buf()),
                ),
                probs,
                (method, rank_by),
                out.as_deref(),
                top,
                json,
            )
        }
        Command::Device { json } => jobs::device(json),
    }
}

/// A path as the engine should get it: absolute, so it means the same whatever the engine's
/// working folder (it may one day run elsewhere, on shared storage).
fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// Where runs go: `--backend local` (this machine) or `--backend ray --ray-address URL`.
#[derive(Debug, Args)]
pub struct BackendArgs {
    /// local: engine processes on this machine, one run at a time. ray: one Ray job per run
    /// (folds and trials all at once); the dataset and runs folder must be on storage the
    /// cluster shares, at the same paths.
    #[arg(long, value_enum, default_value = "local")]
    backend: BackendArg,
    /// The Ray cluster's dashboard (Jobs API) address.
    #[arg(long, default_value = "http://127.0.0.1:8265")]
    ray_address: String,
    /// How a job starts Loupe on the cluster; {args} stands for Loupe's arguments.
    #[arg(long, default_value = "loupe {args}")]
    ray_command: String,
    /// GPUs each Ray job asks for.
    #[arg(long, default_value_t = 0.0)]
    ray_gpus: f64,
    /// CPUs each Ray job asks for.
    #[arg(long, default_value_t = 1.0)]
    ray_cpus: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Local,
    Ray,
}

impl BackendArgs {
    /// The backend; a cluster that does not answer is refused here, before anything is made.
    fn backend(&self) -> anyhow::Result<Backend> {
        let backend = match self.backend {
            BackendArg::Local => Backend::Local,
            BackendArg::Ray => Backend::Ray(Cluster {
                address: self.ray_address.clone(),
                command: self.ray_command.clone(),
                gpus: self.ray_gpus,
                cpus: self.ray_cpus,
            }),
        };
        backend.check().map_err(|e| anyhow::anyhow!(e))?;
        Ok(backend)
    }
}

/// `loupe predict --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Probs,
    Labels,
    Submission,
}

/// `loupe predict --label-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelFormatArg {
    Name,
    Index,
}
