//! Which images look alike: every image's nearest neighbours in the pretrained embedding (the
//! one label-issue searches cache, so a dataset searched before embeds nothing again), by exact
//! cosine similarity. Near-duplicate groups and outliers are decided from these lists by the
//! client (`quality::health`), so moving a threshold recomputes nothing here.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Device, Kind, Tensor};

use loupe::dataset::{self, Source};
use loupe::quality::health::Neighbours;
use loupe::train::config::OofConfig;
use loupe::train::protocol::{Event, JobResult};
use loupe::util::path_str;

use super::{device, oof, Emit};

/// Rows of the similarity matrix computed at once: 2,048 x 18,900 floats is 150 MB.
const CHUNK: i64 = 2048;

/// The `neighbours` job: each image's `k` most similar other images.
pub fn neighbours(
    source: &Source,
    cfg: &OofConfig,
    work_dir: &Path,
    k: usize,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<JobResult> {
    let (ds, _) = dataset::open_edited(source, &Default::default(), Default::default())?;
    let Some(emb) = oof::embed_all(&ds, cfg, work_dir, emit, cancel)? else {
        return Ok(JobResult::Cancelled);
    };
    let n = emb.samples.len();
    let x = Tensor::from_slice(&emb.data).view([n as i64, emb.dim as i64]);
    let x = descriptor(&x, &emb.blocks);
    let k = k.min(n.saturating_sub(1));
    let mut lists = Vec::with_capacity(n);
    if k > 0 {
        let xs = if device::fast_bf16(Device::Cpu) {
            x.to_kind(Kind::BFloat16)
        } else {
            x
        };
        let mut start = 0;
        while start < n as i64 {
            if cancel.load(Ordering::Relaxed) {
                return Ok(JobResult::Cancelled);
            }
            let len = CHUNK.min(n as i64 - start);
            let mut sims = xs
                .narrow(0, start, len)
                .matmul(&xs.tr())
                .to_kind(Kind::Float);
            // An image is not its own neighbour.
            let rows = Tensor::arange(len, (Kind::Int64, Device::Cpu));
            let _ = sims.index_put_(
                &[Some(rows.shallow_clone()), Some(rows + start)],
                &Tensor::from(f32::NEG_INFINITY),
                false,
            );
            let (values, indices) = sims.topk(k as i64, 1, true, true);
            let values = Vec::<f32>::try_from(values.contiguous().view([-1]))?;
            let indices = Vec::<i64>::try_from(indices.contiguous().view([-1]))?;
            for r in 0..len as usize {
                lists.push(
                    (0..k)
                        .map(|j| (indices[r * k + j] as u32, values[r * k + j]))
                        .collect(),
                );
            }
            start += len;
            emit(Event::Progress {
                what: "nearest neighbours".into(),
                done: start as usize,
                total: n,
            });
        }
    } else {
        lists.resize(n, Vec::new());
    }
    Ok(JobResult::Neighbours(Neighbours {
        paths: emb
            .samples
            .iter()
            .map(|&i| path_str(&ds.samples[i].path))
            .collect(),
        lists,
        skipped: emb
            .skipped
            .iter()
            .map(|(i, why)| (path_str(&ds.samples[*i].path), why.clone()))
            .collect(),
    }))
}

/// Unit-length rows whose dot products are the mean of the blocks' cosine similarities, each
/// block centred on the dataset's mean first: the features are ReLU outputs, all positive, so
/// uncentred any two photos are 0.6-0.8 alike and a threshold separates nothing.
fn descriptor(x: &Tensor, blocks: &[usize]) -> Tensor {
    let mut parts = Vec::new();
    let mut at = 0;
    for &b in blocks {
        let part = x.narrow(1, at, b as i64);
        let part = &part - part.mean_dim([0i64].as_slice(), true, Kind::Float);
        let norm = part
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-8);
        parts.push(part / norm);
        at += b as i64;
    }
    Tensor::cat(&parts, 1) / (blocks.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_rows_are_unit_length_and_weigh_each_block_alike() {
        // Block 0 is wide and large, block 1 narrow and small: after the descriptor each counts
        // for half of a cosine.
        let x = Tensor::from_slice(&[
            10.0f32, 0.0, 0.0, 0.0, 1.0, //
            0.0, 10.0, 0.0, 0.0, 1.0, //
            0.0, 0.0, 10.0, 0.0, -1.0, //
            0.0, 0.0, 0.0, 10.0, -1.0,
        ])
        .view([4, 5]);
        let d = descriptor(&x, &[4, 1]);
        let norms =
            Vec::<f32>::try_from(d.norm_scalaropt_dim(2, [1i64].as_slice(), false)).unwrap();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
        let sims = d.matmul(&d.tr());
        let s = |i: i64, j: i64| sims.double_value(&[i, j]);
        // Rows 0 and 1 differ in the wide block and agree in the narrow one.
        assert!(
            (s(0, 1) - (0.5 * (-1.0 / 3.0) + 0.5)).abs() < 1e-4,
            "{}",
            s(0, 1)
        );
        assert!(s(0, 1) > s(0, 2));
    }
}
