//! Suspected label errors of a dataset: confident learning over (out-of-fold) probabilities,
//! ranked, with the estimated number of errors per class; read from and written to CSV.
//!
//! A composite label (`mask,gender,age`) is examined one column at a time, each with its own
//! probabilities, so a suspect names the attribute ("gender: female -> male?") and accepting it
//! changes only that part. With a group column, a column that belongs to the group (see
//! [`crate::dataset::groups`]) is judged per group: the group's photos' probabilities are
//! averaged and confident learning runs over groups, so a person whose gender is wrong on all
//! seven photos is one suspect, found by seven votes; a photo that disagrees with its group's
//! majority is a suspect of its own. The groups' mean probabilities are temperature scaled over
//! the groups (see [`calibration`](super::calibration)): the photos' temperature calibrates
//! photos, and a mean of photos is not a calibrated group.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::calibration;
use super::confident::{self, Method, Probs, RankBy};
use crate::dataset::{groups, Dataset, Layout};
use crate::util::path_str;

/// Why an image is suspected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// Confident learning over the model's out-of-fold probabilities.
    #[default]
    Model,
    /// Its group's other photos say otherwise (a group-level column).
    GroupMajority,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// Dataset sample index.
    #[serde(skip)]
    pub sample: usize,
    pub path: String,
    /// The label column suspected (`gender`; the label column's own name for a single one).
    #[serde(default)]
    pub column: String,
    /// The given value in that column (the class for a single label column).
    pub given: String,
    /// The most probable value.
    pub suggested: String,
    /// Probability of the given value.
    pub self_confidence: f32,
    /// Probability of the suggested value.
    pub suggested_confidence: f32,
    /// 1 = most likely wrong.
    pub rank: usize,
    #[serde(default)]
    pub why: Why,
    /// When a group was judged as a whole: the group (its photos share one decision).
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Findings {
    pub method: Method,
    pub rank_by: RankBy,
    /// Images with probabilities (the others could not be read).
    pub examined: usize,
    /// The suspects, most likely wrong first.
    pub issues: Vec<Issue>,
    /// Per class (per `column: value` for a composite label): (name, images, estimated label
    /// errors among them).
    pub per_class: Vec<(String, usize, usize)>,
    /// Per column judged per group: (column, the temperature its groups' mean probabilities
    /// were scaled by).
    #[serde(default)]
    pub group_temperatures: Vec<(String, f64)>,
    /// Every examined image and column with its score: the flagged suspects first (as
    /// `issues`), then the rest, most likely wrong first. A review can go on past the flagged
    /// ones. Kept in `issues.csv`, not in `findings.json`.
    #[serde(skip)]
    pub ranking: Vec<Ranked>,
}

/// One row of the full ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub path: String,
    /// The label column (its name).
    pub column: String,
    pub given: String,
    pub suggested: String,
    /// The label quality (lower = more likely wrong), by the search's `rank_by`.
    pub score: f64,
    /// Whether confident learning flags it (it is then also in `issues`).
    pub flagged: bool,
    /// Probabilities of the given and the suggested value.
    pub p_given: f32,
    pub p_suggested: f32,
}

/// Probabilities per label column: `probs[c]` has one row of `layout.columns[c].values.len()`
/// per entry of `samples` (a single label column: the classes).
pub type ColumnProbs = Vec<Vec<f32>>;

/// Runs confident learning per label column of `ds` on `probs` (see [`ColumnProbs`]; rows in
/// `samples` order) against the labels of `ds`.
pub fn find(
    ds: &Dataset,
    samples: &[usize],
    probs: &[Vec<f32>],
    method: Method,
    rank_by: RankBy,
) -> Findings {
    let layout = Layout::of(ds);
    let class_of: HashMap<&str, usize> = ds
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let classes: Vec<usize> = samples
        .iter()
        .map(|&i| class_of[ds.samples[i].label.as_str()])
        .collect();
    let check = groups::check(ds);
    let mut ranking = Vec::new();
    let mut issues = Vec::new();
    let mut per_class = Vec::new();
    let mut group_temperatures = Vec::new();
    for (c, col) in layout.columns.iter().enumerate() {
        let k = col.values.len();
        let labels: Vec<usize> = classes.iter().map(|&j| layout.part(j, c)).collect();
        let p = Probs::new(&probs[c], k);
        let group_level = check
            .as_ref()
            .is_some_and(|g| g.columns[c].is_group_level());
        let name = |v: usize| {
            if layout.is_composite() {
                format!("{}: {}", col.name, col.values[v])
            } else {
                col.values[v].clone()
            }
        };
        let value = |v: usize| col.values[v].clone();
        // The units judged: each image, or each group of a group-level column.
        let units = if group_level {
            let (units, t) = group_units(ds, samples, &labels, p);
            group_temperatures.push((col.name.clone(), t));
            units
        } else {
            (0..samples.len())
                .map(|r| Unit {
                    rows: vec![r],
                    label: labels[r],
                    probs: p.row(r).to_vec(),
                    group: None,
                })
                .collect()
        };
        let unit_labels: Vec<usize> = units.iter().map(|u| u.label).collect();
        let unit_probs: Vec<f32> = units.iter().flat_map(|u| u.probs.clone()).collect();
        let up = Probs::new(&unit_probs, k);
        let flags = confident::find_label_issues(&unit_labels, up, method);
        let quality = confident::label_quality(&unit_labels, up, rank_by);
        let counts = confident::class_counts(&labels, k);
        let estimates = confident::estimated_errors_per_class(&unit_labels, up);
        // Estimated errors count images: a suspect group weighs its photos.
        let unit_size: Vec<usize> = {
            let mut size = vec![0usize; k];
            let mut n = vec![0usize; k];
            for u in &units {
                size[u.label] += u.rows.len();
                n[u.label] += 1;
            }
            (0..k)
                .map(|v| size[v].checked_div(n[v]).unwrap_or(1))
                .collect()
        };
        for v in 0..k {
            per_class.push((name(v), counts[v], estimates[v] * unit_size[v].max(1)));
        }
        for (u, unit) in units.iter().enumerate() {
            let suggested = confident_argmax(&unit.probs);
            for &r in &unit.rows {
                // A photo against its group's majority is the group check's (below).
                if labels[r] != unit.label {
                    continue;
                }
                let flagged = flags[u];
                ranking.push(Ranked {
                    path: path_str(&ds.samples[samples[r]].path),
                    column: col.name.clone(),
                    given: value(labels[r]),
                    suggested: value(suggested),
                    score: quality[u],
                    flagged,
                    p_given: unit.probs[labels[r]],
                    p_suggested: unit.probs[suggested],
                });
                if flagged {
                    issues.push((
                        quality[u],
                        Issue {
                            sample: samples[r],
                            path: path_str(&ds.samples[samples[r]].path),
                            column: col.name.clone(),
                            given: value(labels[r]),
                            suggested: value(suggested),
                            self_confidence: unit.probs[labels[r]],
                            suggested_confidence: unit.probs[suggested],
                            rank: 0,
                            why: Why::Model,
                            group: unit.group.clone(),
                        },
                    ));
                }
            }
        }
        // Photos against their group's majority, scored by their own probabilities.
        let row_of: HashMap<usize, usize> =
            samples.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        for d in check.iter().flat_map(|g| &g.disagreements) {
            let (Some(&r), true) = (row_of.get(&d.sample), d.column == c) else {
                continue;
            };
            let Some(majority) = col.values.iter().position(|v| *v == d.majority) else {
                continue;
            };
            let row = p.row(r);
            let score = confident::label_quality(&[labels[r]], Probs::new(row, k), rank_by)[0];
            ranking.push(Ranked {
                path: path_str(&ds.samples[d.sample].path),
                column: col.name.clone(),
                given: value(labels[r]),
                suggested: d.majority.clone(),
                score,
                flagged: true,
                p_given: row[labels[r]],
                p_suggested: row[majority],
            });
            issues.push((
                score,
                Issue {
                    sample: d.sample,
                    path: path_str(&ds.samples[d.sample].path),
                    column: col.name.clone(),
                    given: value(labels[r]),
                    suggested: d.majority.clone(),
                    self_confidence: row[labels[r]],
                    suggested_confidence: row[majority],
                    rank: 0,
                    why: Why::GroupMajority,
                    group: None,
                },
            ));
        }
    }
    // Most likely wrong first; a group's photos stay together (they share a score).
    issues.sort_by(|a, b| a.0.total_cmp(&b.0));
    let issues: Vec<Issue> = issues
        .into_iter()
        .enumerate()
        .map(|(r, (_, mut i))| {
            i.rank = r + 1;
            i
        })
        .collect();
    ranking.sort_by(|a, b| b.flagged.cmp(&a.flagged).then(a.score.total_cmp(&b.score)));
    Findings {
        method,
        rank_by,
        examined: samples.len(),
        issues,
        per_class,
        group_temperatures,
        ranking,
    }
}

/// What confident learning judges: one image, or a group's photos together.
struct Unit {
    /// Rows (into `samples`) of its images.
    rows: Vec<usize>,
    label: usize,
    probs: Vec<f32>,
    group: Option<String>,
}

/// The groups of `samples` as units: the majority label (the first of equals), the mean of
/// the photos' probabilities, temperature scaled over the units against their labels (the
/// temperature is returned). Images without a group are units of their own.
///
/// Why scale again: confident learning's thresholds are averages over the units it judges, so
/// their probabilities must be calibrated as units. A mean of calibrated photo probabilities
/// is too soft for a group: photos that disagree pull it to the middle, and photos that agree
/// as independent views are stronger evidence together than any one of them. (On the composite
/// digits benchmark the fitted group temperature is 0.87, and whole people wrong are found
/// with recall 0.90 instead of 0.83 at the same precision; `benches/RESULTS.md`.)
fn group_units(ds: &Dataset, samples: &[usize], labels: &[usize], p: Probs) -> (Vec<Unit>, f64) {
    let mut by_group: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut units = Vec::new();
    for (r, &i) in samples.iter().enumerate() {
        match &ds.samples[i].group {
            Some(g) => by_group.entry(g.as_str()).or_default().push(r),
            None => units.push(Unit {
                rows: vec![r],
                label: labels[r],
                probs: p.row(r).to_vec(),
                group: None,
            }),
        }
    }
    for (g, rows) in by_group {
        let mut counts = vec![0usize; p.k];
        let mut mean = vec![0f32; p.k];
        for &r in &rows {
            counts[labels[r]] += 1;
            for (m, v) in mean.iter_mut().zip(p.row(r)) {
                *m += v / rows.len() as f32;
            }
        }
        let label = (0..p.k).fold(0, |b, v| if counts[v] > counts[b] { v } else { b });
        units.push(Unit {
            group: (rows.len() > 1).then(|| g.to_string()),
            rows,
            label,
            probs: mean,
        });
    }
    let unit_labels: Vec<usize> = units.iter().map(|u| u.label).collect();
    let mut probs: Vec<f32> = units.iter().flat_map(|u| u.probs.clone()).collect();
    let t = calibration::temperature_scale(&mut probs, p.k, &unit_labels).temperature;
    for (u, row) in units.iter_mut().zip(probs.chunks(p.k)) {
        u.probs = row.to_vec();
    }
    (units, t)
}

/// The first index of the largest probability.
fn confident_argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |b, j| if p[j] > p[b] { j } else { b })
}

impl Findings {
    /// Drops the images a reviewer already kept as labelled (ranks renumbered), so a new search
    /// does not ask about them again.
    pub fn without_kept(mut self, kept: &std::collections::HashSet<String>) -> Findings {
        self.issues.retain(|i| !kept.contains(&i.path));
        self.ranking.retain(|r| !kept.contains(&r.path));
        for (r, i) in self.issues.iter_mut().enumerate() {
            i.rank = r + 1;
        }
        self
    }
}

/// `issues.csv`: `path,column,given,suggested,score,rank,flagged,p_given,p_suggested`, every
/// examined image and label column, flagged suspects first, then by score (the label quality:
/// lower is more likely wrong); paths relative to the dataset root. Read by [`read_csv`].
pub fn write_csv(path: &Path, findings: &Findings) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(RANKING_COLUMNS)?;
    for (r, row) in findings.ranking.iter().enumerate() {
        w.write_record([
            row.path.as_str(),
            &row.column,
            &row.given,
            &row.suggested,
            &format!("{:.6}", row.score),
            &(r + 1).to_string(),
            if row.flagged { "1" } else { "0" },
            &format!("{:.6}", row.p_given),
            &format!("{:.6}", row.p_suggested),
        ])?;
    }
    crate::util::write_atomic(path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

const RANKING_COLUMNS: [&str; 9] = [
    "path",
    "column",
    "given",
    "suggested",
    "score",
    "rank",
    "flagged",
    "p_given",
    "p_suggested",
];

/// The ranking [`write_csv`] wrote, in its order.
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Ranked>> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let headers = r.headers()?.clone();
    // Searches kept before the probabilities were written have no `p_` columns (read as 0).
    let at: Vec<Option<usize>> = RANKING_COLUMNS
        .iter()
        .map(|c| headers.iter().position(|h| h == *c))
        .collect();
    if let Some(k) = at[..7].iter().position(Option::is_none) {
        anyhow::bail!(
            "{} has no `{}` column: not a ranking",
            path.display(),
            RANKING_COLUMNS[k]
        );
    }
    let mut rows = Vec::new();
    for (n, rec) in r.records().enumerate() {
        let bad = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!("{} line {} is damaged: {e}", path.display(), n + 2)
        };
        let rec = rec.map_err(|e| bad(&e))?;
        let field = |k: usize| at[k].and_then(|c| rec.get(c)).unwrap_or("");
        let num = |k: usize| match field(k) {
            "" if k >= 7 => Ok(0.0),
            f => f.parse::<f64>().map_err(|e| bad(&e)),
        };
        rows.push(Ranked {
            path: field(0).to_string(),
            column: field(1).to_string(),
            given: field(2).to_string(),
            suggested: field(3).to_string(),
            score: num(4)?,
            flagged: field(6) == "1",
            p_given: num(7)? as f32,
            p_suggested: num(8)? as f32,
        });
    }
    Ok(rows)
}

/// The probability columns of `layout` in CSV files: the classes for a single label column,
/// `column=value` for a composite one.
fn prob_headers(layout: &Layout) -> Vec<String> {
    if layout.is_composite() {
        layout.value_headers()
    } else {
        layout.classes.clone()
    }
}

/// Probabilities as CSV: a `path` column and one column per class (per `column=value` for a
/// composite label).
pub fn write_probs_csv(
    path: &Path,
    ds: &Dataset,
    samples: &[usize],
    probs: &[Vec<f32>],
) -> anyhow::Result<()> {
    let layout = Layout::of(ds);
    let widths: Vec<usize> = layout.columns.iter().map(|c| c.values.len()).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string()];
    header.extend(prob_headers(&layout));
    w.write_record(&header)?;
    for (r, &i) in samples.iter().enumerate() {
        let mut rec = vec![path_str(&ds.samples[i].path)];
        for (c, &k) in widths.iter().enumerate() {
            rec.extend(
                probs[c][r * k..(r + 1) * k]
                    .iter()
                    .map(|v| format!("{v:.6}")),
            );
        }
        w.write_record(&rec)?;
    }
    crate::util::write_atomic(path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// A path (relative to the dataset root) and its probabilities per label column.
pub type ProbRow = (String, Vec<Vec<f32>>);

/// Reads a probabilities CSV: a `path` column and one column per class (other columns, e.g.
/// `label` or `predicted`, are ignored); for a composite label, one per `column=value`, or
/// else one per joint class (then each column's are their sums). Each distribution is
/// renormalised to sum to 1 (CSV rounding). Also returns the rows that could not be read, in
/// words.
pub fn read_probs_csv(path: &Path, layout: &Layout) -> anyhow::Result<(Vec<ProbRow>, Vec<String>)> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let headers = r.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let path_col =
        col("path").ok_or_else(|| anyhow::anyhow!("{} has no `path` column", path.display()))?;
    let per_value = prob_headers(layout);
    // A composite label's probabilities come per column value, or as joint classes.
    let joint = layout.is_composite() && per_value.iter().any(|h| col(h).is_none());
    let wanted = if joint { &layout.classes } else { &per_value };
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|c| col(c).is_none())
        .map(String::as_str)
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{} has no column for the classes {} (it needs a path column and one per class{})",
        path.display(),
        missing.join(", "),
        if layout.is_composite() {
            ", or one per column=value"
        } else {
            ""
        }
    );
    let cols: Vec<usize> = wanted.iter().map(|c| col(c).unwrap_or(0)).collect();
    let widths: Vec<usize> = if joint {
        vec![layout.classes.len()]
    } else {
        layout.columns.iter().map(|c| c.values.len()).collect()
    };
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (n, rec) in r.records().enumerate() {
        let line = n + 2;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let p: Result<Vec<f32>, _> = cols
            .iter()
            .map(|&c| rec.get(c).unwrap_or("").trim().parse::<f32>())
            .collect();
        let Ok(p) = p else {
            problems.push(format!("line {line}: not a row of numbers"));
            continue;
        };
        let mut parts = Vec::new();
        let mut rest = p.as_slice();
        for &k in &widths {
            let (this, next) = rest.split_at(k);
            rest = next;
            let s: f32 = this.iter().sum();
            if this.iter().all(|v| v.is_finite() && *v >= 0.0) && s > 0.0 {
                parts.push(this.iter().map(|v| v / s).collect::<Vec<f32>>());
            }
        }
        if parts.len() < widths.len() {
            problems.push(format!(
                "line {line}: not a row of non-negative probabilities"
            ));
            continue;
        }
        if joint {
            parts = layout.columns_from_joint(&parts[0]);
        }
        let rel =
            crate::dataset::scan::normalize(Path::new(rec.get(path_col).unwrap_or("").trim()));
        rows.push((path_str(&rel), parts));
    }
    Ok((rows, problems))
}

/// Keeps a finished search in a new folder under `issues_dir`: `config.json` (how it was made,
/// the data fingerprint, the classes), `pred_probs.csv`, the ranked `issues.csv` and
/// `findings.json` (what the review queue reopens).
pub fn save_run(
    issues_dir: &Path,
    name: &str,
    ds: &Dataset,
    how: serde_json::Value,
    samples: &[usize],
    probs: &[Vec<f32>],
    findings: &Findings,
) -> anyhow::Result<std::path::PathBuf> {
    let dir = crate::util::new_dir(issues_dir, name)?;
    let config = serde_json::json!({
        "how": how,
        "method": findings.method,
        "rank_by": findings.rank_by,
        "dataset": { "root": ds.root, "source": ds.source, "images": ds.samples.len(), "fingerprint": ds.fingerprint() },
        "classes": ds.classes,
    });
    crate::util::write_atomic(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(&config)?,
    )?;
    write_probs_csv(&dir.join("pred_probs.csv"), ds, samples, probs)?;
    write_csv(&dir.join(ISSUES_CSV), findings)?;
    crate::util::write_atomic(&dir.join(FINDINGS), &serde_json::to_vec(findings)?)?;
    Ok(dir)
}

const FINDINGS: &str = "findings.json";
/// The full ranking of a search, in its folder (see [`write_csv`]).
pub const ISSUES_CSV: &str = "issues.csv";

/// The newest search kept under `issues_dir` (by when its findings were written), if any.
pub fn latest(issues_dir: &Path) -> anyhow::Result<Option<(Findings, std::path::PathBuf)>> {
    let entries = match std::fs::read_dir(issues_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot list {}: {e}", issues_dir.display()),
    };
    let newest = entries
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let written = std::fs::metadata(dir.join(FINDINGS))
                .and_then(|m| m.modified())
                .ok()?;
            Some((written, dir))
        })
        .max();
    let Some((_, dir)) = newest else {
        return Ok(None);
    };
    Ok(Some((load(&dir)?, dir)))
}

/// The findings of the search kept in `dir`, with its full ranking.
pub fn load(dir: &Path) -> anyhow::Result<Findings> {
    let path = dir.join(FINDINGS);
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut findings: Findings = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?;
    findings.ranking = read_csv(&dir.join(ISSUES_CSV))?;
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::scan::{CsvSource, Sample, Source, COMPOSITE_SEP};
    use crate::dataset::ImageInfo;

    /// 40 people x 5 photos labelled mask (per photo) and gender (per person); people 0-3 have
    /// the wrong gender on every photo.
    fn people() -> Dataset {
        let mut samples = Vec::new();
        for p in 0..40 {
            let truth = if p % 2 == 0 { "f" } else { "m" };
            let gender = match (p < 4, truth) {
                (true, "f") => "m",
                (true, _) => "f",
                (false, g) => g,
            };
            for k in 0..5 {
                let mask = if k == 0 { "no" } else { "wear" };
                samples.push(Sample {
                    path: format!("p{p:02}_{k}.png").into(),
                    label: format!("{mask}{COMPOSITE_SEP}{gender}"),
                    parts: vec![mask.to_string(), gender.to_string()],
                    group: Some(format!("p{p:02}")),
                    info: ImageInfo {
                        format: image::ImageFormat::Png,
                        width: 8,
                        height: 8,
                        color: image::ColorType::Rgb8,
                        orientation: 1,
                        bytes: 100,
                        content_hash: None,
                    },
                });
            }
        }
        let mut classes: Vec<String> = samples.iter().map(|s| s.label.clone()).collect();
        classes.sort();
        classes.dedup();
        Dataset {
            root: "/d".into(),
            source: Source::Csv(CsvSource {
                csv: "/d/l.csv".into(),
                path_col: "path".into(),
                label_cols: vec!["mask".into(), "gender".into()],
                group_col: Some("id".into()),
            }),
            label_columns: vec!["mask".into(), "gender".into()],
            classes,
            samples,
            rejected: Vec::new(),
            ignored: Vec::new(),
        }
    }

    #[test]
    fn a_groups_mean_probabilities_are_calibrated_over_the_groups() {
        let ds = people();
        let layout = Layout::of(&ds);
        // Every photo leans to its person's true gender, some more than others (0.7 on
        // average); the masks are read right at 0.9.
        let leans = [0.55f32, 0.85, 0.6, 0.8, 0.7];
        let gender = &layout.columns[1].values;
        let row = |female: bool, lean: f32| -> Vec<f32> {
            let p_female = if female { lean } else { 1.0 - lean };
            gender
                .iter()
                .map(|v| if v == "f" { p_female } else { 1.0 - p_female })
                .collect()
        };
        let mut probs = vec![Vec::new(), Vec::new()];
        for (i, s) in ds.samples.iter().enumerate() {
            let mask = &layout.columns[0].values;
            probs[0].extend(
                mask.iter()
                    .map(|v| if *v == s.parts[0] { 0.9 } else { 0.1 }),
            );
            probs[1].extend(row((i / 5) % 2 == 0, leans[i % 5]));
        }
        let samples: Vec<usize> = (0..ds.samples.len()).collect();
        let findings = find(
            &ds,
            &samples,
            &probs,
            Method::PruneByNoiseRate,
            RankBy::SelfConfidence,
        );
        // Gender is judged per person: the temperature is the one fit over the 40 people's
        // mean probabilities against their labels, not over the 200 photos.
        assert_eq!(findings.group_temperatures.len(), 1, "mask is per photo");
        let (column, t) = &findings.group_temperatures[0];
        assert_eq!(column, "gender");
        let given = |i: usize| {
            let p = &ds.samples[i].parts[1];
            gender.iter().position(|v| v == p).unwrap()
        };
        let mut means: Vec<f32> = (0..40).flat_map(|p| row(p % 2 == 0, 0.7)).collect();
        let people: Vec<usize> = (0..40).map(|p| given(p * 5)).collect();
        let over_people = calibration::temperature_scale(&mut means, 2, &people).temperature;
        let photos: Vec<usize> = (0..ds.samples.len()).map(given).collect();
        let over_photos = calibration::temperature_scale(&mut probs[1].clone(), 2, &photos);
        assert!((t - over_people).abs() < 1e-6, "{t} against {over_people}");
        assert!(
            (t / over_photos.temperature - 1.0).abs() > 0.01,
            "{t} is the photos' fit too"
        );
        // The four people labelled wrong are the suspects, as wholes, each surer of the other
        // gender than the mean of its photos (0.7): the fit sharpens.
        let wrong: Vec<&Issue> = findings
            .issues
            .iter()
            .filter(|i| i.column == "gender")
            .collect();
        assert_eq!(wrong.len(), 4 * 5, "{wrong:?}");
        assert!(wrong.iter().all(|i| i.group.as_deref() < Some("p04")));
        assert!(wrong.iter().all(|i| i.suggested_confidence > 0.75
            && (i.self_confidence + i.suggested_confidence - 1.0).abs() < 1e-5));
        // Every person's probabilities still sum to one; the others agree with their labels.
        let gender_rows: Vec<&Ranked> = findings
            .ranking
            .iter()
            .filter(|r| r.column == "gender")
            .collect();
        assert_eq!(gender_rows.len(), ds.samples.len());
        assert!(gender_rows
            .iter()
            .filter(|r| !r.flagged)
            .all(|r| r.p_given > 0.75 && r.given == r.suggested));
    }
}
