//! Classification metrics from predictions: confusion matrix, accuracy, per-class precision,
//! recall and F1, macro-F1. Plain arithmetic on index slices (no tch), shared by training,
//! evaluation and the UI.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Samples whose true class this is.
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub accuracy: f64,
    /// Mean F1 over the classes that occur (as true or predicted): a class absent from both
    /// says nothing about the model and would drag the mean to zero.
    pub macro_f1: f64,
    pub per_class: Vec<ClassScore>,
}

/// Index of the largest probability (the first on ties; 0 for an empty slice).
pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(i, _)| i)
}

/// Scores `predicted` against `truth` (class indices below `classes`).
pub fn report(truth: &[usize], predicted: &[usize], classes: usize) -> Report {
    assert_eq!(truth.len(), predicted.len(), "one prediction per sample");
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t][p] += 1;
    }
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: Vec<ClassScore> = (0..classes)
        .map(|c| {
            let tp = confusion[c][c];
            let support: usize = confusion[c].iter().sum();
            let predicted_c: usize = (0..classes).map(|t| confusion[t][c]).sum();
            let (precision, recall) = (ratio(tp, predicted_c), ratio(tp, support));
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassScore {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let present: Vec<&ClassScore> = (0..classes)
        .filter(|&c| per_class[c].support > 0 || (0..classes).any(|t| confusion[t][c] > 0))
        .map(|c| &per_class[c])
        .collect();
    let macro_f1 = if present.is_empty() {
        0.0
    } else {
        present.iter().map(|s| s.f1).sum::<f64>() / present.len() as f64
    };
    Report {
        confusion,
        accuracy: ratio(correct, truth.len()),
        macro_f1,
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn matches_hand_computed_scores() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2
        let r = report(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 3);
        assert_eq!(
            r.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!(close(r.accuracy, 4.0 / 6.0));
        // class 0: P 2/2, R 2/3 -> F1 0.8; class 1: P 1/2, R 1/2 -> 0.5; class 2: P 1/2, R 1 -> 2/3
        assert!(close(r.per_class[0].f1, 0.8));
        assert!(close(r.per_class[1].f1, 0.5));
        assert!(close(r.per_class[2].f1, 2.0 / 3.0));
        assert!(close(r.macro_f1, (0.8 + 0.5 + 2.0 / 3.0) / 3.0));
        assert_eq!(r.per_class[0].support, 3);
    }

    #[test]
    fn absent_classes_do_not_count_in_macro_f1() {
        let r = report(&[0, 1], &[0, 1], 4);
        assert!(close(r.macro_f1, 1.0));
        assert_eq!(
            r.per_class[3],
            ClassScore {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
                support: 0
            }
        );
    }

    #[test]
    fn argmax_takes_the_first_of_equal_maxima() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[0.4, 0.2, 0.4]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn empty_input_scores_zero_without_dividing_by_zero() {
        let r = report(&[], &[], 2);
        assert_eq!((r.accuracy, r.macro_f1), (0.0, 0.0));
    }
}
