//! The training loop, as it runs inside the engine process: it owns everything tch (VarStore,
//! model, optimiser: tch tensors are not `Sync`, grad mode is per thread) and reports typed
//! [`Event`]s through `emit`. A cancel flag stops it within one batch, keeping the last
//! checkpoint. Everything it writes goes into the run folder (see `loupe::train::record`).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use tch::nn::{self, OptimizerConfig};
use tch::{Device, Tensor};

use loupe::dataset::{Dataset, Layout};
use loupe::train::config::{Balance, LossKind, OptimizerKind, TrainConfig};
use loupe::train::metrics::{self, argmax, Report};
use loupe::train::predictions::{self, Probabilities};
use loupe::train::protocol::Event;
use loupe::train::record::{self, ColumnReport, EpochMetrics, MetricsLine, MetricsLog, RunConfig};
use loupe::train::schedule::{Monitor, Policy};
use loupe::train::split::{self, SplitMix64};
use loupe::util::{path_str, write_atomic};

use super::heads::Heads;
use super::pipeline::{bytes_for, to_batch, Augment, Cache, Frames, Stream};
use super::{device, zoo, Emit};
#[cfg(test)]
use loupe::train::config::ModelKind;

/// Where a run goes.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new folder under `runs_dir`: `name`, or a dated one. `val` is the user's split
    /// (`val[i]`: sample `i` is for validation); `None` splits by `val_frac` and `seed`,
    /// stratified and group-aware.
    New {
        runs_dir: PathBuf,
        name: Option<String>,
        val: Option<Vec<bool>>,
    },
    /// Continue the run in this folder from its last checkpoint up to the config's epochs, on
    /// the validation images recorded in its config. Optimiser moments start afresh (tch cannot
    /// save them).
    Resume(PathBuf),
}

/// Trains on `ds` (the effective dataset: edited labels, excluded left out); ends with a
/// `Finished` event, or an error for the caller to report as `Failed`.
pub fn train(
    ds: &Dataset,
    cfg: &TrainConfig,
    start: &Start,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<()> {
    let classes: Vec<String> = ds.classes.clone();
    anyhow::ensure!(
        classes.len() >= 2,
        "training needs at least two classes; this dataset has {}",
        classes.len()
    );
    anyhow::ensure!(
        cfg.batch > 0 && cfg.accumulate > 0 && cfg.epochs > 0,
        "--batch, --accumulate and --epochs must be at least 1"
    );
    let class_of: HashMap<&str, i64> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as i64))
        .collect();
    let labels: Vec<i64> = ds
        .samples
        .iter()
        .map(|s| class_of[s.label.as_str()])
        .collect();
    let device = device::pick(cfg.device)?;
    let heads = Heads::new(Layout::of(ds), cfg.heads, device);
    if let Monitor::ColumnF1(name) = &cfg.monitor {
        let names = &ds.label_columns;
        anyhow::ensure!(
            heads.layout.is_composite() && names.contains(name),
            "--monitor f1:{name} names no label column of this dataset (its columns: {})",
            names.join(", ")
        );
    }
    let (size, side) = (cfg.size(), cfg.frame_side());

    let (run_dir, sp, history) = match start {
        Start::New {
            runs_dir,
            name,
            val,
        } => {
            let sp = match val {
                Some(is_val) => {
                    anyhow::ensure!(
                        is_val.len() == ds.samples.len(),
                        "the given split has {} entries for {} images",
                        is_val.len(),
                        ds.samples.len()
                    );
                    split::given(is_val)
                }
                None => {
                    let groups: Vec<Option<String>> =
                        ds.samples.iter().map(|s| s.group.clone()).collect();
                    let labels_u: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
                    split::stratified(&labels_u, Some(&groups), cfg.val_frac, cfg.seed)
                }
            };
            anyhow::ensure!(
                !sp.train.is_empty() && !sp.val.is_empty(),
                "the split left {} training and {} validation images: the dataset is too small",
                sp.train.len(),
                sp.val.len()
            );
            let dir = match name {
                Some(name) => loupe::util::named_dir(runs_dir, name),
                None => loupe::util::new_dir(runs_dir, cfg.model.id()),
            }
            .map_err(|e| anyhow::anyhow!("cannot create the run folder: {e}"))?;
            RunConfig::new(ds, cfg, &sp).write(&dir)?;
            (dir, sp, Vec::new())
        }
        Start::Resume(dir) => {
            let (sp, history) = prepare_resume(dir, ds, cfg, emit)?;
            (dir.clone(), sp, history)
        }
    };
    // A resumed run draws new augmentations rather than repeat the first epochs' ones.
    tch::manual_seed(cfg.seed.wrapping_add(history.len() as u64) as i64);

    let pick = |idx: &[usize]| idx.iter().map(|&i| labels[i]).collect::<Vec<_>>();
    let need = bytes_for(ds.samples.len(), side);
    let budget = cfg
        .cache_gb
        .map(|gb| (gb.max(0.0) * 1e9) as u64)
        .or_else(|| available_memory().map(|a| a / 2));
    let (train, val): (Box<dyn Frames>, Box<dyn Frames>) = match budget {
        Some(b) if need > b => {
            emit(Event::Note {
                text: format!(
                    "the decoded images would take {:.2} GB, more than the {:.2} GB memory \
                     budget: decoding each batch as it is needed (slower; raise --cache-gb or \
                     lower --img-size to cache)",
                    need as f64 / 1e9,
                    b as f64 / 1e9
                ),
            });
            (
                Box::new(Stream::new(ds, &sp.train, &pick(&sp.train), side)),
                Box::new(Stream::new(ds, &sp.val, &pick(&sp.val), side)),
            )
        }
        _ => {
            let total = sp.train.len() + sp.val.len();
            let progress = |done: usize| {
                emit(Event::Progress {
                    what: "decoding images".into(),
                    done,
                    total,
                })
            };
            (
                Box::new(Cache::build(
                    ds,
                    &sp.train,
                    &pick(&sp.train),
                    side,
                    0,
                    &progress,
                )),
                Box::new(Cache::build(
                    ds,
                    &sp.val,
                    &pick(&sp.val),
                    side,
                    sp.train.len(),
                    &progress,
                )),
            )
        }
    };
    anyhow::ensure!(
        !train.is_empty() && !val.is_empty(),
        "no decodable images left for training or validation"
    );
    let mut reported_skipped = train.skipped().len() + val.skipped().len();
    emit(Event::Started {
        run_dir: run_dir.clone(),
        device: device::name(device),
        train: train.len(),
        val: val.len(),
        skipped: reported_skipped,
        classes: classes.clone(),
    });

    let mut vs = nn::VarStore::new(device);
    let net = zoo::build(cfg.model, &vs.root(), heads.outputs());
    if matches!(start, Start::Resume(_)) {
        let last = run_dir.join(record::LAST);
        zoo::load_checkpoint(&mut vs, &last)?;
    } else if let Some(w) = &cfg.weights {
        let report = zoo::load_pretrained(&mut vs, cfg.model, w)?;
        anyhow::ensure!(
            report.complete(),
            "the weights in {} do not fit {}: missing {:?}, mis-shaped {:?}",
            w.display(),
            cfg.model.title(),
            report.missing,
            report.mismatched
        );
    }
    zoo::weights_channels_last(&vs);
    if cfg.freeze {
        for (name, var) in vs.variables() {
            if !name.starts_with(cfg.model.head()) {
                let _ = var.set_requires_grad(false);
            }
        }
    }
    let mut opt = match cfg.optimizer {
        OptimizerKind::Sgd => nn::sgd(0.9, 0.0, cfg.weight_decay, true).build(&vs, cfg.lr)?,
        OptimizerKind::Adam => nn::adam(0.9, 0.999, cfg.weight_decay).build(&vs, cfg.lr)?,
        OptimizerKind::Adamw => nn::adamw(0.9, 0.999, cfg.weight_decay).build(&vs, cfg.lr)?,
    };
    let counts: Vec<usize> = (0..classes.len())
        .map(|c| train.labels().iter().filter(|&&l| l as usize == c).count())
        .collect();
    let class_weights =
        (cfg.balance == Balance::Weights).then(|| heads.balanced_weights(train.labels(), device));
    let norm = cfg.model.normalization();
    let step_images = cfg.batch * cfg.accumulate;
    let steps_per_epoch = train.len().div_ceil(step_images);
    let warmup = (cfg.warmup_epochs * steps_per_epoch as f64) as usize;
    let mut policy = Policy::new(
        cfg.schedule,
        cfg.lr,
        warmup,
        cfg.epochs,
        steps_per_epoch,
        cfg.step_epochs,
    );
    for m in &history {
        policy.end_epoch(cfg.monitor.of(m));
    }
    let first_epoch = history.last().map_or(1, |m| m.epoch + 1);
    let mut rng = SplitMix64::new(cfg.seed ^ 0x5EED);
    for _ in 1..first_epoch {
        // The same shuffles as a run that was never interrupted.
        epoch_order(train.labels(), &counts, cfg.balance, &mut rng);
    }
    let mut log = MetricsLog::open(&run_dir)?;
    if first_epoch > 1 {
        log.append(&MetricsLine::Resume {
            epoch: first_epoch,
            epochs: cfg.epochs,
            fingerprint: ds.fingerprint(),
        })?;
        emit(Event::Note {
            text: format!("resuming at epoch {first_epoch} of {}", cfg.epochs),
        });
    }
    // The head is optimiser group 1 (see `zoo::build`): its own learning rate when asked.
    let head_ratio = cfg.head_lr() / cfg.lr.max(f64::MIN_POSITIVE);
    let augment = Augment::of(cfg);
    let mut step = (first_epoch - 1) * steps_per_epoch;
    let mut micro = cfg.batch;
    let mut lr = policy.lr(step);

    for epoch in first_epoch..=cfg.epochs {
        let started = Instant::now();
        let order = epoch_order(train.labels(), &counts, cfg.balance, &mut rng);
        let chunks: Vec<&[usize]> = order.chunks(step_images).collect();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        let cancelled = std::thread::scope(|scope| -> anyhow::Result<bool> {
            // Batches are read (copied from the cache, or decoded) on a thread of their own, two
            // ahead, so the model never waits for the next batch's pixels.
            let (batch_tx, batch_rx) = mpsc::sync_channel(2);
            let (frames, chunks) = (train.as_ref(), &chunks);
            scope.spawn(move || {
                for c in chunks {
                    if batch_tx.send(frames.read(c)).is_err() {
                        break;
                    }
                }
            });
            for (k, (bytes, kept)) in batch_rx.iter().enumerate() {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(true);
                }
                if kept.is_empty() {
                    continue;
                }
                let t = Instant::now();
                lr = policy.lr(step);
                opt.set_lr(lr);
                opt.set_lr_group(1, lr * head_ratio);
                let y: Vec<i64> = kept.iter().map(|&p| train.labels()[p]).collect();
                let batch = Batch {
                    bytes: &bytes,
                    labels: &y,
                    side,
                    size,
                    augment,
                    device,
                    norm,
                };
                let before = micro;
                let loss = halve_on_oom(
                    &mut micro,
                    |m| {
                        backward(
                            net.as_ref(),
                            &heads,
                            &mut opt,
                            &batch,
                            !cfg.freeze,
                            cfg.loss,
                            class_weights.as_deref(),
                            m,
                            cancel,
                        )
                    },
                    |m| {
                        emit(Event::Note {
                            text: format!(
                                "the GPU ran out of memory with {before} images per pass; \
                                 continuing with {m} per pass (gradients still add up to \
                                 {step_images} per step)"
                            ),
                        })
                    },
                )?;
                let Some(loss) = loss else { return Ok(true) };
                opt.step();
                loss_sum += loss * y.len() as f64;
                seen += y.len();
                step += 1;
                let ips = y.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);
                log.append(&MetricsLine::Step {
                    epoch,
                    step,
                    loss,
                    lr,
                    images_per_s: ips,
                })?;
                emit(Event::Step {
                    epoch,
                    step: k + 1,
                    steps: steps_per_epoch,
                    loss,
                    lr,
                    images_per_s: ips,
                });
            }
            Ok(false)
        })?;
        if cancelled {
            log.append(&MetricsLine::End { cancelled: true })?;
            return finish(&vs, &run_dir, &policy, cfg, true, emit);
        }
        let (val_loss, positions, probs) = evaluate(
            net.as_ref(),
            &heads,
            val.as_ref(),
            size,
            device,
            norm,
            cfg.batch,
        )?;
        let truth: Vec<usize> = positions
            .iter()
            .map(|&p| val.labels()[p] as usize)
            .collect();
        let (report, columns) = scores(&heads.layout, &truth, &probs);
        let m = EpochMetrics {
            epoch,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            val_loss,
            accuracy: report.accuracy,
            macro_f1: report.macro_f1,
            report,
            columns,
            seconds: started.elapsed().as_secs_f64(),
        };
        log.append(&MetricsLine::Epoch {
            metrics: Box::new(m.clone()),
        })?;
        log.sync()?;
        zoo::save_checkpoint(&vs, &run_dir.join(record::LAST))?;
        emit(Event::Checkpoint {
            path: run_dir.join(record::LAST),
            best: false,
        });
        if policy.end_epoch(cfg.monitor.of(&m)) {
            zoo::save_checkpoint(&vs, &run_dir.join(record::BEST))?;
            let rows: Vec<(String, String, Probabilities)> = positions
                .iter()
                .zip(probs)
                .map(|(&p, pr)| {
                    let s = &ds.samples[val.samples()[p]];
                    (path_str(&s.path), s.label.clone(), pr)
                })
                .collect();
            predictions::write_labelled(
                &run_dir.join(record::VAL_PREDICTIONS),
                &heads.layout,
                &rows,
            )?;
            write_atomic(
                &run_dir.join(record::CONFUSION),
                &serde_json::to_vec_pretty(&m.report.confusion)?,
            )?;
            emit(Event::Checkpoint {
                path: run_dir.join(record::BEST),
                best: true,
            });
        }
        emit(Event::Epoch {
            metrics: Box::new(m),
        });
        // Streamed images that fail to decode are found while training.
        let skipped = train.skipped().len() + val.skipped().len();
        if skipped > reported_skipped {
            emit(Event::Note {
                text: format!(
                    "{} more image(s) could not be decoded and were skipped",
                    skipped - reported_skipped
                ),
            });
            reported_skipped = skipped;
        }
        if policy.should_stop(cfg.patience) {
            emit(Event::Note {
                text: format!(
                    "stopped early: {} has not improved for {} epochs",
                    cfg.monitor.name(),
                    cfg.patience
                ),
            });
            break;
        }
    }
    log.append(&MetricsLine::End { cancelled: false })?;
    finish(&vs, &run_dir, &policy, cfg, false, emit)
}

/// Checks that the run in `dir` can go on with `cfg` on `ds`, records the new epoch count in
/// its config, and returns its split (by the recorded validation paths) and finished epochs.
fn prepare_resume(
    dir: &Path,
    ds: &Dataset,
    cfg: &TrainConfig,
    emit: &Emit<'_>,
) -> anyhow::Result<(split::Split, Vec<EpochMetrics>)> {
    let mut rc = RunConfig::read(dir)?;
    anyhow::ensure!(
        rc.classes == ds.classes,
        "the classes changed since this run started ({} then, {} now): start a new run",
        rc.classes.join(", "),
        ds.classes.join(", ")
    );
    anyhow::ensure!(
        rc.config.model == cfg.model && rc.config.heads == cfg.heads && rc.img_size == cfg.size(),
        "a run resumes with its own model, heads and image size"
    );
    anyhow::ensure!(
        dir.join(record::LAST).exists(),
        "{} has no checkpoint to resume from",
        dir.display()
    );
    let history = record::read_metrics(dir)?.epochs;
    let done = history.last().map_or(0, |m| m.epoch);
    anyhow::ensure!(
        done < cfg.epochs,
        "{} already finished {done} of {} epochs: resume with more --epochs",
        dir.display(),
        cfg.epochs
    );
    let val: HashSet<&str> = rc.split.val.iter().map(String::as_str).collect();
    let sp = split::given(
        &ds.samples
            .iter()
            .map(|s| val.contains(path_str(&s.path).as_str()))
            .collect::<Vec<_>>(),
    );
    anyhow::ensure!(
        !sp.train.is_empty() && !sp.val.is_empty(),
        "none of the run's validation images (or nothing else) is in the dataset now"
    );
    if rc.dataset.fingerprint != ds.fingerprint() {
        emit(Event::Note {
            text: "the labels or images changed since this run started: it goes on with the \
                   current ones and the same validation images"
                .into(),
        });
    }
    // The config now says how far the run goes; where it started is kept in metrics.jsonl.
    rc.config = cfg.clone();
    rc.write(dir)?;
    Ok((sp, history))
}

fn finish(
    vs: &nn::VarStore,
    run_dir: &Path,
    policy: &Policy,
    cfg: &TrainConfig,
    cancelled: bool,
    emit: &Emit<'_>,
) -> anyhow::Result<()> {
    zoo::save_checkpoint(vs, &run_dir.join(record::LAST))?;
    emit(Event::Finished {
        run_dir: run_dir.to_path_buf(),
        best: policy.best.map(|b| cfg.monitor.value(b)),
        monitor: cfg.monitor.clone(),
        cancelled,
    });
    Ok(())
}

pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the engine panicked".into())
}

fn is_oom(msg: &str) -> bool {
    msg.contains("out of memory")
}

/// libtorch's messages, in words that say what to do.
pub fn explain(msg: &str) -> String {
    if is_oom(msg) {
        format!("the GPU ran out of memory even one image at a time: use a smaller --img-size or model ({})", msg.lines().next().unwrap_or(msg))
    } else if msg.contains("No space left on device") {
        format!("the disk is full; the previous checkpoint is intact ({msg})")
    } else {
        msg.to_string()
    }
}

/// Runs `attempt(micro)`; when it runs out of memory, halves `micro` (telling `retrying`) and
/// tries again, down to one image. libtorch reports some failures as panics: caught here too.
pub fn halve_on_oom<T>(
    micro: &mut usize,
    mut attempt: impl FnMut(usize) -> anyhow::Result<T>,
    mut retrying: impl FnMut(usize),
) -> anyhow::Result<T> {
    loop {
        let err = match std::panic::catch_unwind(AssertUnwindSafe(|| attempt(*micro))) {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => format!("{e:#}"),
            Err(panic) => panic_text(panic.as_ref()),
        };
        if !is_oom(&err) || *micro <= 1 {
            anyhow::bail!(err);
        }
        *micro /= 2;
        retrying(*micro);
    }
}

/// `MemAvailable` from /proc/meminfo (Linux), in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Cache positions of one epoch: shuffled, or drawn by inverse class frequency (sampler).
fn epoch_order(
    labels: &[i64],
    counts: &[usize],
    balance: Balance,
    rng: &mut SplitMix64,
) -> Vec<usize> {
    if balance == Balance::Sampler {
        // Pick a class uniformly, then an image of it: each class is seen equally often.
        let by_class: Vec<Vec<usize>> = (0..counts.len())
            .map(|c| {
                (0..labels.len())
                    .filter(|&i| labels[i] as usize == c)
                    .collect()
            })
            .collect();
        let present: Vec<&Vec<usize>> = by_class.iter().filter(|v| !v.is_empty()).collect();
        return (0..labels.len())
            .map(|_| {
                let class = present[rng.below(present.len())];
                class[rng.below(class.len())]
            })
            .collect();
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    rng.shuffle(&mut order);
    order
}

/// The frames of one optimiser step and their labels.
struct Batch<'a> {
    bytes: &'a [u8],
    labels: &'a [i64],
    /// Side of the frames in `bytes`; `size`: of the crops the network sees.
    side: u32,
    size: u32,
    augment: Augment,
    device: Device,
    norm: ([f64; 3], [f64; 3]),
}

/// Zeroes the gradients, then runs forward and backward over `batch` in passes of `micro`
/// images, each loss weighted by its share so the gradients add up to the whole batch's mean
/// (gradient accumulation, and the fallback after running out of memory). The mean loss, or
/// `None` when cancelled midway.
#[allow(clippy::too_many_arguments)]
fn backward(
    net: &dyn nn::ModuleT,
    heads: &Heads,
    opt: &mut nn::Optimizer,
    batch: &Batch,
    train_bn: bool,
    kind: LossKind,
    weights: Option<&[Tensor]>,
    micro: usize,
    cancel: &AtomicBool,
) -> anyhow::Result<Option<f64>> {
    opt.zero_grad();
    let frame = (batch.side * batch.side * 3) as usize;
    let n = batch.labels.len();
    let mut total = 0.0;
    for begin in (0..n).step_by(micro.max(1)) {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let end = (begin + micro).min(n);
        let x = to_batch(
            &batch.bytes[begin * frame..end * frame],
            batch.side,
            batch.size,
            batch.device,
            batch.norm,
            Some(batch.augment),
        );
        let y = Tensor::from_slice(&batch.labels[begin..end]).to_device(batch.device);
        let loss = heads.loss(&net.forward_t(&x, train_bn), &y, kind, weights)?;
        let share = (end - begin) as f64 / n as f64;
        (&loss * share).f_backward()?;
        total += loss.f_double_value(&[])? * share;
    }
    Ok(Some(total))
}

/// The joint report and, for a composite label, each column's, from validation probabilities.
pub fn scores(
    layout: &Layout,
    truth: &[usize],
    probs: &[Probabilities],
) -> (Report, Vec<ColumnReport>) {
    let preds: Vec<usize> = probs.iter().map(|p| argmax(&p.joint)).collect();
    let report = metrics::report(truth, &preds, layout.classes.len());
    let columns = if layout.is_composite() {
        layout
            .columns
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let t: Vec<usize> = truth.iter().map(|&j| layout.part(j, k)).collect();
                let p: Vec<usize> = probs.iter().map(|p| argmax(&p.columns[k])).collect();
                ColumnReport {
                    name: c.name.clone(),
                    report: metrics::report(&t, &p, c.values.len()),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    (report, columns)
}

/// Validation loss, the positions that could be read, and their probabilities, from the centre
/// `size` square of each frame (as prediction sees an image).
fn evaluate(
    net: &dyn nn::ModuleT,
    heads: &Heads,
    val: &dyn Frames,
    size: u32,
    device: Device,
    norm: ([f64; 3], [f64; 3]),
    batch: usize,
) -> anyhow::Result<(f64, Vec<usize>, Vec<Probabilities>)> {
    let (mut positions, mut probs) = (Vec::with_capacity(val.len()), Vec::with_capacity(val.len()));
    let mut loss = 0.0;
    let all: Vec<usize> = (0..val.len()).collect();
    tch::no_grad(|| -> anyhow::Result<()> {
        for chunk in all.chunks(batch.max(1)) {
            let (bytes, kept) = val.read(chunk);
            if kept.is_empty() {
                continue;
            }
            let x = to_batch(&bytes, val.side(), size, device, norm, None);
            let y = Tensor::from_slice(&kept.iter().map(|&p| val.labels()[p]).collect::<Vec<_>>())
                .to_device(device);
            let logits = net.forward_t(&x, false);
            loss += heads.cross_entropy_sum(&logits, &y)?;
            probs.extend(heads.probabilities(&heads.softmax(&logits)?)?);
            positions.extend(kept);
        }
        Ok(())
    })?;
    Ok((loss / positions.len().max(1) as f64, positions, probs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_halves_the_pass_until_it_fits_and_other_errors_pass_through() {
        let mut micro = 64;
        let mut tried = Vec::new();
        let mut notes = Vec::new();
        let r = halve_on_oom(
            &mut micro,
            |m| {
                tried.push(m);
                match m {
                    64 => anyhow::bail!("CUDA out of memory. Tried to allocate 2.00 GiB"),
                    // libtorch errors from non-`f_` calls arrive as panics.
                    32 => panic!("Torch(\"CUDA out of memory\")"),
                    _ => Ok(m * 10),
                }
            },
            |m| notes.push(m),
        );
        assert_eq!(r.unwrap(), 160);
        assert_eq!((micro, tried, notes), (16, vec![64, 32, 16], vec![32, 16]));

        let mut micro = 8;
        let err = halve_on_oom(
            &mut micro,
            |_| -> anyhow::Result<()> { anyhow::bail!("shape mismatch") },
            |_| panic!("no retry for other errors"),
        )
        .unwrap_err();
        assert_eq!((err.to_string(), micro), ("shape mismatch".to_string(), 8));

        let mut micro = 1;
        let err = halve_on_oom(
            &mut micro,
            |_| -> anyhow::Result<()> { anyhow::bail!("CUDA out of memory") },
            |_| panic!("nothing smaller than one image"),
        )
        .unwrap_err();
        assert!(explain(&err.to_string()).contains("smaller --img-size"));
    }

    #[test]
    fn the_head_gets_its_own_learning_rate() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = zoo::build(ModelKind::SmallCnn, &vs.root(), 3);
        let mut opt = nn::sgd(0.0, 0.0, 0.0, false).build(&vs, 0.1).unwrap();
        opt.set_lr_group(1, 0.0);
        let before: HashMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.copy()))
            .collect();
        let x = Tensor::rand([4, 3, 16, 16], (tch::Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 0]);
        opt.backward_step(&net.forward_t(&x, true).cross_entropy_for_logits(&y));
        let (mut head, mut body) = (0, 0);
        for (name, t) in vs.variables() {
            if !t.requires_grad() {
                continue;
            }
            let moved = !t.equal(&before[&name]);
            if name.starts_with("head.") {
                assert!(!moved, "{name} moved with a head learning rate of 0");
                head += 1;
            } else if moved {
                body += 1;
            }
        }
        assert!(
            head > 0 && body > 0,
            "head {head}, moved backbone tensors {body}"
        );
    }
}
