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

/// Similarities computed at once: 150 M floats (600 MB), in rows of the whole matrix.
const BLOCK: i64 = 150_000_000;
/// Up to this many images every pair is compared in the full descriptor.
const EXACT_UP_TO: usize = 30_000;
/// Beyond it, candidates are found among the descriptor's top principal components (a
/// eighteenth of the products at 4,736 wide), then ranked by their full-descriptor similarity.
const REDUCED: i64 = 256;
/// Candidates per image in the reduced search.
const CANDIDATES: i64 = 50;

/// The `neighbours` job: each image's `k` most similar other images.
pub fn neighbours(
    source: &Source,
    cfg: &OofConfig,
    embeddings: &Path,
    k: usize,
    emit: &Emit<'_>,
    cancel: &AtomicBool,
) -> anyhow::Result<JobResult> {
    let (ds, _) = dataset::open_edited(source, &Default::default(), Default::default())?;
    let Some(mut emb) = oof::embed_all(&ds, cfg, embeddings, emit, cancel)? else {
        return Ok(JobResult::Cancelled);
    };
    let n = emb.samples.len();
    // Only the descriptor is kept: at 100,000 images each copy of the features is 1.7 GB.
    let x = descriptor(
        Tensor::from_slice(&std::mem::take(&mut emb.data)).view([n as i64, emb.dim as i64]),
        &emb.blocks,
    );
    let reduce = (n > EXACT_UP_TO).then_some(REDUCED);
    let progress = |done| {
        emit(Event::Progress {
            what: "nearest neighbours".into(),
            done,
            total: n,
        })
    };
    // t-SNE's affinities want about three times its perplexity in neighbours.
    let Some(mut lists) = nearest(&x, k.max(TSNE_NEIGHBOURS), reduce, &progress, cancel)? else {
        return Ok(JobResult::Cancelled);
    };
    let map = project(&x)?;
    let tsne = if n <= TSNE_UP_TO {
        emit(Event::Progress {
            what: "map (t-SNE)".into(),
            done: 0,
            total: n,
        });
        tsne(&lists, &map)
    } else {
        Vec::new()
    };
    for l in &mut lists {
        l.truncate(k);
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
        map,
        tsne,
    }))
}

/// Per row: (other row, similarity), most similar first.
type Lists = Vec<Vec<(u32, f32)>>;

/// Each row's `k` most similar other rows (by dot product), most similar first; None when
/// cancelled. With `reduce`, candidates come from that many principal components and are
/// ranked by their similarity in `x` itself, so every similarity returned is exact and only a
/// neighbour missing from the candidates can be missed.
fn nearest(
    x: &Tensor,
    k: usize,
    reduce: Option<i64>,
    progress: &dyn Fn(usize),
    cancel: &AtomicBool,
) -> anyhow::Result<Option<Lists>> {
    let (n, d) = x.size2()?;
    let k = k.min(n.saturating_sub(1) as usize) as i64;
    if k == 0 {
        return Ok(Some(vec![Vec::new(); n as usize]));
    }
    let cast = |t: Tensor| {
        if device::fast_bf16(Device::Cpu) {
            t.to_kind(Kind::BFloat16)
        } else {
            t
        }
    };
    let full = cast(x.shallow_clone());
    let (search, want) = match reduce {
        Some(dims) if dims < d => {
            let axes = principal_axes(x, dims, 4)?;
            (cast(x.matmul(&axes)), CANDIDATES.max(k).min(n - 1))
        }
        _ => (full.shallow_clone(), k),
    };
    let rows_at_once = (BLOCK / n).clamp(16, 2048);
    let mut lists = Vec::with_capacity(n as usize);
    let mut start = 0;
    while start < n {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let len = rows_at_once.min(n - start);
        let mut sims = search
            .narrow(0, start, len)
            .matmul(&search.tr())
            .to_kind(Kind::Float);
        // A row is not its own neighbour.
        let rows = Tensor::arange(len, (Kind::Int64, Device::Cpu));
        let _ = sims.index_put_(
            &[Some(rows.shallow_clone()), Some(rows + start)],
            &Tensor::from(f32::NEG_INFINITY),
            false,
        );
        let (mut values, mut indices) = sims.topk(want, 1, true, true);
        if want > k {
            // The candidates' similarities in the full descriptor, a few rows at a time
            // (16 rows x 50 candidates x 4,736 is 8 MB).
            let mut v = Vec::new();
            let mut ix = Vec::new();
            for at in (0..len).step_by(16) {
                let m = 16.min(len - at);
                let cand = indices.narrow(0, at, m);
                let rows = full.index_select(0, &cand.reshape([-1])).view([m, want, d]);
                let query = full.narrow(0, start + at, m).unsqueeze(2);
                let exact = rows.bmm(&query).squeeze_dim(2).to_kind(Kind::Float);
                let (best, order) = exact.topk(k, 1, true, true);
                v.push(best);
                ix.push(cand.gather(1, &order, false));
            }
            values = Tensor::cat(&v, 0);
            indices = Tensor::cat(&ix, 0);
        }
        let values = Vec::<f32>::try_from(values.contiguous().view([-1]))?;
        let indices = Vec::<i64>::try_from(indices.contiguous().view([-1]))?;
        let k = k as usize;
        for r in 0..len as usize {
            lists.push(
                (0..k)
                    .map(|j| (indices[r * k + j] as u32, values[r * k + j]))
                    .collect(),
            );
        }
        start += len;
        progress(start as usize);
    }
    Ok(Some(lists))
}

/// Neighbours per image that t-SNE's affinities are built from (perplexity 10).
const TSNE_NEIGHBOURS: usize = 30;
/// Up to this many images the map is also laid out by t-SNE, which keeps neighbourhoods
/// (clusters) that the two principal components flatten. Barnes-Hut t-SNE from the
/// neighbours already found: 1,906 images in about 1 s, 18,900 in about 6 s on 2 cores.
const TSNE_UP_TO: usize = 20_000;

/// A t-SNE layout from each image's nearest neighbours (`lists`, cosine similarities of unit
/// rows), started from the principal components rather than at random, so a map does not
/// change its whole shape between checks.
/// Empty when there are too few images for it.
fn tsne(lists: &[Vec<(u32, f32)>], pca: &[[f32; 2]]) -> Vec<[f32; 2]> {
    let n = lists.len();
    let k = lists.iter().map(Vec::len).min().unwrap_or(0);
    if n < 8 || k < 3 {
        return Vec::new();
    }
    let neighbours: Vec<Vec<bhtsne::Neighbor<f32>>> = lists
        .iter()
        .map(|l| {
            l[..k]
                .iter()
                .map(|&(j, s)| bhtsne::Neighbor {
                    index: j as usize,
                    // The distance between unit vectors whose dot product is s.
                    distance: (2.0 - 2.0 * s).max(0.0).sqrt(),
                })
                .collect()
        })
        .collect();
    // Started as openTSNE does, from the principal components scaled to a standard deviation
    // of 1e-4.
    let spread = (pca.iter().map(|p| p[0] * p[0]).sum::<f32>() / n as f32)
        .sqrt()
        .max(1e-12);
    let start: Vec<f32> = pca
        .iter()
        .flat_map(|p| [p[0] * 1e-4 / spread, p[1] * 1e-4 / spread])
        .collect();
    let ids: Vec<usize> = (0..n).collect();
    // The crate asserts on inputs it cannot fit; a map is not worth the neighbours found.
    let fit = std::panic::catch_unwind(|| {
        bhtsne::tSNE::<f32, usize, 2>::new(&ids)
            .perplexity((k / 3) as f32)
            .epochs(750)
            .initial_embedding(start)
            .barnes_hut_with_neighbors(0.5, &neighbours)
            .embedding()
    });
    match fit {
        Ok(y) if y.iter().all(|v| v.is_finite()) => y.chunks(2).map(|c| [c[0], c[1]]).collect(),
        _ => Vec::new(),
    }
}

/// Rounds of subspace iteration for the map: the ten-wide subspace holds the top two
/// components to within plotting precision after a few; eight leaves a margin.
const PCA_ROUNDS: usize = 8;

/// Each row's first two principal components, each axis turned so that its largest value is
/// positive (a map does not flip between runs).
fn project(x: &Tensor) -> anyhow::Result<Vec<[f32; 2]>> {
    let (n, d) = x.size2()?;
    if n < 2 || d < 2 {
        return Ok(vec![[0.0, 0.0]; n as usize]);
    }
    let x = x - x.mean_dim([0i64].as_slice(), true, Kind::Float);
    let p = x.matmul(&principal_axes(&x, 2, PCA_ROUNDS)?);
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

/// The `dims` directions along which the rows of `x` (centred) spread most, largest first, as
/// the columns of a d x dims matrix: subspace iteration on a slightly wider subspace (a few
/// products with `x`, never its d x d covariance: at 4,736 wide that would be hours on a CPU),
/// then the best directions within it.
fn principal_axes(x: &Tensor, dims: i64, rounds: usize) -> anyhow::Result<Tensor> {
    let (n, d) = x.size2()?;
    let k = (dims + 8).min(d).min(n);
    // A fixed start, not torch's global generator: the same axes every time, and other
    // threads drawing random numbers cannot change them.
    let start: Vec<f32> = (0..d * k)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut q = Tensor::from_slice(&start)
        .view([d, k])
        .to_device(x.device());
    for _ in 0..rounds {
        q = Tensor::f_linalg_qr(&x.tr().matmul(&x.matmul(&q)), "reduced")?.0;
    }
    // Within the subspace, eigenvalues come smallest first.
    let b = x.matmul(&q);
    let (_, vectors) = b.tr().matmul(&b).f_linalg_eigh("L")?;
    Ok(q.matmul(&vectors.flip([1i64].as_slice()))
        .narrow(1, 0, dims.min(k)))
}

/// Unit-length rows whose dot products are the mean of the blocks' cosine similarities, each
/// block centred on the dataset's mean first: the features are ReLU outputs, all positive, so
/// uncentred any two photos are 0.6-0.8 alike and a threshold separates nothing. Works in
/// place: at 100,000 images every copy is 1.7 GB.
fn descriptor(x: Tensor, blocks: &[usize]) -> Tensor {
    let scale = 1.0 / (blocks.len() as f64).sqrt();
    let mut at = 0;
    for &b in blocks {
        let mut part = x.narrow(1, at, b as i64);
        let mean = part.mean_dim([0i64].as_slice(), true, Kind::Float);
        let _ = part.g_sub_(&mean);
        let norm = part
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-8)
            / scale;
        let _ = part.g_div_(&norm);
        at += b as i64;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [-1, 1).
    fn noise(seed: u64, len: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn the_reduced_search_finds_the_exact_neighbours_with_exact_similarities() {
        // 600 unit rows in 300 dimensions around 40 centres, the last 20 slightly changed
        // copies of the first 20.
        let (n, d, copies) = (600usize, 300usize, 20usize);
        let centres = noise(1, 40 * d);
        let jitter = noise(2, n * d);
        let mut data = vec![0.0f32; n * d];
        for i in 0..n - copies {
            for j in 0..d {
                data[i * d + j] = centres[(i % 40) * d + j] + 0.8 * jitter[i * d + j];
            }
        }
        for c in 0..copies {
            let (from, to) = (c, n - copies + c);
            for j in 0..d {
                data[to * d + j] = data[from * d + j] + 0.05 * jitter[to * d + j];
            }
        }
        let x = Tensor::from_slice(&data).view([n as i64, d as i64]);
        let x = &x / x.norm_scalaropt_dim(2, [1i64].as_slice(), true);
        let never = AtomicBool::new(false);
        let exact = nearest(&x, 5, None, &|_| {}, &never).unwrap().unwrap();
        let reduced = nearest(&x, 5, Some(64), &|_| {}, &never).unwrap().unwrap();
        assert_eq!(reduced.len(), n);
        // The same nearest neighbour, or one as near (bf16 products order near-ties either way).
        let agree = (0..n)
            .filter(|&i| exact[i][0].1 - reduced[i][0].1 < 0.01)
            .count();
        assert!(
            agree >= n * 99 / 100,
            "top neighbour as near for {agree} of {n}"
        );
        for c in 0..copies {
            assert_eq!(reduced[c][0].0 as usize, n - copies + c);
            assert_eq!(reduced[n - copies + c][0].0 as usize, c);
        }
        // Every similarity is the pair's own, not the reduced space's.
        for (i, list) in reduced.iter().enumerate() {
            assert_eq!(list.len(), 5);
            for &(j, s) in list {
                let truth = x.get(i as i64).dot(&x.get(j as i64)).double_value(&[]) as f32;
                assert!((s - truth).abs() < 0.02, "{i}-{j}: {s} vs {truth}");
            }
            assert!(list.windows(2).all(|w| w[0].1 >= w[1].1));
        }
        // A cancelled search stops.
        let stop = AtomicBool::new(true);
        assert!(nearest(&x, 5, Some(64), &|_| {}, &stop).unwrap().is_none());
    }

    #[test]
    fn t_sne_keeps_two_groups_of_neighbours_apart() {
        // 60 images in two groups; each image's neighbours are in its own group. Started from
        // a "PCA" that mixes the groups, t-SNE pulls them apart.
        let n = 60usize;
        // Each group is a ring of 30: an image's neighbours are the six on either side.
        let lists: Vec<Vec<(u32, f32)>> = (0..n)
            .map(|i| {
                let (group, at) = (i % 2, i / 2);
                (1..=6)
                    .flat_map(|d| [(at + d) % 30, (at + 30 - d) % 30].map(|r| (r, d)))
                    .map(|(r, d)| ((2 * r + group) as u32, 0.95 - 0.02 * d as f32))
                    .collect()
            })
            .collect();
        let pca: Vec<[f32; 2]> = (0..n).map(|i| [i as f32, (i * 7 % 11) as f32]).collect();
        let y = tsne(&lists, &pca);
        assert_eq!(y.len(), n);
        let centre = |g: usize| {
            let pts: Vec<&[f32; 2]> = y.iter().skip(g).step_by(2).collect();
            let c = pts
                .iter()
                .fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
            let c = [c[0] / pts.len() as f32, c[1] / pts.len() as f32];
            let spread = pts
                .iter()
                .map(|p| ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2)).sqrt())
                .sum::<f32>()
                / pts.len() as f32;
            (c, spread)
        };
        let ((a, ra), (b, rb)) = (centre(0), centre(1));
        let gap = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        assert!(
            gap > ra + rb,
            "groups overlap: gap {gap}, mean radii {ra} {rb}"
        );
        // Too few images: no layout rather than a panic.
        assert!(tsne(&lists[..5], &pca[..5]).is_empty());
        // Every picture the same (all distances 0): a layout of finite points or none, never
        // a crash.
        let same: Vec<Vec<(u32, f32)>> = (0..n)
            .map(|i| {
                (0..n)
                    .filter(|&j| j != i)
                    .take(12)
                    .map(|j| (j as u32, 1.0))
                    .collect()
            })
            .collect();
        let y = tsne(&same, &pca);
        assert!(y.iter().flatten().all(|v| v.is_finite()));
    }

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
        let d = descriptor(x, &[4, 1]);
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
