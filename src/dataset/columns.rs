//! The columns of a composite label (`mask,gender,age` -> `wear/female/60+`): each column's
//! values, and every class's value in each column. The one owner of the mapping between a
//! joint class and its parts: training heads, per-column metrics, per-column label issues and
//! relabelling one attribute all go through it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::scan::{label_parts, COMPOSITE_SEP};

/// One label column and its values, sorted by name (as classes are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub values: Vec<String>,
}

/// Classes and their columns. With a single label column there is one column whose values are
/// the classes, in the same order.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub classes: Vec<String>,
    pub columns: Vec<Column>,
    /// `parts[class][column]`: the index of the class's value in that column.
    parts: Vec<Vec<usize>>,
}

impl Layout {
    /// The layout of `classes` (sorted, composite names joined by [`COMPOSITE_SEP`]) over the
    /// label columns `names`.
    pub fn new(classes: &[String], names: &[String]) -> Layout {
        let n = names.len().max(1);
        let split: Vec<Vec<String>> = classes
            .iter()
            .map(|c| {
                let mut p = label_parts(c, n);
                p.resize(n, String::new());
                p
            })
            .collect();
        let columns: Vec<Column> = (0..n)
            .map(|k| Column {
                name: names.get(k).cloned().unwrap_or_else(|| "class".into()),
                values: split
                    .iter()
                    .map(|p| p[k].clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            })
            .collect();
        let parts = split
            .iter()
            .map(|p| {
                (0..n)
                    .map(|k| {
                        columns[k]
                            .values
                            .binary_search(&p[k])
                            .expect("every part is among its column's values")
                    })
                    .collect()
            })
            .collect();
        Layout {
            classes: classes.to_vec(),
            columns,
            parts,
        }
    }

    pub fn of(ds: &super::Dataset) -> Layout {
        Layout::new(&ds.classes, &ds.label_columns)
    }

    /// Whether there is more than one label column.
    pub fn is_composite(&self) -> bool {
        self.columns.len() > 1
    }

    /// The index of `class`'s value in `column`.
    pub fn part(&self, class: usize, column: usize) -> usize {
        self.parts[class][column]
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The class whose parts are `values` (indices per column), if the dataset has it.
    pub fn class_of(&self, values: &[usize]) -> Option<usize> {
        self.parts.iter().position(|p| p == values)
    }

    /// Joint probabilities from one distribution per column: the product of the parts'
    /// probabilities, renormalised over the classes that exist (computed in logs, so that small
    /// probabilities do not underflow to an all-zero row).
    pub fn joint_from_columns(&self, columns: &[Vec<f32>]) -> Vec<f32> {
        let logs: Vec<f64> = self
            .parts
            .iter()
            .map(|p| {
                p.iter()
                    .zip(columns)
                    .map(|(&v, col)| (col[v] as f64).max(1e-30).ln())
                    .sum()
            })
            .collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| (v / sum) as f32).collect()
    }

    /// Each column's distribution from joint probabilities: the sum over the classes with that
    /// value.
    pub fn columns_from_joint(&self, joint: &[f32]) -> Vec<Vec<f32>> {
        let mut out: Vec<Vec<f32>> = self
            .columns
            .iter()
            .map(|c| vec![0.0; c.values.len()])
            .collect();
        for (p, parts) in joint.iter().zip(&self.parts) {
            for (k, &v) in parts.iter().enumerate() {
                out[k][v] += p;
            }
        }
        out
    }

    /// The names of a composite label's per-value columns in CSV files, `column=value`
    /// (`gender=female`), column by column; empty for a single label column (whose values are
    /// the classes).
    pub fn value_headers(&self) -> Vec<String> {
        if !self.is_composite() {
            return Vec::new();
        }
        self.columns
            .iter()
            .flat_map(|c| c.values.iter().map(move |v| format!("{}={v}", c.name)))
            .collect()
    }

    /// `class` with its value in `column` replaced by `value`: relabelling one attribute.
    pub fn with_part(class: &str, columns: usize, column: usize, value: &str) -> String {
        let mut parts = label_parts(class, columns);
        parts.resize(columns.max(1), String::new());
        parts[column] = value.to_string();
        parts.join(COMPOSITE_SEP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn mask() -> Layout {
        Layout::new(
            &names(&["incorrect/f", "incorrect/m", "wear/f", "wear/m"]),
            &names(&["mask", "gender"]),
        )
    }

    #[test]
    fn columns_and_parts_come_from_the_class_names() {
        let l = mask();
        assert!(l.is_composite());
        assert_eq!(l.columns[0].values, names(&["incorrect", "wear"]));
        assert_eq!(l.columns[1].values, names(&["f", "m"]));
        assert_eq!((l.part(2, 0), l.part(2, 1)), (1, 0));
        assert_eq!(l.class_of(&[1, 1]), Some(3));
        assert_eq!(l.column_index("gender"), Some(1));
    }

    #[test]
    fn a_single_column_is_the_classes_in_order() {
        let classes = names(&["cat", "dog", "fox"]);
        let l = Layout::new(&classes, &names(&["class"]));
        assert!(!l.is_composite());
        assert_eq!(l.columns[0].values, classes);
        assert_eq!((0..3).map(|c| l.part(c, 0)).collect::<Vec<_>>(), [0, 1, 2]);
        let p = vec![0.2, 0.5, 0.3];
        assert_eq!(l.columns_from_joint(&p), vec![p.clone()]);
        let back = l.joint_from_columns(std::slice::from_ref(&p));
        assert!(back.iter().zip(&p).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn joint_is_the_renormalised_product_and_marginals_sum_it_back() {
        let l = Layout::new(
            // No "wear/m": its probability mass is spread over the classes that exist.
            &names(&["incorrect/f", "incorrect/m", "wear/f"]),
            &names(&["mask", "gender"]),
        );
        let joint = l.joint_from_columns(&[vec![0.5, 0.5], vec![0.5, 0.5]]);
        assert!(
            joint.iter().all(|p| (p - 1.0 / 3.0).abs() < 1e-6),
            "{joint:?}"
        );
        let joint = l.joint_from_columns(&[vec![0.0, 1.0], vec![1.0, 0.0]]);
        assert!((joint[2] - 1.0).abs() < 1e-6, "{joint:?}");
        // Underflowing products still pick the most probable class.
        let joint = l.joint_from_columns(&[vec![1e-40, 1.0], vec![1.0, 1e-40]]);
        assert!(joint.iter().all(|p| p.is_finite()), "{joint:?}");
        let cols = l.columns_from_joint(&[0.1, 0.2, 0.7]);
        assert!((cols[0][0] - 0.3).abs() < 1e-6 && (cols[0][1] - 0.7).abs() < 1e-6);
        assert!((cols[1][0] - 0.8).abs() < 1e-6 && (cols[1][1] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn one_part_is_replaced_the_others_kept() {
        assert_eq!(Layout::with_part("wear/f/60+", 3, 1, "m"), "wear/m/60+");
        assert_eq!(Layout::with_part("cat", 1, 0, "dog"), "dog");
    }
}
