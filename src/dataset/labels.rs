//! Label edits that never touch a source file: an overlay kept beside the dataset (`.loupe/`),
//! built from the append-only journal, with undo/redo over whole steps (a batch is one step) that
//! survives restarts, and a readable `labels.csv` snapshot of what differs from the original.
//!
//! State is always derived by replaying the applied steps in order, never patched backwards, so
//! undo stays right even when another process edited the same samples in between.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use super::journal::{Damage, Edit, Entry, Journal, JournalError, Op};
use super::scan::{label_parts, Dataset, Source, COMPOSITE_SEP};
use crate::util::{path_str, write_atomic};

/// A sample's edited state; absent fields mean "as in the original labels".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleState {
    pub label: Option<String>,
    pub excluded: bool,
    pub unsure: bool,
    /// Reviewed and kept (not an edit of the data: the label is as it was).
    pub checked: bool,
}

/// One undo step as the history shows it.
#[derive(Debug, Clone)]
pub struct Step {
    pub seq: u64,
    pub time: u64,
    pub note: String,
    pub new_classes: Vec<String>,
    pub edits: Vec<Edit>,
    /// Undone steps stay in the history (and can be redone until something new is applied).
    pub undone: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("not in the dataset: {}", .0.join(", "))]
    UnknownFiles(Vec<String>),
    #[error("this dataset's labels have {columns} columns ({names}): give the class as {example}")]
    WrongParts {
        columns: usize,
        names: String,
        example: String,
    },
    #[error("a class name cannot be empty")]
    EmptyClass,
    #[error("nothing to undo")]
    NothingToUndo,
    #[error("nothing to redo")]
    NothingToRedo,
    #[error("cannot create the label overlay folder {path}: {source}")]
    Overlay { path: PathBuf, source: io::Error },
}

pub struct LabelStore {
    journal: Journal,
    dir: PathBuf,
    embeddings: PathBuf,
    /// True when the dataset folder is read-only and the overlay lives in the user's data folder.
    pub fallback: bool,
    /// Original labels of the samples, by dataset-relative path.
    base: HashMap<String, String>,
    label_columns: Vec<String>,
    steps: BTreeMap<u64, Step>,
    /// Applied steps, oldest first; undo pops the last.
    applied: Vec<u64>,
    /// Undone steps that can be redone, most recently undone last.
    redoable: Vec<u64>,
    state: BTreeMap<String, SampleState>,
    new_classes: BTreeSet<String>,
    /// What was damaged or is inconsistent in the overlay, in words for the user.
    pub warnings: Vec<String>,
}

impl LabelStore {
    /// Opens (or starts) the overlay of `ds`, replaying its journal.
    pub fn open(ds: &Dataset) -> Result<LabelStore, LabelError> {
        let (dir, fallback) = overlay_dir(ds)?;
        let (journal, entries, damage) = Journal::open(&dir)?;
        // The embedding cache is keyed by paths relative to the dataset folder, so every labels
        // file of the folder can share it: beside the CSVs' overlays, not inside one.
        let embeddings = match overlay_sub(ds).as_os_str().is_empty() {
            true => dir.clone(),
            false => dir.parent().unwrap_or(&dir).to_path_buf(),
        }
        .join("embeddings");
        let mut store = LabelStore {
            journal,
            dir,
            embeddings,
            fallback,
            base: ds
                .samples
                .iter()
                .map(|s| (path_str(&s.path), s.label.clone()))
                .collect(),
            label_columns: ds.label_columns.clone(),
            steps: BTreeMap::new(),
            applied: Vec::new(),
            redoable: Vec::new(),
            state: BTreeMap::new(),
            new_classes: BTreeSet::new(),
            warnings: Vec::new(),
        };
        store.absorb(entries, damage);
        let stale = store
            .state
            .keys()
            .filter(|p| !store.base.contains_key(*p))
            .count();
        if stale > 0 {
            store.warnings.push(format!("{stale} edited file(s) are no longer in the dataset; their edits are kept but not shown"));
        }
        if fallback {
            store.warnings.insert(
                0,
                format!(
                    "the dataset folder is read-only: label edits are kept in {}",
                    store.dir.display()
                ),
            );
        }
        store.write_snapshot_quietly();
        Ok(store)
    }

    /// Where the overlay (journal, snapshot) lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The dataset folder's embedding cache, shared by all its labels files.
    pub fn embeddings_dir(&self) -> &Path {
        &self.embeddings
    }

    fn absorb(&mut self, entries: Vec<Entry>, damage: Vec<Damage>) {
        self.warnings.extend(damage.iter().map(|d| d.to_string()));
        let mut dirty = false;
        for e in entries {
            match e.op {
                Op::Apply {
                    note,
                    new_classes,
                    edits,
                } => {
                    for edit in &edits {
                        apply_edit(&mut self.state, edit);
                    }
                    self.new_classes.extend(new_classes.iter().cloned());
                    self.steps.insert(
                        e.seq,
                        Step {
                            seq: e.seq,
                            time: e.time,
                            note,
                            new_classes,
                            edits,
                            undone: false,
                        },
                    );
                    self.applied.push(e.seq);
                    for s in self.redoable.drain(..) {
                        // Applying something new ends the redo branch.
                        self.steps.remove(&s);
                    }
                }
                Op::Undo { target } => {
                    if self.applied.last() == Some(&target) {
                        self.applied.pop();
                        self.redoable.push(target);
                        if let Some(s) = self.steps.get_mut(&target) {
                            s.undone = true;
                        }
                        dirty = true;
                    } else {
                        self.warnings.push(format!("journal entry {}: undo of step {target}, which is not the last applied step; ignored", e.seq));
                    }
                }
                Op::Redo { target } => {
                    if self.redoable.last() == Some(&target) {
                        self.redoable.pop();
                        self.applied.push(target);
                        if let Some(s) = self.steps.get_mut(&target) {
                            s.undone = false;
                        }
                        dirty = true;
                    } else {
                        self.warnings.push(format!("journal entry {}: redo of step {target}, which was not undone last; ignored", e.seq));
                    }
                }
            }
        }
        if dirty {
            self.replay();
        }
    }

    /// Rebuilds the state from the applied steps, in order.
    fn replay(&mut self) {
        self.state.clear();
        self.new_classes.clear();
        for seq in &self.applied {
            let step = &self.steps[seq];
            for edit in &step.edits {
                apply_edit(&mut self.state, edit);
            }
            self.new_classes.extend(step.new_classes.iter().cloned());
        }
    }

    /// Picks up edits made by another process since the last look.
    pub fn refresh(&mut self) -> Result<(), LabelError> {
        let (entries, damage) = self.journal.refresh()?;
        self.absorb(entries, damage);
        Ok(())
    }

    fn commit(&mut self, op: Op) -> Result<Entry, LabelError> {
        let (others, damage, entry) = self.journal.append(op)?;
        self.absorb(others, damage);
        self.absorb(vec![entry.clone()], Vec::new());
        self.write_snapshot_quietly();
        Ok(entry)
    }

    // ---- reading -------------------------------------------------------------------------

    /// The current label of a sample (by dataset-relative path).
    pub fn label(&self, path: &str) -> Option<&str> {
        self.state
            .get(path)
            .and_then(|s| s.label.as_deref())
            .or_else(|| self.base.get(path).map(String::as_str))
    }

    /// The label a sample has in the dataset itself, before any edit.
    pub fn original(&self, path: &str) -> Option<&str> {
        self.base.get(path).map(String::as_str)
    }

    /// Every sample with an edited state (paths not in the dataset any more included).
    pub fn edited_states(&self) -> impl Iterator<Item = (&String, &SampleState)> {
        self.state.iter()
    }

    pub fn sample_state(&self, path: &str) -> SampleState {
        self.state.get(path).cloned().unwrap_or_default()
    }

    pub fn is_excluded(&self, path: &str) -> bool {
        self.state.get(path).is_some_and(|s| s.excluded)
    }

    /// Whether the sample differs from the original in any way.
    pub fn is_edited(&self, path: &str) -> bool {
        self.state.get(path).is_some_and(|s| {
            s.excluded
                || s.unsure
                || s.label
                    .as_deref()
                    .is_some_and(|l| self.base.get(path).map(String::as_str) != Some(l))
        })
    }

    /// Every step, oldest first, undone ones included.
    pub fn history(&self) -> impl Iterator<Item = &Step> {
        self.steps.values()
    }

    pub fn can_undo(&self) -> bool {
        !self.applied.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redoable.is_empty()
    }

    /// Classes created by edits (beyond the dataset's own).
    pub fn new_classes(&self) -> impl Iterator<Item = &String> {
        self.new_classes.iter()
    }

    /// The dataset as it is after the edits: labels replaced, excluded samples left out, classes
    /// created by edits added. What statistics, training, label-issue searches and export see:
    /// the one rule for "the edited dataset", whoever asks (the window, a command, the engine).
    pub fn effective(&self, ds: &Dataset) -> Dataset {
        self.effective_with_origin(ds).0
    }

    /// [`Self::effective`], with the index in `ds.samples` each of its samples came from.
    pub fn effective_with_origin(&self, ds: &Dataset) -> (Dataset, Vec<usize>) {
        let mut out = ds.clone_without_samples();
        let mut origin = Vec::with_capacity(ds.samples.len());
        out.samples.reserve(ds.samples.len());
        for (i, s) in ds.samples.iter().enumerate() {
            let st = self.state.get(&path_str(&s.path));
            if st.is_some_and(|st| st.excluded) {
                continue;
            }
            let mut s = s.clone();
            if let Some(l) = st.and_then(|st| st.label.as_ref()) {
                s.label = l.clone();
                s.parts = label_parts(l, ds.label_columns.len());
            }
            out.samples.push(s);
            origin.push(i);
        }
        let mut classes: BTreeSet<String> = ds.classes.iter().cloned().collect();
        classes.extend(self.new_classes.iter().cloned());
        classes.extend(out.samples.iter().map(|s| s.label.clone()));
        out.classes = classes.into_iter().collect();
        (out, origin)
    }

    // ---- editing -------------------------------------------------------------------------

    fn check_known<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Result<(), LabelError> {
        let unknown: Vec<String> = paths
            .into_iter()
            .filter(|p| !self.base.contains_key(*p))
            .map(str::to_string)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(LabelError::UnknownFiles(unknown))
        }
    }

    fn check_class(&self, class: &str) -> Result<(), LabelError> {
        let n = self.label_columns.len();
        if class.trim().is_empty() {
            return Err(LabelError::EmptyClass);
        }
        if n > 1
            && (class.split(COMPOSITE_SEP).count() != n
                || class.split(COMPOSITE_SEP).any(|p| p.trim().is_empty()))
        {
            return Err(LabelError::WrongParts {
                columns: n,
                names: self.label_columns.join(", "),
                example: self.label_columns.join(COMPOSITE_SEP),
            });
        }
        Ok(())
    }

    /// Every class some sample has or an edit created. Built once per edit: a batch of 100,000
    /// relabels must not scan all labels for each file.
    fn known_classes(&self) -> std::collections::HashSet<&str> {
        let mut known: std::collections::HashSet<&str> =
            self.base.values().map(String::as_str).collect();
        known.extend(self.new_classes.iter().map(String::as_str));
        known.extend(self.state.values().filter_map(|s| s.label.as_deref()));
        known
    }

    /// Relabels many samples as one undo step. `(path, class)` pairs; all are checked before
    /// anything is written, so nothing is half-applied. Returns the step, or `None` when nothing
    /// would change.
    pub fn relabel(
        &mut self,
        changes: &[(String, String)],
        note: &str,
    ) -> Result<Option<Step>, LabelError> {
        self.refresh()?;
        self.check_known(changes.iter().map(|(p, _)| p.as_str()))?;
        for (_, c) in changes {
            self.check_class(c)?;
        }
        let known = self.known_classes();
        let mut new_classes = BTreeSet::new();
        let mut edits = Vec::new();
        for (path, to) in changes {
            let from = self.label(path).unwrap_or_default().to_string();
            if &from != to {
                if !known.contains(to.as_str()) {
                    new_classes.insert(to.clone());
                }
                edits.push(Edit::Label {
                    path: path.clone(),
                    from,
                    to: to.clone(),
                });
            }
        }
        self.commit_edits(note, new_classes.into_iter().collect(), edits)
    }

    /// Marks samples excluded (or back in); kept on disk, left out of training and export.
    pub fn set_excluded(
        &mut self,
        paths: &[String],
        excluded: bool,
        note: &str,
    ) -> Result<Option<Step>, LabelError> {
        self.set_flag(
            paths,
            note,
            |st| st.excluded == excluded,
            |path| Edit::Excluded {
                path,
                from: !excluded,
                to: excluded,
            },
        )
    }

    /// Marks samples as unsure (a reminder to look again), or clears the mark.
    pub fn set_unsure(
        &mut self,
        paths: &[String],
        unsure: bool,
        note: &str,
    ) -> Result<Option<Step>, LabelError> {
        self.set_flag(
            paths,
            note,
            |st| st.unsure == unsure,
            |path| Edit::Unsure {
                path,
                from: !unsure,
                to: unsure,
            },
        )
    }

    /// Marks samples as reviewed and kept, or clears the mark.
    pub fn set_checked(
        &mut self,
        paths: &[String],
        checked: bool,
        note: &str,
    ) -> Result<Option<Step>, LabelError> {
        self.set_flag(
            paths,
            note,
            |st| st.checked == checked,
            |path| Edit::Checked {
                path,
                from: !checked,
                to: checked,
            },
        )
    }

    pub fn is_checked(&self, path: &str) -> bool {
        self.state.get(path).is_some_and(|s| s.checked)
    }

    /// One step setting a flag on the samples that do not have it yet.
    fn set_flag(
        &mut self,
        paths: &[String],
        note: &str,
        already: impl Fn(&SampleState) -> bool,
        edit: impl Fn(String) -> Edit,
    ) -> Result<Option<Step>, LabelError> {
        self.refresh()?;
        self.check_known(paths.iter().map(String::as_str))?;
        let edits = paths
            .iter()
            .filter(|p| !already(&self.sample_state(p)))
            .map(|p| edit(p.clone()))
            .collect();
        self.commit_edits(note, Vec::new(), edits)
    }

    /// Adds an empty class (one step).
    pub fn add_class(&mut self, class: &str) -> Result<Option<Step>, LabelError> {
        self.refresh()?;
        self.check_class(class)?;
        if self.known_classes().contains(class) {
            return Ok(None);
        }
        self.commit_edits(
            &format!("add class {class}"),
            vec![class.to_string()],
            Vec::new(),
        )
    }

    fn commit_edits(
        &mut self,
        note: &str,
        new_classes: Vec<String>,
        edits: Vec<Edit>,
    ) -> Result<Option<Step>, LabelError> {
        if edits.is_empty() && new_classes.is_empty() {
            return Ok(None);
        }
        let entry = self.commit(Op::Apply {
            note: note.to_string(),
            new_classes,
            edits,
        })?;
        Ok(self.steps.get(&entry.seq).cloned())
    }

    /// Puts one sample back as it is in the dataset (label, excluded, unsure), as one step.
    pub fn revert(&mut self, path: &str) -> Result<Option<Step>, LabelError> {
        self.refresh()?;
        self.check_known([path])?;
        let st = self.sample_state(path);
        let mut edits = Vec::new();
        let original = self.base[path].clone();
        if let Some(label) = st.label.filter(|l| *l != original) {
            edits.push(Edit::Label {
                path: path.to_string(),
                from: label,
                to: original,
            });
        }
        if st.excluded {
            edits.push(Edit::Excluded {
                path: path.to_string(),
                from: true,
                to: false,
            });
        }
        if st.unsure {
            edits.push(Edit::Unsure {
                path: path.to_string(),
                from: true,
                to: false,
            });
        }
        if st.checked {
            edits.push(Edit::Checked {
                path: path.to_string(),
                from: true,
                to: false,
            });
        }
        self.commit_edits(&format!("revert {path}"), Vec::new(), edits)
    }

    /// Undoes the last applied step; returns it.
    pub fn undo(&mut self) -> Result<Step, LabelError> {
        self.refresh()?;
        let target = *self.applied.last().ok_or(LabelError::NothingToUndo)?;
        self.commit(Op::Undo { target })?;
        Ok(self.steps[&target].clone())
    }

    /// Redoes the last undone step; returns it.
    pub fn redo(&mut self) -> Result<Step, LabelError> {
        self.refresh()?;
        let target = *self.redoable.last().ok_or(LabelError::NothingToRedo)?;
        self.commit(Op::Redo { target })?;
        Ok(self.steps[&target].clone())
    }

    // ---- the readable snapshot -------------------------------------------------------------

    /// `labels.csv`: every sample whose state differs from the original, for people and other
    /// tools. Derived from the journal; a failure to write it loses nothing.
    fn write_snapshot_quietly(&mut self) {
        if let Err(e) = self.write_snapshot() {
            self.warnings.push(format!(
                "could not update {}: {e}",
                self.dir.join("labels.csv").display()
            ));
        }
    }

    fn write_snapshot(&self) -> io::Result<()> {
        let mut buf = Vec::new();
        {
            let mut w = csv::Writer::from_writer(&mut buf);
            w.write_record(["path", "original", "label", "excluded", "unsure"])?;
            for (path, st) in &self.state {
                if !self.is_edited(path) {
                    continue;
                }
                let original = self.base.get(path).map(String::as_str).unwrap_or("");
                let label = self.label(path).unwrap_or("");
                w.write_record([
                    path.as_str(),
                    original,
                    label,
                    bool_str(st.excluded),
                    bool_str(st.unsure),
                ])?;
            }
            w.flush()?;
        }
        write_atomic(&self.dir.join("labels.csv"), &buf)
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        ""
    }
}

fn apply_edit(state: &mut BTreeMap<String, SampleState>, edit: &Edit) {
    let st = state.entry(edit.path().to_string()).or_default();
    match edit {
        Edit::Label { to, .. } => st.label = Some(to.clone()),
        Edit::Excluded { to, .. } => st.excluded = *to,
        Edit::Unsure { to, .. } => st.unsure = *to,
        Edit::Checked { to, .. } => st.checked = *to,
    }
}

/// The overlay folder of a dataset: `.loupe/` in the dataset folder (for a CSV dataset
/// `.loupe/csv-<name>/`, so two CSVs in one folder keep separate edits), or, when the dataset
/// folder is read-only, a folder in the user's data directory keyed by the dataset's path.
fn overlay_dir(ds: &Dataset) -> Result<(PathBuf, bool), LabelError> {
    let sub = overlay_sub(ds);
    let local = ds.root.join(".loupe").join(&sub);
    let user_root = user_overlay_dir(ds);
    let user = user_root.join(&sub);
    if local.join("journal.jsonl").exists() && writable(&local) {
        return Ok((local, false));
    }
    if user.join("journal.jsonl").exists() {
        return Ok((user, true));
    }
    if std::fs::create_dir_all(&local).is_ok() && writable(&local) {
        return Ok((local, false));
    }
    std::fs::create_dir_all(&user).map_err(|source| LabelError::Overlay {
        path: user.clone(),
        source,
    })?;
    // Which dataset this folder belongs to, for a person looking around in there.
    let _ = std::fs::write(
        user_root.join("dataset.txt"),
        format!("{}\n", ds.root.display()),
    );
    Ok((user, true))
}

/// Whether `ds` has an overlay already (without creating one): read-only commands such as
/// `stats` look, but leave no `.loupe/` behind in a dataset that was never edited.
pub fn has_overlay(ds: &Dataset) -> bool {
    let sub = overlay_sub(ds);
    ds.root
        .join(".loupe")
        .join(&sub)
        .join("journal.jsonl")
        .exists()
        || user_overlay_dir(ds)
            .join(&sub)
            .join("journal.jsonl")
            .exists()
}

fn overlay_sub(ds: &Dataset) -> PathBuf {
    match &ds.source {
        Source::ImageFolder { .. } => PathBuf::new(),
        Source::Csv(c) => PathBuf::from(format!(
            "csv-{}",
            c.csv
                .file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default()
        )),
    }
}

fn writable(dir: &Path) -> bool {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("journal.jsonl"))
        .is_ok()
}

/// `<user data folder>/overlays/<folder name>-<hash of the absolute path>`.
fn user_overlay_dir(ds: &Dataset) -> PathBuf {
    let abs = ds.root.canonicalize().unwrap_or_else(|_| ds.root.clone());
    let hash = blake3::hash(abs.to_string_lossy().as_bytes()).to_hex();
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    crate::util::user_data_dir()
        .join("overlays")
        .join(format!("{name}-{}", &hash[..16]))
}

#[derive(Debug, thiserror::Error)]
pub enum EditedError {
    #[error(transparent)]
    Open(#[from] super::scan::OpenError),
    #[error(transparent)]
    Labels(#[from] LabelError),
}

/// Opens the dataset at `source` as edited: its label overlay applied when it has one. A
/// dataset never edited gets no overlay folder from this (read-only commands leave no trace).
/// Also returns what the overlay had to recover from, for the user.
pub fn open_edited(
    source: &Source,
    progress: &super::scan::Progress,
    options: super::scan::OpenOptions,
) -> Result<(Dataset, Vec<String>), EditedError> {
    let ds = super::scan::open_with(source, progress, options)?;
    if !has_overlay(&ds) {
        return Ok((ds, Vec::new()));
    }
    let store = LabelStore::open(&ds)?;
    Ok((store.effective(&ds), store.warnings))
}
