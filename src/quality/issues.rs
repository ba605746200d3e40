//! Suspected label errors of a dataset: confident learning over (out-of-fold) probabilities,
//! ranked, with the estimated number of errors per class; read from and written to CSV.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::confident::{self, Method, Probs, RankBy};
use crate::dataset::Dataset;
use crate::util::path_str;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// Dataset sample index.
    #[serde(skip)]
    pub sample: usize,
    pub path: String,
    pub given: String,
    /// The most probable class.
    pub suggested: String,
    /// Probability of the given label.
    pub self_confidence: f32,
    /// Probability of the suggested label.
    pub suggested_confidence: f32,
    /// 1 = most likely wrong.
    pub rank: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Findings {
    pub method: Method,
    pub rank_by: RankBy,
    /// Images with probabilities (the others could not be read).
    pub examined: usize,
    pub issues: Vec<Issue>,
    /// Per class: (class, images, estimated label errors among them).
    pub per_class: Vec<(String, usize, usize)>,
}

/// Runs confident learning on `probs` (one row per entry of `samples`, classes in `ds.classes`
/// order) against the labels of `ds`.
pub fn find(
    ds: &Dataset,
    samples: &[usize],
    probs: &[f32],
    method: Method,
    rank_by: RankBy,
) -> Findings {
    let k = ds.classes.len();
    let class_of: HashMap<&str, usize> = ds
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let labels: Vec<usize> = samples
        .iter()
        .map(|&i| class_of[ds.samples[i].label.as_str()])
        .collect();
    let p = Probs::new(probs, k);
    let flags = confident::find_label_issues(&labels, p, method);
    let quality = confident::label_quality(&labels, p, rank_by);
    let issues = confident::rank(&flags, &quality)
        .into_iter()
        .enumerate()
        .map(|(r, row)| {
            let probs = p.row(row);
            let suggested = (0..k).fold(0, |b, j| if probs[j] > probs[b] { j } else { b });
            let s = &ds.samples[samples[row]];
            Issue {
                sample: samples[row],
                path: path_str(&s.path),
                given: s.label.clone(),
                suggested: ds.classes[suggested].clone(),
                self_confidence: probs[labels[row]],
                suggested_confidence: probs[suggested],
                rank: r + 1,
            }
        })
        .collect();
    let counts = confident::class_counts(&labels, k);
    let estimates = confident::estimated_errors_per_class(&labels, p);
    let per_class = (0..k)
        .map(|c| (ds.classes[c].clone(), counts[c], estimates[c]))
        .collect();
    Findings {
        method,
        rank_by,
        examined: samples.len(),
        issues,
        per_class,
    }
}

impl Findings {
    /// Drops the images a reviewer already kept as labelled (ranks renumbered), so a new search
    /// does not ask about them again.
    pub fn without_kept(mut self, kept: &std::collections::HashSet<String>) -> Findings {
        self.issues.retain(|i| !kept.contains(&i.path));
        for (r, i) in self.issues.iter_mut().enumerate() {
            i.rank = r + 1;
        }
        self
    }
}

/// `issues.csv`: path,given,suggested,self_confidence,rank (paths relative to the dataset root).
pub fn write_csv(path: &Path, findings: &Findings) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["path", "given", "suggested", "self_confidence", "rank"])?;
    for i in &findings.issues {
        w.write_record([
            i.path.as_str(),
            &i.given,
            &i.suggested,
            &format!("{:.6}", i.self_confidence),
            &i.rank.to_string(),
        ])?;
    }
    crate::util::write_atomic(path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Probabilities as CSV: a `path` column and one column per class name (other columns, e.g.
/// `label` or `predicted`, are ignored).
pub fn write_probs_csv(
    path: &Path,
    ds: &Dataset,
    samples: &[usize],
    probs: &[f32],
) -> anyhow::Result<()> {
    let k = ds.classes.len();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string()];
    header.extend(ds.classes.iter().cloned());
    w.write_record(&header)?;
    for (r, &i) in samples.iter().enumerate() {
        let mut rec = vec![path_str(&ds.samples[i].path)];
        rec.extend(probs[r * k..(r + 1) * k].iter().map(|v| format!("{v:.6}")));
        w.write_record(&rec)?;
    }
    crate::util::write_atomic(path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// A path (relative to the dataset root) and its class probabilities.
pub type ProbRow = (String, Vec<f32>);

/// Reads a probabilities CSV: rows of (path, probabilities in `classes` order). Every class must
/// have a column; rows are renormalised to sum to 1 (CSV rounding). Also returns the rows that
/// could not be read, in words.
pub fn read_probs_csv(
    path: &Path,
    classes: &[String],
) -> anyhow::Result<(Vec<ProbRow>, Vec<String>)> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let headers = r.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let path_col =
        col("path").ok_or_else(|| anyhow::anyhow!("{} has no `path` column", path.display()))?;
    let missing: Vec<&str> = classes
        .iter()
        .filter(|c| col(c).is_none())
        .map(String::as_str)
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{} has no column for the classes {} (it needs a path column and one per class)",
        path.display(),
        missing.join(", ")
    );
    let cols: Vec<usize> = classes.iter().map(|c| col(c).unwrap_or(0)).collect();
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
        match p {
            Ok(p)
                if p.iter().all(|v| v.is_finite() && *v >= 0.0) && p.iter().sum::<f32>() > 0.0 =>
            {
                let s: f32 = p.iter().sum();
                let rel = crate::dataset::scan::normalize(Path::new(
                    rec.get(path_col).unwrap_or("").trim(),
                ));
                rows.push((path_str(&rel), p.iter().map(|v| v / s).collect()));
            }
            _ => problems.push(format!(
                "line {line}: not a row of non-negative probabilities"
            )),
        }
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
    probs: &[f32],
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
    write_csv(&dir.join("issues.csv"), findings)?;
    crate::util::write_atomic(&dir.join(FINDINGS), &serde_json::to_vec(findings)?)?;
    Ok(dir)
}

const FINDINGS: &str = "findings.json";

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

/// The findings of the search kept in `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Findings> {
    let path = dir.join(FINDINGS);
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))
}
