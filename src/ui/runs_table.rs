//! The runs table of the Train tab: every run and K-fold experiment of the dataset (a sweep's
//! trials among them) with its settings as columns and its best scores, sortable by any column;
//! two ticked rows show what differs in their configs; "Run again" starts a new run (or
//! experiment) from a row's config.

use std::cmp::Ordering;
use std::path::PathBuf;

use egui::RichText;

use super::command::{Command, Commands};
use crate::train::config::TrainConfig;
use crate::train::runs::{config_diff, ExperimentSummary, RunSummary};
use crate::util::{clock, utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Name,
    Model,
    Size,
    Lr,
    Loss,
    Balance,
    Epochs,
    Folds,
    Status,
    MacroF1,
    Accuracy,
    Time,
    Created,
}

// Scores first: the columns a narrow window still shows.
const COLS: [(Col, &str); 13] = [
    (Col::Name, "run"),
    (Col::MacroF1, "macro-F1"),
    (Col::Accuracy, "accuracy"),
    (Col::Status, "status"),
    (Col::Model, "model"),
    (Col::Size, "size"),
    (Col::Lr, "lr"),
    (Col::Loss, "loss"),
    (Col::Balance, "balance"),
    (Col::Epochs, "epochs"),
    (Col::Folds, "folds"),
    (Col::Time, "time"),
    (Col::Created, "created"),
];

/// One row: a run, or an experiment (its scores out of fold).
struct Row<'a> {
    dir: &'a PathBuf,
    label: &'a str,
    config: &'a TrainConfig,
    img_size: u32,
    folds: usize,
    status: String,
    scores: Option<(f64, f64)>,
    seconds: f64,
    created: u64,
    record: serde_json::Value,
}

/// What two rows are compared on: the same fields for a run and an experiment, the data by
/// its fingerprint (which changes with any file or label).
fn compared(
    config: &TrainConfig,
    img_size: u32,
    folds: usize,
    fingerprint: &str,
) -> serde_json::Value {
    let mut config = serde_json::to_value(config).unwrap_or_default();
    if let Some(c) = config.as_object_mut() {
        c.remove("given_split");
    }
    serde_json::json!({
        "config": config,
        "image size": img_size,
        "folds": folds,
        "data": fingerprint.get(..12).unwrap_or(fingerprint),
    })
}

impl<'a> Row<'a> {
    fn run(r: &'a RunSummary) -> Row<'a> {
        Row {
            dir: &r.dir,
            label: &r.label,
            config: &r.record.config,
            img_size: r.record.img_size,
            folds: 1,
            status: r.status(),
            scores: r.best().map(|b| (b.macro_f1, b.accuracy)),
            seconds: r.seconds(),
            created: r.created,
            record: compared(
                &r.record.config,
                r.record.img_size,
                1,
                &r.record.dataset.fingerprint,
            ),
        }
    }

    fn experiment(e: &'a ExperimentSummary) -> Row<'a> {
        Row {
            dir: &e.dir,
            label: &e.label,
            config: &e.experiment.config,
            img_size: e.experiment.config.size(),
            folds: e.experiment.folds,
            status: e.status(),
            scores: e.oof,
            seconds: e.seconds(),
            created: e.created,
            record: compared(
                &e.experiment.config,
                e.experiment.config.size(),
                e.experiment.folds,
                e.folds
                    .first()
                    .map_or("", |f| f.record.dataset.fingerprint.as_str()),
            ),
        }
    }

    fn cell(&self, col: Col) -> String {
        let c = self.config;
        let score = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.3}"));
        match col {
            Col::Name => self.label.to_string(),
            Col::Model => c.model.title().to_string(),
            Col::Size => self.img_size.to_string(),
            Col::Lr => format!("{:.0e}", c.lr),
            Col::Loss => c.loss.title().to_string(),
            Col::Balance => c.balance.title().to_string(),
            Col::Epochs => c.epochs.to_string(),
            Col::Folds => self.folds.to_string(),
            Col::Status => self.status.clone(),
            Col::MacroF1 => score(self.scores.map(|s| s.0)),
            Col::Accuracy => score(self.scores.map(|s| s.1)),
            Col::Time => clock(self.seconds),
            Col::Created => utc(self.created),
        }
    }

    fn cmp(&self, other: &Row<'_>, col: Col) -> Ordering {
        // Rows without a score sort after those with one, either way round.
        let num = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        };
        match col {
            Col::Size => self.img_size.cmp(&other.img_size),
            Col::Lr => self.config.lr.total_cmp(&other.config.lr),
            Col::Epochs => self.config.epochs.cmp(&other.config.epochs),
            Col::Folds => self.folds.cmp(&other.folds),
            Col::MacroF1 => num(self.scores.map(|s| s.0), other.scores.map(|s| s.0)),
            Col::Accuracy => num(self.scores.map(|s| s.1), other.scores.map(|s| s.1)),
            Col::Time => self.seconds.total_cmp(&other.seconds),
            Col::Created => self.created.cmp(&other.created),
            _ => self.cell(col).cmp(&other.cell(col)),
        }
    }
}

pub struct RunsTable {
    sort: Col,
    descending: bool,
    /// Ticked rows (at most two): what differs between them is shown.
    picked: Vec<PathBuf>,
}

impl Default for RunsTable {
    fn default() -> Self {
        RunsTable {
            sort: Col::Created,
            descending: true,
            picked: Vec::new(),
        }
    }
}

impl RunsTable {
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        runs: &[RunSummary],
        experiments: &[ExperimentSummary],
        cmds: &mut Commands,
    ) {
        let mut rows: Vec<Row> = runs
            .iter()
            .map(Row::run)
            .chain(experiments.iter().map(Row::experiment))
            .collect();
        if rows.is_empty() {
            ui.label("No runs yet.");
            return;
        }
        rows.sort_by(|a, b| {
            let o = a.cmp(b, self.sort);
            if self.descending {
                o.reverse()
            } else {
                o
            }
        });
        self.picked.retain(|p| rows.iter().any(|r| r.dir == p));
        ui.label(
            RichText::new(
                "Click a heading to sort. Tick two rows to see what differs. An experiment's \
                 scores are out of fold; a run's are its best epoch's.",
            )
            .small(),
        );
        egui::ScrollArea::both()
            .id_salt("runs-table")
            .max_height((ui.available_height() * 0.6).max(120.0))
            .show(ui, |ui| {
                egui::Grid::new("runs-table-grid")
                    .striped(true)
                    .num_columns(COLS.len() + 1)
                    .show(ui, |ui| {
                        for (col, name) in COLS {
                            let arrow = match (self.sort == col, self.descending) {
                                (true, true) => " ↓",
                                (true, false) => " ↑",
                                _ => "",
                            };
                            if ui
                                .selectable_label(self.sort == col, format!("{name}{arrow}"))
                                .clicked()
                            {
                                if self.sort == col {
                                    self.descending = !self.descending;
                                } else {
                                    self.sort = col;
                                    self.descending =
                                        matches!(col, Col::MacroF1 | Col::Accuracy | Col::Created);
                                }
                            }
                        }
                        ui.label("");
                        ui.end_row();
                        for row in &rows {
                            // The name is the tick box's: tick two to compare them.
                            let mut on = self.picked.contains(row.dir);
                            if ui
                                .checkbox(&mut on, row.label)
                                .on_hover_text("tick two runs to see what differs")
                                .changed()
                            {
                                if on {
                                    self.picked.push(row.dir.clone());
                                    if self.picked.len() > 2 {
                                        self.picked.remove(0);
                                    }
                                } else {
                                    self.picked.retain(|p| p != row.dir);
                                }
                            }
                            for (col, _) in &COLS[1..] {
                                ui.label(row.cell(*col));
                            }
                            if ui
                                .small_button("Run again")
                                .on_hover_text(format!(
                                    "a new run with the config of {}",
                                    row.label
                                ))
                                .clicked()
                            {
                                cmds.push(Command::RunAgain(row.dir.clone(), false));
                            }
                            ui.end_row();
                        }
                    });
                // Room for the floating horizontal scroll bar below the last row.
                ui.add_space(14.0);
            });
        if let [a, b] = self.picked.as_slice() {
            let (Some(a), Some(b)) = (
                rows.iter().find(|r| r.dir == a),
                rows.iter().find(|r| r.dir == b),
            ) else {
                return;
            };
            ui.separator();
            ui.label(RichText::new(format!("{} against {}", a.label, b.label)).strong());
            let diff = config_diff(&a.record, &b.record);
            if diff.is_empty() {
                ui.label("Their configs are the same.");
                return;
            }
            egui::ScrollArea::both()
                .id_salt("runs-diff")
                .show(ui, |ui| {
                    egui::Grid::new("runs-diff-grid")
                        .striped(true)
                        .num_columns(3)
                        .show(ui, |ui| {
                            ui.strong("setting");
                            ui.strong(a.label);
                            ui.strong(b.label);
                            ui.end_row();
                            for (key, va, vb) in diff {
                                ui.monospace(key);
                                ui.label(va);
                                ui.label(vb);
                                ui.end_row();
                            }
                        });
                });
        }
    }
}
