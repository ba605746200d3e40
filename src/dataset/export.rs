//! Writing the cleaned dataset (edits applied, excluded samples left out) into a new folder:
//! the only way Loupe writes images anywhere. Hardlinks where the filesystem allows, copies
//! otherwise; source files are only ever read.

use std::collections::HashSet;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::scan::{Dataset, Source};
use crate::util::path_str;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum ExportFormat {
    /// One folder per class (composite labels joined with '-').
    Imagefolder,
    /// `images/` with the original relative paths plus `labels.csv` (path,label[,columns...][,group]).
    Csv,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    pub images: usize,
    pub classes: usize,
    pub hardlinked: usize,
    pub copied: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0} is not empty: export writes only into a new or empty folder")]
    NotEmpty(PathBuf),
    #[error("{0} is inside the dataset: choose a folder outside it")]
    InsideDataset(PathBuf),
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("export stopped after {done} of {total} files: writing {path} failed: {source}. The partial export in {out} can be deleted; the dataset is untouched")]
    Write {
        done: usize,
        total: usize,
        path: PathBuf,
        out: PathBuf,
        source: io::Error,
    },
}

/// Exports `ds` (pass the *effective* dataset: labels edited, excluded samples removed) to `out`.
/// `done` counts the files written, for a progress bar.
pub fn export(
    ds: &Dataset,
    out: &Path,
    format: ExportFormat,
    done_files: &std::sync::atomic::AtomicUsize,
) -> Result<ExportReport, ExportError> {
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(ExportError::NotEmpty(out.to_path_buf()));
    }
    let create = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| ExportError::Create {
            path: p.to_path_buf(),
            source,
        })
    };
    create(out)?;
    let (abs_out, abs_root) = (
        out.canonicalize().unwrap_or(out.to_path_buf()),
        ds.root.canonicalize().unwrap_or(ds.root.clone()),
    );
    if abs_out.starts_with(&abs_root) {
        let _ = std::fs::remove_dir(out);
        return Err(ExportError::InsideDataset(out.to_path_buf()));
    }

    let mut report = ExportReport {
        classes: ds.classes.len(),
        ..Default::default()
    };
    let mut taken = HashSet::new();
    let mut rows = Vec::new();
    let total = ds.samples.len();
    for (done, s) in ds.samples.iter().enumerate() {
        let rel = match format {
            ExportFormat::Imagefolder => unique(
                &mut taken,
                Path::new(&folder_name(&s.label)).join(below_class(&ds.source, &s.path)),
            ),
            ExportFormat::Csv => Path::new("images").join(&s.path),
        };
        let dst = out.join(&rel);
        let write_err = |source| ExportError::Write {
            done,
            total,
            path: dst.clone(),
            out: out.to_path_buf(),
            source,
        };
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let src = ds.abs_path(&s.path);
        if std::fs::hard_link(&src, &dst).is_ok() {
            report.hardlinked += 1;
        } else {
            std::fs::copy(&src, &dst).map_err(write_err)?;
            report.copied += 1;
        }
        report.images += 1;
        done_files.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if format == ExportFormat::Csv {
            rows.push((path_str(&rel), s));
        }
    }
    if format == ExportFormat::Csv {
        let path = out.join("labels.csv");
        let csv_err = |e: csv::Error| ExportError::Write {
            done: total,
            total,
            path: path.clone(),
            out: out.to_path_buf(),
            source: e.into(),
        };
        let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
        let composite = ds.label_columns.len() > 1;
        let has_group = ds.samples.iter().any(|s| s.group.is_some());
        let mut header = vec!["path".to_string(), "label".to_string()];
        if composite {
            header.extend(ds.label_columns.iter().cloned());
        }
        if has_group {
            header.push("group".into());
        }
        w.write_record(&header).map_err(csv_err)?;
        for (rel, s) in rows {
            let mut rec = vec![rel, s.label.clone()];
            if composite {
                rec.extend(s.parts.iter().cloned());
            }
            if has_group {
                rec.push(s.group.clone().unwrap_or_default());
            }
            w.write_record(&rec).map_err(csv_err)?;
        }
        w.flush().map_err(|e| csv_err(e.into()))?;
    } else {
        // Empty classes stay visible as empty folders, as in the source.
        for c in &ds.classes {
            create(&out.join(folder_name(c)))?;
        }
    }
    Ok(report)
}

/// A class name as a folder name: composite labels joined with '-', nothing hidden or special.
pub fn folder_name(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '-'
            } else {
                c
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ if s.starts_with('.') => format!("_{}", &s[1..]),
        _ => s,
    }
}

/// The part of a sample's path below its class folder (ImageFolder) or its whole path (CSV).
fn below_class(source: &Source, path: &Path) -> PathBuf {
    match source {
        Source::ImageFolder { .. } => path.components().skip(1).collect(),
        Source::Csv(_) => path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect(),
    }
}

/// `rel`, or `name~2.ext`, `name~3.ext`, ... when two samples would land on the same file.
fn unique(taken: &mut HashSet<PathBuf>, rel: PathBuf) -> PathBuf {
    if taken.insert(rel.clone()) {
        return rel;
    }
    let stem = rel
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = rel
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2..)
        .map(|n| rel.with_file_name(format!("{stem}~{n}{ext}")))
        .find(|p| taken.insert(p.clone()))
        .expect("an unbounded counter always finds a free name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_become_safe_visible_folder_names() {
        assert_eq!(folder_name("wear/female/60+"), "wear-female-60+");
        assert_eq!(folder_name(".hidden"), "_hidden");
        assert_eq!(folder_name(".."), "_..");
        assert_eq!(folder_name("고양이"), "고양이");
    }

    #[test]
    fn colliding_names_get_a_counter() {
        let mut taken = HashSet::new();
        assert_eq!(
            unique(&mut taken, "a/x.png".into()),
            PathBuf::from("a/x.png")
        );
        assert_eq!(
            unique(&mut taken, "a/x.png".into()),
            PathBuf::from("a/x~2.png")
        );
        assert_eq!(
            unique(&mut taken, "a/x.png".into()),
            PathBuf::from("a/x~3.png")
        );
    }
}
