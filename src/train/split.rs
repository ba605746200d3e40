//! Train/validation split: stratified by class, seeded, and group-aware (all images of one group,
//! e.g. one person, land on the same side, so validation never sees a training person again).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Sample indices, ascending.
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

/// SplitMix64: a tiny generator whose output depends on nothing but the seed. A split must be
/// reproducible from the seed in a run's config for as long as the run exists; a library RNG may
/// change its algorithm between versions.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Units that move together: a group, or a single sample without one.
fn units(labels: &[usize], groups: Option<&[Option<String>]>) -> BTreeMap<String, Vec<usize>> {
    let mut units: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in 0..labels.len() {
        let key = match groups.and_then(|g| g[i].as_ref()) {
            Some(g) => format!("g:{g}"),
            None => format!("s:{i:012}"),
        };
        units.entry(key).or_default().push(i);
    }
    units
}

/// The most common class among `members` (the lowest on a tie).
fn majority(labels: &[usize], members: &[usize]) -> usize {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for &i in members {
        *counts.entry(labels[i]).or_default() += 1;
    }
    counts
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
        .map(|(c, _)| *c)
        .unwrap_or(0)
}

/// The split a user gave: `is_val[i]` puts sample `i` in validation.
pub fn given(is_val: &[bool]) -> Split {
    let (val, train): (Vec<usize>, Vec<usize>) = (0..is_val.len()).partition(|&i| is_val[i]);
    Split { train, val }
}

/// Splits samples with class `labels[i]` (and optional `groups[i]`) so that about `val_frac` of
/// each class is in validation. A class with a single image (or a single group) stays in train.
pub fn stratified(
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    val_frac: f64,
    seed: u64,
) -> Split {
    let mut rng = SplitMix64::new(seed);
    // Stratify units by their majority class.
    let mut by_class: BTreeMap<usize, Vec<Vec<usize>>> = BTreeMap::new();
    for members in units(labels, groups).into_values() {
        by_class
            .entry(majority(labels, &members))
            .or_default()
            .push(members);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut class_units in by_class.into_values() {
        rng.shuffle(&mut class_units);
        let total: usize = class_units.iter().map(Vec::len).sum();
        let target = (val_frac * total as f64).round() as usize;
        let mut in_val = 0;
        let last = class_units.len().saturating_sub(1);
        for (k, u) in class_units.into_iter().enumerate() {
            // Keep at least one unit for training; take a unit while it brings the count no
            // further from the target than it is (large groups may overshoot a little).
            if k < last && in_val < target && (in_val + u.len()).abs_diff(target) <= target - in_val
            {
                in_val += u.len();
                val.extend(u);
            } else {
                train.extend(u);
            }
        }
    }
    train.sort_unstable();
    val.sort_unstable();
    Split { train, val }
}

/// Assigns every sample to one of `k` folds, stratified by class (each class spread evenly) and
/// group-aware (a group stays in one fold); seeded. A sample's fold is where it is held out.
pub fn kfold(
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    k: usize,
    seed: u64,
) -> Vec<usize> {
    let k = k.max(2);
    let mut rng = SplitMix64::new(seed ^ 0xF01D);
    let mut by_class: BTreeMap<usize, Vec<Vec<usize>>> = BTreeMap::new();
    for members in units(labels, groups).into_values() {
        by_class
            .entry(majority(labels, &members))
            .or_default()
            .push(members);
    }
    let mut fold = vec![0; labels.len()];
    // Per class: shuffled units, largest first, each to the fold with the fewest of the class
    // so far (the lowest-numbered on a tie, rotated per class so fold 0 is not always fullest).
    for (c, mut class_units) in by_class {
        rng.shuffle(&mut class_units);
        class_units.sort_by_key(|u| std::cmp::Reverse(u.len()));
        let mut filled = vec![0usize; k];
        for u in class_units {
            let f = (0..k)
                .map(|j| (j + c) % k)
                .min_by_key(|&j| filled[j])
                .unwrap_or(0);
            filled[f] += u.len();
            for i in u {
                fold[i] = f;
            }
        }
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        // 100 of class 0, 50 of class 1, 10 of class 2, 1 of class 3.
        [(0, 100), (1, 50), (2, 10), (3, 1)]
            .iter()
            .flat_map(|&(c, n)| std::iter::repeat_n(c, n))
            .collect()
    }

    #[test]
    fn stratified_per_class_and_reproducible() {
        let l = labels();
        let s = stratified(&l, None, 0.2, 7);
        let in_val = |c: usize| s.val.iter().filter(|&&i| l[i] == c).count();
        assert_eq!((in_val(0), in_val(1), in_val(2), in_val(3)), (20, 10, 2, 0));
        assert_eq!(s.train.len() + s.val.len(), l.len());
        assert_eq!(s, stratified(&l, None, 0.2, 7), "same seed, same split");
        assert_ne!(
            s.val,
            stratified(&l, None, 0.2, 8).val,
            "another seed, another split"
        );
    }

    #[test]
    fn groups_never_straddle_the_split() {
        let l = labels();
        let groups: Vec<Option<String>> = (0..l.len())
            .map(|i| {
                if i % 7 == 0 {
                    None
                } else {
                    Some(format!("person{}", i / 5))
                }
            })
            .collect();
        let s = stratified(&l, Some(&groups), 0.25, 1);
        for g in groups.iter().flatten() {
            let members: Vec<usize> = (0..l.len())
                .filter(|&i| groups[i].as_ref() == Some(g))
                .collect();
            let sides: std::collections::HashSet<bool> = members
                .iter()
                .map(|i| s.val.binary_search(i).is_ok())
                .collect();
            assert_eq!(sides.len(), 1, "group {g} is split");
        }
        let frac = s.val.len() as f64 / l.len() as f64;
        assert!((0.15..0.35).contains(&frac), "validation fraction {frac}");
    }

    #[test]
    fn kfold_spreads_each_class_evenly_and_keeps_groups_whole() {
        let l = labels();
        let folds = kfold(&l, None, 5, 3);
        for c in 0..3 {
            let per_fold: Vec<usize> = (0..5)
                .map(|f| (0..l.len()).filter(|&i| l[i] == c && folds[i] == f).count())
                .collect();
            let n = l.iter().filter(|&&x| x == c).count();
            assert!(
                per_fold.iter().all(|&x| x == n / 5),
                "class {c}: {per_fold:?}"
            );
        }
        assert_eq!(folds, kfold(&l, None, 5, 3), "seeded");
        assert_ne!(folds, kfold(&l, None, 5, 4));
        let groups: Vec<Option<String>> =
            (0..l.len()).map(|i| Some(format!("p{}", i / 4))).collect();
        let folds = kfold(&l, Some(&groups), 4, 1);
        for i in 0..l.len() {
            assert_eq!(
                folds[i],
                folds[i / 4 * 4],
                "group of {i} split across folds"
            );
        }
    }

    #[test]
    fn splitmix_is_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
