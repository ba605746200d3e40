//! Picture health: what is wrong with the pixels rather than the labels. Each image's pixel
//! statistics are computed once (decoded off any UI thread, cached beside the dataset and
//! keyed by path, size and modification time); the checks are thresholds over those
//! statistics, some relative to the dataset (odd size, odd aspect, greyscale in a colour
//! dataset), so moving a threshold never decodes anything again.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use image::DynamicImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::{probe, scan::io_pool, stats, Dataset};
use crate::util::path_str;

/// Pixel statistics of one image, all in 0..1 unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelStats {
    pub width: u32,
    pub height: u32,
    /// Luma percentiles: the darkest 1%, the median, the brightest 1%.
    pub p01: f32,
    pub p50: f32,
    pub p99: f32,
    /// Entropy of the 256-bin luma histogram, in bits (0..8).
    pub entropy: f32,
    /// Edge sharpness: the strongest Laplacian responses (99.5th percentile of |∇²luma|) over
    /// the image's own luma range, at a working size of at most 256 px. A percentile of the
    /// strongest responses, not a variance over all pixels, so a sharp object on a flat
    /// background is not called blurry; divided by the range, so a dim picture is not either.
    pub sharpness: f32,
    /// Mean over pixels of the largest difference between two channels.
    pub colour: f32,
}

/// Longest side of the image the statistics are computed on.
const WORK_SIDE: u32 = 256;

pub fn pixel_stats(img: &DynamicImage) -> PixelStats {
    let (width, height) = (img.width(), img.height());
    let small = if width.max(height) > WORK_SIDE {
        img.resize(WORK_SIDE, WORK_SIDE, image::imageops::FilterType::Triangle)
    } else {
        img.clone()
    };
    let rgb = small.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut luma = Vec::with_capacity(w * h);
    let mut hist = [0u32; 256];
    let mut colour = 0f64;
    for p in rgb.pixels() {
        let [r, g, b] = p.0.map(i32::from);
        let y = (299 * r + 587 * g + 114 * b) / 1000;
        hist[y as usize] += 1;
        luma.push(y as f32 / 255.0);
        colour += f64::from((r - g).abs().max((g - b).abs()).max((r - b).abs()));
    }
    let n = luma.len().max(1) as f32;
    let percentile = |q: f32| {
        let want = (q * n).ceil().max(1.0) as u32;
        let mut seen = 0;
        for (v, &c) in hist.iter().enumerate() {
            seen += c;
            if seen >= want {
                return v as f32 / 255.0;
            }
        }
        1.0
    };
    let entropy = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum();
    let (p01, p50, p99) = (percentile(0.01), percentile(0.5), percentile(0.99));
    let mut lap: Vec<f32> = Vec::with_capacity(w * h);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let at = |x: usize, y: usize| luma[y * w + x];
            lap.push(
                (at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y)).abs(),
            );
        }
    }
    let sharpness = if lap.is_empty() {
        0.0
    } else {
        let k = ((lap.len() as f32) * 0.995) as usize;
        let k = k.min(lap.len() - 1);
        let (_, v, _) = lap.select_nth_unstable_by(k, f32::total_cmp);
        *v / (p99 - p01).max(1.0 / 255.0)
    };
    PixelStats {
        width,
        height,
        p01,
        p50,
        p99,
        entropy,
        sharpness,
        colour: (colour / f64::from(n) / 255.0) as f32,
    }
}

/// What a finding says is wrong. The names are those of `loupe health --out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    Dark,
    Light,
    Blurry,
    LowInformation,
    Grayscale,
    OddSize,
    OddAspect,
    ExactDuplicate,
    NearDuplicate,
    LabelConflict,
    Leak,
    Outlier,
}

impl Check {
    /// Every check, in the order reports list them.
    pub const ALL: [Check; 12] = [
        Check::Dark,
        Check::Light,
        Check::Blurry,
        Check::LowInformation,
        Check::Grayscale,
        Check::OddSize,
        Check::OddAspect,
        Check::ExactDuplicate,
        Check::NearDuplicate,
        Check::LabelConflict,
        Check::Leak,
        Check::Outlier,
    ];

    /// The checks a threshold decides.
    pub const THRESHOLDED: [Check; 9] = [
        Check::Dark,
        Check::Light,
        Check::Blurry,
        Check::LowInformation,
        Check::Grayscale,
        Check::OddSize,
        Check::OddAspect,
        Check::NearDuplicate,
        Check::Outlier,
    ];

    /// The checks over pixel statistics, each with a threshold.
    pub const PIXEL: [Check; 7] = [
        Check::Dark,
        Check::Light,
        Check::Blurry,
        Check::LowInformation,
        Check::Grayscale,
        Check::OddSize,
        Check::OddAspect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Dark => "dark",
            Check::Light => "light",
            Check::Blurry => "blurry",
            Check::LowInformation => "low-information",
            Check::Grayscale => "grayscale",
            Check::OddSize => "odd-size",
            Check::OddAspect => "odd-aspect",
            Check::ExactDuplicate => "exact-duplicate",
            Check::NearDuplicate => "near-duplicate",
            Check::LabelConflict => "label-conflict",
            Check::Leak => "leak",
            Check::Outlier => "outlier",
        }
    }

    pub fn parse(s: &str) -> Option<Check> {
        Check::THRESHOLDED.into_iter().find(|c| c.name() == s)
    }

    /// What the score measures, for `--help` and the summary.
    pub fn meaning(self) -> &'static str {
        match self {
            Check::Dark => "1 - the brightest 1% of luma",
            Check::Light => "the darkest 1% of luma (washed out when even that is light)",
            Check::Blurry => "1 - edge sharpness (strongest Laplacian over the luma range)",
            Check::LowInformation => "1 - luma entropy / 8 bits",
            Check::Grayscale => "1 - colourfulness x 20 (only in a mostly colour dataset)",
            Check::OddSize => "|log2(area / the dataset's median area)|",
            Check::OddAspect => "|log2(aspect / the dataset's median aspect)|",
            Check::NearDuplicate => {
                "how far the pair's embedding similarity stands above each image's ordinary \
                 neighbours (1 = the same picture)"
            }
            Check::Outlier => {
                "share of images closer to their own class than this one (1 = the most isolated)"
            }
            _ => "1",
        }
    }

    /// Flagged when the score is at least this.
    pub fn default_threshold(self) -> f32 {
        match self {
            Check::Dark => 0.75,
            Check::Light => 0.7,
            Check::Blurry => 0.8,
            Check::LowInformation => 0.75,
            Check::Grayscale => 0.8,
            Check::OddSize => 2.0,
            Check::OddAspect => 1.0,
            Check::NearDuplicate => NEAR_DUPLICATE,
            Check::Outlier => 0.99,
            _ => 1.0,
        }
    }
}

/// The thresholds in force: defaults, with the user's `KIND=VALUE` on top.
#[derive(Debug, Clone)]
pub struct Thresholds(HashMap<Check, f32>);

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds(
            Check::THRESHOLDED
                .into_iter()
                .map(|c| (c, c.default_threshold()))
                .collect(),
        )
    }
}

impl Thresholds {
    pub fn get(&self, c: Check) -> f32 {
        self.0.get(&c).copied().unwrap_or(1.0)
    }

    pub fn set(&mut self, c: Check, v: f32) {
        self.0.insert(c, v);
    }

    /// Applies `KIND=VALUE`.
    pub fn parse_into(&mut self, s: &str) -> Result<(), String> {
        let (kind, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected KIND=VALUE, e.g. blurry=0.9"))?;
        let check = Check::parse(kind.trim()).ok_or_else(|| {
            let names: Vec<_> = Check::THRESHOLDED.iter().map(|c| c.name()).collect();
            format!("{kind:?} is not a check; one of {}", names.join(", "))
        })?;
        let v: f32 = value
            .trim()
            .parse()
            .map_err(|_| format!("{value:?} is not a number"))?;
        self.set(check, v);
        Ok(())
    }
}

/// One thing found wrong with one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub sample: usize,
    pub check: Check,
    pub score: f32,
    /// The duplicate group (numbered from 1), for duplicates and label conflicts.
    pub group: Option<usize>,
}

/// Every sample's pixel score for `check` (`None` where it could not be read, or where the
/// check does not apply to this dataset: greyscale pictures in a greyscale dataset).
pub fn scores(all: &[Option<PixelStats>], check: Check) -> Vec<Option<f32>> {
    let ok: Vec<&PixelStats> = all.iter().flatten().collect();
    let median = |mut v: Vec<f32>| {
        if v.is_empty() {
            return 1.0;
        }
        v.sort_by(f32::total_cmp);
        v[v.len() / 2]
    };
    let area = |s: &PixelStats| (s.width.max(1) as f32) * (s.height.max(1) as f32);
    let aspect = |s: &PixelStats| s.width.max(1) as f32 / s.height.max(1) as f32;
    let median_area = median(ok.iter().map(|s| area(s)).collect());
    let median_aspect = median(ok.iter().map(|s| aspect(s)).collect());
    // Greyscale is a finding only where most pictures have colour.
    let colour_dataset = ok.iter().filter(|s| s.colour >= 0.01).count() * 2 > ok.len();
    all.iter()
        .map(|s| {
            let s = s.as_ref()?;
            Some(match check {
                Check::Dark => 1.0 - s.p99,
                Check::Light => s.p01,
                // Without contrast there are no edges to judge: low information, not blur.
                Check::Blurry if s.p99 - s.p01 < 0.05 => return None,
                Check::Blurry => 1.0 - s.sharpness.min(1.0),
                Check::LowInformation => 1.0 - s.entropy / 8.0,
                Check::Grayscale if colour_dataset => 1.0 - (s.colour * 20.0).min(1.0),
                Check::Grayscale => return None,
                Check::OddSize => (area(s) / median_area).log2().abs(),
                Check::OddAspect => (aspect(s) / median_aspect).log2().abs(),
                _ => return None,
            })
        })
        .collect()
}

/// The pixel findings: every sample whose score reaches its check's threshold.
pub fn pixel_findings(all: &[Option<PixelStats>], thresholds: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    for check in Check::PIXEL {
        let t = thresholds.get(check);
        for (sample, score) in scores(all, check).into_iter().enumerate() {
            if let Some(score) = score.filter(|&v| v >= t) {
                out.push(Finding {
                    sample,
                    check,
                    score,
                    group: None,
                });
            }
        }
    }
    out
}

/// Byte-identical files (one group per content), and the groups whose labels disagree.
pub fn duplicate_findings(ds: &Dataset, hashes: &[Option<probe::ContentHash>]) -> Vec<Finding> {
    let groups = stats::duplicate_index_groups(hashes);
    let mut out = Vec::new();
    for (g, members) in groups.iter().enumerate() {
        let conflict = members
            .iter()
            .any(|&i| ds.samples[i].label != ds.samples[members[0]].label);
        for &sample in members {
            out.push(Finding {
                sample,
                check: Check::ExactDuplicate,
                score: 1.0,
                group: Some(g + 1),
            });
            if conflict {
                out.push(Finding {
                    sample,
                    check: Check::LabelConflict,
                    score: 1.0,
                    group: Some(g + 1),
                });
            }
        }
    }
    out
}

/// Nearest neighbours by cosine similarity of the embeddings, as the engine's `neighbours`
/// job reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbours {
    /// The images that could be embedded, relative to the dataset root.
    pub paths: Vec<String>,
    /// Per image in `paths`: (index into `paths`, cosine similarity), most similar first.
    pub lists: Vec<Vec<(u32, f32)>>,
    /// (path, reason) of images that could not be decoded.
    pub skipped: Vec<(String, String)>,
    /// Per image in `paths`: its place on a 2-D map of the embeddings (the first two principal
    /// components), for the map in the window.
    #[serde(default)]
    pub map: Vec<[f32; 2]>,
    /// The same, laid out by t-SNE (neighbourhoods kept); empty where it was not run (too many
    /// images for it to finish in seconds).
    #[serde(default)]
    pub tsne: Vec<[f32; 2]>,
}

/// The [`standout`] at which two pictures are one picture (resized, re-encoded, cropped,
/// brightened). Chosen on real pictures: on `benches/health.sh` every planted copy groups with
/// its photo from 0.4 to 0.7 and groups start joining different photos below 0.6; on 3,000
/// Fashion-MNIST products, 0.6 groups 5 pairs, each the same product twice (one brightened),
/// where 0.5 groups 64 images and 0.4 groups 192, most of them lookalikes.
pub const NEAR_DUPLICATE: f32 = 0.6;

/// How far a pair's similarity stands above the images' ordinary neighbours: the share of the
/// gap between the farther image's farthest listed neighbour and identity that the pair closes
/// (1: identical). A raw cosine threshold cannot tell a copy from a lookalike: cropped copies
/// of photos score 0.85-0.9, while different trousers of Fashion-MNIST score 0.93 because
/// every item there looks like every other; against each image's own neighbourhood the copies
/// stand out and the lookalikes do not.
fn standout(sim: f32, background: f32) -> f32 {
    if sim >= 0.98 {
        return 1.0; // the same picture, however crowded its neighbourhood
    }
    ((sim - background) / (1.0 - background).max(1e-6)).clamp(0.0, 1.0)
}

/// Near-duplicate groups: images joined (transitively) by pairs whose [`standout`] reaches the
/// threshold, except groups that are one byte-identical file (those are exact duplicates
/// already). A group whose labels disagree is also a label conflict. Groups are numbered from
/// `first_group`.
pub fn near_duplicate_findings(
    ds: &Dataset,
    nb: &Neighbours,
    threshold: f32,
    hashes: &[Option<probe::ContentHash>],
    first_group: usize,
) -> Vec<Finding> {
    let sample_of = sample_index(ds, nb);
    let n = nb.paths.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    // An image's farthest listed neighbour: how alike its ordinary neighbours are.
    let background: Vec<f32> = nb
        .lists
        .iter()
        .map(|l| l.last().map_or(0.0, |&(_, sim)| sim))
        .collect();
    let mut best = vec![f32::NEG_INFINITY; n];
    for (i, list) in nb.lists.iter().enumerate() {
        for &(j, sim) in list {
            let j = j as usize;
            let score = standout(sim, background[i].max(background[j]));
            if score >= threshold {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
                best[i] = best[i].max(score);
                best[j] = best[j].max(score);
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, b) in best.iter().enumerate() {
        if *b > f32::NEG_INFINITY {
            groups.entry(root(&mut parent, i)).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    let mut id = first_group;
    for members in groups.into_values() {
        let samples: Vec<usize> = members.iter().filter_map(|&m| sample_of[m]).collect();
        let one_file = samples
            .iter()
            .all(|&i| hashes[i].is_some() && hashes[i] == hashes[samples[0]]);
        if samples.len() < 2 || one_file {
            continue;
        }
        let conflict = samples
            .iter()
            .any(|&i| ds.samples[i].label != ds.samples[samples[0]].label);
        for (&m, &sample) in members.iter().zip(&samples) {
            let score = best[m];
            out.push(Finding {
                sample,
                check: Check::NearDuplicate,
                score,
                group: Some(id),
            });
            if conflict {
                out.push(Finding {
                    sample,
                    check: Check::LabelConflict,
                    score,
                    group: Some(id),
                });
            }
        }
        id += 1;
    }
    out
}

/// How many of an image's nearest same-class neighbours its isolation averages over.
const OUTLIER_NEIGHBOURS: usize = 5;

/// Every image's isolation from its own class: 1 - the mean similarity to its nearest
/// neighbours of the same label (among the listed ones; one with none listed is at least as
/// far as its farthest listed neighbour). The score is the isolation's rank among all images,
/// 0..1, so the threshold reads as a share (0.99: the most isolated 1%).
pub fn outlier_findings(ds: &Dataset, nb: &Neighbours, threshold: f32) -> Vec<Finding> {
    let sample_of = sample_index(ds, nb);
    let isolation: Vec<Option<f32>> = nb
        .lists
        .iter()
        .enumerate()
        .map(|(i, list)| {
            let me = sample_of[i]?;
            let label = &ds.samples[me].label;
            let same: Vec<f32> = list
                .iter()
                .filter(|(j, _)| {
                    sample_of[*j as usize].is_some_and(|s| &ds.samples[s].label == label)
                })
                .map(|&(_, sim)| sim)
                .take(OUTLIER_NEIGHBOURS)
                .collect();
            Some(if same.is_empty() {
                1.0 - list.last().map_or(0.0, |&(_, sim)| sim)
            } else {
                1.0 - same.iter().sum::<f32>() / same.len() as f32
            })
        })
        .collect();
    let mut order: Vec<usize> = (0..isolation.len())
        .filter(|&i| isolation[i].is_some())
        .collect();
    order.sort_by(|&a, &b| isolation[a].unwrap().total_cmp(&isolation[b].unwrap()));
    let total = order.len().max(1) as f32;
    order
        .iter()
        .enumerate()
        .filter_map(|(rank, &i)| {
            let score = rank as f32 / total;
            (score >= threshold).then(|| Finding {
                sample: sample_of[i].expect("only mapped images are ranked"),
                check: Check::Outlier,
                score,
                group: None,
            })
        })
        .collect()
}

/// The dataset sample of each path in `nb` (`None` for one the dataset no longer has).
fn sample_index(ds: &Dataset, nb: &Neighbours) -> Vec<Option<usize>> {
    let by_path: HashMap<String, usize> = ds
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (path_str(&s.path), i))
        .collect();
    nb.paths.iter().map(|p| by_path.get(p).copied()).collect()
}

/// The copies to exclude so that each duplicate group in `findings` keeps one picture: the
/// one with the most pixels (then the most bytes, then the first path), the best copy to
/// train on. Sample indices, in group order.
pub fn extra_copies(ds: &Dataset, findings: &[&Finding]) -> Vec<usize> {
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for f in findings {
        if let Some(g) = f.group {
            groups.entry(g).or_default().push(f.sample);
        }
    }
    let mut out = Vec::new();
    for mut members in groups.into_values() {
        members.sort_unstable();
        members.dedup();
        let info = |i: usize| &ds.samples[i].info;
        let keep = members
            .iter()
            .copied()
            .max_by(|&a, &b| {
                let area = |i| u64::from(info(i).width) * u64::from(info(i).height);
                area(a)
                    .cmp(&area(b))
                    .then(info(a).bytes.cmp(&info(b).bytes))
                    .then(ds.samples[b].path.cmp(&ds.samples[a].path))
            })
            .expect("a group has members");
        out.extend(members.into_iter().filter(|&i| i != keep));
    }
    out
}

/// Duplicate groups (exact or near) that straddle a run's split: a validation image with a
/// copy among the training images inflates the run's score. Every member of such a group is
/// listed, with the group's number; `val` holds the run's validation paths.
pub fn leak_findings(ds: &Dataset, findings: &[Finding], val: &HashSet<String>) -> Vec<Finding> {
    let mut groups: std::collections::BTreeMap<usize, Vec<&Finding>> = Default::default();
    for f in findings {
        if matches!(f.check, Check::ExactDuplicate | Check::NearDuplicate) {
            if let Some(g) = f.group {
                groups.entry(g).or_default().push(f);
            }
        }
    }
    let in_val = |f: &Finding| val.contains(&path_str(&ds.samples[f.sample].path));
    groups
        .into_values()
        .filter(|g| g.iter().any(|f| in_val(f)) && g.iter().any(|f| !in_val(f)))
        .flatten()
        .map(|f| Finding {
            check: Check::Leak,
            ..f.clone()
        })
        .collect()
}

/// Identity of a file for the statistics cache: a changed file is read again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileKey {
    path: String,
    len: u64,
    mtime: u64,
}

#[derive(Serialize, Deserialize)]
struct CacheLine {
    #[serde(flatten)]
    key: FileKey,
    stats: PixelStats,
}

/// The statistics cache's file: a header line with its revision, then one JSON line per image.
const CACHE_FILE: &str = "pixels.jsonl";
/// Bumped when a statistic's definition changes.
const CACHE_REVISION: &str = "{\"revision\":1}";

fn key_of(ds: &Dataset, i: usize) -> Option<FileKey> {
    let s = &ds.samples[i];
    let (len, mtime) = crate::util::file_stamp(&ds.abs_path(&s.path))?;
    Some(FileKey {
        path: path_str(&s.path),
        len,
        mtime,
    })
}

fn load_cache(dir: &Path) -> HashMap<FileKey, PixelStats> {
    let Ok(text) = std::fs::read_to_string(dir.join(CACHE_FILE)) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(CACHE_REVISION) {
        return HashMap::new();
    }
    lines
        .filter_map(|l| serde_json::from_str::<CacheLine>(l).ok())
        .map(|c| (c.key, c.stats))
        .collect()
}

fn save_cache(dir: &Path, entries: &[(FileKey, PixelStats)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::util::replace_file(&dir.join(CACHE_FILE), |tmp| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        writeln!(w, "{CACHE_REVISION}")?;
        for (key, stats) in entries {
            let line = CacheLine {
                key: key.clone(),
                stats: *stats,
            };
            serde_json::to_writer(&mut w, &line)?;
            writeln!(w)?;
        }
        w.flush()
    })
}

/// Every sample's statistics, decoding (in parallel) only what `cache_dir` does not hold;
/// the reason where a file cannot be decoded. The cache is rewritten when anything was new;
/// one that cannot be written only costs time next run.
pub fn compute_stats(ds: &Dataset, cache_dir: Option<&Path>) -> Vec<Result<PixelStats, String>> {
    let cache = cache_dir.map(load_cache).unwrap_or_default();
    let results: Vec<(Option<FileKey>, Result<PixelStats, String>, bool)> =
        io_pool().install(|| {
            (0..ds.samples.len())
                .into_par_iter()
                .map(|i| {
                    let key = key_of(ds, i);
                    if let Some(s) = key.as_ref().and_then(|k| cache.get(k)) {
                        return (key, Ok(*s), false);
                    }
                    let r = probe::decode(&ds.abs_path(&ds.samples[i].path))
                        .map(|img| pixel_stats(&img))
                        .map_err(|e| e.to_string());
                    (key, r, true)
                })
                .collect()
        });
    if let Some(dir) = cache_dir {
        if results.iter().any(|(_, _, fresh)| *fresh) {
            let entries: Vec<(FileKey, PixelStats)> = results
                .iter()
                .filter_map(|(k, r, _)| Some((k.clone()?, *r.as_ref().ok()?)))
                .collect();
            let _ = save_cache(dir, &entries);
        }
    }
    results.into_iter().map(|(_, r, _)| r).collect()
}

/// Everything `loupe health` finds in a dataset.
pub struct Report {
    pub images: usize,
    pub findings: Vec<Finding>,
    /// Files that could not be read (rejected by the scan, or failing to decode), with why.
    pub unreadable: Vec<(String, String)>,
    /// Whether the embedding checks (near-duplicates, outliers) ran.
    pub embedded: bool,
    /// Whether a run's split was checked for leaks ([`Report::add_leaks`]).
    pub split_checked: bool,
}

/// What the checks read, gathered once (decoding, hashing, the engine's neighbours); judging
/// them at other thresholds ([`Report::judge`]) reads nothing again.
pub struct Inputs {
    /// Per sample: its pixel statistics, or why it could not be decoded.
    pub stats: Vec<Result<PixelStats, String>>,
    pub hashes: Vec<Option<probe::ContentHash>>,
    /// The embeddings' nearest neighbours, when they were computed.
    pub neighbours: Option<Neighbours>,
}

impl Inputs {
    /// Pixel statistics (through the cache in `cache_dir`) and content hashes of every sample.
    pub fn gather(ds: &Dataset, cache_dir: Option<&Path>) -> Inputs {
        Inputs {
            stats: compute_stats(ds, cache_dir),
            hashes: stats::hash_samples(ds),
            neighbours: None,
        }
    }
}

impl Report {
    /// Every check on `ds` at `thresholds`, from what [`Inputs::gather`] read: pixel checks,
    /// byte-identical copies, and with the neighbours near-duplicates and outliers.
    pub fn judge(ds: &Dataset, inputs: &Inputs, thresholds: &Thresholds) -> Report {
        let all: Vec<Option<PixelStats>> = inputs
            .stats
            .iter()
            .map(|r| r.as_ref().ok().copied())
            .collect();
        let mut findings = pixel_findings(&all, thresholds);
        let exact = duplicate_findings(ds, &inputs.hashes);
        let groups = exact.iter().filter_map(|f| f.group).max().unwrap_or(0);
        findings.extend(exact);
        if let Some(nb) = &inputs.neighbours {
            let near = thresholds.get(Check::NearDuplicate);
            findings.extend(near_duplicate_findings(
                ds,
                nb,
                near,
                &inputs.hashes,
                groups + 1,
            ));
            findings.extend(outlier_findings(ds, nb, thresholds.get(Check::Outlier)));
        }
        let mut unreadable: Vec<(String, String)> = ds
            .rejected
            .iter()
            .map(|r| (path_str(&r.path), r.reason.to_string()))
            .collect();
        for (i, r) in inputs.stats.iter().enumerate() {
            if let Err(why) = r {
                unreadable.push((path_str(&ds.samples[i].path), why.clone()));
            }
        }
        Report {
            images: ds.samples.len(),
            findings,
            unreadable,
            embedded: inputs.neighbours.is_some(),
            split_checked: false,
        }
    }

    /// Whether `check` ran (the embedding checks need an engine and the pretrained weights,
    /// leaks a run).
    pub fn ran(&self, check: Check) -> bool {
        match check {
            Check::NearDuplicate | Check::Outlier => self.embedded,
            Check::Leak => self.split_checked,
            _ => true,
        }
    }

    /// Adds the duplicate groups that straddle a run's split (`val`: its validation paths).
    pub fn add_leaks(&mut self, ds: &Dataset, val: &[String]) {
        let val: HashSet<String> = val.iter().cloned().collect();
        let leaks = leak_findings(ds, &self.findings, &val);
        self.findings.extend(leaks);
        self.split_checked = true;
    }

    /// The findings of one check, highest score first.
    pub fn of_check(&self, check: Check) -> Vec<&Finding> {
        let mut found: Vec<&Finding> = self.findings.iter().filter(|f| f.check == check).collect();
        found.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.sample.cmp(&b.sample)));
        found
    }

    /// Writes `path,check,score,group`, one row per finding, unreadable files as `unreadable`.
    pub fn write_csv(&self, path: &Path, ds: &Dataset) -> anyhow::Result<()> {
        crate::util::replace_file(path, |tmp| {
            let mut w = csv::Writer::from_path(tmp)?;
            w.write_record(["path", "check", "score", "group"])?;
            for f in &self.findings {
                w.write_record([
                    path_str(&ds.samples[f.sample].path),
                    f.check.name().to_string(),
                    format!("{:.4}", f.score),
                    f.group.map(|g| g.to_string()).unwrap_or_default(),
                ])?;
            }
            for (p, _) in &self.unreadable {
                w.write_record([p.as_str(), UNREADABLE, "1", ""])?;
            }
            w.flush()
        })?;
        Ok(())
    }
}

/// The `check` of a file that could not be read.
pub const UNREADABLE: &str = "unreadable";

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn stats_of(img: RgbImage) -> PixelStats {
        pixel_stats(&DynamicImage::ImageRgb8(img))
    }

    /// A sharp-edged colour scene: bars of colour with noise.
    fn scene(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let n = ((x * 7919 + y * 104_729) % 61) as u8;
            if (x / 16 + y / 24) % 2 == 0 {
                Rgb([230 - n, 200 + n / 2, 120])
            } else {
                Rgb([20 + n, 40, 150 - n])
            }
        })
    }

    fn blur(img: &RgbImage, sigma: f32) -> RgbImage {
        image::imageops::blur(img, sigma)
    }

    #[test]
    fn each_statistic_moves_the_way_its_check_reads_it() {
        let sharp = stats_of(scene(200, 150));
        let blurred = stats_of(blur(&scene(200, 150), 4.0));
        assert!(
            sharp.sharpness > 3.0 * blurred.sharpness,
            "{sharp:?} {blurred:?}"
        );

        let mut dark = scene(200, 150);
        dark.pixels_mut().for_each(|p| p.0 = p.0.map(|c| c / 6));
        let dark = stats_of(dark);
        assert!(dark.p99 < 0.25 && sharp.p99 > 0.5);
        let flat = stats_of(RgbImage::from_pixel(64, 64, Rgb([128, 128, 128])));
        assert_eq!((flat.entropy, flat.colour), (0.0, 0.0));
        assert!(sharp.entropy > 2.5 && sharp.colour > 0.2);
    }

    fn dataset_stats() -> Vec<Option<PixelStats>> {
        let mut all: Vec<Option<PixelStats>> =
            (0..12).map(|_| Some(stats_of(scene(120, 90)))).collect();
        all.push(Some(stats_of(blur(&scene(120, 90), 5.0)))); // 12
        all.push(Some(stats_of(RgbImage::from_fn(120, 90, |x, y| {
            Rgb(scene(120, 90).get_pixel(x, y).0.map(|c| c / 8))
        })))); // 13: dark
        all.push(Some(stats_of(RgbImage::from_fn(120, 90, |x, y| {
            Rgb(scene(120, 90).get_pixel(x, y).0.map(|c| 215 + c / 6))
        })))); // 14: washed out
        all.push(Some(stats_of(RgbImage::from_pixel(
            120,
            90,
            Rgb([90, 140, 30]),
        )))); // 15: flat
        all.push(Some(stats_of(RgbImage::from_fn(120, 90, |x, y| {
            let p = scene(120, 90).get_pixel(x, y).0;
            let g = ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as u8;
            Rgb([g, g, g])
        })))); // 16: greyscale
        all.push(Some(stats_of(scene(30, 22)))); // 17: a quarter of the side
        all.push(Some(stats_of(scene(360, 90)))); // 18: 4:1
        all.push(None); // 19: unreadable
        all
    }

    #[test]
    fn each_check_flags_its_planted_picture_and_none_of_the_plain_ones() {
        let all = dataset_stats();
        let findings = pixel_findings(&all, &Thresholds::default());
        let flagged = |c: Check| -> Vec<usize> {
            findings
                .iter()
                .filter(|f| f.check == c)
                .map(|f| f.sample)
                .collect()
        };
        assert_eq!(flagged(Check::Blurry), [12]);
        assert_eq!(flagged(Check::Dark), [13]);
        assert_eq!(flagged(Check::Light), [14]);
        assert!(flagged(Check::LowInformation).contains(&15));
        assert_eq!(flagged(Check::Grayscale), [16]);
        assert_eq!(flagged(Check::OddSize), [17]);
        assert_eq!(flagged(Check::OddAspect), [18]);
        assert!(findings.iter().all(|f| f.sample >= 12 && f.sample != 19));
    }

    /// Eight samples in classes a (0-3) and b (4-7): 0 and 1 the same picture, 4 a copy of 2
    /// filed under b, 7 far from everything; the rest ordinary neighbours at 0.5.
    fn neighbours_case() -> (Dataset, Neighbours) {
        let class = |i: usize| if i < 4 { "a" } else { "b" };
        let samples = (0..8)
            .map(|i| crate::dataset::scan::Sample {
                path: format!("{}/{i}.png", class(i)).into(),
                label: class(i).into(),
                parts: vec![class(i).into()],
                group: None,
                info: crate::dataset::ImageInfo {
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
        // Never read from disk: these checks only look at paths and labels.
        let ds = Dataset {
            root: "/d".into(),
            source: crate::dataset::Source::ImageFolder { root: "/d".into() },
            label_columns: vec!["class".into()],
            classes: vec!["a".into(), "b".into()],
            samples,
            rejected: Vec::new(),
            ignored: Vec::new(),
        };
        let sim = |i: usize, j: usize| -> f32 {
            match (i.min(j), i.max(j)) {
                (0, 1) => 0.99,
                (2, 4) => 0.9,
                (_, 7) => 0.1,
                _ => 0.5,
            }
        };
        let lists = (0..8)
            .map(|i| {
                let mut l: Vec<(u32, f32)> = (0..8)
                    .filter(|&j| j != i)
                    .map(|j| (j as u32, sim(i, j)))
                    .collect();
                l.sort_by(|a, b| b.1.total_cmp(&a.1));
                l
            })
            .collect();
        let paths = ds.samples.iter().map(|s| path_str(&s.path)).collect();
        (
            ds,
            Neighbours {
                paths,
                lists,
                skipped: Vec::new(),
                map: Vec::new(),
                tsne: Vec::new(),
            },
        )
    }

    #[test]
    fn each_group_keeps_its_largest_picture() {
        let (mut ds, _) = neighbours_case();
        // Group 1: samples 0, 1, 5 with 1 the largest; group 2: 2 and 3 alike in size, 3
        // the larger file; sample 4 in no group.
        ds.samples[1].info.width = 64;
        ds.samples[3].info.bytes = 500;
        let f = |sample, group| Finding {
            sample,
            check: Check::NearDuplicate,
            score: 0.9,
            group,
        };
        let found = [
            f(0, Some(1)),
            f(1, Some(1)),
            f(5, Some(1)),
            f(2, Some(2)),
            f(3, Some(2)),
            f(4, None),
        ];
        let refs: Vec<&Finding> = found.iter().collect();
        assert_eq!(extra_copies(&ds, &refs), vec![0, 5, 2]);
        // Alike in every way: the first path stays.
        ds.samples[3].info.bytes = 100;
        assert_eq!(extra_copies(&ds, &refs[3..5]), vec![3]);
    }

    #[test]
    fn near_duplicates_group_copies_flag_label_conflicts_and_leave_exact_copies_alone() {
        let (ds, nb) = neighbours_case();
        let no_hashes = vec![None; 8];
        let found = near_duplicate_findings(&ds, &nb, NEAR_DUPLICATE, &no_hashes, 3);
        let of = |c: Check| -> Vec<(usize, Option<usize>)> {
            let mut v: Vec<_> = found
                .iter()
                .filter(|f| f.check == c)
                .map(|f| (f.sample, f.group))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            of(Check::NearDuplicate),
            [(0, Some(3)), (1, Some(3)), (2, Some(4)), (4, Some(4))]
        );
        assert_eq!(of(Check::LabelConflict), [(2, Some(4)), (4, Some(4))]);
        // 0 and 1 byte-identical: the exact-duplicate check has them, this one leaves them.
        let mut hashes = no_hashes;
        hashes[0] = Some(7);
        hashes[1] = Some(7);
        let found = near_duplicate_findings(&ds, &nb, NEAR_DUPLICATE, &hashes, 1);
        assert!(found.iter().all(|f| f.sample != 0 && f.sample != 1));
        // A threshold above the copy's standout separates it.
        let strict = near_duplicate_findings(&ds, &nb, 0.9, &hashes, 1);
        assert!(strict.is_empty(), "{strict:?}");
    }

    #[test]
    fn a_duplicate_group_across_the_split_is_a_leak_and_one_inside_a_side_is_not() {
        let (ds, nb) = neighbours_case();
        let mut findings = near_duplicate_findings(&ds, &nb, NEAR_DUPLICATE, &[None; 8], 1);
        // Groups: {0, 1} and {2, 4}. 4 in validation: {2, 4} straddles; {0, 1} does not.
        let val: HashSet<String> = ["b/4.png".to_string()].into();
        let leaks = leak_findings(&ds, &findings, &val);
        let mut samples: Vec<usize> = leaks.iter().map(|f| f.sample).collect();
        samples.sort();
        assert_eq!(samples, [2, 4]);
        assert!(leaks
            .iter()
            .all(|f| f.check == Check::Leak && f.group.is_some()));
        // Both of a pair in validation: no leak.
        let val: HashSet<String> = ["a/0.png".to_string(), "a/1.png".to_string()].into();
        assert!(leak_findings(&ds, &findings, &val).is_empty());
        // Pixel findings never make leaks.
        findings.retain(|f| f.check == Check::LabelConflict);
        assert!(leak_findings(&ds, &findings, &["b/4.png".to_string()].into()).is_empty());
    }

    #[test]
    fn the_picture_far_from_its_class_is_the_top_outlier() {
        let (ds, nb) = neighbours_case();
        let found = outlier_findings(&ds, &nb, 0.85);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].sample, 7);
        assert!(found[0].score >= 0.85);
        // At 0 every image is listed, each once.
        let all = outlier_findings(&ds, &nb, 0.0);
        let mut samples: Vec<usize> = all.iter().map(|f| f.sample).collect();
        samples.sort();
        assert_eq!(samples, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn thresholds_move_what_is_flagged_and_greyscale_datasets_are_not_flagged_grey() {
        let all = dataset_stats();
        let mut t = Thresholds::default();
        t.parse_into("blurry=1.5").unwrap();
        assert!(pixel_findings(&all, &t)
            .iter()
            .all(|f| f.check != Check::Blurry));
        t.parse_into("odd-aspect = 0.1").unwrap();
        assert!(pixel_findings(&all, &t)
            .iter()
            .any(|f| f.check == Check::OddAspect && f.sample == 17 || f.sample == 18));
        assert!(t.parse_into("fuzzy=1").unwrap_err().contains("blurry"));
        assert!(t.parse_into("dark").is_err());
        assert!(t.parse_into("dark=dim").is_err());

        let grey: Vec<Option<PixelStats>> = (0..5)
            .map(|k| {
                Some(stats_of(RgbImage::from_fn(64, 64, |x, y| {
                    let v = ((x * 4 + y * k) % 256) as u8;
                    Rgb([v, v, v])
                })))
            })
            .collect();
        assert!(scores(&grey, Check::Grayscale).iter().all(Option::is_none));
        assert!(pixel_findings(&grey, &Thresholds::default())
            .iter()
            .all(|f| f.check != Check::Grayscale));
    }
}
