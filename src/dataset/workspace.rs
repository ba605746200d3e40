//! A dataset open in the window: the scan, its statistics, and a mirror of the label overlay.
//!
//! The `LabelStore` itself lives on a worker thread ("loupe-labels"): every edit is an fsynced
//! journal append, which does not belong on the UI thread. Panels send [`LabelCmd`]s; the worker
//! answers with the new state of exactly the samples that changed, and the mirror is patched.
//! Statistics and the class list come from [`LabelStore::effective`], the one rule for what the
//! edited dataset is, computed on the worker.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::labels::{LabelStore, Step};
use super::probe::ContentHash;
use super::stats::{self, Stats};
use super::{Dataset, Layout};
use crate::util::path_str;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub edited: bool,
    pub excluded: bool,
    pub unsure: bool,
    pub checked: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LabelCmd {
    Relabel {
        paths: Vec<String>,
        class: String,
    },
    /// Sets one column of a composite label (`gender`), keeping the others, as one step.
    SetColumn {
        paths: Vec<String>,
        column: usize,
        value: String,
    },
    Exclude {
        paths: Vec<String>,
        excluded: bool,
    },
    /// Reviewed and kept as labelled.
    Check {
        paths: Vec<String>,
        checked: bool,
    },
    AddClass(String),
    Revert(String),
    Undo,
    Redo,
}

/// The current state of one sample, as the worker reports it.
#[derive(Debug, Clone)]
pub struct SampleNow {
    pub path: String,
    pub label: String,
    pub flags: Flags,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryView {
    pub steps: Vec<Step>,
    pub can_undo: bool,
    pub can_redo: bool,
    pub new_classes: Vec<String>,
}

#[derive(Debug)]
pub enum LabelReply {
    /// `summary` is the new statistics and class list, computed on the worker: at 100,000
    /// images that takes a noticeable fraction of a second, which the UI thread must not spend.
    Done {
        message: String,
        changed: Vec<SampleNow>,
        history: HistoryView,
        summary: Box<(Stats, Vec<String>)>,
    },
    Failed(String),
}

pub struct Workspace {
    pub dataset: Arc<Dataset>,
    /// Statistics of the effective dataset (edits applied, excluded left out).
    pub stats: Stats,
    /// Current label of `dataset.samples[i]`.
    pub labels: Vec<String>,
    pub flags: Vec<Flags>,
    /// Every class, sorted by name: the dataset's, and those created by edits.
    pub classes: Vec<String>,
    pub history: HistoryView,
    /// Where the overlay lives and what it had to recover from, for the user.
    pub notes: Vec<String>,
    /// The overlay's folder (`.loupe/`, or the user-data fallback): runs and issue searches go
    /// beside it.
    pub store_dir: std::path::PathBuf,
    /// [`LabelStore::embeddings_dir`].
    pub embeddings_dir: std::path::PathBuf,
    index: HashMap<String, usize>,
    tx: Option<Sender<LabelCmd>>,
    rx: Receiver<LabelReply>,
    worker: Option<JoinHandle<()>>,
    /// Commands sent and not yet answered.
    pub pending: usize,
    /// Bumped on every change of labels or flags, so views know to recompute.
    pub generation: u64,
}

impl Workspace {
    /// Builds the mirror from an opened store and moves the store to its worker thread.
    /// `on_reply` is called on the worker after each answer (a repaint request). Takes a
    /// fraction of a second on 100,000 images: call it off the UI thread (the loader does).
    pub fn new(
        dataset: Dataset,
        hashes: Vec<Option<ContentHash>>,
        store: LabelStore,
        on_reply: impl Fn() + Send + 'static,
    ) -> Self {
        let dataset = Arc::new(dataset);
        let hashes = Arc::new(hashes);
        let index: HashMap<String, usize> = dataset
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| (path_str(&s.path), i))
            .collect();
        let mut labels: Vec<String> = dataset.samples.iter().map(|s| s.label.clone()).collect();
        let mut flags = vec![Flags::default(); dataset.samples.len()];
        for (path, _) in store.edited_states() {
            if let Some(&i) = index.get(path) {
                labels[i] = store.label(path).unwrap_or_default().to_string();
                flags[i] = flags_of(&store, path);
            }
        }
        let store_dir = store.dir().to_path_buf();
        let embeddings_dir = store.embeddings_dir().to_path_buf();
        let mut notes = store.warnings.clone();
        notes.insert(
            0,
            format!("label edits are saved in {}", store.dir().display()),
        );
        let history = history_of(&store);
        let (stats, classes) = summarize(&store, &dataset, &hashes);
        let (tx, worker_rx) = mpsc::channel();
        let (worker_tx, rx) = mpsc::channel();
        let (ds, h) = (dataset.clone(), hashes);
        let worker = std::thread::Builder::new()
            .name("loupe-labels".into())
            .spawn(move || label_worker(store, &ds, &h, worker_rx, worker_tx, on_reply))
            .expect("spawning a thread only fails when the OS is out of resources");
        Workspace {
            stats,
            dataset,
            labels,
            flags,
            classes,
            history,
            notes,
            store_dir,
            embeddings_dir,
            index,
            tx: Some(tx),
            rx,
            worker: Some(worker),
            pending: 0,
            generation: 0,
        }
    }

    pub fn send(&mut self, cmd: LabelCmd) {
        if let Some(tx) = &self.tx {
            if tx.send(cmd).is_ok() {
                self.pending += 1;
            }
        }
    }

    /// Applies the worker's answers; returns the messages to show (errors as `Err`).
    pub fn poll(&mut self) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        while let Ok(reply) = self.rx.try_recv() {
            self.pending = self.pending.saturating_sub(1);
            match reply {
                LabelReply::Done {
                    message,
                    changed,
                    history,
                    summary,
                } => {
                    for c in changed {
                        if let Some(&i) = self.index.get(&c.path) {
                            self.labels[i] = c.label;
                            self.flags[i] = c.flags;
                        }
                    }
                    self.history = history;
                    (self.stats, self.classes) = *summary;
                    self.generation += 1;
                    out.push(Ok(message));
                }
                LabelReply::Failed(e) => out.push(Err(e)),
            }
        }
        out
    }

    pub fn path(&self, i: usize) -> String {
        path_str(&self.dataset.samples[i].path)
    }

    /// The fingerprint a run started now would record: the pictures not excluded, with their
    /// labels as edited (what the engine reads from the overlay).
    pub fn fingerprint(&self) -> String {
        super::scan::fingerprint(
            (0..self.labels.len())
                .filter(|&i| !self.flags[i].excluded)
                .map(|i| (self.path(i), self.labels[i].as_str())),
        )
    }

    pub fn index_of(&self, path: &str) -> Option<usize> {
        self.index.get(path).copied()
    }

    /// The classes as edited, and their label columns' values.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.classes, &self.dataset.label_columns)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // Closing the channel ends the worker after the edits already sent are written.
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Statistics and the class list of the dataset as the store has it edited (excluded samples
/// left out). No file I/O: the content hashes were computed when the dataset was opened.
fn summarize(
    store: &LabelStore,
    ds: &Dataset,
    hashes: &[Option<ContentHash>],
) -> (Stats, Vec<String>) {
    let (eff, origin) = store.effective_with_origin(ds);
    let kept: Vec<Option<ContentHash>> = origin
        .iter()
        .map(|&i| hashes.get(i).copied().flatten())
        .collect();
    (stats::compute_with_hashes(&eff, Some(&kept)), eff.classes)
}

fn flags_of(store: &LabelStore, path: &str) -> Flags {
    let st = store.sample_state(path);
    Flags {
        edited: store.is_edited(path),
        excluded: st.excluded,
        unsure: st.unsure,
        checked: st.checked,
    }
}

fn history_of(store: &LabelStore) -> HistoryView {
    HistoryView {
        steps: store.history().cloned().collect(),
        can_undo: store.can_undo(),
        can_redo: store.can_redo(),
        new_classes: store.new_classes().cloned().collect(),
    }
}

fn label_worker(
    mut store: LabelStore,
    ds: &Dataset,
    hashes: &[Option<ContentHash>],
    rx: Receiver<LabelCmd>,
    tx: Sender<LabelReply>,
    on_reply: impl Fn(),
) {
    for cmd in rx {
        let result = match &cmd {
            LabelCmd::Relabel { paths, class } => {
                let changes: Vec<(String, String)> =
                    paths.iter().map(|p| (p.clone(), class.clone())).collect();
                store
                    .relabel(
                        &changes,
                        &format!("relabel {} to {class}", plural(paths.len())),
                    )
                    .map(|s| (s, "relabelled"))
            }
            LabelCmd::SetColumn {
                paths,
                column,
                value,
            } => {
                let n = ds.label_columns.len();
                let changes: Vec<(String, String)> = paths
                    .iter()
                    .map(|p| {
                        let now = store.label(p).unwrap_or_default();
                        (p.clone(), Layout::with_part(now, n, *column, value))
                    })
                    .collect();
                let name = ds
                    .label_columns
                    .get(*column)
                    .map_or("class", String::as_str);
                store
                    .relabel(
                        &changes,
                        &format!("set {name} of {} to {value}", plural(paths.len())),
                    )
                    .map(|s| (s, "relabelled"))
            }
            LabelCmd::Exclude { paths, excluded } => {
                let what = if *excluded { "exclude" } else { "include" };
                store
                    .set_excluded(paths, *excluded, &format!("{what} {}", plural(paths.len())))
                    .map(|s| (s, "done"))
            }
            LabelCmd::Check { paths, checked } => {
                let what = if *checked { "keep" } else { "uncheck" };
                store
                    .set_checked(paths, *checked, &format!("{what} {}", plural(paths.len())))
                    .map(|s| (s, "kept as labelled"))
            }
            LabelCmd::AddClass(c) => store.add_class(c).map(|s| (s, "class added")),
            LabelCmd::Revert(p) => store.revert(p).map(|s| (s, "reverted")),
            LabelCmd::Undo => store.undo().map(|s| (Some(s), "undone")),
            LabelCmd::Redo => store.redo().map(|s| (Some(s), "redone")),
        };
        let reply = match result {
            Ok((step, verb)) => {
                let (message, paths) = match &step {
                    Some(s) => (
                        format!("{verb}: {}", s.note),
                        s.edits
                            .iter()
                            .map(|e| e.path().to_string())
                            .collect::<Vec<_>>(),
                    ),
                    None => ("nothing to change".to_string(), Vec::new()),
                };
                let changed: Vec<SampleNow> = paths
                    .into_iter()
                    .map(|p| SampleNow {
                        label: store.label(&p).unwrap_or_default().to_string(),
                        flags: flags_of(&store, &p),
                        path: p,
                    })
                    .collect();
                let history = history_of(&store);
                let summary = Box::new(summarize(&store, ds, hashes));
                LabelReply::Done {
                    message,
                    changed,
                    history,
                    summary,
                }
            }
            Err(e) => LabelReply::Failed(e.to_string()),
        };
        if tx.send(reply).is_err() {
            break;
        }
        on_reply();
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 image".into()
    } else {
        format!("{n} images")
    }
}
