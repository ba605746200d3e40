//! Temperature scaling of out-of-fold probabilities (Guo et al. 2017), before confident
//! learning sees them.
//!
//! The embedding path's heads are regularised hard (C = 0.3), which keeps their ranking good but
//! their probabilities soft: a mislabelled digit gets 0.6 for its true class while that class's
//! images average 0.9, so confident learning, whose thresholds are those averages, rarely
//! counts it. One temperature per label column, the one that makes the probabilities most
//! likely for the given labels, undoes that shrinkage without changing any image's order of
//! classes. It is one number fit over thousands of rows, so the noisy labels it is fit on
//! cannot bend it towards any single image.

/// Rescales `probs` (rows of `k`, each summing to one) in place to `p^(1/T)`, renormalised,
/// with the temperature `T` that minimises their cross-entropy against `labels`; returns `T`.
/// `T < 1` sharpens, `T > 1` softens; it is searched over `[0.05, 20]`.
pub fn temperature_scale(probs: &mut [f32], k: usize, labels: &[usize]) -> f64 {
    assert_eq!(probs.len(), labels.len() * k, "one row of {k} per label");
    if labels.is_empty() || k < 2 {
        return 1.0;
    }
    // Log-probabilities, floored: a softmax in f32 underflows to exactly 0 far from the top.
    let logs: Vec<f64> = probs
        .iter()
        .map(|&p| f64::from(p.max(1e-30)).ln())
        .collect();
    let nll = |t: f64| -> f64 {
        logs.chunks(k)
            .zip(labels)
            .map(|(row, &y)| log_sum_exp(row.iter().map(|l| l / t)) - row[y] / t)
            .sum()
    };
    // The cross-entropy is unimodal in log T: golden-section search on [ln 0.05, ln 20].
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    while b - a > 1e-4 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if nll(c.exp()) < nll(d.exp()) {
            b = d;
        } else {
            a = c;
        }
    }
    let t = ((a + b) / 2.0).exp();
    for (row, logs) in probs.chunks_mut(k).zip(logs.chunks(k)) {
        let z = log_sum_exp(logs.iter().map(|l| l / t));
        for (p, l) in row.iter_mut().zip(logs) {
            *p = (l / t - z).exp() as f32;
        }
    }
    t
}

fn log_sum_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    m + xs.map(|x| (x - m).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose labels follow softmax(z) exactly in proportion, presented as softmax(s z):
    /// too soft for s < 1, too sharp for s > 1. Scaling by T = s recovers softmax(z).
    fn problem(s: f64) -> (Vec<f32>, Vec<usize>, usize) {
        let k = 3;
        let (mut probs, mut labels) = (Vec::new(), Vec::new());
        for i in 0..40 {
            let z = [i as f64 * 0.1, 1.0, 2.0 - i as f64 * 0.05];
            let truth: Vec<f64> = {
                let s: f64 = z.iter().map(|v| v.exp()).sum();
                z.iter().map(|v| v.exp() / s).collect()
            };
            let shown: Vec<f64> = {
                let sum: f64 = z.iter().map(|v| (v * s).exp()).sum();
                z.iter().map(|v| (v * s).exp() / sum).collect()
            };
            // 100 copies of the row, labelled in the true proportions.
            let mut counts: Vec<usize> =
                truth.iter().map(|p| (p * 100.0).round() as usize).collect();
            counts[0] = 100 - counts[1] - counts[2];
            for (y, &c) in counts.iter().enumerate() {
                for _ in 0..c {
                    probs.extend(shown.iter().map(|&p| p as f32));
                    labels.push(y);
                }
            }
        }
        (probs, labels, k)
    }

    #[test]
    fn finds_the_temperature_that_made_the_probabilities_too_soft_or_too_sharp() {
        for s in [0.3, 1.0, 2.0] {
            let (mut probs, labels, k) = problem(s);
            let t = temperature_scale(&mut probs, k, &labels);
            assert!(
                (t / s - 1.0).abs() < 0.05,
                "made {s} times too sharp, found T = {t}"
            );
        }
    }

    #[test]
    fn calibrated_rows_sum_to_one_and_keep_their_order_of_classes() {
        let (mut probs, labels, k) = problem(0.3);
        let before = probs.clone();
        temperature_scale(&mut probs, k, &labels);
        assert_ne!(
            before, probs,
            "probabilities three times too soft are sharpened"
        );
        for (row, old) in probs.chunks(k).zip(before.chunks(k)) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "a row sums to {sum}");
            let order = |r: &[f32]| {
                let mut o: Vec<usize> = (0..k).collect();
                o.sort_by(|&a, &b| r[b].total_cmp(&r[a]));
                o
            };
            assert_eq!(order(row), order(old));
        }
    }

    #[test]
    fn rows_with_zeros_and_certainties_stay_finite() {
        let mut probs = vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.0];
        let t = temperature_scale(&mut probs, 3, &[0, 0, 1]);
        assert!(t.is_finite() && t > 0.0);
        assert!(probs
            .iter()
            .all(|p| p.is_finite() && (0.0..=1.0).contains(p)));
        for row in probs.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}
