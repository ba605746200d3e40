//! A train/validation split the user provides instead of a random one: a CSV column that names
//! each row's side, or a separate folder of validation images (class folders, as the training
//! folder). Recorded in the run's config so a resumed or reproduced run finds it again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::scan::normalize;
use crate::dataset::{self, Dataset, Source};
use crate::util::path_str;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GivenSplit {
    /// A column of the dataset's CSV: rows whose value is `val`, `valid`, `validation` or `test`
    /// validate, every other row trains.
    Column(String),
    /// An ImageFolder of validation images; the dataset itself is all training.
    Folder(PathBuf),
    /// Fold `index` (from 0) of `folds` stratified, group-aware folds drawn with `seed`
    /// ([`super::split::kfold`]): its images validate, the other folds' train. Every fold of a
    /// K-fold experiment names the same `folds` and `seed`, so each image validates in exactly
    /// one of them.
    Fold {
        folds: usize,
        index: usize,
        seed: u64,
    },
}

/// Values of a split column that mean "validation".
const VAL_WORDS: [&str; 4] = ["val", "valid", "validation", "test"];

/// [`apply`] when a split is given: the dataset to train on and, if given, the validation marks.
pub fn prepare(
    ds: Dataset,
    given: Option<&GivenSplit>,
) -> anyhow::Result<(Dataset, Option<Vec<bool>>)> {
    match given {
        Some(g) => apply(ds, g).map(|(ds, v)| (ds, Some(v))),
        None => Ok((ds, None)),
    }
}

/// The dataset to train on and, per sample, whether it validates. A validation folder's images
/// are added to `ds` with absolute paths; their classes must be among the dataset's.
pub fn apply(mut ds: Dataset, given: &GivenSplit) -> anyhow::Result<(Dataset, Vec<bool>)> {
    match given {
        GivenSplit::Column(column) => {
            let Source::Csv(src) = &ds.source else {
                anyhow::bail!("--split-column needs a CSV dataset (--csv)")
            };
            let mut reader = csv::Reader::from_path(&src.csv)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", src.csv.display()))?;
            let headers = reader.headers()?.clone();
            let find = |name: &str| headers.iter().position(|h| h.trim() == name);
            let (Some(path_idx), Some(split_idx)) = (find(&src.path_col), find(column)) else {
                anyhow::bail!(
                    "{} has no column {column:?} (columns: {})",
                    src.csv.display(),
                    headers.iter().collect::<Vec<_>>().join(", ")
                );
            };
            let mut side: HashMap<String, bool> = HashMap::new();
            for record in reader.records().flatten() {
                let path = path_str(&normalize(Path::new(
                    record.get(path_idx).unwrap_or("").trim(),
                )));
                let value = record
                    .get(split_idx)
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                side.insert(path, VAL_WORDS.contains(&value.as_str()));
            }
            let is_val: Vec<bool> = ds
                .samples
                .iter()
                .map(|s| side.get(&path_str(&s.path)).copied().unwrap_or(false))
                .collect();
            anyhow::ensure!(
                is_val.iter().any(|&v| v),
                "no row of {} has {column} = {}",
                src.csv.display(),
                VAL_WORDS.join(" / ")
            );
            Ok((ds, is_val))
        }
        GivenSplit::Folder(folder) => {
            let val = dataset::open(
                &Source::ImageFolder {
                    root: folder.clone(),
                },
                &Default::default(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the validation folder {}: {e}",
                    folder.display()
                )
            })?;
            let unknown: Vec<&String> = val
                .classes
                .iter()
                .filter(|c| !ds.classes.contains(c) && val.samples.iter().any(|s| &s.label == *c))
                .collect();
            anyhow::ensure!(
                unknown.is_empty(),
                "the validation folder has classes the training data lacks: {}",
                unknown
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let root = folder.canonicalize().unwrap_or_else(|_| folder.clone());
            let n = ds.samples.len();
            ds.samples.extend(val.samples.into_iter().map(|mut s| {
                s.path = root.join(&s.path);
                s
            }));
            let is_val = (0..ds.samples.len()).map(|i| i >= n).collect();
            Ok((ds, is_val))
        }
        GivenSplit::Fold { folds, index, seed } => {
            anyhow::ensure!(
                *folds >= 2 && index < folds,
                "fold {} of {folds} does not exist (folds are 1 to {folds}, and at least 2)",
                index + 1
            );
            let class: HashMap<&str, usize> = ds
                .classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            let labels: Vec<usize> = ds.samples.iter().map(|s| class[s.label.as_str()]).collect();
            let groups: Vec<Option<String>> = ds.samples.iter().map(|s| s.group.clone()).collect();
            let fold = super::split::kfold(&labels, Some(&groups), *folds, *seed);
            let is_val = fold.iter().map(|f| f == index).collect();
            Ok((ds, is_val))
        }
    }
}
