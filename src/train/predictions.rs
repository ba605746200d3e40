//! Prediction files, one writer and one reader each.
//!
//! Labelled predictions (`val_predictions.csv` of the best epoch, `eval_predictions.csv` of
//! `loupe eval`): `path,label,predicted,<one probability column per class>`, and for a composite
//! label one probability column per value of each label column, named `column=value`
//! (`gender=female`). The Evaluate tab and `loupe eval` read them with [`read_labelled`] and
//! score them with [`super::metrics::report`], so the window and the command line evaluate the
//! same way.
//!
//! Predictions for a folder (`loupe predict`): `path,predicted,confidence,<classes>,
//! <column=value...>,error`, one row per image, the error column naming why an image could not
//! be read. Or, with [`OutputFormat::Labels`], `path,label`; or a competition's submission
//! layout ([`OutputFormat::Submission`]): an id column and a class column, in the order of the
//! competition's sample file when one is given.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::metrics::{argmax, report, Report};
use crate::dataset::{Column, Layout};
use crate::util::write_atomic;

/// What a network says about one image: the joint classes' probabilities and, for a composite
/// label, each column's (empty otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Probabilities {
    pub joint: Vec<f32>,
    pub columns: Vec<Vec<f32>>,
}

/// One labelled image's prediction, classes by index into [`Predictions::classes`].
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Relative to the dataset root.
    pub path: String,
    pub label: usize,
    pub predicted: usize,
    pub probs: Vec<f32>,
    /// Per label column of a composite label: the probability of each of its values.
    pub columns: Vec<Vec<f32>>,
}

impl Prediction {
    /// Cross-entropy of the label: what "top losses" sorts by.
    pub fn loss(&self) -> f32 {
        -self.probs[self.label].max(1e-12).ln()
    }

    /// Probability of the predicted class.
    pub fn confidence(&self) -> f32 {
        self.probs[self.predicted]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    pub classes: Vec<String>,
    /// The label columns of a composite label (empty for a single column).
    pub columns: Vec<Column>,
    pub rows: Vec<Prediction>,
    /// Rows that could not be read, in words (`line 7: ...`): left out, and said so.
    pub problems: Vec<String>,
}

impl Predictions {
    /// Accuracy, per-class precision/recall/F1 and the confusion matrix of these predictions.
    pub fn report(&self) -> Report {
        let truth: Vec<usize> = self.rows.iter().map(|p| p.label).collect();
        let predicted: Vec<usize> = self.rows.iter().map(|p| p.predicted).collect();
        report(&truth, &predicted, self.classes.len())
    }

    /// The same images seen through one label column: its values as the classes, each image's
    /// value as its label, the column's most probable value as the prediction.
    pub fn column(&self, column: usize) -> Predictions {
        let names: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
        let layout = Layout::new(&self.classes, &names);
        Predictions {
            classes: self.columns[column].values.clone(),
            columns: Vec::new(),
            rows: self
                .rows
                .iter()
                .map(|r| Prediction {
                    path: r.path.clone(),
                    label: layout.part(r.label, column),
                    predicted: argmax(&r.columns[column]),
                    probs: r.columns[column].clone(),
                    columns: Vec::new(),
                })
                .collect(),
            problems: self.problems.clone(),
        }
    }
}

fn numbers(p: &Probabilities) -> impl Iterator<Item = String> + '_ {
    p.joint
        .iter()
        .chain(p.columns.iter().flatten())
        .map(|v| format!("{v:.6}"))
}

/// Writes labelled predictions: `rows` are (path, label, probabilities).
pub fn write_labelled(
    path: &Path,
    layout: &Layout,
    rows: &[(String, String, Probabilities)],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "label".into(), "predicted".into()];
    header.extend(layout.classes.iter().cloned());
    header.extend(layout.value_headers());
    w.write_record(&header)?;
    for (file, label, p) in rows {
        let mut rec = vec![
            file.clone(),
            label.clone(),
            layout.classes[argmax(&p.joint)].clone(),
        ];
        rec.extend(numbers(p));
        w.write_record(&rec)?;
    }
    write_atomic(path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Reads labelled predictions of a run whose label columns are `label_columns` (the source's;
/// `["class"]` for a folder tree). A row whose label is not among the classes, or whose
/// probabilities do not parse, is left out and named in `problems`. Files written before there
/// were per-column probabilities get them summed from the joint ones.
pub fn read_labelled(path: &Path, label_columns: &[String]) -> anyhow::Result<Predictions> {
    let mut r = csv::Reader::from_path(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e} (a run has predictions once an epoch finished)",
            path.display()
        )
    })?;
    let header = r.headers()?.clone();
    anyhow::ensure!(
        header.len() > 3 && &header[0] == "path" && &header[1] == "label" && &header[2] == "predicted",
        "{} is not a predictions file (it needs the columns path,label,predicted and one per class)",
        path.display()
    );
    // Classes come first; a composite label's `column=value` headers follow them.
    let composite = label_columns.len() > 1;
    let is_value = |h: &str| {
        composite
            && label_columns.iter().any(|c| {
                h.strip_prefix(c.as_str())
                    .is_some_and(|v| v.starts_with('='))
            })
    };
    let classes: Vec<String> = header
        .iter()
        .skip(3)
        .take_while(|h| !is_value(h))
        .map(str::to_string)
        .collect();
    let layout = Layout::new(&classes, label_columns);
    let expected = layout.value_headers();
    let stored: Vec<&str> = header.iter().skip(3 + classes.len()).collect();
    anyhow::ensure!(
        stored.is_empty() || stored == expected,
        "{} has probability columns {} where its classes make {} expected",
        path.display(),
        stored.join(","),
        expected.join(",")
    );
    let index = |name: &str| classes.iter().position(|c| c == name);
    let mut out = Predictions {
        classes: classes.clone(),
        columns: if composite {
            layout.columns.clone()
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let width = classes.len() + stored.len();
    for (n, rec) in r.records().enumerate() {
        let line = n + 2;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                out.problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let (Some(label), Some(predicted)) = (index(&rec[1]), index(&rec[2])) else {
            out.problems.push(format!(
                "line {line}: the label {:?} or the prediction {:?} is not a class of the run",
                &rec[1], &rec[2]
            ));
            continue;
        };
        let numbers: Result<Vec<f32>, _> = rec.iter().skip(3).map(str::parse::<f32>).collect();
        match numbers {
            Ok(v) if v.len() == width && v.iter().all(|p| p.is_finite()) => {
                let probs = v[..classes.len()].to_vec();
                let columns = if !composite {
                    Vec::new()
                } else if stored.is_empty() {
                    layout.columns_from_joint(&probs)
                } else {
                    let mut rest = &v[classes.len()..];
                    layout
                        .columns
                        .iter()
                        .map(|c| {
                            let (this, next) = rest.split_at(c.values.len());
                            rest = next;
                            this.to_vec()
                        })
                        .collect()
                };
                out.rows.push(Prediction {
                    path: rec[0].to_string(),
                    label,
                    predicted,
                    probs,
                    columns,
                });
            }
            _ => out.problems.push(format!(
                "line {line}: the probabilities of {} are not {width} numbers",
                &rec[0],
            )),
        }
    }
    Ok(out)
}

/// Writes predictions for a folder of images: `rows` are (path, probabilities or the reason the
/// image could not be read).
pub fn write_folder(
    path: &Path,
    layout: &Layout,
    rows: &[(String, Result<Probabilities, String>)],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "predicted".into(), "confidence".into()];
    header.extend(layout.classes.iter().cloned());
    let values = layout.value_headers();
    let width = layout.classes.len() + values.len();
    header.extend(values);
    header.push("error".into());
    w.write_record(&header)?;
    for (file, p) in rows {
        let mut rec = vec![file.clone()];
        match p {
            Ok(p) => {
                let k = argmax(&p.joint);
                rec.push(layout.classes[k].clone());
                rec.push(format!("{:.6}", p.joint.get(k).copied().unwrap_or(0.0)));
                rec.extend(numbers(p));
                rec.push(String::new());
            }
            Err(e) => {
                rec.extend(std::iter::repeat_n(String::new(), width + 2));
                rec.push(e.clone());
            }
        }
        w.write_record(&rec)?;
    }
    write_atomic(path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_predictions_round_trip_and_bad_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("val_predictions.csv");
        let classes = vec!["cat".to_string(), "dog".to_string()];
        let single = |joint: Vec<f32>| Probabilities {
            joint,
            columns: Vec::new(),
        };
        write_labelled(
            &f,
            &Layout::new(&classes, &["class".to_string()]),
            &[
                ("a.png".into(), "cat".into(), single(vec![0.9, 0.1])),
                ("b.png".into(), "dog".into(), single(vec![0.8, 0.2])),
            ],
        )
        .unwrap();
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str("c.png,cat,cat,oops,0.5\nd.png,bird,cat,0.5,0.5\n");
        std::fs::write(&f, text).unwrap();
        let p = read_labelled(&f, &["class".to_string()]).unwrap();
        assert_eq!(p.classes, classes);
        assert_eq!(p.rows.len(), 2);
        assert_eq!((p.rows[1].label, p.rows[1].predicted), (1, 0));
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(p.problems[0].starts_with("line 4:"), "{:?}", p.problems);
        assert!(p.problems[1].contains("\"bird\""), "{:?}", p.problems);
        let r = p.report();
        assert_eq!(r.confusion, vec![vec![1, 0], vec![1, 0]]);
        assert_eq!(r.accuracy, 0.5);
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn composite_predictions_keep_each_columns_probabilities_and_view_one_column() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("val_predictions.csv");
        let names = strings(&["mask", "gender"]);
        let layout = Layout::new(&strings(&["none/f", "none/m", "wear/f"]), &names);
        let rows = [
            (
                "a.png".to_string(),
                "wear/f".to_string(),
                Probabilities {
                    joint: vec![0.1, 0.2, 0.7],
                    columns: vec![vec![0.25, 0.75], vec![0.6, 0.4]],
                },
            ),
            (
                "b.png".to_string(),
                "none/m".to_string(),
                Probabilities {
                    joint: vec![0.5, 0.3, 0.2],
                    columns: vec![vec![0.9, 0.1], vec![0.3, 0.7]],
                },
            ),
        ];
        write_labelled(&f, &layout, &rows).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.starts_with(
                "path,label,predicted,none/f,none/m,wear/f,mask=none,mask=wear,gender=f,gender=m\n"
            ),
            "{text}"
        );
        let p = read_labelled(&f, &names).unwrap();
        assert_eq!(p.classes.len(), 3);
        assert_eq!(p.columns, layout.columns);
        assert_eq!(p.rows[1].columns, rows[1].2.columns);
        assert_eq!((p.rows[1].label, p.rows[1].predicted), (1, 0));
        // Through the gender column: b.png is labelled m (1), and m is what its head says.
        let g = p.column(1);
        assert_eq!(g.classes, strings(&["f", "m"]));
        assert_eq!((g.rows[1].label, g.rows[1].predicted), (1, 1));
        assert_eq!(g.report().accuracy, 1.0);
        assert_eq!(p.report().accuracy, 0.5);

        // A file of the joint probabilities only: columns are their sums.
        let old = dir.path().join("old.csv");
        std::fs::write(
            &old,
            "path,label,predicted,none/f,none/m,wear/f\na.png,wear/f,wear/f,0.1,0.2,0.7\n",
        )
        .unwrap();
        let p = read_labelled(&old, &names).unwrap();
        let cols = &p.rows[0].columns;
        assert!((cols[0][1] - 0.7).abs() < 1e-6 && (cols[1][0] - 0.8).abs() < 1e-6);
    }
}

/// How `loupe predict` writes its predictions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum OutputFormat {
    /// Every class's probability ([`write_folder`]).
    #[default]
    Probs,
    /// `path,label`: the most likely class of each image.
    Labels,
    /// `<id_col>,<class_col>`, the class as its name or its index among the run's classes.
    /// With a template (the competition's sample submission), its ids in its order, each
    /// matched to the picture whose relative path, file name or file stem it is; without one,
    /// every picture by relative path.
    Submission {
        id_col: String,
        class_col: String,
        by_index: bool,
        template: Option<PathBuf>,
    },
}

/// The mean of several runs' probabilities for one image (an ensemble).
pub fn mean(all: &[Probabilities]) -> Probabilities {
    let n = all.len().max(1) as f32;
    let sum = |pick: &dyn Fn(&Probabilities) -> &Vec<f32>| -> Vec<f32> {
        let mut acc = vec![0.0f32; all.first().map_or(0, |p| pick(p).len())];
        for p in all {
            for (a, v) in acc.iter_mut().zip(pick(p)) {
                *a += v;
            }
        }
        acc.into_iter().map(|v| v / n).collect()
    };
    Probabilities {
        joint: sum(&|p| &p.joint),
        columns: (0..all.first().map_or(0, |p| p.columns.len()))
            .map(|c| sum(&|p| &p.columns[c]))
            .collect(),
    }
}

/// Writes one class per image as `format` (not [`OutputFormat::Probs`]) says. Refuses, naming
/// them, when pictures could not be predicted or template ids match no picture: a submission
/// with holes would be scored as wrong answers.
pub fn write_classes(
    path: &Path,
    classes: &[String],
    rows: &[(String, Result<Probabilities, String>)],
    format: &OutputFormat,
) -> anyhow::Result<()> {
    let failed: Vec<&str> = rows
        .iter()
        .filter(|(_, p)| p.is_err())
        .map(|(f, _)| f.as_str())
        .collect();
    if let Some(first) = failed.first() {
        anyhow::bail!(
            "{} pictures could not be read (first: {first}); nothing written to {}",
            failed.len(),
            path.display()
        );
    }
    let class = |p: &Probabilities, by_index: bool| {
        let k = argmax(&p.joint);
        if by_index {
            k.to_string()
        } else {
            classes[k].clone()
        }
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    match format {
        OutputFormat::Probs => anyhow::bail!("probabilities are written by write_folder"),
        OutputFormat::Labels => {
            w.write_record(["path", "label"])?;
            for (file, p) in rows {
                if let Ok(p) = p {
                    w.write_record([file.as_str(), &class(p, false)])?;
                }
            }
        }
        OutputFormat::Submission {
            id_col,
            class_col,
            by_index,
            template,
        } => {
            w.write_record([id_col, class_col])?;
            let ids: Vec<String> = match template {
                Some(t) => template_ids(t, id_col)?,
                None => rows.iter().map(|(f, _)| f.clone()).collect(),
            };
            // An id may name a picture by relative path, file name or stem; the first
            // picture a name was seen for wins.
            let mut by_name = std::collections::HashMap::new();
            for (i, (file, _)) in rows.iter().enumerate() {
                let p = Path::new(file);
                by_name.entry(file.clone()).or_insert(i);
                for name in [p.file_name(), p.file_stem()].into_iter().flatten() {
                    by_name
                        .entry(name.to_string_lossy().into_owned())
                        .or_insert(i);
                }
            }
            let missing: Vec<&String> =
                ids.iter().filter(|id| !by_name.contains_key(*id)).collect();
            if let Some(first) = missing.first() {
                anyhow::bail!(
                    "{} ids of the template match no picture (first: {first}); nothing written to {}",
                    missing.len(),
                    path.display()
                );
            }
            for id in &ids {
                if let Ok(p) = &rows[by_name[id]].1 {
                    w.write_record([id.as_str(), &class(p, *by_index)])?;
                }
            }
        }
    }
    write_atomic(path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The values of `id_col` in a sample submission, in its order.
fn template_ids(template: &Path, id_col: &str) -> anyhow::Result<Vec<String>> {
    let mut r = csv::Reader::from_path(template)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", template.display()))?;
    let at = r
        .headers()?
        .iter()
        .position(|h| h == id_col)
        .ok_or_else(|| anyhow::anyhow!("{} has no column {id_col}", template.display()))?;
    r.records()
        .map(|rec| Ok(rec?.get(at).unwrap_or_default().to_string()))
        .collect()
}
