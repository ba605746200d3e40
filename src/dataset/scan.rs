//! Opening a dataset: walk an ImageFolder tree or read a CSV of labels, then read every image
//! header in parallel. Every file ends up as a [`Sample`], a [`Rejected`] with its reason, or
//! counted as ignored junk.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::probe::{self, has_image_extension, ImageInfo, Reason};

/// Where the samples and their labels come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// The class is the first-level folder; images may sit at any depth below it.
    ImageFolder {
        root: PathBuf,
    },
    Csv(CsvSource),
}

/// A CSV of labels: a path column (relative to the CSV's folder), one or more label columns that
/// combine into one class (`mask,gender,age` -> `wear/female/60+`), and an optional group column
/// (e.g. a person id) that splits keep together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvSource {
    pub csv: PathBuf,
    pub path_col: String,
    pub label_cols: Vec<String>,
    pub group_col: Option<String>,
}

/// Separator between the columns of a composite label.
pub const COMPOSITE_SEP: &str = "/";

/// The per-column parts of a class name in a dataset with `columns` label columns.
pub fn label_parts(label: &str, columns: usize) -> Vec<String> {
    if columns > 1 {
        label
            .splitn(columns, COMPOSITE_SEP)
            .map(str::to_string)
            .collect()
    } else {
        vec![label.to_string()]
    }
}

impl Source {
    /// The same source with absolute paths: what a run records and an engine is given, so it
    /// means the same from any working folder.
    pub fn absolute(&self) -> Source {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        match self {
            Source::ImageFolder { root } => Source::ImageFolder { root: abs(root) },
            Source::Csv(c) => Source::Csv(CsvSource {
                csv: abs(&c.csv),
                ..c.clone()
            }),
        }
    }

    /// The folder sample paths are relative to.
    pub fn root(&self) -> PathBuf {
        match self {
            Source::ImageFolder { root } => root.clone(),
            Source::Csv(c) => c.csv.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    /// Relative to the dataset root.
    pub path: PathBuf,
    /// The class: for composite labels the parts joined by [`COMPOSITE_SEP`].
    pub label: String,
    /// One value per label column (a single value for ImageFolder).
    pub parts: Vec<String>,
    pub group: Option<String>,
    pub info: ImageInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Relative to the dataset root (for a bad CSV row: `file.csv:LINE`).
    pub path: PathBuf,
    pub reason: Reason,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub source: Source,
    /// Names of the label columns (`["class"]` for ImageFolder).
    pub label_columns: Vec<String>,
    /// Every class, sorted by name; includes empty class folders.
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    pub rejected: Vec<Rejected>,
    /// Junk skipped on purpose (`Thumbs.db`, `.DS_Store`, sidecar files), relative to the root.
    pub ignored: Vec<PathBuf>,
}

impl Dataset {
    /// The dataset's description (root, source, columns, classes, problems) without samples:
    /// cheap to copy when the samples are about to be rebuilt.
    pub fn clone_without_samples(&self) -> Dataset {
        Dataset {
            root: self.root.clone(),
            source: self.source.clone(),
            label_columns: self.label_columns.clone(),
            classes: self.classes.clone(),
            samples: Vec::new(),
            rejected: self.rejected.clone(),
            ignored: self.ignored.clone(),
        }
    }

    pub fn abs_path(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// A fingerprint of the (path, label) list: two runs with the same one saw the same data.
    pub fn fingerprint(&self) -> String {
        fingerprint(
            self.samples
                .iter()
                .map(|s| (crate::util::path_str(&s.path), s.label.as_str())),
        )
    }
}

/// The fingerprint of (path, label) pairs in order: what a run records of the data it saw, so
/// a later look can tell whether files or labels changed since.
pub fn fingerprint<'a>(items: impl Iterator<Item = (String, &'a str)>) -> String {
    let mut h = blake3::Hasher::new();
    for (path, label) in items {
        h.update(path.as_bytes());
        h.update(b"\t");
        h.update(label.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// Shared with the UI and the CLI's progress line; the scan only writes it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files found that will be probed.
    pub found: AtomicUsize,
    /// Files probed so far.
    pub probed: AtomicUsize,
    pub cancel: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0} does not exist")]
    NotFound(PathBuf),
    #[error("{0} is neither a folder of class folders nor a CSV file")]
    NotADataset(PathBuf),
    #[error("no images found in {0}: expected one folder per class with images inside, or a CSV of labels (--csv)")]
    NoImages(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot read the CSV {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("the CSV {csv} has no column named '{column}'; its columns are: {available}")]
    MissingColumn {
        csv: PathBuf,
        column: String,
        available: String,
    },
    #[error("opening was cancelled")]
    Cancelled,
}

/// What opening a dataset does beyond reading the headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Keep a content hash of every file read whole anyway (statistics find duplicates with it;
    /// training has no use for it).
    pub hash: bool,
}

/// Opens the dataset described by `source`, reading image headers in parallel.
pub fn open(source: &Source, progress: &Progress) -> Result<Dataset, OpenError> {
    open_with(source, progress, OpenOptions::default())
}

/// [`open`], with options.
pub fn open_with(
    source: &Source,
    progress: &Progress,
    options: OpenOptions,
) -> Result<Dataset, OpenError> {
    let listing = match source {
        Source::ImageFolder { root } => list_image_folder(root)?,
        Source::Csv(csv) => list_csv(csv)?,
    };
    let root = source.root();
    progress
        .found
        .store(listing.candidates.len(), Ordering::Relaxed);

    let probed: Vec<Result<ImageInfo, Reason>> = io_pool().install(|| {
        listing
            .candidates
            .par_iter()
            .map(|c| {
                if progress.cancel.load(Ordering::Relaxed) {
                    return Err(Reason::Io("cancelled".into()));
                }
                let r = probe::probe(&root.join(&c.path), options.hash);
                progress.probed.fetch_add(1, Ordering::Relaxed);
                r
            })
            .collect()
    });
    if progress.cancel.load(Ordering::Relaxed) {
        return Err(OpenError::Cancelled);
    }

    let mut samples = Vec::with_capacity(probed.len());
    let mut rejected = listing.rejected;
    for (c, r) in listing.candidates.into_iter().zip(probed) {
        match r {
            Ok(info) => samples.push(Sample {
                path: c.path,
                label: c.parts.join(COMPOSITE_SEP),
                parts: c.parts,
                group: c.group,
                info,
            }),
            Err(reason) => rejected.push(Rejected {
                path: c.path,
                reason,
            }),
        }
    }
    if samples.is_empty() && rejected.is_empty() {
        return Err(OpenError::NoImages(root));
    }
    let mut classes: BTreeSet<String> = listing.class_folders;
    classes.extend(samples.iter().map(|s| s.label.clone()));
    Ok(Dataset {
        root,
        source: source.clone(),
        label_columns: listing.label_columns,
        classes: classes.into_iter().collect(),
        samples,
        rejected,
        ignored: listing.ignored,
    })
}

/// Picks the source for a path given on the command line: a folder is an ImageFolder tree.
pub fn source_for(path: &Path) -> Result<Source, OpenError> {
    let meta = std::fs::metadata(path).map_err(|_| OpenError::NotFound(path.to_path_buf()))?;
    if meta.is_dir() {
        Ok(Source::ImageFolder {
            root: path.to_path_buf(),
        })
    } else {
        Err(OpenError::NotADataset(path.to_path_buf()))
    }
}

/// A file that will be probed, with the label it will carry.
struct Candidate {
    path: PathBuf,
    parts: Vec<String>,
    group: Option<String>,
}

struct Listing {
    label_columns: Vec<String>,
    class_folders: BTreeSet<String>,
    candidates: Vec<Candidate>,
    rejected: Vec<Rejected>,
    ignored: Vec<PathBuf>,
}

fn list_image_folder(root: &Path) -> Result<Listing, OpenError> {
    let meta = std::fs::metadata(root).map_err(|_| OpenError::NotFound(root.to_path_buf()))?;
    if !meta.is_dir() {
        return Err(OpenError::NotADataset(root.to_path_buf()));
    }
    let io_err = |source| OpenError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut top: Vec<std::fs::DirEntry> = std::fs::read_dir(root)
        .map_err(io_err)?
        .filter_map(Result::ok)
        .collect();
    top.sort_by_key(|e| e.file_name());
    let canonical_root = root.canonicalize().map_err(io_err)?;

    let mut out = Listing {
        label_columns: vec!["class".into()],
        class_folders: BTreeSet::new(),
        candidates: Vec::new(),
        rejected: Vec::new(),
        ignored: Vec::new(),
    };
    let mut class_dirs = Vec::new();
    for e in top {
        let name = e.file_name();
        let rel = PathBuf::from(&name);
        match std::fs::metadata(e.path()) {
            // Hidden folders hold tool state (.loupe, .git, .ipynb_checkpoints), never samples.
            Ok(m) if m.is_dir() && name.to_string_lossy().starts_with('.') => {}
            Ok(m) if m.is_dir() => {
                out.class_folders
                    .insert(name.to_string_lossy().into_owned());
                class_dirs.push(rel);
            }
            Ok(m) if m.is_file() && has_image_extension(&rel) => out.rejected.push(Rejected {
                path: rel,
                reason: Reason::NoClass,
            }),
            Ok(_) => out.ignored.push(rel),
            Err(_) if e.file_type().is_ok_and(|t| t.is_symlink()) => out.rejected.push(Rejected {
                path: rel,
                reason: Reason::BrokenLink,
            }),
            Err(err) => out.rejected.push(Rejected {
                path: rel,
                reason: Reason::Io(err.to_string()),
            }),
        }
    }
    // One walk per class folder, in parallel: a 100,000-file tree lists in a fraction of the time.
    let parts: Vec<Listing> = io_pool().install(|| {
        class_dirs
            .par_iter()
            .map(|class| walk_class(root, &canonical_root, class))
            .collect()
    });
    for p in parts {
        out.candidates.extend(p.candidates);
        out.rejected.extend(p.rejected);
        out.ignored.extend(p.ignored);
    }
    Ok(out)
}

/// Lists one class folder. Links are followed; a link back to the dataset root or one of its
/// ancestors is reported as a loop (walkdir only sees loops within the folder it walks).
fn walk_class(root: &Path, canonical_root: &Path, class_rel: &Path) -> Listing {
    let class = class_rel.to_string_lossy().into_owned();
    let mut out = Listing {
        label_columns: Vec::new(),
        class_folders: BTreeSet::new(),
        candidates: Vec::new(),
        rejected: Vec::new(),
        ignored: Vec::new(),
    };
    let mut loops = Vec::new();
    let walker = walkdir::WalkDir::new(root.join(class_rel))
        .follow_links(true)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| {
            if !e.file_type().is_dir() {
                return true;
            }
            if e.file_name().to_string_lossy().starts_with('.') {
                return false;
            }
            let outside_loop = e.path_is_symlink()
                && e.path()
                    .canonicalize()
                    .is_ok_and(|target| canonical_root.starts_with(&target));
            if outside_loop {
                loops.push(relative(root, e.path()));
            }
            !outside_loop
        });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                let path = err.path().map(|p| relative(root, p)).unwrap_or_default();
                out.rejected.push(Rejected {
                    path,
                    reason: walk_error_reason(&err),
                });
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        // Most images sit right in their class folder: their path is the class and the name,
        // with no prefix to strip component by component.
        let rel = if entry.depth() == 1 {
            class_rel.join(entry.file_name())
        } else {
            relative(root, entry.path())
        };
        // Pipes, sockets and devices would block or never end: only regular files are read.
        if !entry.file_type().is_file() || !has_image_extension(&rel) {
            out.ignored.push(rel);
        } else {
            out.candidates.push(Candidate {
                path: rel,
                parts: vec![class.clone()],
                group: None,
            });
        }
    }
    out.rejected.extend(loops.into_iter().map(|path| Rejected {
        path,
        reason: Reason::SymlinkLoop,
    }));
    // The order walkdir's `sort_by_file_name` gave (samples in a stable order make splits
    // reproducible), sorted once here: walkdir's comparator parsed each name out of its path
    // again on every comparison, a tenth of a 100,000-file scan.
    out.candidates
        .sort_unstable_by(|a, b| path_order(&a.path, &b.path));
    out.rejected.sort_by(|a, b| path_order(&a.path, &b.path));
    out.ignored.sort_unstable_by(|a, b| path_order(a, b));
    out
}

/// Paths in the order of their components (as `Path`'s own ordering, and walkdir's sorted walk),
/// compared on their bytes: a separator sorts before any other byte.
fn path_order(a: &Path, b: &Path) -> std::cmp::Ordering {
    fn key(p: &Path) -> impl Iterator<Item = u16> + '_ {
        p.as_os_str()
            .as_encoded_bytes()
            .iter()
            .map(|&c| if c == b'/' { 0 } else { u16::from(c) + 1 })
    }
    key(a).cmp(key(b))
}

/// Threads for file I/O. More than the cores: when the files are not cached, each thread
/// mostly waits on the disk, and a deeper queue of reads is what makes a cold scan fast.
pub fn io_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads((cores * 4).clamp(4, 32))
            .thread_name(|i| format!("loupe-io-{i}"))
            .build()
            .expect("creating a thread pool only fails when the OS is out of threads")
    })
}

fn walk_error_reason(err: &walkdir::Error) -> Reason {
    if err.loop_ancestor().is_some() {
        return Reason::SymlinkLoop;
    }
    if let Some(p) = err.path() {
        let is_link = std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && std::fs::metadata(p).is_err() {
            return Reason::BrokenLink;
        }
    }
    Reason::Io(
        err.io_error()
            .map(|e| e.to_string())
            .unwrap_or_else(|| err.to_string()),
    )
}

fn relative(root: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(root).unwrap_or(p).to_path_buf()
}

fn list_csv(src: &CsvSource) -> Result<Listing, OpenError> {
    let csv_path = &src.csv;
    if !csv_path.exists() {
        return Err(OpenError::NotFound(csv_path.clone()));
    }
    let root = csv_path.parent().unwrap_or(Path::new("."));
    let csv_err = |source| OpenError::Csv {
        path: csv_path.clone(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(csv_path)
        .map_err(csv_err)?;
    let headers = reader.headers().map_err(csv_err)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| OpenError::MissingColumn {
                csv: csv_path.clone(),
                column: name.to_string(),
                available: headers.iter().collect::<Vec<_>>().join(", "),
            })
    };
    let path_idx = column(&src.path_col)?;
    let label_idx: Vec<usize> = src
        .label_cols
        .iter()
        .map(|c| column(c))
        .collect::<Result<_, _>>()?;
    let group_idx = src.group_col.as_deref().map(column).transpose()?;
    let csv_name = csv_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let mut out = Listing {
        label_columns: src.label_cols.clone(),
        class_folders: BTreeSet::new(),
        candidates: Vec::new(),
        rejected: Vec::new(),
        ignored: Vec::new(),
    };
    let mut seen = HashSet::new();
    for (i, record) in reader.records().enumerate() {
        // Line numbers as an editor shows them: the header is line 1.
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i as u64 + 2, |p| p.line());
        let row_ref = || PathBuf::from(format!("{csv_name}:{line}"));
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                out.rejected.push(Rejected {
                    path: row_ref(),
                    reason: Reason::Corrupt(format!("bad CSV row: {e}")),
                });
                continue;
            }
        };
        let cell = |idx: usize| record.get(idx).unwrap_or("").trim().to_string();
        let raw = cell(path_idx);
        if raw.is_empty() {
            out.rejected.push(Rejected {
                path: row_ref(),
                reason: Reason::Corrupt("empty path cell".into()),
            });
            continue;
        }
        let rel = normalize(Path::new(&raw));
        if !seen.insert(rel.clone()) {
            out.rejected.push(Rejected {
                path: row_ref(),
                reason: Reason::Corrupt(format!("{raw} is listed twice")),
            });
            continue;
        }
        let parts: Vec<String> = label_idx.iter().map(|&i| cell(i)).collect();
        if parts.iter().any(String::is_empty) {
            out.rejected.push(Rejected {
                path: rel,
                reason: Reason::NoLabel,
            });
            continue;
        }
        let abs = root.join(&rel);
        if std::fs::metadata(&abs).is_err() {
            let reason = if std::fs::symlink_metadata(&abs).is_ok() {
                Reason::BrokenLink
            } else {
                Reason::Missing
            };
            out.rejected.push(Rejected { path: rel, reason });
            continue;
        }
        let group = group_idx.map(cell).filter(|g| !g.is_empty());
        out.candidates.push(Candidate {
            path: rel,
            parts,
            group,
        });
    }
    Ok(out)
}

/// `./a/b.jpg` and `a//b.jpg` name the same sample as `a/b.jpg`.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sort_by_their_components() {
        let mut paths: Vec<PathBuf> = [
            "a-b/x.png",
            "a/b.png",
            "a/b/c.png",
            "a.png",
            "a/a.png",
            "ab",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let mut by_path = paths.clone();
        by_path.sort();
        paths.sort_by(|a, b| path_order(a, b));
        assert_eq!(paths, by_path, "the same order as Path's own");
    }
}
