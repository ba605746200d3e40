//! Many runs from the command line: `loupe train --folds` (a K-fold experiment with its
//! out-of-fold predictions), `loupe resume` of an experiment, `loupe predict` of one, and
//! `loupe sweep`. On generated images, on the CPU.

mod common;

use common::loupe;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const TINY: [&str; 10] = [
    "--model",
    "small-cnn",
    "--img-size",
    "16",
    "--batch",
    "16",
    "--lr",
    "0.01",
    "--device",
    "cpu",
];

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// (path, label, predicted) of a predictions file.
fn rows(file: &Path) -> Vec<(String, String, String)> {
    csv::Reader::from_path(file)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .map(|r| (r[0].to_string(), r[1].to_string(), r[2].to_string()))
        .collect()
}

fn val_paths(run: &Path) -> Vec<String> {
    let rc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    rc["split"]["val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_kfold_experiment_predicts_every_image_once_keeps_people_whole_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("masks");
    let photos = common::composite_photos(&root, 12);
    let csv = common::write_labels(&root, &photos);
    let mut args = vec![
        "train",
        root.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--label-col",
        "gender",
        "--group-col",
        "id",
        "--epochs",
        "2",
        "--folds",
        "3",
    ];
    args.extend(TINY);
    let text = ok(&loupe(&args));
    let exp = PathBuf::from(text.lines().last().unwrap());
    assert!(exp.join("experiment.json").is_file(), "{text}");

    // Every photo is predicted exactly once, out of fold.
    let oof = rows(&exp.join("oof_predictions.csv"));
    let predicted: Vec<&String> = oof.iter().map(|r| &r.0).collect();
    let unique: BTreeSet<&String> = predicted.iter().copied().collect();
    assert_eq!(predicted.len(), unique.len(), "an image predicted twice");
    let all: BTreeSet<&String> = photos.iter().map(|p| &p.path).collect();
    assert_eq!(unique, all);

    // A person's seven photos are in one fold; the folds' validation sets are the partition.
    let fold_of: HashMap<String, usize> = (1..=3)
        .flat_map(|f| {
            val_paths(&exp.join(format!("fold-{f}")))
                .into_iter()
                .map(move |p| (p, f))
        })
        .collect();
    assert_eq!(fold_of.len(), photos.len());
    let mut person_folds: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for p in &photos {
        person_folds
            .entry(&p.id)
            .or_default()
            .insert(fold_of[&p.path]);
    }
    assert!(
        person_folds.values().all(|f| f.len() == 1),
        "{person_folds:?}"
    );

    // The printed score is the joined file's.
    let right = oof.iter().filter(|r| r.1 == r.2).count();
    let accuracy = right as f64 / oof.len() as f64;
    let line = text
        .lines()
        .find(|l| l.starts_with("out of fold (84 images"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!("accuracy {accuracy:.3}")), "{line}");

    // Fold 2 interrupted after its first epoch, fold 3 never run: resume runs only those.
    let fold2 = exp.join("fold-2");
    let metrics = std::fs::read_to_string(fold2.join("metrics.jsonl")).unwrap();
    let first_epoch = metrics
        .lines()
        .position(|l| l.contains(r#""kind":"epoch""#))
        .unwrap();
    let kept: Vec<&str> = metrics.lines().take(first_epoch + 1).collect();
    std::fs::write(fold2.join("metrics.jsonl"), kept.join("\n") + "\n").unwrap();
    std::fs::remove_dir_all(exp.join("fold-3")).unwrap();
    std::fs::remove_file(exp.join("oof_predictions.csv")).unwrap();
    let before_fold1 = std::fs::read(exp.join("fold-1/metrics.jsonl")).unwrap();
    let text = ok(&loupe(&["resume", exp.to_str().unwrap()]));
    assert!(text.contains("1 of 3 folds already finished"), "{text}");
    assert!(!text.contains("fold 1/3:"), "fold 1 had finished: {text}");
    assert!(text.contains("fold 2/3: epoch 2/2"), "{text}");
    assert!(
        !text.contains("fold 2/3: epoch 1/2"),
        "fold 2 resumes: {text}"
    );
    assert!(text.contains("fold 3/3: epoch 1/2"), "{text}");
    assert_eq!(
        std::fs::read(exp.join("fold-1/metrics.jsonl")).unwrap(),
        before_fold1,
        "a finished fold is left alone"
    );
    assert_eq!(rows(&exp.join("oof_predictions.csv")).len(), 84);

    // `predict EXPERIMENT` is the ensemble of its folds.
    let fresh = dir.path().join("fresh");
    common::colour_images(&fresh, 2, 50);
    let out_e = dir.path().join("e.csv");
    let out_f = dir.path().join("f.csv");
    ok(&loupe(&[
        "predict",
        exp.to_str().unwrap(),
        fresh.to_str().unwrap(),
        "--out",
        out_e.to_str().unwrap(),
    ]));
    let folds: Vec<String> = (1..=3)
        .map(|f| exp.join(format!("fold-{f}")).to_str().unwrap().to_string())
        .collect();
    let mut args: Vec<&str> = vec!["predict"];
    args.extend(folds.iter().map(String::as_str));
    args.extend([fresh.to_str().unwrap(), "--out", out_f.to_str().unwrap()]);
    ok(&loupe(&args));
    assert_eq!(
        std::fs::read_to_string(&out_e).unwrap(),
        std::fs::read_to_string(&out_f).unwrap()
    );
}

#[test]
fn a_sweep_runs_each_combination_and_names_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 10, 0);
    let runs = dir.path().join("runs");
    let d = data.to_str().unwrap();
    let r = runs.to_str().unwrap();

    // A setting no run has is refused before anything is made.
    let out = loupe(&["sweep", d, "--grid", "learning-rate=1,2", "--runs", r]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no such option") && err.contains("lr"),
        "{err}"
    );
    assert!(!runs.exists(), "nothing made for a refused sweep");

    let args = vec![
        "sweep",
        d,
        "--grid",
        "lr=0.01,0.002",
        "--grid",
        "batch=8,16",
        "--random",
        "3",
        "--seed",
        "4",
        "--epochs",
        "1",
        "--runs",
        r,
        "--model",
        "small-cnn",
        "--img-size",
        "16",
        "--device",
        "cpu",
    ];
    let text = ok(&loupe(&args));
    assert!(text.contains("sweep of 3 trial(s)"), "{text}");
    let sweep = PathBuf::from(text.lines().last().unwrap());
    let results: Vec<csv::StringRecord> = csv::Reader::from_path(sweep.join("results.csv"))
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results.len(), 3, "{text}");
    let mut combos = BTreeSet::new();
    for row in &results {
        assert_eq!(&row[5], "done", "{row:?}");
        // Each trial ran with its own settings.
        let rc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sweep.join(&row[0]).join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            rc["config"]["lr"].as_f64().unwrap(),
            row[1].parse::<f64>().unwrap()
        );
        assert_eq!(
            rc["config"]["batch"].as_u64().unwrap(),
            row[2].parse::<u64>().unwrap()
        );
        combos.insert((row[1].to_string(), row[2].to_string()));
    }
    assert_eq!(combos.len(), 3, "three different combinations");
    let best = results
        .iter()
        .max_by(|a, b| {
            let f = |r: &csv::StringRecord| r[3].parse::<f64>().unwrap();
            f(a).total_cmp(&f(b))
        })
        .unwrap();
    assert!(
        text.contains(&format!("best by macro-F1: {}", &best[0])),
        "{text}"
    );
}

#[test]
fn an_unreachable_cluster_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 3, 0);
    let runs = dir.path().join("runs");
    let out = loupe(&[
        "train",
        data.to_str().unwrap(),
        "--folds",
        "2",
        "--runs",
        runs.to_str().unwrap(),
        "--backend",
        "ray",
        "--ray-address",
        "http://127.0.0.1:9",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the Ray cluster at http://127.0.0.1:9 does not answer"),
        "{err}"
    );
    assert!(!runs.exists());
}
