//! Label issues, the engine's side: out-of-fold predicted probabilities (every image judged by
//! a model that never saw it, from stratified, group-aware K-fold cross-validation), then
//! confident learning over them. The fast path embeds each image once with a frozen pretrained
//! backbone and fits a linear softmax head per fold on the embeddings (seconds); the full path
//! fine-tunes the network per fold with the trainer.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use loupe::dataset::{self, Dataset, Layout, Source};
use loupe::quality::calibration;
use loupe::quality::confident::{Method, RankBy};
use loupe::quality::issues;
use loupe::train::config::{OofConfig, TrainConfig, EMBED_SIZE, SCRATCH_LR};
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
    /// Per label column, how its probabilities were rescaled.
    pub scalings: Vec<calibration::Scaling>,
}

/// The `find-issues` job: the dataset as edited, its out-of-fold probabilities, confident
/// learning, and the search kept in a new folder under `issues_dir`; the embedding cache in
/// `embeddings`.
pub fn find_issues(
    source: &Source,
    cfg: &OofConfig,
    (method, rank_by): (Method, RankBy),
    (issues_dir, embeddings): (&Path, &Path),
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<JobResult> {
    let started = std::time::Instant::now();
    let (ds, _) = dataset::open_edited(source, &Default::default(), Default::default())?;
    let cfg = &cfg.for_issues(ds.samples.len());
    let Some(oof) = out_of_fold(&ds, cfg, (issues_dir, embeddings), emit, cancel)? else {
        return Ok(JobResult::Cancelled);
    };
    anyhow::ensure!(!oof.samples.is_empty(), "no image could be read");
    let findings = issues::find(&ds, &oof.samples, &oof.probs, method, rank_by);
    let how = serde_json::json!({
        "oof": cfg,
        "temperatures": oof.scalings.iter().map(|s| s.temperature).collect::<Vec<_>>(),
        "label_noise": oof.scalings.iter().map(|s| s.noise).collect::<Vec<_>>(),
        "seconds": started.elapsed().as_secs_f64(),
    });
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

/// Cross-validated probabilities for every sample of `ds` (the effective dataset), temperature
/// scaled per label column ([`calibration`]). `work_dir` holds the full path's per-fold runs,
/// `embeddings` the embedding cache. `None` when cancelled.
pub fn out_of_fold(
    ds: &Dataset,
    cfg: &OofConfig,
    (work_dir, embeddings): (&Path, &Path),
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<Option<Oof>> {
    let k = ds.classes.len();
    anyhow::ensure!(
        k >= 2,
        "finding label issues needs at least two classes; this dataset has {k}"
    );
    anyhow::ensure!(cfg.folds >= 2, "cross-validation needs at least 2 folds");
    let scaled = |oof| calibrated(ds, oof);
    Ok(if !cfg.full {
        embedded(ds, cfg, embeddings, emit, cancel)?.map(scaled)
    } else {
        match (
            full(ds, cfg, work_dir, emit, cancel)?,
            cfg.blend(ds.samples.len()),
        ) {
            (Some(tuned), Some(ecfg)) => embedded(ds, &ecfg, embeddings, emit, cancel)?.map(|e| {
                let (both, weights) = blended(ds, tuned, e);
                let weights: Vec<String> = weights.iter().map(|w| format!("{w:.2}")).collect();
                emit(Event::Note {
                    text: format!(
                        "the network trained per fold weighs {} in its blend with the \
                             embeddings' heads",
                        weights.join(", ")
                    ),
                });
                both
            }),
            (tuned, _) => tuned.map(scaled),
        }
    })
}

/// `oof` with each label column's probabilities temperature scaled to the given labels, and
/// the scalings recorded.
fn calibrated(ds: &Dataset, mut oof: Oof) -> Oof {
    let layout = Layout::of(ds);
    oof.scalings = layout
        .columns
        .iter()
        .enumerate()
        .zip(&mut oof.probs)
        .map(|((c, col), probs)| {
            let values: Vec<usize> = oof
                .samples
                .iter()
                .map(|&i| layout.part(class_of(ds, i), c))
                .collect();
            calibration::temperature_scale(probs, col.values.len(), &values)
        })
        .collect();
    oof
}

/// The fast path: a linear head per fold on the frozen backbone's embeddings (cached in
/// `embeddings`).
fn embedded(
    ds: &Dataset,
    cfg: &OofConfig,
    embeddings: &Path,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<Option<Oof>> {
    let Some(mut emb) = embed_all(ds, cfg, embeddings, emit, cancel)? else {
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
    // The tensor is the one copy of the features from here on.
    let x = Tensor::from_slice(&std::mem::take(&mut emb.data))
        .view([emb.samples.len() as i64, emb.dim as i64]);
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
    let bf16 = device::fast_bf16(Device::Cpu);
    tch::manual_seed(cfg.seed as i64);
    for f in 0..cfg.folds {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let (train, held): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&r| folds[r] != f);
        if !held.is_empty() {
            let fitted = fit_predict(&x, &emb.blocks, &heads, &train, &held, bf16)?;
            for (((k, _), out), p) in heads.iter().zip(&mut probs).zip(fitted) {
                let k = *k;
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
        scalings: Vec::new(),
    }))
}

/// Every image of `ds` through the pretrained backbone (`cfg`'s model, weights, resolution and
/// device), with the embedding cache in `cache`; `None` when cancelled.
pub fn embed_all(
    ds: &Dataset,
    cfg: &OofConfig,
    cache: &Path,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<Option<embed::Embeddings>> {
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
    let device = device::pick(cfg.device)?;
    let ecfg = EmbedConfig {
        model: cfg.model,
        weights,
        size,
        device,
        batch: embed_batch(size),
        bf16: device::fast_bf16(device),
    };
    let all: Vec<usize> = (0..ds.samples.len()).collect();
    embed::embed(
        ds,
        &all,
        &ecfg,
        Some(cache),
        &|done, total| {
            emit(Event::Progress {
                what: "embedding images".into(),
                done,
                total,
            })
        },
        cancel,
    )
}

/// The index of sample `i`'s class.
fn class_of(ds: &Dataset, i: usize) -> usize {
    ds.classes
        .iter()
        .position(|c| *c == ds.samples[i].label)
        .expect("a sample's class is in the class list")
}

/// Images per forward pass when embedding on the CPU: the largest activation of a batch (96
/// channels at half the input side, plus the row and column the strided convolution pads) stays
/// under glibc's 32 MiB mmap threshold, so its memory is reused instead of mapped and faulted in
/// afresh every batch (a third of the time went to the kernel at batch 64, 128 px; forgetting
/// the padded pixel took the planted-noise search from 25 s to 55 s).
fn embed_batch(size: u32) -> usize {
    let per_image = 96 * (size as usize / 2 + 1).pow(2) * 4;
    ((32 << 20) / per_image.max(1)).clamp(1, 64)
}

/// Softmax-regression heads, one per label column (`(values, label per row)`), fit on rows
/// `train` of `x`; their probabilities for rows `held`, per head. Features are standardised on
/// the training rows, and each group of `blocks` scaled by 1/sqrt(its size) so that every group
/// weighs the same whatever its width (the 1280 final features would otherwise drown the
/// mid-level ones).
///
/// The heads are one matrix fit together: their losses and penalties are separate sums and Adam
/// steps each weight on its own gradient, so this is the same fit as one head at a time, with
/// one pass over the features per step instead of one per head (the passes are the whole cost:
/// 18,900 images took 245 s as three heads). With `bf16` the training features are multiplied
/// in bfloat16 (accumulated in f32 by the matrix kernel), half the bytes to read per pass; the
/// weights, the loss and the held-out probabilities stay f32.
fn fit_predict(
    x: &Tensor,
    blocks: &[usize],
    heads: &[(usize, Vec<usize>)],
    train: &[usize],
    held: &[usize],
    bf16: bool,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let idx =
        |rows: &[usize]| Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
    // Standardised in place, and the f32 copy dropped once the bf16 one exists: at 18,900
    // images each copy of the features is 300 MB.
    let mut xh = x.index_select(0, &idx(held));
    let xt = {
        let mut xt = x.index_select(0, &idx(train));
        let mean = xt.mean_dim([0i64].as_slice(), true, Kind::Float);
        let std = xt.std_dim([0i64].as_slice(), true, true);
        // A feature (almost) constant on the training rows must not blow up on the held-out
        // ones.
        let std = std.clamp_min(std.mean(Kind::Float).double_value(&[]) * 0.1 + 1e-6);
        let weight: Vec<f32> = blocks
            .iter()
            .flat_map(|&b| std::iter::repeat_n(1.0 / (b as f32).sqrt(), b))
            .collect();
        let scale = Tensor::from_slice(&weight).view([1, -1]) / std;
        for t in [&mut xt, &mut xh] {
            let _ = t.g_sub_(&mean).g_mul_(&scale);
        }
        if bf16 {
            xt.to_kind(Kind::BFloat16)
        } else {
            xt
        }
    };
    let width: i64 = heads.iter().map(|(k, _)| *k as i64).sum();
    let ys: Vec<Tensor> = heads
        .iter()
        .map(|(_, values)| {
            Tensor::from_slice(&train.iter().map(|&r| values[r] as i64).collect::<Vec<_>>())
        })
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs.root().zeros("weight", &[width, xt.size()[1]]);
    let b = vs.root().zeros("bias", &[width]);
    let mut opt = nn::adam(0.9, 0.999, 0.0).build(&vs, HEAD_LR)?;
    // Per head, mean cross-entropy + |W|^2 / (2 C n): scikit-learn's LogisticRegression(C).
    let l2 = 1.0 / (2.0 * HEAD_C * train.len() as f64);
    for _ in 0..HEAD_STEPS {
        // `w.tr()` is a transposed view, so the weight gradient is computed as gradᵀ·x, the
        // form that streams the features row by row.
        let logits = xt.matmul(&w.to_kind(xt.kind()).tr()).to_kind(Kind::Float) + &b;
        let mut loss = w.pow_tensor_scalar(2).sum(Kind::Float) * l2;
        let mut at = 0;
        for ((k, _), y) in heads.iter().zip(&ys) {
            loss += logits.narrow(1, at, *k as i64).cross_entropy_for_logits(y);
            at += *k as i64;
        }
        opt.backward_step(&loss);
    }
    let logits = tch::no_grad(|| xh.matmul(&w.tr()) + &b);
    let mut at = 0;
    heads
        .iter()
        .map(|(k, _)| {
            let p = logits
                .narrow(1, at, *k as i64)
                .softmax(1, Kind::Float)
                .contiguous();
            at += *k as i64;
            Ok(Vec::<f32>::try_from(p.view([-1]))?)
        })
        .collect()
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
            lr: if cfg.weights.is_some() {
                TrainConfig::default().lr
            } else {
                SCRATCH_LR
            },
            img_size: cfg.img_size,
            crop_scale: cfg.crop_scale,
            flip: cfg.flip,
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
            name: None,
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
        scalings: Vec::new(),
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

/// Two models' probabilities, each scaled, then per label column their geometric mean
/// weighted by how well each explains the given labels ([`calibration::blend_weight`]), scaled
/// again for confident learning; and each column's weight of `a`. Scaled first because the
/// embeddings' heads (regularised hard: T 0.56 on digits) would otherwise count for less than a
/// network trained per fold (T 0.95-1.02) wherever the two disagree; a geometric mean because
/// one model sure a label is wrong should count (on MNIST's confirmed errors, 41 rather than 38
/// in the first 100 over three seeds); weighted because where one model is much the weaker (a
/// small CNN on clothes at 28 px beside the pretrained heads) its doubts are mostly its own
/// mistakes (planted Fashion-MNIST noise: F1 0.725, unweighted 0.685, plain mean 0.703).
fn blended(ds: &Dataset, a: Oof, b: Oof) -> (Oof, Vec<f64>) {
    let (mut a, b) = (calibrated(ds, a), calibrated(ds, b));
    let layout = Layout::of(ds);
    let weights = aligned(&a, &b)
        .iter()
        .enumerate()
        .zip(&mut a.probs)
        .map(|((c, pb), pa)| {
            let k = layout.columns[c].values.len();
            let values: Vec<usize> = a
                .samples
                .iter()
                .map(|&i| layout.part(class_of(ds, i), c))
                .collect();
            let w = calibration::blend_weight(pa, pb, k, &values);
            calibration::geometric_mean(pa, pb, k, w);
            w
        })
        .collect();
    a.cached = b.cached;
    (calibrated(ds, a), weights)
}

/// Per label column, `b`'s probabilities in `a`'s rows: for a sample `b` lacks, `a`'s own (so
/// any mean of the two leaves it as `a` has it).
fn aligned(a: &Oof, b: &Oof) -> Vec<Vec<f32>> {
    let row_in_b: std::collections::HashMap<usize, usize> =
        b.samples.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    a.probs
        .iter()
        .zip(&b.probs)
        .map(|(pa, pb)| {
            let k = pa.len() / a.samples.len().max(1);
            a.samples
                .iter()
                .enumerate()
                .flat_map(|(r, i)| match row_in_b.get(i) {
                    Some(&rb) => &pb[rb * k..(rb + 1) * k],
                    None => &pa[r * k..(r + 1) * k],
                })
                .copied()
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 120 rows of 24 features in two blocks, where two label columns can be read off (a
    /// 3-valued one from the first block, a 2-valued one from the second), plus the labels.
    fn problem() -> (Tensor, Vec<usize>, Vec<usize>) {
        let (n, d) = (120usize, 24usize);
        let a: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let b: Vec<usize> = (0..n).map(|i| (i / 3) % 2).collect();
        let mut x = vec![0f32; n * d];
        for i in 0..n {
            for j in 0..d {
                // Deterministic "noise", and a class signal of one unit on a few features.
                let noise = ((i * 31 + j * 17) as f32 * 0.37).sin();
                let signal = if j < 12 {
                    (j % 3 == a[i]) as u8
                } else {
                    (j % 2 == b[i]) as u8
                };
                x[i * d + j] = noise + 1.5 * f32::from(signal);
            }
        }
        (Tensor::from_slice(&x).view([n as i64, d as i64]), a, b)
    }

    #[test]
    fn aligned_rows_pair_the_samples_both_models_have_and_keep_the_first_models_elsewhere() {
        let oof = |samples: Vec<usize>, probs: Vec<f32>| Oof {
            samples,
            probs: vec![probs],
            skipped: Vec::new(),
            cached: 0,
            scalings: Vec::new(),
        };
        // Two classes; sample 7 only the fine-tuned model could read, sample 9 only the other.
        let tuned = oof(vec![2, 5, 7], vec![0.9, 0.1, 0.2, 0.8, 0.6, 0.4]);
        let embedded = oof(vec![2, 5, 9], vec![0.5, 0.5, 0.0, 1.0, 0.3, 0.7]);
        assert_eq!(
            aligned(&tuned, &embedded),
            vec![vec![0.5, 0.5, 0.0, 1.0, 0.6, 0.4]]
        );
    }

    /// 200 samples in classes a and b, and a model's logit for each given label: the same
    /// spread of confident and doubtful ones for every seed.
    fn two_classes() -> (Dataset, Vec<f32>) {
        let class = |i: usize| if i.is_multiple_of(2) { "a" } else { "b" };
        let samples = (0..200)
            .map(|i| dataset::scan::Sample {
                path: format!("{i}.png").into(),
                label: class(i).into(),
                parts: vec![class(i).into()],
                group: None,
                info: dataset::ImageInfo {
                    format: image::ImageFormat::Png,
                    width: 8,
                    height: 8,
                    color: image::ColorType::Rgb8,
                    orientation: 1,
                    bytes: 100,
                    content_hash: None,
                },
            })
            .collect();
        let ds = Dataset {
            root: "/d".into(),
            source: Source::ImageFolder { root: "/d".into() },
            label_columns: vec!["class".into()],
            classes: vec!["a".into(), "b".into()],
            samples,
            rejected: Vec::new(),
            ignored: Vec::new(),
        };
        let logits = (0..200)
            .map(|i| ((i * 37) % 100) as f32 / 12.0 - 1.5)
            .collect();
        (ds, logits)
    }

    /// Probabilities from logits for the given labels (`a` for even samples).
    fn given_logits(logits: &[f32]) -> Oof {
        let probs = logits
            .iter()
            .enumerate()
            .flat_map(|(i, z)| {
                let p = 1.0 / (1.0 + (-z).exp());
                if i % 2 == 0 {
                    [p, 1.0 - p]
                } else {
                    [1.0 - p, p]
                }
            })
            .collect();
        Oof {
            samples: (0..logits.len()).collect(),
            probs: vec![probs],
            skipped: Vec::new(),
            cached: 0,
            scalings: Vec::new(),
        }
    }

    #[test]
    fn blending_weighs_a_soft_model_as_much_as_a_sharp_one() {
        // Two models of equal skill that disagree about samples 10 and 11: the sharp one doubts
        // 10 a little and 11 a lot, the other the reverse, and its probabilities are three
        // times softer (the embeddings' heads beside a network trained per fold).
        let (ds, mut sharp) = two_classes();
        (sharp[10], sharp[11]) = (-1.0, -4.0);
        let mut soft = sharp.clone();
        soft.swap(10, 11);
        let soft: Vec<f32> = soft.iter().map(|z| z / 3.0).collect();
        let given = |oof: &Oof, i: usize| oof.probs[0][2 * i + i % 2];

        let (both, weights) = blended(&ds, given_logits(&sharp), given_logits(&soft));
        assert!(
            (weights[0] - 0.5).abs() < 0.01,
            "equal skill, equal weight: {weights:?}"
        );
        assert!(
            (given(&both, 10) - given(&both, 11)).abs() < 1e-3,
            "equally doubtful: {} and {}",
            given(&both, 10),
            given(&both, 11)
        );
        for row in both.probs[0].chunks(2) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // Averaged raw, the sharp model's view wins: 11 looks more doubtful than 10.
        let mut raw = given_logits(&sharp);
        calibration::geometric_mean(&mut raw.probs[0], &given_logits(&soft).probs[0], 2, 0.5);
        assert!(given(&raw, 11) < given(&raw, 10) - 0.01);
    }

    #[test]
    fn heads_fit_together_give_each_heads_own_fit_and_probabilities_sum_to_one() {
        let (x, a, b) = problem();
        let blocks = [12, 12];
        let train: Vec<usize> = (0..120).filter(|i| i % 5 != 0).collect();
        let held: Vec<usize> = (0..120).filter(|i| i % 5 == 0).collect();
        let heads = [(3, a.clone()), (2, b.clone())];
        let together = fit_predict(&x, &blocks, &heads, &train, &held, false).unwrap();
        for (h, head) in heads.iter().enumerate() {
            let alone = fit_predict(
                &x,
                &blocks,
                std::slice::from_ref(head),
                &train,
                &held,
                false,
            )
            .unwrap();
            let diff = together[h]
                .iter()
                .zip(&alone[0])
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "head {h}: together and alone differ by {diff}");
        }
        for (p, (k, values)) in together.iter().zip(&heads) {
            assert_eq!(p.len(), held.len() * k);
            let mut right = 0;
            for (row, &r) in p.chunks(*k).zip(&held) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "a row sums to {sum}");
                let best = (0..*k).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
                right += usize::from(best == values[r]);
            }
            // The signal is there to be learnt: the held-out rows are mostly right.
            assert!(
                right * 10 >= held.len() * 9,
                "{right} of {} right",
                held.len()
            );
        }
    }

    #[test]
    fn a_bfloat16_fit_gives_the_f32_fits_probabilities_to_a_hundredth() {
        let (x, a, b) = problem();
        let train: Vec<usize> = (0..120).filter(|i| i % 4 != 0).collect();
        let held: Vec<usize> = (0..120).filter(|i| i % 4 == 0).collect();
        let heads = [(3, a), (2, b)];
        let f32_fit = fit_predict(&x, &[12, 12], &heads, &train, &held, false).unwrap();
        let bf16_fit = fit_predict(&x, &[12, 12], &heads, &train, &held, true).unwrap();
        for (p, q) in f32_fit.iter().zip(&bf16_fit) {
            let diff = p
                .iter()
                .zip(q)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(diff < 0.01, "bf16 and f32 probabilities differ by {diff}");
            for row in q.chunks(p.len() / held.len()) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }
}
