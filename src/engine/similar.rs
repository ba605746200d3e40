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
            x.shallow_clone()
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
        map: project(&x)?,
    }))
}

/// Rounds of subspace iteration: the eight-wide subspace holds the top two components to
/// within plotting precision after a few; eight leaves a margin.
const PCA_ROUNDS: usize = 8;

/// Each row's first two principal components, by subspace iteration (a few products with the
/// matrix, never its d x d covariance: 4,256 x 4,256 per image would be hours on a CPU). Each
/// axis is turned so that its largest value is positive, so a map does not flip between runs.
fn project(x: &Tensor) -> anyhow::Result<Vec<[f32; 2]>> {
    let (n, d) = x.size2()?;
    if n < 2 || d < 2 {
        return Ok(vec![[0.0, 0.0]; n as usize]);
    }
    let x = x - x.mean_dim([0i64].as_slice(), true, Kind::Float);
    let k = 8.min(d).min(n);
    // A fixed start, not torch's global generator: the same map every time, and other threads
    // drawing random numbers cannot change it.
    let start: Vec<f32> = (0..d * k)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut q = Tensor::from_slice(&start)
        .view([d, k])
        .to_device(x.device());
    for _ in 0..PCA_ROUNDS {
        q = Tensor::f_linalg_qr(&x.tr().matmul(&x.matmul(&q)), "reduced")?.0;
    }
    // The best two directions within the subspace (eigenvalues come smallest first).
    let b = x.matmul(&q);
    let (_, vectors) = b.tr().matmul(&b).f_linalg_eigh("L")?;
    let p = b.matmul(&vectors.narrow(1, k - 2, 2).flip([1i64].as_slice()));
    let peak = p.abs().argmax(0, false);
    for axis in 0..2 {
        let at = peak.int64_value(&[axis]);
        if p.double_value(&[at, axis]) < 0.0 {
            let _ = p.select(1, axis).g_mul_scalar_(-1.0);
        }
    }
    let flat = Vec::<f32>::try_from(p.to_kind(Kind::Float).contiguous().view([-1]))?;
    Ok(flat.chunks(2).map(|c| [c[0], c[1]]).collect())
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
    fn the_map_is_the_two_directions_of_largest_spread() {
        // 200 points in 40 dimensions: spread 10 along dimension 3, 5 along dimension 17, and
        // small noise elsewhere. The map's axes are those two, in that order.
        let (n, d) = (200usize, 40usize);
        let mut data = vec![0.0f32; n * d];
        for i in 0..n {
            let t = i as f32 / n as f32;
            for j in 0..d {
                data[i * d + j] = 0.05 * ((i * 31 + j * 17) % 13) as f32 / 13.0;
            }
            data[i * d + 3] += 10.0 * (t * std::f32::consts::TAU).sin();
            data[i * d + 17] += 5.0 * (t * std::f32::consts::TAU).cos();
        }
        let x = Tensor::from_slice(&data).view([n as i64, d as i64]);
        let map = project(&x).unwrap();
        assert_eq!(map.len(), n);
        let corr = |axis: usize, dim: usize| {
            let a: Vec<f64> = map.iter().map(|p| p[axis] as f64).collect();
            let b: Vec<f64> = (0..n).map(|i| data[i * d + dim] as f64).collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (ma, mb) = (mean(&a), mean(&b));
            let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
            let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
            let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
            cov / (va * vb).sqrt()
        };
        assert!(corr(0, 3).abs() > 0.999, "{}", corr(0, 3));
        assert!(corr(1, 17).abs() > 0.999, "{}", corr(1, 17));
        // The same map again: nothing random.
        assert_eq!(project(&x).unwrap(), map);
        // Too few points or dimensions for two axes: all at the origin, not an error.
        assert_eq!(project(&x.narrow(0, 0, 1)).unwrap(), vec![[0.0, 0.0]]);
    }

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
