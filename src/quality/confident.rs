//! Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
//! Dataset Labels", JAIR 2021), with the same choices as cleanlab 2.9's `find_label_issues`, so
//! results can be compared with it one to one.
//!
//! Terms, as in the paper: `labels` are the given (noisy) labels ỹ; `probs` are out-of-sample
//! predicted probabilities p̂(y = j | x); the *per-class threshold* t_j is the mean self-confidence
//! of the examples labelled j; the *confident joint* C[ỹ][y*] counts examples labelled ỹ whose
//! probability reaches the threshold of class y* (the most probable such class when several do);
//! *calibration* rescales each row of C to the class's size and the whole matrix to N; the
//! *prune-count matrix* is its transpose with at least `min_examples_per_class` kept per class.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Fuzzy-equality margin used throughout (cleanlab's `FLOATING_POINT_COMPARISON`).
const EPS: f64 = 1e-6;
/// Thresholds are clipped from below to this, so a confident bin is never empty by rounding.
const THRESHOLD_FLOOR: f64 = 2.0 * EPS;
/// The threshold of a class with no examples: above any probability.
const ABSENT_CLASS_THRESHOLD: f64 = 2.0;
const TINY: f64 = 1e-100;

/// Which examples count as label issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// For each (given k, true j) pair, the C[k][j] examples labelled k with the largest margin
    /// p_j - p_k (the default).
    PruneByNoiseRate,
    /// For each class k, the n_k - C[k][k] examples labelled k with the lowest p_k.
    PruneByClass,
    /// Flagged by both of the above.
    Both,
    /// The off-diagonal entries of the (uncalibrated) confident joint.
    ConfidentLearning,
    /// The predicted class differs from the given one.
    PredictedNeqGiven,
}

/// How flagged examples are ordered, most likely wrong first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RankBy {
    /// p_ỹ, the probability of the given label (lowest first).
    SelfConfidence,
    /// (p_ỹ - max_{j≠ỹ} p_j + 1) / 2 (lowest first).
    NormalizedMargin,
}

/// A probability as stored: f32 (Loupe's own predictions) or f64 (numpy's default). All
/// arithmetic is done in f64, as numpy does on float64 input.
pub trait Prob: Copy + Send + Sync + PartialOrd + Into<f64> {}
impl Prob for f32 {}
impl Prob for f64 {}

/// Predicted probabilities, row-major: `n` rows of `k` classes.
#[derive(Debug, Clone, Copy)]
pub struct Probs<'a, T: Prob = f32> {
    pub data: &'a [T],
    pub k: usize,
}

impl<'a, T: Prob> Probs<'a, T> {
    pub fn new(data: &'a [T], k: usize) -> Probs<'a, T> {
        assert!(
            k > 0 && data.len().is_multiple_of(k),
            "{} probabilities do not make rows of {k}",
            data.len()
        );
        Probs { data, k }
    }

    pub fn n(&self) -> usize {
        self.data.len() / self.k
    }

    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.k..(i + 1) * self.k]
    }
}

/// The first index of the largest value (numpy's `argmax`).
fn argmax<T: Prob>(row: &[T]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Examples per given class.
pub fn class_counts(labels: &[usize], k: usize) -> Vec<usize> {
    let mut counts = vec![0; k];
    for &l in labels {
        counts[l] += 1;
    }
    counts
}

/// Per-class thresholds t_j: the mean p_j over the examples labelled j.
pub fn confident_thresholds<T: Prob>(labels: &[usize], probs: Probs<T>) -> Vec<f64> {
    let k = probs.k;
    let (sum, count) = labels
        .par_iter()
        .enumerate()
        .fold(
            || (vec![0.0f64; k], vec![0usize; k]),
            |(mut s, mut c), (i, &l)| {
                s[l] += probs.row(i)[l].into();
                c[l] += 1;
                (s, c)
            },
        )
        .reduce(
            || (vec![0.0; k], vec![0; k]),
            |(mut s, mut c), (s2, c2)| {
                for j in 0..k {
                    s[j] += s2[j];
                    c[j] += c2[j];
                }
                (s, c)
            },
        );
    (0..k)
        .map(|j| {
            if count[j] == 0 {
                ABSENT_CLASS_THRESHOLD
            } else {
                (sum[j] / count[j] as f64).max(THRESHOLD_FLOOR)
            }
        })
        .collect()
}

/// The confident joint C (k x k, row = given label, column = the confident guess of the true
/// label), before calibration, and the examples off its diagonal (ascending).
pub fn confident_joint<T: Prob>(
    labels: &[usize],
    probs: Probs<T>,
    thresholds: &[f64],
) -> (Vec<Vec<f64>>, Vec<usize>) {
    let k = probs.k;
    let cut: Vec<f64> = thresholds.iter().map(|&t| t - EPS).collect();
    let guesses: Vec<Option<usize>> = (0..labels.len())
        .into_par_iter()
        .map(|i| {
            let row = probs.row(i);
            let (mut first, mut confident) = (usize::MAX, 0);
            for j in 0..k {
                if row[j].into() >= cut[j] {
                    confident += 1;
                    if first == usize::MAX {
                        first = j;
                    }
                }
            }
            match confident {
                0 => None,
                1 => Some(first),
                _ => Some(argmax(row)),
            }
        })
        .collect();
    let mut joint = vec![vec![0.0f64; k]; k];
    let mut off = Vec::new();
    for (i, g) in guesses.iter().enumerate() {
        if let Some(g) = *g {
            joint[labels[i]][g] += 1.0;
            if g != labels[i] {
                off.push(i);
            }
        }
    }
    for (j, row) in joint.iter_mut().enumerate() {
        row[j] = row[j].max(1.0);
    }
    (joint, off)
}

/// Calibration: each row scaled to its class's size, then the whole to N, rounded keeping row
/// totals.
pub fn calibrate(joint: &[Vec<f64>], counts: &[usize]) -> Vec<Vec<f64>> {
    let rows: Vec<Vec<f64>> = joint
        .iter()
        .zip(counts)
        .map(|(row, &n)| {
            let s: f64 = row.iter().sum();
            row.iter().map(|v| v / s.max(TINY) * n as f64).collect()
        })
        .collect();
    let total: f64 = rows.iter().flatten().sum();
    let n: usize = counts.iter().sum();
    rows.iter()
        .map(|row| {
            round_preserving_sum(
                &row.iter()
                    .map(|v| v / total.max(TINY) * n as f64)
                    .collect::<Vec<_>>(),
            )
        })
        .collect()
}

/// Rounds each value so that the rounded values sum to the rounded sum, moving the values with
/// the largest rounding error first.
pub fn round_preserving_sum(values: &[f64]) -> Vec<f64> {
    let mut ints: Vec<f64> = values.iter().map(|v| v.round_ties_even()).collect();
    let want = values.iter().sum::<f64>().round_ties_even();
    loop {
        let have = ints.iter().sum::<f64>().round_ties_even();
        if (have - want).abs() <= EPS {
            return ints;
        }
        let diff = (want - have).round_ties_even();
        let step = if diff < 0.0 { -1.0 } else { 1.0 };
        let changes = (diff.abs() as usize).min(values.len());
        // Largest (value - rounded) first when adding, smallest first when taking away.
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| (values[a] - ints[a]).total_cmp(&(values[b] - ints[b])));
        if step > 0.0 {
            order.reverse();
        }
        for &i in order.iter().take(changes) {
            ints[i] += step;
        }
    }
}

#[allow(clippy::needless_range_loop)] // matrix code reads best with indices
/// The prune-count matrix: `P[j][k]` examples labelled k to flag as truly j, from the calibrated
/// joint, keeping at least `min_per_class` per class on the diagonal; `frac_noise` scales the
/// off-diagonal counts (1.0 flags all estimated issues).
pub fn prune_counts(
    calibrated: &[Vec<f64>],
    min_per_class: usize,
    frac_noise: f64,
) -> Vec<Vec<i64>> {
    let k = calibrated.len();
    let m = |j: usize, c: usize| calibrated[c][j]; // the transpose
    let mut out = vec![vec![0.0f64; k]; k];
    for c in 0..k {
        let diag = m(c, c);
        let new_diag = diag.max(min_per_class as f64);
        let nonzero = (0..k).filter(|&j| m(j, c) != 0.0).count();
        let spread = (new_diag - diag) / (nonzero as f64 - 1.0).max(1.0);
        for j in 0..k {
            out[j][c] = if j == c {
                new_diag
            } else {
                (m(j, c) - spread).max(0.0)
            };
        }
    }
    // Scale the noise by `frac_noise`, the removed part going back to the diagonal; cast to
    // integers by truncation.
    let mut scaled: Vec<Vec<f64>> = out
        .iter()
        .map(|r| r.iter().map(|v| v * frac_noise).collect())
        .collect();
    for c in 0..k {
        let removed: f64 = (0..k)
            .filter(|&j| j != c)
            .map(|j| out[j][c] - scaled[j][c])
            .sum();
        scaled[c][c] = out[c][c] + removed;
    }
    scaled
        .iter()
        .map(|r| {
            round_preserving_sum(&r.iter().map(|v| v.trunc()).collect::<Vec<_>>())
                .iter()
                .map(|&v| v as i64)
                .collect()
        })
        .collect()
}

/// The label issues: one flag per example.
pub fn find_label_issues<T: Prob>(labels: &[usize], probs: Probs<T>, method: Method) -> Vec<bool> {
    let (k, n) = (probs.k, probs.n());
    assert_eq!(labels.len(), n, "one label per row of probabilities");
    assert!(
        labels.iter().all(|&l| l < k),
        "labels must be class indices below {k}"
    );
    let mut flags = match method {
        Method::PredictedNeqGiven => (0..n)
            .into_par_iter()
            .map(|i| argmax(probs.row(i)) != labels[i])
            .collect(),
        Method::ConfidentLearning => {
            let (_, off) = confident_joint(labels, probs, &confident_thresholds(labels, probs));
            let mut f = vec![false; n];
            for i in off {
                f[i] = true;
            }
            f
        }
        Method::PruneByNoiseRate | Method::PruneByClass | Method::Both => {
            let counts = class_counts(labels, k);
            let (joint, _) = confident_joint(labels, probs, &confident_thresholds(labels, probs));
            let prune = prune_counts(&calibrate(&joint, &counts), 1, 1.0);
            let mut by_class = vec![false; n];
            let mut by_rate = vec![false; n];
            if method != Method::PruneByNoiseRate {
                let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
                for (i, &l) in labels.iter().enumerate() {
                    members[l].push(i);
                }
                let per_class: Vec<Vec<usize>> = (0..k)
                    .into_par_iter()
                    .map(|c| prune_by_class(&members[c], c, probs, &prune))
                    .collect();
                per_class
                    .into_iter()
                    .flatten()
                    .for_each(|i| by_class[i] = true);
            }
            if method != Method::PruneByClass {
                prune_by_noise_rate(labels, &counts, probs, &prune)
                    .into_iter()
                    .for_each(|i| by_rate[i] = true);
            }
            match method {
                Method::PruneByClass => by_class,
                Method::PruneByNoiseRate => by_rate,
                _ => by_class
                    .iter()
                    .zip(&by_rate)
                    .map(|(a, b)| *a && *b)
                    .collect(),
            }
        }
    };
    // Never flag an example whose given label is (within EPS) the most probable.
    flags.par_iter_mut().enumerate().for_each(|(i, f)| {
        if *f && given_is_argmax(probs.row(i), labels[i]) {
            *f = false;
        }
    });
    flags
}

/// numpy's `argmax(p + EPS at the given label) == given`.
fn given_is_argmax<T: Prob>(row: &[T], given: usize) -> bool {
    let p = row[given].into() + EPS;
    row.iter().enumerate().all(|(j, &v)| {
        j == given
            || if j < given {
                v.into() < p
            } else {
                v.into() <= p
            }
    })
}

/// The `n` positions of `idx` with the largest `key`, ties to the earlier position.
fn top_n(idx: &[usize], n: usize, key: impl Fn(usize) -> f64) -> Vec<usize> {
    let mut keyed: Vec<(f64, usize)> = idx.iter().map(|&i| (key(i), i)).collect();
    let cmp = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if n < keyed.len() {
        keyed.select_nth_unstable_by(n, cmp);
        keyed.truncate(n);
    }
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Class `c`'s examples (`members`) with the lowest p_c: n_c - P[c][c] of them.
fn prune_by_class<T: Prob>(
    members: &[usize],
    c: usize,
    probs: Probs<T>,
    prune: &[Vec<i64>],
) -> Vec<usize> {
    if members.len() <= 1 {
        return Vec::new();
    }
    let issues = members.len() as i64 - prune[c][c];
    if issues < 1 {
        return Vec::new();
    }
    top_n(members, issues as usize, |i| -probs.row(i)[c].into())
}

/// For every class c and other class j, the P[j][c] examples labelled c with the largest margin
/// p_j - p_c (ties to the lower index); classes with one example are left alone.
///
/// The matrix is read once, in order (a streaming read: by class, rows would be gathered from
/// all over it), split into one chunk per thread. Each chunk keeps a bounded heap per (c, j)
/// cell; most margins fall below their cell's floor and cost one comparison. The chunks' heaps
/// are then merged per cell under the same order, which gives the same examples as one pass.
fn prune_by_noise_rate<T: Prob>(
    labels: &[usize],
    counts: &[usize],
    probs: Probs<T>,
    prune: &[Vec<i64>],
) -> Vec<usize> {
    let k = probs.k;
    // Heap size per cell (c, j) at c * k + j; 0 = nothing to prune.
    let size: Vec<usize> = (0..k * k)
        .map(|cell| {
            let (c, j) = (cell / k, cell % k);
            if j == c || counts[c] <= 1 || prune[j][c] <= 0 {
                0
            } else {
                (prune[j][c] as usize).min(counts[c])
            }
        })
        .collect();
    let chunk = labels
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let per_chunk: Vec<Vec<std::collections::BinaryHeap<Worst>>> = (0..labels.len())
        .step_by(chunk)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let mut heaps: Vec<std::collections::BinaryHeap<Worst>> = (0..k * k)
                .map(|_| std::collections::BinaryHeap::new())
                .collect();
            // The margin a candidate must beat: -inf while its heap is not full, then the heap's
            // worst; +inf where nothing is pruned. Rows come in ascending index order, so an
            // equal margin never beats an earlier one: strictly greater.
            let mut floor: Vec<f64> = size
                .iter()
                .map(|&n| {
                    if n == 0 {
                        f64::INFINITY
                    } else {
                        f64::NEG_INFINITY
                    }
                })
                .collect();
            let end = (start + chunk).min(labels.len());
            for (i, &c) in labels.iter().enumerate().take(end).skip(start) {
                let row = &probs.row(i)[..k];
                let own: f64 = row[c].into();
                let floor = &mut floor[c * k..(c + 1) * k];
                for j in 0..k {
                    let margin = row[j].into() - own;
                    if margin > floor[j] {
                        let (heap, n) = (&mut heaps[c * k + j], size[c * k + j]);
                        heap.push(Worst(margin, i));
                        if heap.len() > n {
                            heap.pop();
                        }
                        if heap.len() == n {
                            floor[j] = heap.peek().map_or(f64::NEG_INFINITY, |x| x.0);
                        }
                    }
                }
            }
            heaps
        })
        .collect();
    let mut out: Vec<usize> = (0..k * k)
        .into_par_iter()
        .flat_map_iter(|cell| {
            // Worst orders the best candidates first.
            let mut all: Vec<Worst> = per_chunk
                .iter()
                .flat_map(|h| h[cell].iter().copied())
                .collect();
            all.sort_unstable();
            all.truncate(size[cell]);
            all.into_iter().map(|x| x.1)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A candidate (margin, index) ordered so that the heap's top is the worst kept one: the smallest
/// margin, and of equal margins the larger index.
#[derive(Debug, Clone, Copy)]
struct Worst(f64, usize);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// The quality score of each example's given label (lower = more likely wrong).
pub fn label_quality<T: Prob>(labels: &[usize], probs: Probs<T>, rank_by: RankBy) -> Vec<f64> {
    (0..labels.len())
        .into_par_iter()
        .map(|i| {
            let row = probs.row(i);
            let sc: f64 = row[labels[i]].into();
            match rank_by {
                RankBy::SelfConfidence => sc,
                RankBy::NormalizedMargin => {
                    let other = row
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != labels[i])
                        .map(|(_, &v)| v.into())
                        .fold(f64::NEG_INFINITY, f64::max);
                    (sc - other + 1.0) / 2.0
                }
            }
        })
        .collect()
}

/// The flagged examples, most likely wrong first (ties keep index order).
pub fn rank(flags: &[bool], quality: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..flags.len()).filter(|&i| flags[i]).collect();
    idx.sort_by(|&a, &b| quality[a].total_cmp(&quality[b]));
    idx
}

/// The estimated number of label errors among each class's examples: the off-diagonal mass of
/// the class's row in the calibrated confident joint.
pub fn estimated_errors_per_class<T: Prob>(labels: &[usize], probs: Probs<T>) -> Vec<usize> {
    let counts = class_counts(labels, probs.k);
    let (joint, _) = confident_joint(labels, probs, &confident_thresholds(labels, probs));
    calibrate(&joint, &counts)
        .iter()
        .enumerate()
        .map(|(c, row)| {
            row.iter()
                .enumerate()
                .filter(|(j, _)| *j != c)
                .map(|(_, v)| *v)
                .sum::<f64>() as usize
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_the_total() {
        // Half rounds to even (0, 0, 1); the missing 1 goes to the largest rounding error, the
        // later of equal ones (as reversing a stable ascending order does).
        assert_eq!(round_preserving_sum(&[0.5, 0.5, 1.0]), vec![0.0, 1.0, 1.0]);
        assert_eq!(round_preserving_sum(&[1.4, 1.4, 1.2]), vec![1.0, 2.0, 1.0]);
        let r = round_preserving_sum(&[2.6, 2.6, 2.8]);
        assert_eq!(r.iter().sum::<f64>(), 8.0);
    }
}
