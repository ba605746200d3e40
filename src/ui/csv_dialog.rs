//! Opening a CSV of labels: which column holds the image paths, which the labels, which groups
//! images (a person id). The columns are guessed from the header and the first rows (a path-like
//! column, label-like columns, a group column by its name) and shown for the user to confirm.

use std::collections::HashSet;
use std::path::PathBuf;

use egui::RichText;

use crate::dataset::probe::has_image_extension;
use crate::dataset::{CsvSource, Source};

/// Rows read to guess the columns (the dialog previews the first few).
const SAMPLE_ROWS: usize = 2000;
const PREVIEW_ROWS: usize = 5;

/// Header names that say "this is the image".
const PATH_NAMES: [&str; 7] = [
    "path",
    "file",
    "filename",
    "image",
    "img_path",
    "image_path",
    "filepath",
];
/// Header names that say "this is a label".
const LABEL_NAMES: [&str; 10] = [
    "label", "class", "category", "target", "mask", "gender", "sex", "age", "age_band", "species",
];
/// Header names that say "this groups images" (a person, a patient...).
const GROUP_NAMES: [&str; 9] = [
    "group",
    "id",
    "person",
    "person_id",
    "patient",
    "patient_id",
    "subject",
    "user",
    "user_id",
];

/// The columns dialog for a CSV dataset, with a preview of its first rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvSetup {
    pub csv: PathBuf,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub path_col: usize,
    pub label_cols: Vec<bool>,
    pub group_col: Option<usize>,
    /// The columns are the ones last used for this CSV, not a guess.
    pub recalled: bool,
}

/// What the dialog ended with.
pub enum Outcome {
    Open(Source),
    Cancel,
}

impl CsvSetup {
    /// Reads the header and the first rows of `csv` and guesses its columns (off the UI thread).
    pub fn read(csv: PathBuf) -> Result<CsvSetup, String> {
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&csv)
            .map_err(|e| format!("cannot read {}: {e}", csv.display()))?;
        let headers: Vec<String> = r
            .headers()
            .map_err(|e| e.to_string())?
            .iter()
            .map(str::to_string)
            .collect();
        if headers.is_empty() {
            return Err(format!("{} has no header row", csv.display()));
        }
        let sample: Vec<Vec<String>> = r
            .records()
            .take(SAMPLE_ROWS)
            .filter_map(Result::ok)
            .map(|rec| rec.iter().map(str::to_string).collect())
            .collect();
        let mut setup = CsvSetup::guess(csv, headers, &sample);
        setup.rows = sample.into_iter().take(PREVIEW_ROWS).collect();
        Ok(setup)
    }

    /// The columns as the header and `sample` rows suggest them.
    pub fn guess(csv: PathBuf, headers: Vec<String>, sample: &[Vec<String>]) -> CsvSetup {
        let n = headers.len();
        let name = |k: usize| headers[k].trim().to_lowercase();
        let values = |k: usize| {
            sample
                .iter()
                .filter_map(move |r| r.get(k))
                .map(|v| v.trim())
        };
        let distinct = |k: usize| values(k).collect::<HashSet<_>>().len();
        // Paths: by name, else the column whose values end like images.
        let imagey = |k: usize| {
            let (all, hits) = values(k).fold((0, 0), |(a, h), v| {
                (
                    a + 1,
                    h + usize::from(has_image_extension(std::path::Path::new(v))),
                )
            });
            all > 0 && hits * 2 > all
        };
        let path_col = (0..n)
            .find(|&k| PATH_NAMES.contains(&name(k).as_str()))
            .or_else(|| (0..n).find(|&k| imagey(k)))
            .unwrap_or(0);
        let group_col = (0..n).find(|&k| {
            k != path_col && (GROUP_NAMES.contains(&name(k).as_str()) || name(k).ends_with("_id"))
        });
        let numeric = |k: usize| values(k).all(|v| v.parse::<f64>().is_ok());
        let rows = sample.len().max(1);
        // Labels: by name; else every other column with few distinct values (a category, not
        // an id or a measurement).
        let mut label_cols: Vec<bool> = (0..n)
            .map(|k| {
                k != path_col && Some(k) != group_col && LABEL_NAMES.contains(&name(k).as_str())
            })
            .collect();
        if !label_cols.contains(&true) {
            for (k, on) in label_cols.iter_mut().enumerate() {
                let d = distinct(k);
                *on = k != path_col
                    && Some(k) != group_col
                    && !imagey(k)
                    && d >= 2
                    && d <= 50.max(rows / 20)
                    && !(numeric(k) && d > 20);
            }
        }
        CsvSetup {
            csv,
            headers,
            rows: Vec::new(),
            path_col,
            label_cols,
            group_col,
            recalled: false,
        }
    }

    /// The columns this CSV was last opened with, from `recent`, instead of the guess (when
    /// they still exist); the dialog still asks. Compares canonical paths: file I/O, so called
    /// off the UI thread with `read`.
    pub fn recall(mut self, recent: &[Source]) -> CsvSetup {
        let here = std::fs::canonicalize(&self.csv).ok();
        let last = recent.iter().find_map(|s| match s {
            Source::Csv(c) if here.is_some() && std::fs::canonicalize(&c.csv).ok() == here => {
                Some(c)
            }
            _ => None,
        });
        let Some(last) = last else { return self };
        let col = |name: &str| self.headers.iter().position(|h| h == name);
        let labels: Option<Vec<usize>> = last.label_cols.iter().map(|l| col(l)).collect();
        let group = last.group_col.as_deref().map(col);
        if let (Some(path), Some(labels), None | Some(Some(_))) =
            (col(&last.path_col), labels, group)
        {
            self.path_col = path;
            self.label_cols = (0..self.headers.len())
                .map(|k| labels.contains(&k))
                .collect();
            self.group_col = group.flatten();
            self.recalled = true;
        }
        self
    }

    /// The dataset source the choices make, when there is a label column.
    pub fn source(&self) -> Option<Source> {
        let labels: Vec<String> = self
            .headers
            .iter()
            .zip(&self.label_cols)
            .enumerate()
            .filter(|&(k, (_, on))| *on && k != self.path_col)
            .map(|(_, (h, _))| h.clone())
            .collect();
        (!labels.is_empty()).then(|| {
            Source::Csv(CsvSource {
                csv: self.csv.clone(),
                path_col: self.headers[self.path_col].clone(),
                label_cols: labels,
                group_col: self.group_col.map(|k| self.headers[k].clone()),
            })
        })
    }

    /// The dialog; `Some` once the user opened or cancelled.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Outcome> {
        let mut outcome = None;
        egui::Modal::new(egui::Id::unique("csv_setup")).show(ctx, |ui| {
            ui.heading(format!("Columns of {}", self.csv.display()));
            let how = if self.recalled {
                "As you last opened it: check them before opening."
            } else {
                "Guessed from the first rows: check them before opening."
            };
            ui.label(RichText::new(how).small().weak());
            egui::Grid::new("csv_cols").show(ui, |ui| {
                let l = ui.label("Image path");
                egui::ComboBox::from_id_salt("path_col")
                    .selected_text(self.headers[self.path_col].as_str())
                    .show_ui(ui, |ui| {
                        for (k, h) in self.headers.iter().enumerate() {
                            ui.selectable_value(&mut self.path_col, k, h.as_str());
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
                ui.label("Label column(s)");
                ui.vertical(|ui| {
                    for (k, h) in self.headers.iter().enumerate() {
                        // The image column is no label.
                        let is_path = k == self.path_col;
                        if is_path {
                            self.label_cols[k] = false;
                        }
                        ui.add_enabled(!is_path, egui::Checkbox::new(&mut self.label_cols[k], h))
                            .on_disabled_hover_text("the image path column");
                    }
                });
                ui.end_row();
                let l = ui.label("Group (kept together in splits)");
                let text = self
                    .group_col
                    .map_or("none", |k| self.headers[k].as_str())
                    .to_string();
                egui::ComboBox::from_id_salt("group_col")
                    .selected_text(text)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut self.group_col, None, "none");
                        for (k, h) in self.headers.iter().enumerate() {
                            ui.selectable_value(&mut self.group_col, Some(k), h.as_str());
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
            });
            ui.separator();
            egui::ScrollArea::horizontal().show(ui, |ui| {
                egui::Grid::new("csv_preview").striped(true).show(ui, |ui| {
                    for h in &self.headers {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for r in &self.rows {
                        for c in r {
                            ui.label(c);
                        }
                        ui.end_row();
                    }
                });
            });
            ui.separator();
            let source = self.source();
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(source.is_some(), egui::Button::new("Open"))
                    .on_disabled_hover_text("choose at least one label column")
                    .clicked()
                {
                    outcome = source.map(Outcome::Open);
                }
                if ui.button("Cancel").clicked() {
                    outcome = Some(Outcome::Cancel);
                }
            });
        });
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guess(csv: &str) -> CsvSetup {
        let mut lines = csv.lines();
        let headers = lines
            .next()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        let rows: Vec<Vec<String>> = lines
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        CsvSetup::guess("x.csv".into(), headers, &rows)
    }

    #[test]
    fn the_mask_competition_csv_is_guessed_right() {
        let mut csv = String::from("id,gender,race,age,path,mask\n");
        for p in 0..40 {
            for m in ["wear", "incorrect", "not wear"] {
                let g = if p % 2 == 0 { "male" } else { "female" };
                let a = ["<30", "30-59", "60+"][p % 3];
                csv.push_str(&format!("{p:06},{g},Asian,{a},images/{p:06}/{m}.jpg,{m}\n"));
            }
        }
        let s = guess(&csv);
        assert_eq!(s.headers[s.path_col], "path");
        assert_eq!(s.group_col.map(|k| s.headers[k].as_str()), Some("id"));
        let labels: Vec<&str> = (0..s.headers.len())
            .filter(|&k| s.label_cols[k])
            .map(|k| s.headers[k].as_str())
            .collect();
        assert_eq!(labels, ["gender", "age", "mask"]);
    }

    #[test]
    fn without_telling_names_the_image_column_and_categories_are_found() {
        let mut csv = String::from("a,b,c,d\n");
        for k in 0..100 {
            csv.push_str(&format!(
                "{k},img/{k}.png,{},{}\n",
                ["cat", "dog"][k % 2],
                k as f64 * 0.37
            ));
        }
        let s = guess(&csv);
        assert_eq!(s.headers[s.path_col], "b");
        assert_eq!(s.label_cols, [false, false, true, false], "{s:?}");
        assert_eq!(s.group_col, None);
        let Some(Source::Csv(src)) = s.source() else {
            panic!()
        };
        assert_eq!(
            (src.path_col.as_str(), src.label_cols),
            ("b", vec!["c".to_string()])
        );
    }

    #[test]
    fn a_csv_opened_before_gets_its_last_columns_back() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("labels.csv");
        let text = "path,id,tone,gender,kind\na.png,s,light,man,person\nb.png,s,dark,man,person\n";
        std::fs::write(&csv, text).unwrap();
        let read = || CsvSetup::read(csv.clone()).unwrap();
        let guessed = read();
        assert!(!guessed.recalled);
        assert_eq!(guessed.label_cols, [false, false, false, true, false]);
        let last = |labels: &[&str], group: Option<&str>| {
            Source::Csv(CsvSource {
                // Another spelling of the same file.
                csv: dir.path().join(".").join("labels.csv"),
                path_col: "path".into(),
                label_cols: labels.iter().map(|l| l.to_string()).collect(),
                group_col: group.map(str::to_string),
            })
        };
        let other = Source::ImageFolder {
            root: dir.path().into(),
        };
        let s = read().recall(&[other.clone(), last(&["tone", "gender", "kind"], Some("id"))]);
        assert!(s.recalled);
        assert_eq!(s.label_cols, [false, false, true, true, true]);
        assert_eq!(s.group_col, Some(1));
        // A column that no longer exists: the guess stands.
        let s = read().recall(&[last(&["tone", "age"], None)]);
        assert_eq!(
            (s.recalled, s.label_cols),
            (false, guessed.label_cols.clone())
        );
        let s = read().recall(&[other]);
        assert!(!s.recalled);
    }

    #[test]
    fn the_path_column_is_never_a_label() {
        let mut s = guess("path,label\nx.png,a\ny.png,b\n");
        s.label_cols = vec![true, false];
        assert!(
            s.source().is_none(),
            "only the path column ticked: nothing to open"
        );
    }
}
