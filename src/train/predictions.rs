//! Prediction files, one writer and one reader each.
//!
//! Labelled predictions (`val_predictions.csv` of the best epoch, `eval_predictions.csv` of
//! `loupe eval`): `path,label,predicted,<one probability column per class>`. The Evaluate tab and
//! `loupe eval` read them with [`read_labelled`] and score them with [`super::metrics::report`],
//! so the window and the command line evaluate the same way.
//!
//! Predictions for a folder (`loupe predict`): `path,predicted,confidence,<classes>,error`, one
//! row per image, the error column naming why an image could not be read.

use std::path::Path;

use super::metrics::{argmax, report, Report};
use crate::util::write_atomic;

/// One labelled image's prediction, classes by index into [`Predictions::classes`].
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Relative to the dataset root.
    pub path: String,
    pub label: usize,
    pub predicted: usize,
    pub probs: Vec<f32>,
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
}

/// Writes labelled predictions: `rows` are (path, label, probabilities in `classes` order).
pub fn write_labelled(
    path: &Path,
    classes: &[String],
    rows: &[(String, String, Vec<f32>)],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "label".into(), "predicted".into()];
    header.extend(classes.iter().cloned());
    w.write_record(&header)?;
    for (file, label, p) in rows {
        let mut rec = vec![file.clone(), label.clone(), classes[argmax(p)].clone()];
        rec.extend(p.iter().map(|v| format!("{v:.6}")));
        w.write_record(&rec)?;
    }
    write_atomic(path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Reads labelled predictions. A row whose label is not among the classes, or whose
/// probabilities do not parse, is left out and named in `problems`.
pub fn read_labelled(path: &Path) -> anyhow::Result<Predictions> {
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
    let classes: Vec<String> = header.iter().skip(3).map(str::to_string).collect();
    let index = |name: &str| classes.iter().position(|c| c == name);
    let mut out = Predictions {
        classes: classes.clone(),
        ..Default::default()
    };
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
        let probs: Result<Vec<f32>, _> = rec.iter().skip(3).map(str::parse::<f32>).collect();
        match probs {
            Ok(probs) if probs.len() == classes.len() && probs.iter().all(|p| p.is_finite()) => {
                out.rows.push(Prediction {
                    path: rec[0].to_string(),
                    label,
                    predicted,
                    probs,
                });
            }
            _ => out.problems.push(format!(
                "line {line}: the probabilities of {} are not {} numbers",
                &rec[0],
                classes.len()
            )),
        }
    }
    Ok(out)
}

/// Writes predictions for a folder of images: `rows` are (path, probabilities or the reason the
/// image could not be read).
pub fn write_folder(
    path: &Path,
    classes: &[String],
    rows: &[(String, Result<Vec<f32>, String>)],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "predicted".into(), "confidence".into()];
    header.extend(classes.iter().cloned());
    header.push("error".into());
    w.write_record(&header)?;
    for (file, p) in rows {
        let mut rec = vec![file.clone()];
        match p {
            Ok(p) => {
                let k = argmax(p);
                rec.push(classes[k].clone());
                rec.push(format!("{:.6}", p.get(k).copied().unwrap_or(0.0)));
                rec.extend(p.iter().map(|v| format!("{v:.6}")));
                rec.push(String::new());
            }
            Err(e) => {
                rec.extend(std::iter::repeat_n(String::new(), classes.len() + 2));
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
        write_labelled(
            &f,
            &classes,
            &[
                ("a.png".into(), "cat".into(), vec![0.9, 0.1]),
                ("b.png".into(), "dog".into(), vec![0.8, 0.2]),
            ],
        )
        .unwrap();
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str("c.png,cat,cat,oops,0.5\nd.png,bird,cat,0.5,0.5\n");
        std::fs::write(&f, text).unwrap();
        let p = read_labelled(&f).unwrap();
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
}
