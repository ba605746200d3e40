//! Temperature scaling of out-of-fold probabilities (Guo et al. 2017), before confident
//! learning sees them.
//!
//! The embedding path's heads are regularised hard (C = 0.3), which keeps their ranking good but
//! their probabilities soft: a mislabelled digit gets 0.6 for its true class while that class's
//! images average 0.9, so confident learning, whose thresholds are those averages, rarely
//! counts it. One temperature per label column undoes that shrinkage without changing any
//! image's order of classes. It is one number fit over thousands of rows, so the noisy labels
//! it is fit on cannot bend it towards any single image.
//!
//! The labels it is fit on are the noisy ones, though, and plain cross-entropy against them
//! pulls the temperature soft: every wrong label punishes a sharp model, so the more errors a
//! column holds, the softer its probabilities and the fewer errors confident learning counts.
//! So the fit also models the errors: a given label is the true value with probability
//! `1 - ε`, any other with `ε / (k - 1)`, and `T` and `ε` are fit together. Where errors look
//! like the model's own mistakes (a shirt called a t-shirt), `ε` comes out 0 and this is plain
//! temperature scaling; where labels are wrong at random, `ε` takes them (the composite
//! digits' items: ε = 0.05, the rate planted) and `T` sharpens for the images the labels
//! describe.

/// How a column's probabilities were rescaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// `T < 1` sharpened, `T > 1` softened.
    pub temperature: f64,
    /// The share of wrong labels the fit allowed for (`ε`).
    pub noise: f64,
}

/// Rescales `probs` (rows of `k`, each summing to one) in place to `p^(1/T)`, renormalised,
/// with the temperature `T` that, together with a label-noise rate `ε` (see the module's
/// doc), makes `labels` most likely. `T` is searched over `[0.05, 20]`, `ε` over `[0, 0.5]`.
pub fn temperature_scale(probs: &mut [f32], k: usize, labels: &[usize]) -> Scaling {
    assert_eq!(probs.len(), labels.len() * k, "one row of {k} per label");
    if labels.is_empty() || k < 2 {
        return Scaling {
            temperature: 1.0,
            noise: 0.0,
        };
    }
    let logs: Vec<f64> = probs.iter().map(|&p| ln_prob(p)).collect();
    let (scaling, _) = fit(&logs, k, labels);
    let t = scaling.temperature;
    for (row, logs) in probs.chunks_mut(k).zip(logs.chunks(k)) {
        let z = log_sum_exp(logs.iter().map(|l| l / t));
        for (p, l) in row.iter_mut().zip(logs) {
            *p = (l / t - z).exp() as f32;
        }
    }
    scaling
}

/// The weight `w` of `a` in the geometric mean `a^w b^(1-w)` of two models' probabilities
/// (aligned rows of `k`) that, temperature scaled, makes `labels` most likely: the two models
/// stacked by the same likelihood that calibrates each, so the one that explains the given
/// labels better counts for more. Searched over `[0, 1]`.
pub fn blend_weight(a: &[f32], b: &[f32], k: usize, labels: &[usize]) -> f64 {
    assert_eq!(a.len(), b.len(), "aligned rows");
    assert_eq!(a.len(), labels.len() * k, "one row of {k} per label");
    if labels.is_empty() || k < 2 {
        return 0.5;
    }
    let la: Vec<f64> = a.iter().map(|&p| ln_prob(p)).collect();
    let lb: Vec<f64> = b.iter().map(|&p| ln_prob(p)).collect();
    // The loss over w is a minimum over T of losses convex in the logits: unimodal in
    // practice, so golden section as for T.
    golden(0.0, 1.0, 1e-3, |w| {
        let logs: Vec<f64> = la
            .iter()
            .zip(&lb)
            .map(|(x, y)| w * x + (1.0 - w) * y)
            .collect();
        fit(&logs, k, labels).1
    })
}

/// `a` replaced, row by row, by the geometric mean `a^w b^(1-w)` renormalised (the weighted
/// mean of the log-probabilities: a product of experts). Unlike the plain mean, which can at
/// most halve a label's probability, one model sure that a label is wrong outweighs the
/// other's mild belief in it.
pub fn geometric_mean(a: &mut [f32], b: &[f32], k: usize, w: f64) {
    assert_eq!(a.len(), b.len(), "aligned rows");
    for (ra, rb) in a.chunks_mut(k).zip(b.chunks(k)) {
        let logs: Vec<f64> = ra
            .iter()
            .zip(rb)
            .map(|(&x, &y)| w * ln_prob(x) + (1.0 - w) * ln_prob(y))
            .collect();
        let z = log_sum_exp(logs.iter().copied());
        for (p, l) in ra.iter_mut().zip(&logs) {
            *p = (l - z).exp() as f32;
        }
    }
}

/// The temperature and label-noise rate that make `labels` most likely under the
/// log-probabilities `logs` (rows of `k`, not necessarily normalised), and that loss.
fn fit(logs: &[f64], k: usize, labels: &[usize]) -> (Scaling, f64) {
    // The probability of each given label at temperature t.
    let given = |t: f64| -> Vec<f64> {
        logs.chunks(k)
            .zip(labels)
            .map(|(row, &y)| (row[y] / t - log_sum_exp(row.iter().map(|l| l / t))).exp())
            .collect()
    };
    let other = 1.0 / (k - 1) as f64;
    let nll = |q: &[f64], e: f64| -> f64 {
        q.iter()
            .map(|&q| -((1.0 - e) * q + e * (1.0 - q) * other).max(1e-300).ln())
            .sum()
    };
    // For a fixed T the loss is convex in ε; the best ε's loss is searched over log T
    // (unimodal in practice). Both by golden section.
    let best_noise = |q: &[f64]| golden(0.0, 0.5, 1e-5, |e| nll(q, e));
    let log_t = golden(0.05f64.ln(), 20f64.ln(), 1e-4, |lt| {
        let q = given(lt.exp());
        nll(&q, best_noise(&q))
    });
    let t = log_t.exp();
    let q = given(t);
    let noise = best_noise(&q);
    (
        Scaling {
            temperature: t,
            noise,
        },
        nll(&q, noise),
    )
}

/// A probability's logarithm, floored: a softmax in f32 underflows to exactly 0 far from the
/// top, and a zero would make every later sum or temperature meaningless.
pub fn ln_prob(p: f32) -> f64 {
    f64::from(p.max(1e-30)).ln()
}

/// The minimum of a unimodal `f` on `[a, b]`, to `tol`.
fn golden(mut a: f64, mut b: f64, tol: f64, f: impl Fn(f64) -> f64) -> f64 {
    let g = (5f64.sqrt() - 1.0) / 2.0;
    while b - a > tol {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if f(c) < f(d) {
            b = d;
        } else {
            a = c;
        }
    }
    (a + b) / 2.0
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
            let fit = temperature_scale(&mut probs, k, &labels);
            let t = fit.temperature;
            assert!(
                (t / s - 1.0).abs() < 0.05,
                "made {s} times too sharp, found T = {t}"
            );
            assert!(fit.noise < 0.01, "no label was flipped: {fit:?}");
        }
    }

    #[test]
    fn labels_wrong_at_random_are_taken_by_the_noise_rate_not_by_softening() {
        let (probs, mut labels, k) = problem(0.5);
        // Every tenth label moved to another value, alternating between the two others.
        for (i, y) in labels.iter_mut().enumerate().filter(|(i, _)| i % 10 == 3) {
            *y = (*y + 1 + (i / 10) % 2) % k;
        }
        let fit = temperature_scale(&mut probs.clone(), k, &labels);
        assert!(
            (fit.temperature / 0.5 - 1.0).abs() < 0.1 && (fit.noise - 0.1).abs() < 0.03,
            "{fit:?}"
        );
        // Plain cross-entropy (no noise term) would have softened them to explain the flips.
        let logs: Vec<f64> = probs.iter().map(|&p| f64::from(p).ln()).collect();
        let plain = |t: f64| -> f64 {
            logs.chunks(k)
                .zip(&labels)
                .map(|(row, &y)| log_sum_exp(row.iter().map(|l| l / t)) - row[y] / t)
                .sum()
        };
        let plain_t = golden(0.05f64.ln(), 20f64.ln(), 1e-4, |lt| plain(lt.exp())).exp();
        assert!(
            plain_t > fit.temperature * 1.1,
            "plain T {plain_t}, {fit:?}"
        );
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
        let fit = temperature_scale(&mut probs, 3, &[0, 0, 1]);
        assert!(fit.temperature.is_finite() && fit.temperature > 0.0);
        assert!((0.0..=0.5).contains(&fit.noise));
        assert!(probs
            .iter()
            .all(|p| p.is_finite() && (0.0..=1.0).contains(p)));
        for row in probs.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn a_geometric_mean_lets_one_model_sure_a_label_is_wrong_outweigh_the_others_belief() {
        // Three rows labelled class 0. Row 0: sqrt(0.9 * 0.5) : sqrt(0.1 * 0.5) is 3 : 1.
        // Row 1: `a` is sure it is class 1, `b` believes the label. Row 2: both mildly doubt
        // it. The plain mean would doubt row 2 more (0.3 against 0.455).
        let mut a = vec![0.9, 0.1, 0.01, 0.99, 0.3, 0.7];
        let b = [0.5, 0.5, 0.9, 0.1, 0.3, 0.7];
        geometric_mean(&mut a, &b, 2, 0.5);
        assert!((a[0] - 0.75).abs() < 1e-6, "{a:?}");
        assert!(a[2] < 0.25 && (a[4] - 0.3).abs() < 1e-6, "{a:?}");
        for row in a.chunks(2) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // Weight 1 is `a` itself.
        let mut one = vec![0.9, 0.1];
        geometric_mean(&mut one, &[0.5, 0.5], 2, 1.0);
        assert!((one[0] - 0.9).abs() < 1e-6, "{one:?}");
    }

    #[test]
    fn the_blend_weight_goes_to_the_model_that_explains_the_labels() {
        let (informed, labels, k) = problem(1.0);
        // A model that knows nothing: rows that vary, but not with the labels.
        let guess: Vec<f32> = (0..labels.len())
            .flat_map(|i| {
                let z: Vec<f64> = (0..k)
                    .map(|c| ((i * 7 + c * 13) as f64 * 0.71).sin())
                    .collect();
                let sum: f64 = z.iter().map(|v| v.exp()).sum();
                z.into_iter().map(move |v| (v.exp() / sum) as f32)
            })
            .collect();
        let w = blend_weight(&informed, &guess, k, &labels);
        assert!(w > 0.9, "the informed model is `a`: w = {w}");
        let w = blend_weight(&guess, &informed, k, &labels);
        assert!(w < 0.1, "the informed model is `b`: w = {w}");
    }
}
