//! What a dataset holds, in numbers: class balance, sizes, formats, unreadable files,
//! exact duplicates and the duplicates whose labels disagree.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use super::probe::ContentHash;
use super::scan::Dataset;
use crate::util::path_str;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Count {
    pub name: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnCounts {
    pub column: String,
    pub counts: Vec<Count>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub path: String,
    pub reason: String,
    pub kind: &'static str,
}

/// min / median / mean / max of one measure.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub mean: f64,
    pub max: f64,
}

impl Summary {
    fn of(mut v: Vec<f64>) -> Summary {
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Summary {
            min: v[0],
            median,
            mean: v.iter().sum::<f64>() / n as f64,
            max: v[n - 1],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeStats {
    pub width: Summary,
    pub height: Summary,
    /// width / height
    pub aspect: Summary,
    /// Aspect-ratio histogram over [`ASPECT_BINS`] (upper edges; the last bin is open).
    pub aspect_histogram: Vec<usize>,
    /// The most common exact sizes, as `WxH`, most frequent first (at most 10).
    pub common: Vec<Count>,
}

/// Upper edges of the aspect-ratio histogram bins: portrait strips .. square .. panoramas.
pub const ASPECT_BINS: [f64; 8] = [0.5, 0.67, 0.8, 0.95, 1.05, 1.25, 1.5, 2.0];

/// The aspect-ratio bin of a `width` x `height` image (an index into the histogram).
pub fn aspect_bin(width: u32, height: u32) -> usize {
    let a = f64::from(width) / f64::from(height.max(1));
    ASPECT_BINS
        .iter()
        .position(|&e| a < e)
        .unwrap_or(ASPECT_BINS.len())
}

/// A bin of the aspect-ratio histogram in words: `<0.5`, `0.95–1.05`, `≥2`.
pub fn aspect_bin_name(k: usize) -> String {
    match k {
        0 => format!("<{}", ASPECT_BINS[0]),
        k if k >= ASPECT_BINS.len() => format!("≥{}", ASPECT_BINS[ASPECT_BINS.len() - 1]),
        k => format!("{}–{}", ASPECT_BINS[k - 1], ASPECT_BINS[k]),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    /// Byte-identical files...
    pub paths: Vec<String>,
    /// ...with these different labels, one per path.
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Usable samples.
    pub images: usize,
    pub classes: Vec<Count>,
    /// Largest class over smallest non-empty class.
    pub imbalance_ratio: Option<f64>,
    /// The three smallest classes, smallest first (empty classes included).
    pub rarest: Vec<Count>,
    /// Per-column counts when the label is made of several columns; empty otherwise.
    pub columns: Vec<ColumnCounts>,
    pub sizes: SizeStats,
    pub formats: Vec<Count>,
    pub color_modes: Vec<Count>,
    pub unreadable: Vec<Unreadable>,
    pub unreadable_by_reason: Vec<Count>,
    /// Junk files skipped on purpose.
    pub ignored: usize,
    /// Groups of byte-identical samples (paths), largest group first.
    pub duplicates: Vec<Vec<String>>,
    pub label_conflicts: Vec<Conflict>,
    /// With a group column: which label columns belong to the group, and the images that
    /// disagree with their group.
    pub groups: Option<super::groups::GroupCheck>,
}

/// Counts sorted by count, largest first, then by name.
fn sorted_counts(map: HashMap<String, usize>) -> Vec<Count> {
    let mut v: Vec<Count> = map
        .into_iter()
        .map(|(name, count)| Count { name, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

/// Computes everything but duplicates; cheap (no file I/O).
pub fn compute(ds: &Dataset) -> Stats {
    compute_with_hashes(ds, None)
}

/// Computes everything; `hashes[i]` is the content hash of `ds.samples[i]` (see [`hash_samples`]).
pub fn compute_with_hashes(ds: &Dataset, hashes: Option<&[Option<ContentHash>]>) -> Stats {
    let mut per_class: BTreeMap<&str, usize> = ds.classes.iter().map(|c| (c.as_str(), 0)).collect();
    for s in &ds.samples {
        *per_class.entry(&s.label).or_default() += 1;
    }
    let mut classes: Vec<Count> = per_class
        .iter()
        .map(|(n, c)| Count {
            name: n.to_string(),
            count: *c,
        })
        .collect();
    classes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    let nonzero: Vec<usize> = classes.iter().map(|c| c.count).filter(|&c| c > 0).collect();
    let imbalance_ratio = match (nonzero.iter().max(), nonzero.iter().min()) {
        (Some(&max), Some(&min)) => Some(max as f64 / min as f64),
        _ => None,
    };
    let rarest = classes.iter().rev().take(3).cloned().collect();

    let columns = if ds.label_columns.len() > 1 {
        ds.label_columns
            .iter()
            .enumerate()
            .map(|(i, col)| {
                let mut m = HashMap::new();
                for s in &ds.samples {
                    *m.entry(s.parts[i].clone()).or_default() += 1;
                }
                ColumnCounts {
                    column: col.clone(),
                    counts: sorted_counts(m),
                }
            })
            .collect()
    } else {
        Vec::new()
    };

    let mut formats = HashMap::new();
    let mut colors = HashMap::new();
    let mut common = HashMap::new();
    let mut aspect_histogram = vec![0; ASPECT_BINS.len() + 1];
    for s in &ds.samples {
        *formats.entry(s.info.format_name().to_string()).or_default() += 1;
        *colors.entry(s.info.color_name().to_string()).or_default() += 1;
        *common
            .entry(format!("{}x{}", s.info.width, s.info.height))
            .or_default() += 1;
        aspect_histogram[aspect_bin(s.info.width, s.info.height)] += 1;
    }
    let mut common = sorted_counts(common);
    common.truncate(10);
    let sizes = SizeStats {
        width: Summary::of(ds.samples.iter().map(|s| f64::from(s.info.width)).collect()),
        height: Summary::of(
            ds.samples
                .iter()
                .map(|s| f64::from(s.info.height))
                .collect(),
        ),
        aspect: Summary::of(
            ds.samples
                .iter()
                .map(|s| f64::from(s.info.width) / f64::from(s.info.height))
                .collect(),
        ),
        aspect_histogram,
        common,
    };

    let unreadable: Vec<Unreadable> = ds
        .rejected
        .iter()
        .map(|r| Unreadable {
            path: path_str(&r.path),
            reason: r.reason.to_string(),
            kind: r.reason.key(),
        })
        .collect();
    let mut by_reason = HashMap::new();
    for u in &unreadable {
        *by_reason.entry(u.kind.to_string()).or_default() += 1;
    }

    let (duplicates, label_conflicts) = hashes.map(|h| duplicate_groups(ds, h)).unwrap_or_default();
    Stats {
        images: ds.samples.len(),
        classes,
        imbalance_ratio,
        rarest,
        columns,
        sizes,
        formats: sorted_counts(formats),
        color_modes: sorted_counts(colors),
        unreadable,
        unreadable_by_reason: sorted_counts(by_reason),
        ignored: ds.ignored.len(),
        duplicates,
        label_conflicts,
        groups: super::groups::check(ds),
    }
}

/// Content hash (BLAKE3) of every sample, in parallel; `None` where the file could not be read.
pub fn hash_samples(ds: &Dataset) -> Vec<Option<ContentHash>> {
    // The scan hashed what it read whole (`OpenOptions::hash`); only the rest is read here, on
    // the I/O pool (many reads in flight, as the scan).
    super::scan::io_pool().install(|| {
        ds.samples
            .par_iter()
            .map(|s| {
                if let Some(h) = s.info.content_hash {
                    return Some(h);
                }
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                let mut f = std::fs::File::open(ds.abs_path(&s.path)).ok()?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = std::io::Read::read(&mut f, &mut buf).ok()?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                Some(h.digest128())
            })
            .collect()
    })
}

/// Samples with identical content, as groups of indices: largest group first, then by first
/// member.
pub fn duplicate_index_groups(hashes: &[Option<ContentHash>]) -> Vec<Vec<usize>> {
    let mut groups: HashMap<ContentHash, Vec<usize>> = HashMap::new();
    for (i, h) in hashes.iter().enumerate() {
        if let Some(h) = h {
            groups.entry(*h).or_default().push(i);
        }
    }
    let mut dups: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    dups.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a[0].cmp(&b[0])));
    dups
}

fn duplicate_groups(
    ds: &Dataset,
    hashes: &[Option<ContentHash>],
) -> (Vec<Vec<String>>, Vec<Conflict>) {
    let dups = duplicate_index_groups(hashes);
    let paths = |g: &[usize]| {
        g.iter()
            .map(|&i| path_str(&ds.samples[i].path))
            .collect::<Vec<_>>()
    };
    let conflicts = dups
        .iter()
        .filter(|g| {
            g.iter()
                .any(|&i| ds.samples[i].label != ds.samples[g[0]].label)
        })
        .map(|g| Conflict {
            paths: paths(g),
            labels: g.iter().map(|&i| ds.samples[i].label.clone()).collect(),
        })
        .collect();
    (dups.iter().map(|g| paths(g)).collect(), conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_median_of_odd_and_even_counts() {
        assert_eq!(
            Summary::of(vec![3.0, 1.0, 2.0]),
            Summary {
                min: 1.0,
                median: 2.0,
                mean: 2.0,
                max: 3.0
            }
        );
        assert_eq!(Summary::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Summary::of(Vec::new()), Summary::default());
    }

    #[test]
    fn counts_sort_largest_first_then_by_name() {
        let m: HashMap<String, usize> = [("b".into(), 2), ("a".into(), 2), ("c".into(), 5)].into();
        let names: Vec<String> = sorted_counts(m).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["c", "a", "b"]);
    }
}
