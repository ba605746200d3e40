//! Label issues, the engine's side: out-of-fold predicted probabilities (every image judged by
//! a model that never saw it, from stratified, group-aware K-fold cross-validation), then
//! confident learning over them. The fast path embeds each image once with a frozen pretrained
//! backbone and fits a linear softmax head per fold on the embeddings (seconds); the full path
//! fine-tunes the network per fold with the trainer.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use loupe::dataset::{self, Dataset, Layout, Source};
use loupe::quality::confident::{Method, RankBy};
use loupe::quality::issues;
use loupe::train::config::{OofConfig, TrainConfig};
use loupe::train::protocol::{Event, JobResult};
use loupe::train::split;
use loupe::util::path_str;

use super::embed::{self, EmbedConfig};
use super::trainer::{self, Start};
use super::{device, Emit};

/// Probabilities for the samples that could be used.
pub struct Oof {
    /// Dataset sample indices, ascending.
    pub samples: Vec<usize>,
    /// Per label column (one for a single label: the classes), `samples.len() * values`
    /// floats, row-major, in the column's value order (see [`Layout`]).
    pub probs: Vec<Vec<f32>>,
    pub skipped: Vec<(usize, String)>,
    /// Images whose embedding came from the cache.
    pub cached: usize,
}

/// The `find-issues` job: the dataset as edited, its out-of-fold probabilities, confident
/// learning, and the search kept in a new folder under `issues_dir`.
pub fn find_issues(
    source: &Source,
    cfg: &OofConfig,
    method: Method,
    rank_by: RankBy,
    issues_dir: &Path,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<JobResult> {
    let started = std::time::Instant::now();
    let (ds, _) = dataset::open_edited(source, &Default::default(), Default::default())?;
    let Some(oof) = out_of_fold(&ds, cfg, issues_dir, emit, cancel)? else {
        return Ok(JobResult::Cancelled);
    };
    anyhow::ensure!(!oof.samples.is_empty(), "no image could be read");
    let findings = issues::find(&ds, &oof.samples, &oof.probs, method, rank_by);
    let how = serde_json::json!({ "oof": cfg, "seconds": started.elapsed().as_secs_f64() });
    let folder = issues::save_run(
        issues_dir,
        cfg.model.id(),
        &ds,
        how,
        &oof.samples,
        &oof.probs,
        &findings,
    )?;
    Ok(JobResult::Issues {
        folder,
        skipped: oof
            .skipped
            .iter()
            .map(|(i, why)| (path_str(&ds.samples[*i].path), why.clone()))
            .collect(),
        cached: oof.cached,
    })
}

/// Cross-validated probabilities for every sample of `ds` (the effective dataset). `work_dir`
/// holds the embedding cache and, for the full path, the per-fold runs. `None` when cancelled.
pub fn out_of_fold(
    ds: &Dataset,
    cfg: &OofConfig,
    work_dir: &Path,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<Option<Oof>> {
    let k = ds.classes.len();
    anyhow::ensure!(
        k >= 2,
        "finding label issues needs at least two classes; this dataset has {k}"
    );
    anyhow::ensure!(cfg.folds >= 2, "cross-validation needs at least 2 folds");
    if cfg.full {
        return full(ds, cfg, work_dir, emit, cancel);
    }
    let weights = cfg.weights.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "embedding needs pretrained weights for {} (--weights FILE), or use the full path \
             (--full)",
            cfg.model.title()
        )
    })?;
    let size = if cfg.img_size == 0 {
        EMBED_SIZE
    } else {
        cfg.img_size
    };
    let ecfg = EmbedConfig {
        model: cfg.model,
        weights,
        size,
        device: device::pick(cfg.device)?,
        batch: embed_batch(size),
    };
    let all: Vec<usize> = (0..ds.samples.len()).collect();
    let Some(emb) = embed::embed(
        ds,
        &all,
        &ecfg,
        Some(&work_dir.join("embeddings")),
        &|done, total| {
            emit(Event::Progress {
                what: "embedding images".into(),
                done,
                total,
            })
        },
        cancel,
    )?
    else {
        return Ok(None);
    };
    let layout = Layout::of(ds);
    let labels: Vec<usize> = emb.samples.iter().map(|&i| class_of(ds, i)).collect();
    let groups: Vec<Option<String>> = emb
        .samples
        .iter()
        .map(|&i| ds.samples[i].group.clone())
        .collect();
    let folds = split::kfold(&labels, Some(&groups), cfg.folds, cfg.seed);
    let x = Tensor::from_slice(&emb.data).view([emb.samples.len() as i64, emb.dim as i64]);
    // One head per label column, each on that column's values (the classes for one column).
    let heads: Vec<(usize, Vec<usize>)> = layout
        .columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            let values = labels.iter().map(|&j| layout.part(j, c)).collect();
            (col.values.len(), values)
        })
        .collect();
    let mut probs: Vec<Vec<f32>> = heads
        .iter()
        .map(|(k, _)| vec![0f32; emb.samples.len() * k])
        .collect();
    tch::manual_seed(cfg.seed as i64);
    for f in 0..cfg.folds {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let (train, held): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&r| folds[r] != f);
        if !held.is_empty() {
            for ((k, values), out) in heads.iter().zip(&mut probs) {
                let k = *k;
                let p = fit_predict(&x, &emb.blocks, values, &train, &held, k)?;
                for (j, &r) in held.iter().enumerate() {
                    out[r * k..(r + 1) * k].copy_from_slice(&p[j * k..(j + 1) * k]);
                }
            }
        }
        emit(Event::Progress {
            what: "cross-validation folds".into(),
            done: f + 1,
            total: cfg.folds,
        });
    }
    Ok(Some(Oof {
        samples: emb.samples,
        probs,
        skipped: emb.skipped,
        cached: emb.cached,
    }))
}

/// The index of sample `i`'s class.
fn class_of(ds: &Dataset, i: usize) -> usize {
    ds.classes
        .iter()
        .position(|c| *c == ds.samples[i].label)
        .expect("a sample's class is in the class list")
}

/// Default input resolution of the embeddings: on the planted-noise benchmark 128 px finds more
/// than 96 (F1 0.73 vs 0.70) in 1.5x the time; 224 is 3x slower again.
pub const EMBED_SIZE: u32 = 128;

/// Images per forward pass when embedding on the CPU: the largest activation of a batch (96
/// channels at half the input side, plus the row and column the strided convolution pads) stays
/// under glibc's 32 MiB mmap threshold, so its memory is reused instead of mapped and faulted in
/// afresh every batch (a third of the time went to the kernel at batch 64, 128 px; forgetting
/// the padded pixel took the planted-noise search from 25 s to 55 s).
fn embed_batch(size: u32) -> usize {
    let per_image = 96 * (size as usize / 2 + 1).pow(2) * 4;
    ((32 << 20) / per_image.max(1)).clamp(1, 64)
}

/// A softmax-regression head fit on rows `train` of `x`, and its probabilities for rows `held`.
/// Features are standardised on the training rows, and each group of `blocks` scaled by
/// 1/sqrt(its size) so that every group weighs the same whatever its width (the 1280 final
/// features would otherwise drown the mid-level ones).
fn fit_predict(
    x: &Tensor,
    blocks: &[usize],
    labels: &[usize],
    train: &[usize],
    held: &[usize],
    k: usize,
) -> anyhow::Result<Vec<f32>> {
    let idx =
        |rows: &[usize]| Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
    let xt = x.index_select(0, &idx(train));
    let mean = xt.mean_dim([0i64].as_slice(), true, Kind::Float);
    let std = xt.std_dim([0i64].as_slice(), true, true);
    // A feature (almost) constant on the training rows must not blow up on the held-out ones.
    let std = std.clamp_min(std.mean(Kind::Float).double_value(&[]) * 0.1 + 1e-6);
    let weight: Vec<f32> = blocks
        .iter()
        .flat_map(|&b| std::iter::repeat_n(1.0 / (b as f32).sqrt(), b))
        .collect();
    let scale = Tensor::from_slice(&weight).view([1, -1]) / std;
    let xt = (xt - &mean) * &scale;
    let xh = (x.index_select(0, &idx(held)) - &mean) * &scale;
    let y = Tensor::from_slice(&train.iter().map(|&r| labels[r] as i64).collect::<Vec<_>>());
    let vs = nn::VarStore::new(Device::Cpu);
    let head = nn::linear(
        vs.root(),
        xt.size()[1],
        k as i64,
        nn::LinearConfig {
            ws_init: nn::Init::Const(0.0),
            ..Default::default()
        },
    );
    let mut opt = nn::adam(0.9, 0.999, 0.0).build(&vs, HEAD_LR)?;
    // Mean cross-entropy + |W|^2 / (2 C n): the objective of scikit-learn's LogisticRegression(C).
    let l2 = 1.0 / (2.0 * HEAD_C * train.len() as f64);
    for _ in 0..HEAD_STEPS {
        let logits = xt.apply(&head);
        let loss = logits.cross_entropy_for_logits(&y)
            + head.ws.pow_tensor_scalar(2).sum(Kind::Float) * l2;
        opt.backward_step(&loss);
    }
    let p = tch::no_grad(|| xh.apply(&head).softmax(1, Kind::Float)).contiguous();
    Ok(Vec::<f32>::try_from(p.view([-1]))?)
}

/// The head's inverse regularisation strength C, full-batch Adam steps and learning rate:
/// chosen on the planted-noise benchmark (benches/label_issues.sh; C swept over 0.1..10).
const HEAD_C: f64 = 0.3;
const HEAD_STEPS: usize = 300;
const HEAD_LR: f64 = 0.01;

/// The full path: one training run per fold, each holding that fold out as its validation set;
/// the probabilities are those of each run's best checkpoint on its held-out fold.
fn full(
    ds: &Dataset,
    cfg: &OofConfig,
    work_dir: &Path,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<Option<Oof>> {
    let labels: Vec<usize> = (0..ds.samples.len()).map(|i| class_of(ds, i)).collect();
    let groups: Vec<Option<String>> = ds.samples.iter().map(|s| s.group.clone()).collect();
    let folds = split::kfold(&labels, Some(&groups), cfg.folds, cfg.seed);
    let by_path: std::collections::HashMap<String, usize> = ds
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (path_str(&s.path), i))
        .collect();
    let mut probs: Vec<Option<Vec<Vec<f32>>>> = vec![None; ds.samples.len()];
    for f in 0..cfg.folds {
        let tcfg = TrainConfig {
            model: cfg.model,
            weights: cfg.weights.clone(),
            epochs: cfg.epochs,
            img_size: cfg.img_size,
            seed: cfg.seed,
            device: cfg.device,
            ..Default::default()
        };
        let val: Vec<bool> = folds.iter().map(|&x| x == f).collect();
        let finished = std::sync::Mutex::new(None);
        let fold_emit = |e: Event| match e {
            Event::Epoch { metrics } => emit(Event::Progress {
                what: format!("fold {} of {}: epochs", f + 1, cfg.folds),
                done: metrics.epoch,
                total: cfg.epochs,
            }),
            Event::Note { .. } => emit(e),
            Event::Finished {
                run_dir, cancelled, ..
            } => *finished.lock().unwrap_or_else(|p| p.into_inner()) = Some((run_dir, cancelled)),
            _ => {}
        };
        let start = Start::New {
            runs_dir: work_dir.join("folds"),
            val: Some(val),
        };
        trainer::train(ds, &tcfg, &start, &fold_emit, cancel)
            .map_err(|e| anyhow::anyhow!("fold {} of {}: {e:#}", f + 1, cfg.folds))?;
        let ended = finished.into_inner().unwrap_or_else(|p| p.into_inner());
        let Some((run_dir, cancelled)) = ended else {
            anyhow::bail!("fold {} ended without a result", f + 1)
        };
        if cancelled {
            return Ok(None);
        }
        let preds = loupe::train::predictions::read_labelled(
            &run_dir.join(loupe::train::record::VAL_PREDICTIONS),
            &ds.label_columns,
        )?;
        anyhow::ensure!(
            preds.classes == ds.classes,
            "fold {} predicted other classes than the dataset's",
            f + 1
        );
        for p in preds.rows {
            if let Some(&i) = by_path.get(&p.path) {
                probs[i] = Some(if p.columns.is_empty() {
                    vec![p.probs]
                } else {
                    p.columns
                });
            }
        }
    }
    let mut out = Oof {
        samples: Vec::new(),
        probs: vec![Vec::new(); Layout::of(ds).columns.len()],
        skipped: Vec::new(),
        cached: 0,
    };
    for (i, p) in probs.into_iter().enumerate() {
        match p {
            Some(p) => {
                out.samples.push(i);
                for (all, part) in out.probs.iter_mut().zip(p) {
                    all.extend(part);
                }
            }
            None => out.skipped.push((i, "could not be decoded".to_string())),
        }
    }
    Ok(Some(out))
}
