//! What panels ask for. A panel never edits labels, starts a run or touches a file itself: it
//! pushes a [`Command`], and `LoupeApp::apply` carries the frame's commands out in one place
//! (as rerun's command sender and egui's demo `Command`).

use std::path::PathBuf;

use crate::dataset::export::ExportFormat;
use crate::dataset::workspace::LabelCmd;
use crate::train::config::TrainConfig;

/// Which images Browse should show.
#[derive(Debug, Clone, PartialEq)]
pub enum BrowseFilter {
    Class(String),
    /// Images whose label column `column` (of a composite label) is `value`.
    Column {
        column: usize,
        value: String,
    },
    Paths {
        title: String,
        paths: Vec<String>,
    },
    Unreadable,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A label edit, for the labels worker (journal, undo).
    Label(LabelCmd),
    /// Go to Browse, filtered.
    Browse(BrowseFilter),
    /// A new run with this config on the dataset as edited.
    StartRun(TrainConfig),
    StopRun,
    /// Continue a run from its last checkpoint, in its folder.
    ResumeRun(PathBuf),
    /// A new run (or experiment) with the config of the one in this folder; `true` once the
    /// user was told the data changed since and went on.
    RunAgain(PathBuf, bool),
    RenameRun(PathBuf, String),
    DeleteRun(PathBuf),
    FindIssues,
    CancelIssues,
    /// Check the pictures (the Health tab).
    CheckHealth,
    /// Export the dataset as edited into this new folder.
    Export(PathBuf, ExportFormat),
}

impl From<LabelCmd> for Command {
    fn from(c: LabelCmd) -> Self {
        Command::Label(c)
    }
}

/// The commands of one frame.
#[derive(Debug, Default)]
pub struct Commands(Vec<Command>);

impl Commands {
    pub fn push(&mut self, c: impl Into<Command>) {
        self.0.push(c.into());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Label edits not yet handed to the labels worker.
    pub fn label_edits(&self) -> usize {
        self.0
            .iter()
            .filter(|c| matches!(c, Command::Label(_)))
            .count()
    }

    pub fn take(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.0)
    }
}
