//! Confident learning against reference outputs of cleanlab 2.9 (`scripts/cleanlab_fixtures.py`
//! wrote them with the real library): the same flagged examples in the same order, for every
//! method and both rankings, and the same calibrated confident joint.
//!
//! Where rounding meets an exact tie (two entries of a joint row with the same fractional part),
//! which one cleanlab rounds the other way depends on numpy's unstable, CPU-dispatched argsort.
//! So a row of the joint may differ by one in two entries (same total), and a class may then
//! differ by one flagged example in and one out; everything else must be identical.

use loupe::quality::confident::{self, Method, Probs, RankBy};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

fn fixtures() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cleanlab");
    let mut out: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    out.sort_by_key(|f| f["name"].as_str().unwrap().to_string());
    assert_eq!(out.len(), 4, "fixtures in {}", dir.display());
    out
}

fn method(name: &str) -> Method {
    match name {
        "prune_by_noise_rate" => Method::PruneByNoiseRate,
        "prune_by_class" => Method::PruneByClass,
        "both" => Method::Both,
        "confident_learning" => Method::ConfidentLearning,
        "predicted_neq_given" => Method::PredictedNeqGiven,
        other => panic!("unknown method {other}"),
    }
}

/// `got` and `want` rank the same examples in the same order, except at most one example in and
/// one out per given class.
fn same_up_to_rounding_ties(got: &[usize], want: &[usize], labels: &[usize], context: &str) {
    let (g, w): (HashSet<usize>, HashSet<usize>) = (
        got.iter().copied().collect(),
        want.iter().copied().collect(),
    );
    let mut per_class: HashMap<usize, (usize, usize)> = HashMap::new();
    for &i in g.difference(&w) {
        per_class.entry(labels[i]).or_default().0 += 1;
    }
    for &i in w.difference(&g) {
        per_class.entry(labels[i]).or_default().1 += 1;
    }
    assert!(
        per_class
            .values()
            .all(|&(extra, missing)| extra <= 1 && missing <= 1),
        "{context}: extra/missing per class {per_class:?}"
    );
    let common_got: Vec<usize> = got.iter().copied().filter(|i| w.contains(i)).collect();
    let common_want: Vec<usize> = want.iter().copied().filter(|i| g.contains(i)).collect();
    assert_eq!(common_got, common_want, "{context}: order");
}

fn calibrated(labels: &[usize], probs: Probs) -> Vec<Vec<f64>> {
    let (joint, _) = confident::confident_joint(
        labels,
        probs,
        &confident::confident_thresholds(labels, probs),
    );
    confident::calibrate(&joint, &confident::class_counts(labels, probs.k))
}

#[test]
fn flags_and_rankings_match_cleanlab() {
    let mut tied = 0;
    for f in fixtures() {
        let name = f["name"].as_str().unwrap();
        let labels: Vec<usize> = serde_json::from_value(f["labels"].clone()).unwrap();
        let probs: Vec<f32> = serde_json::from_value(f["pred_probs"].clone()).unwrap();
        let probs = Probs::new(&probs, f["k"].as_u64().unwrap() as usize);
        let joint_is_exact = calibrated(&labels, probs)
            == serde_json::from_value::<Vec<Vec<f64>>>(f["calibrated_confident_joint"].clone())
                .unwrap();
        tied += usize::from(!joint_is_exact);
        for (m, want) in f["methods"].as_object().unwrap() {
            let flags = confident::find_label_issues(&labels, probs, method(m));
            for (rank_name, rank_by) in [
                ("self_confidence", RankBy::SelfConfidence),
                ("normalized_margin", RankBy::NormalizedMargin),
            ] {
                let want: Vec<usize> = serde_json::from_value(want[rank_name].clone()).unwrap();
                let got =
                    confident::rank(&flags, &confident::label_quality(&labels, probs, rank_by));
                let context = format!("{name}: {m} ranked by {rank_name}");
                if joint_is_exact {
                    assert_eq!(got, want, "{context}");
                } else {
                    same_up_to_rounding_ties(&got, &want, &labels, &context);
                }
            }
        }
    }
    assert!(
        tied <= 1,
        "{tied} of 4 fixtures met a rounding tie: ties should be rare"
    );
}

#[test]
fn the_calibrated_confident_joint_matches_cleanlab() {
    for f in fixtures() {
        let labels: Vec<usize> = serde_json::from_value(f["labels"].clone()).unwrap();
        let probs: Vec<f32> = serde_json::from_value(f["pred_probs"].clone()).unwrap();
        let k = f["k"].as_u64().unwrap() as usize;
        let probs = Probs::new(&probs, k);
        let got = calibrated(&labels, probs);
        let want: Vec<Vec<f64>> =
            serde_json::from_value(f["calibrated_confident_joint"].clone()).unwrap();
        for (c, (g, w)) in got.iter().zip(&want).enumerate() {
            let off: Vec<f64> = g
                .iter()
                .zip(w)
                .map(|(a, b)| a - b)
                .filter(|d| *d != 0.0)
                .collect();
            assert!(
                off.is_empty()
                    || off.len() == 2
                        && off.iter().sum::<f64>() == 0.0
                        && off.iter().all(|d| d.abs() == 1.0),
                "{} row {c}: {g:?} vs {w:?}",
                f["name"]
            );
        }
        // The estimate per class is that joint's off-diagonal row mass.
        let per_class = confident::estimated_errors_per_class(&labels, probs);
        for c in 0..k {
            assert_eq!(per_class[c] as f64, got[c].iter().sum::<f64>() - got[c][c]);
            assert!(
                (per_class[c] as f64 - (want[c].iter().sum::<f64>() - want[c][c])).abs() <= 1.0
            );
        }
    }
}
