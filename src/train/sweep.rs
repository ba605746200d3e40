//! A sweep: one run (or K-fold experiment) per combination of settings. Its folder holds
//! `sweep.json` ([`Sweep`]: the grid and each trial's settings), one folder per trial
//! (`trial-1`, ...: a run, or an experiment), and at the end `results.csv` ([`write_results`]):
//! each trial's settings and scores.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::split::SplitMix64;
use crate::util::write_atomic;

pub const SWEEP: &str = "sweep.json";
pub const RESULTS: &str = "results.csv";

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Each option and the values tried, as given (`lr` → `1e-4`, `3e-4`).
    pub grid: Vec<(String, Vec<String>)>,
    pub trials: Vec<Trial>,
    /// Folds per trial (1: a single run).
    pub folds: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// The trial's folder name.
    pub name: String,
    /// Option → value, in grid order.
    pub settings: Vec<(String, String)>,
}

/// Parses `--grid KEY=V1,V2,...`.
pub fn parse_grid(arg: &str) -> anyhow::Result<(String, Vec<String>)> {
    let (key, values) = arg.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("--grid {arg}: write it as OPTION=VALUE,VALUE (lr=1e-4,3e-4)")
    })?;
    let values: Vec<String> = values
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    anyhow::ensure!(!values.is_empty(), "--grid {arg}: no values");
    Ok((key.trim().to_string(), values))
}

/// Every combination of the grid's values, in order (the last option varies fastest); with
/// `random`, that many of them drawn without repeats by `seed`.
pub fn trials(grid: &[(String, Vec<String>)], random: Option<usize>, seed: u64) -> Vec<Trial> {
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (key, values) in grid {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    if let Some(n) = random {
        let mut rng = SplitMix64::new(seed);
        rng.shuffle(&mut combos);
        combos.truncate(n);
    }
    combos
        .into_iter()
        .enumerate()
        .map(|(i, settings)| Trial {
            name: format!("trial-{}", i + 1),
            settings,
        })
        .collect()
}

/// What the command line calls an option, as `TrainConfig` names the field.
fn field(key: &str) -> String {
    match key {
        "warmup" => "warmup_epochs".into(),
        other => other.replace('-', "_"),
    }
}

/// `base` with the trial's settings: any field of the config, by its command-line name; a
/// value is read as JSON (numbers, true/false) or else as text (`focal`, `efficientnet-lite0`).
pub fn configure(base: &TrainConfig, settings: &[(String, String)]) -> anyhow::Result<TrainConfig> {
    let mut v = serde_json::to_value(base)?;
    let obj = v.as_object_mut().expect("a config is a JSON object");
    for (key, value) in settings {
        let name = field(key);
        if !obj.contains_key(&name) || name == "given_split" {
            let mut known: Vec<String> = obj
                .keys()
                .filter(|k| *k != "given_split")
                .map(|k| k.replace('_', "-"))
                .collect();
            known.sort();
            anyhow::bail!(
                "--grid {key}: no such option (options: {})",
                known.join(", ")
            );
        }
        let parsed = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
        obj.insert(name, parsed);
    }
    serde_json::from_value(v).map_err(|e| {
        let what: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        anyhow::anyhow!("{}: {e}", what.join(" "))
    })
}

impl Sweep {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(SWEEP);
        write_atomic(&path, &serde_json::to_vec_pretty(self)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    pub fn read(dir: &Path) -> anyhow::Result<Sweep> {
        let path = dir.join(SWEEP);
        let text = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("{} is not a sweep ({e})", dir.display()))?;
        serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("{} is damaged ({e})", path.display()))
    }
}

/// One trial's outcome: its best validation scores (for an experiment, out of fold), or why it
/// has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub trial: Trial,
    pub scores: Result<(f64, f64), String>,
}

/// `results.csv`: `trial,<options...>,macro_f1,accuracy,status`.
pub fn write_results(
    dir: &Path,
    grid: &[(String, Vec<String>)],
    rows: &[Outcome],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["trial".to_string()];
    header.extend(grid.iter().map(|(k, _)| k.clone()));
    header.extend(["macro_f1", "accuracy", "status"].map(String::from));
    w.write_record(&header)?;
    for o in rows {
        let by_key: BTreeMap<&str, &str> = o
            .trial
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut rec = vec![o.trial.name.clone()];
        rec.extend(
            grid.iter()
                .map(|(k, _)| by_key.get(k.as_str()).unwrap_or(&"").to_string()),
        );
        match &o.scores {
            Ok((f1, acc)) => rec.extend([format!("{f1:.4}"), format!("{acc:.4}"), "done".into()]),
            Err(why) => rec.extend([String::new(), String::new(), why.clone()]),
        }
        w.write_record(&rec)?;
    }
    let path = dir.join(RESULTS);
    write_atomic(&path, &w.into_inner()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::LossKind;

    fn grid() -> Vec<(String, Vec<String>)> {
        vec![
            parse_grid("lr=1e-4,3e-4,1e-3").unwrap(),
            parse_grid("loss=ce,focal").unwrap(),
        ]
    }

    #[test]
    fn a_grid_makes_every_combination_once() {
        let t = trials(&grid(), None, 0);
        assert_eq!(t.len(), 6);
        assert_eq!(
            t[0].settings,
            [("lr".into(), "1e-4".into()), ("loss".into(), "ce".into())]
        );
        assert_eq!(t[1].settings[1].1, "focal");
        assert_eq!(t[5].name, "trial-6");
        let distinct: std::collections::HashSet<_> = t.iter().map(|t| &t.settings).collect();
        assert_eq!(distinct.len(), 6);
        let r = trials(&grid(), Some(4), 7);
        assert_eq!(r.len(), 4);
        assert_eq!(r, trials(&grid(), Some(4), 7), "seeded");
        let distinct: std::collections::HashSet<_> = r.iter().map(|t| &t.settings).collect();
        assert_eq!(distinct.len(), 4, "drawn without repeats");
        assert!(parse_grid("lr").is_err() && parse_grid("lr=").is_err());
    }

    #[test]
    fn settings_reach_the_config_by_their_option_names() {
        let base = TrainConfig::default();
        let set = |k: &str, v: &str| configure(&base, &[(k.into(), v.into())]);
        assert_eq!(set("lr", "1e-3").unwrap().lr, 1e-3);
        assert_eq!(set("loss", "focal").unwrap().loss, LossKind::Focal);
        assert_eq!(set("img-size", "96").unwrap().img_size, 96);
        assert_eq!(set("warmup", "1.5").unwrap().warmup_epochs, 1.5);
        assert!(!set("flip", "false").unwrap().flip);
        let e = set("learning-rate", "1").unwrap_err().to_string();
        assert!(e.contains("no such option") && e.contains("lr"), "{e}");
        assert!(set("loss", "hinge").is_err(), "not a loss");
        assert!(set("given-split", "x").is_err());
    }

    #[test]
    fn results_name_each_trial_its_settings_and_scores() {
        let dir = tempfile::tempdir().unwrap();
        let t = trials(&grid(), None, 0);
        let rows = vec![
            Outcome {
                trial: t[0].clone(),
                scores: Ok((0.5, 0.75)),
            },
            Outcome {
                trial: t[1].clone(),
                scores: Err("failed".into()),
            },
        ];
        write_results(dir.path(), &grid(), &rows).unwrap();
        let text = std::fs::read_to_string(dir.path().join(RESULTS)).unwrap();
        assert_eq!(
            text,
            "trial,lr,loss,macro_f1,accuracy,status\n\
             trial-1,1e-4,ce,0.5000,0.7500,done\n\
             trial-2,1e-4,focal,,,failed\n"
        );
    }
}
