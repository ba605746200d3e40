//! Using a finished run: its best checkpoint on the run's validation images (`loupe eval`) or on
//! a folder of new images (`loupe predict`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

use loupe::dataset::{self, probe, scan::io_pool, Source};
use loupe::train::given_split;
use loupe::train::predictions::{self, Probabilities};
use loupe::train::protocol::{Event, JobResult};
use loupe::train::record::{self, RunConfig};
use loupe::util::path_str;

use super::heads::Heads;
use super::{zoo, Emit};

/// Images per forward pass when predicting.
const BATCH: usize = 32;

pub struct Run {
    pub dir: PathBuf,
    pub record: RunConfig,
    net: Box<dyn ModuleT>,
    heads: Heads,
    device: Device,
    // Owns the weights `net` uses.
    _vs: nn::VarStore,
}

impl Run {
    /// Loads `dir/config.json` and the best checkpoint (the last one when no epoch finished).
    pub fn open(dir: &Path, device: Device) -> anyhow::Result<Run> {
        let record = RunConfig::read(dir)?;
        let mut vs = nn::VarStore::new(device);
        let heads = Heads::new(record.layout(), record.config.heads, device);
        let net = zoo::build(record.config.model, &vs.root(), heads.outputs());
        let ckpt = [record::BEST, record::LAST]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
            .ok_or_else(|| anyhow::anyhow!("{} has no checkpoint yet", dir.display()))?;
        zoo::load_checkpoint(&mut vs, &ckpt)?;
        zoo::weights_channels_last(&vs);
        Ok(Run {
            dir: dir.to_path_buf(),
            record,
            net,
            heads,
            device,
            _vs: vs,
        })
    }

    /// Probabilities for each file (in order); `Err` with the reason for files that do not
    /// decode. With `tta`, each head's mean over the image and its mirror. `None` when
    /// cancelled.
    pub fn predict(
        &self,
        files: &[PathBuf],
        tta: bool,
        emit: &Emit<'_>,
        cancel: &AtomicBool,
    ) -> Option<Vec<Result<Probabilities, String>>> {
        let (mean, std) = self.record.config.model.normalization();
        let size = self.record.img_size;
        let mut out = Vec::with_capacity(files.len());
        for chunk in files.chunks(BATCH) {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            // Decode in parallel (CPU), run the network in batches on its device.
            let tensors: Vec<Result<Tensor, String>> = io_pool().install(|| {
                chunk
                    .par_iter()
                    .map(|f| {
                        probe::decode(f)
                            .map(|img| super::data::eval_tensor(&img, size, mean, std))
                            .map_err(|e| e.to_string())
                    })
                    .collect()
            });
            let ok: Vec<&Tensor> = tensors.iter().filter_map(|t| t.as_ref().ok()).collect();
            let mut probs = if ok.is_empty() {
                Vec::new().into_iter()
            } else {
                let p = tch::no_grad(|| -> anyhow::Result<Vec<Probabilities>> {
                    let x = zoo::channels_last(&Tensor::stack(&ok, 0).to_device(self.device));
                    let mut p = self.heads.softmax(&self.net.forward_t(&x, false))?;
                    if tta {
                        let mirrored = self.net.forward_t(&x.flip([3]), false);
                        p = (p + self.heads.softmax(&mirrored)?) / 2.0;
                    }
                    self.heads.probabilities(&p)
                });
                match p {
                    Ok(p) => p.into_iter().map(Ok).collect::<Vec<_>>().into_iter(),
                    Err(e) => vec![Err(e.to_string()); ok.len()].into_iter(),
                }
            };
            for t in tensors {
                out.push(match t {
                    Ok(_) => probs.next().unwrap_or_else(|| Err("no prediction".into())),
                    Err(e) => Err(e),
                });
            }
            emit(Event::Progress {
                what: "predicting".into(),
                done: out.len(),
                total: files.len(),
            });
        }
        Some(out)
    }
}

/// `loupe eval`: the run's validation images, as they are labelled now, through its best
/// checkpoint; written to `eval_predictions.csv` in the run folder.
pub fn eval(
    run_dir: &Path,
    source: Option<Source>,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<JobResult> {
    let run = Run::open(run_dir, Device::cuda_if_available())?;
    let source = source.unwrap_or_else(|| run.record.source());
    let (ds, _) = dataset::open_edited(&source, &Default::default(), Default::default())?;
    let (ds, _) = given_split::prepare(ds, run.record.config.given_split.as_ref())?;
    let by_path: HashMap<String, usize> = ds
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (path_str(&s.path), i))
        .collect();
    let picked: Vec<usize> = run
        .record
        .split
        .val
        .iter()
        .filter_map(|p| by_path.get(p).copied())
        .collect();
    anyhow::ensure!(
        !picked.is_empty(),
        "none of the run's {} validation images is in {}",
        run.record.split.val.len(),
        ds.root.display()
    );
    let files: Vec<PathBuf> = picked
        .iter()
        .map(|&i| ds.abs_path(&ds.samples[i].path))
        .collect();
    let Some(probs) = run.predict(&files, false, emit, cancel) else {
        return Ok(JobResult::Cancelled);
    };
    let classes = &run.record.classes;
    let mut rows = Vec::new();
    for (&i, p) in picked.iter().zip(probs) {
        let s = &ds.samples[i];
        if let (Ok(p), true) = (p, classes.contains(&s.label)) {
            rows.push((path_str(&s.path), s.label.clone(), p));
        }
    }
    let out = run.dir.join(record::EVAL_PREDICTIONS);
    predictions::write_labelled(&out, &run.heads.layout, &rows)?;
    Ok(JobResult::Eval {
        predictions: out,
        skipped: picked.len() - rows.len(),
    })
}

/// `loupe predict`: every image under `folder` (sorted by path).
pub fn folder(
    runs: &[PathBuf],
    folder: &Path,
    out: &Path,
    tta: bool,
    format: &predictions::OutputFormat,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<JobResult> {
    anyhow::ensure!(!runs.is_empty(), "no run to predict with");
    anyhow::ensure!(folder.is_dir(), "{} is not a folder", folder.display());
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(folder)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && probe::has_image_extension(e.path()))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no images found in {}", folder.display());
    // One run at a time in memory; an ensemble is the mean of the runs' probabilities, so
    // its runs must share their classes.
    let mut layout = None;
    let mut each: Vec<Vec<Result<Probabilities, String>>> = Vec::new();
    for dir in runs {
        let run = Run::open(dir, Device::cuda_if_available())?;
        let first = layout.get_or_insert_with(|| (runs[0].clone(), run.heads.layout.clone()));
        anyhow::ensure!(
            run.heads.layout == first.1,
            "{} and {} predict different classes ({} against {}): they cannot be averaged",
            first.0.display(),
            dir.display(),
            run.heads.layout.classes.join(", "),
            first.1.classes.join(", ")
        );
        let Some(probs) = run.predict(&files, tta, emit, cancel) else {
            return Ok(JobResult::Cancelled);
        };
        each.push(probs);
    }
    let layout = layout.expect("at least one run").1;
    let probs = (0..files.len()).map(|i| {
        let mine: Result<Vec<Probabilities>, String> =
            each.iter().map(|run| run[i].clone()).collect();
        mine.map(|all| predictions::mean(&all))
    });
    let rows: Vec<(String, Result<Probabilities, String>)> = files
        .iter()
        .zip(probs)
        .map(|(f, p)| (path_str(f.strip_prefix(folder).unwrap_or(f)), p))
        .collect();
    let failed = rows.iter().filter(|(_, p)| p.is_err()).count();
    match format {
        predictions::OutputFormat::Probs => predictions::write_folder(out, &layout, &rows)?,
        _ => predictions::write_classes(out, &layout.classes, &rows, format)?,
    }
    Ok(JobResult::Predict {
        written: files.len() - failed,
        failed,
    })
}
