//! `loupe train`, `loupe eval`, `loupe predict` end to end on generated images (CPU).

mod common;

use common::loupe;

use std::path::{Path, PathBuf};

#[test]
fn train_then_eval_then_predict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 20, 0);
    let d = data.to_str().unwrap();
    let out = loupe(&[
        "train",
        d,
        "--model",
        "small-cnn",
        "--epochs",
        "3",
        "--img-size",
        "16",
        "--batch",
        "16",
        "--lr",
        "0.01",
        "--device",
        "cpu",
        "--seed",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("epoch ")).count(),
        3,
        "{text}"
    );
    let run = PathBuf::from(text.lines().last().unwrap());
    assert!(
        run.starts_with(data.join(".loupe/runs")),
        "runs go beside the dataset by default: {}",
        run.display()
    );
    assert!(run.join("best.safetensors").exists());

    let out = loupe(&["eval", run.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("accuracy")
            && text.contains("precision  recall")
            && text.contains("confusion"),
        "{text}"
    );
    assert!(run.join("eval_predictions.csv").exists());

    // New images of the same classes, plus one that cannot be read.
    let fresh = dir.path().join("fresh");
    common::colour_images(&fresh, 5, 100);
    std::fs::write(fresh.join("red/garbage.png"), b"not an image").unwrap();
    let preds = dir.path().join("preds.csv");
    let out = loupe(&[
        "predict",
        run.to_str().unwrap(),
        fresh.to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
        "--tta",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rdr = csv::Reader::from_path(&preds).unwrap();
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "path",
            "predicted",
            "confidence",
            "blue",
            "green",
            "red",
            "error"
        ]
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 16);
    let bad = rows.iter().find(|r| &r[0] == "red/garbage.png").unwrap();
    assert!(bad[1].is_empty() && !bad[6].is_empty());
    let right = rows
        .iter()
        .filter(|r| r[0].split('/').next() == Some(&r[1]))
        .count();
    assert!(right >= 13, "{right}/15 new images predicted right");
}

#[test]
fn a_run_folder_that_is_not_one_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = loupe(&["eval", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a run folder"));
}

#[test]
fn a_validation_folder_is_the_split_and_a_resumed_run_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, val) = (dir.path().join("data"), dir.path().join("val"));
    common::colour_images(&data, 12, 0);
    common::colour_images(&val, 3, 50);
    let out = loupe(&[
        "train",
        data.to_str().unwrap(),
        "--val-dir",
        val.to_str().unwrap(),
        "--model",
        "small-cnn",
        "--epochs",
        "1",
        "--img-size",
        "16",
        "--batch",
        "8",
        "--lr",
        "0.01",
        "--device",
        "cpu",
        "--schedule",
        "step",
        "--head-lr",
        "0.02",
        "--crop-scale",
        "0.3",
        "--no-flip",
        "--jitter",
        "0.2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("36 training / 9 validation images"), "{text}");
    let run = PathBuf::from(text.lines().last().unwrap());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    let val_paths: Vec<String> = serde_json::from_value(config["split"]["val"].clone()).unwrap();
    let val_root = val.canonicalize().unwrap();
    assert!(
        val_paths.len() == 9
            && val_paths
                .iter()
                .all(|p| Path::new(p).starts_with(&val_root)),
        "{val_paths:?}"
    );
    assert_eq!(config["config"]["head_lr"], 0.02);
    assert_eq!(config["config"]["schedule"], "step");
    // The augmentation is part of the recipe the run keeps.
    assert_eq!(config["config"]["crop_scale"], 0.3);
    assert_eq!(config["config"]["flip"], false);
    assert_eq!(config["config"]["jitter"], 0.2);

    let out = loupe(&["resume", run.to_str().unwrap(), "--epochs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("36 training / 9 validation images")
            && text.contains("resuming at epoch 2 of 2"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("epoch 2/2")), "{text}");
    assert_eq!(PathBuf::from(text.lines().last().unwrap()), run);

    let out = loupe(&["eval", run.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("9 validation images"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A validation folder with a class the training data lacks is refused in words.
    common::colour_images(&dir.path().join("odd"), 1, 0);
    std::fs::rename(dir.path().join("odd/red"), dir.path().join("odd/purple")).unwrap();
    let out = loupe(&[
        "train",
        data.to_str().unwrap(),
        "--val-dir",
        dir.path().join("odd").to_str().unwrap(),
        "--model",
        "small-cnn",
        "--device",
        "cpu",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("classes the training data lacks: purple"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The processes whose parent is `pid` (Linux: from /proc).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let text = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap();
        out.extend(text.split_whitespace().map(|p| p.parse::<u32>().unwrap()));
    }
    out
}

#[cfg(target_os = "linux")]
#[test]
fn the_command_line_reports_an_engine_killed_mid_run_and_the_run_resumes() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 12, 0);
    let mut train = std::process::Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args([
            "train",
            data.to_str().unwrap(),
            "--model",
            "small-cnn",
            "--epochs",
            "10000",
            "--img-size",
            "16",
            "--batch",
            "8",
            "--device",
            "cpu",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(train.stdout.take().unwrap()).lines();
    let mut run = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(folder) = line.split("run folder ").nth(1) {
            run = Some(PathBuf::from(folder));
        }
        if line.starts_with("epoch 1/10000") {
            break;
        }
    }
    let run = run.expect("the run said where its folder is");
    let engine = children(train.id());
    assert_eq!(engine.len(), 1, "one engine process: {engine:?}");
    assert!(std::process::Command::new("kill")
        .args(["-9", &engine[0].to_string()])
        .status()
        .unwrap()
        .success());
    let out = train.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("training failed: the engine process was killed (SIGKILL")
            && stderr.contains(&format!("loupe resume {}", run.display())),
        "{stderr}"
    );
    // The folder kept its last epoch: the run goes on from there.
    let out = loupe(&["resume", run.to_str().unwrap(), "--epochs", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("epoch 3/3")), "{text}");
}

/// `loupe train` on a composite label with --args, the run folder.
fn train_composite(csv: &Path, extra: &[&str]) -> (PathBuf, String) {
    let root = csv.parent().unwrap().to_str().unwrap();
    let mut args = vec![
        "train",
        root,
        "--csv",
        csv.to_str().unwrap(),
        "--label-col",
        "mask,gender,age",
        "--group-col",
        "id",
        "--model",
        "small-cnn",
        "--epochs",
        "4",
        "--img-size",
        "16",
        "--batch",
        "16",
        "--lr",
        "0.01",
        "--device",
        "cpu",
    ];
    args.extend(extra);
    let out = loupe(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    (PathBuf::from(text.lines().last().unwrap()), text)
}

fn last_epoch(run: &Path) -> serde_json::Value {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|v| v["kind"] == "epoch")
        .unwrap()["metrics"]
        .clone()
}

#[test]
fn a_composite_label_trains_a_head_per_column_and_every_report_has_each_column() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("faces");
    let photos = common::composite_photos(&root, 20);
    let csv = common::write_labels(&root, &photos);

    let (run, text) = train_composite(&csv, &["--monitor", "f1:age"]);
    let epochs: Vec<&str> = text.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 4, "{text}");
    assert!(
        epochs
            .iter()
            .all(|l| l.contains("  mask ") && l.contains("  gender ") && l.contains("  age ")),
        "{text}"
    );
    assert!(text.contains("best validation macro-F1 of age"), "{text}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["heads"], "columns");
    assert_eq!(config["config"]["monitor"], "f1:age");
    let m = last_epoch(&run);
    let columns: Vec<(String, usize)> = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["report"]["confusion"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [("mask".into(), 3), ("gender".into(), 2), ("age".into(), 3)]
    );
    // Each band is plain to see: every head learns its attribute.
    for c in m["columns"].as_array().unwrap() {
        let f1 = c["report"]["macro_f1"].as_f64().unwrap();
        assert!(f1 > 0.8, "{}: macro-F1 {f1}", c["name"]);
    }
    let header = std::fs::read_to_string(run.join("val_predictions.csv")).unwrap();
    let header = header.lines().next().unwrap();
    assert!(
        header.ends_with(
            "mask=incorrect,mask=not_wear,mask=wear,gender=female,gender=male,age=30-59,age=60+,age=<30"
        ),
        "{header}"
    );

    let out = loupe(&["eval", run.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for column in ["== mask ==", "== gender ==", "== age =="] {
        assert!(text.contains(column), "{text}");
    }
    assert!(text.contains("gender  precision"), "{text}");

    let preds = dir.path().join("preds.csv");
    let out = loupe(&[
        "predict",
        run.to_str().unwrap(),
        root.join("images").to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rdr = csv::Reader::from_path(&preds).unwrap();
    let headers = rdr.headers().unwrap().clone();
    assert!(headers.iter().any(|h| h == "gender=male"), "{headers:?}");
    let gender = headers.iter().position(|h| h == "gender=male").unwrap();
    let row = rdr.records().next().unwrap().unwrap();
    // p000 is female: her photo's joint class and gender head agree.
    assert!(row[1].contains("/female/"), "{row:?}");
    assert!(row[gender].parse::<f32>().unwrap() < 0.5, "{row:?}");

    // One head over the 18 classes still reports each column (from its marginals).
    let (run, _) = train_composite(&csv, &["--heads", "joint"]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["heads"], "joint");
    assert_eq!(last_epoch(&run)["columns"].as_array().unwrap().len(), 3);

    // A column that does not exist is named, with the ones that do.
    let out = loupe(&[
        "train",
        root.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--label-col",
        "mask,gender,age",
        "--model",
        "small-cnn",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--monitor",
        "f1:hat",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("f1:hat names no label column") && err.contains("mask, gender, age"),
        "{err}"
    );
}

/// A tiny run on `data` with `seed`; its folder.
fn tiny_run(data: &Path, seed: &str) -> PathBuf {
    let out = loupe(&[
        "train",
        data.to_str().unwrap(),
        "--model",
        "small-cnn",
        "--epochs",
        "2",
        "--img-size",
        "16",
        "--batch",
        "16",
        "--lr",
        "0.01",
        "--device",
        "cpu",
        "--seed",
        seed,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
}

/// `loupe predict` rows: path -> the class probabilities (blue, green, red).
fn probs(csv_path: &Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    csv::Reader::from_path(csv_path)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .map(|r| {
            (
                r[0].to_string(),
                (3..6).map(|i| r[i].parse::<f64>().unwrap()).collect(),
            )
        })
        .collect()
}

#[test]
fn an_ensemble_averages_its_runs_and_writes_a_submission_in_the_templates_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 12, 0);
    let (a, b) = (tiny_run(&data, "1"), tiny_run(&data, "2"));
    let fresh = dir.path().join("fresh");
    common::colour_images(&fresh, 3, 100);
    let predict = |runs: &[&Path], out: &Path, extra: &[&str]| {
        let mut args = vec!["predict"];
        args.extend(runs.iter().map(|r| r.to_str().unwrap()));
        args.extend([fresh.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        args.extend(extra);
        loupe(&args)
    };
    let path = |name: &str| dir.path().join(name);
    for (runs, out) in [
        (vec![a.as_path()], "a.csv"),
        (vec![b.as_path()], "b.csv"),
        (vec![a.as_path(), b.as_path()], "ab.csv"),
    ] {
        let o = predict(&runs, &path(out), &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The ensemble's probabilities are the mean of its runs' own.
    let (pa, pb, pab) = (
        probs(&path("a.csv")),
        probs(&path("b.csv")),
        probs(&path("ab.csv")),
    );
    assert_eq!(pab.len(), 9);
    assert_ne!(pa, pb, "two seeds, two models");
    for (file, p) in &pab {
        for k in 0..3 {
            let mean = (pa[file][k] + pb[file][k]) / 2.0;
            assert!((p[k] - mean).abs() < 1e-5, "{file}: {p:?} vs {mean}");
        }
    }

    // One label per picture.
    let o = predict(&[&a, &b], &path("labels.csv"), &["--format", "labels"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labels: Vec<csv::StringRecord> = csv::Reader::from_path(path("labels.csv"))
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(labels.len(), 9);
    for r in &labels {
        let p = &pab[&r[0]];
        let best = (0..3).max_by(|&i, &j| p[i].total_cmp(&p[j])).unwrap();
        assert_eq!(&r[1], ["blue", "green", "red"][best]);
    }

    // A submission in the order of the competition's sample file, ids by file stem, classes by
    // name and by index.
    let mut ids: Vec<String> = pab
        .keys()
        .map(|f| {
            Path::new(f)
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.reverse();
    let template = path("sample_submission.csv");
    let mut t = String::from("image,ans\n");
    for id in &ids {
        t.push_str(&format!("{id},0\n"));
    }
    std::fs::write(&template, t).unwrap();
    let classes = ["blue", "green", "red"];
    for (format, class_of) in [
        (
            "name",
            &(|k: usize| classes[k].to_string()) as &dyn Fn(usize) -> String,
        ),
        ("index", &|k: usize| k.to_string()),
    ] {
        let out = path(&format!("submission-{format}.csv"));
        let o = predict(
            &[&a, &b],
            &out,
            &[
                "--format",
                "submission",
                "--id-col",
                "image",
                "--class-col",
                "ans",
                "--label-format",
                format,
                "--template",
                template.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("image,ans"));
        let rows: Vec<(String, String)> = lines
            .map(|l| {
                let (id, c) = l.split_once(',').unwrap();
                (id.to_string(), c.to_string())
            })
            .collect();
        assert_eq!(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), ids);
        for (id, class) in &rows {
            let (_, p) = pab
                .iter()
                .find(|(f, _)| Path::new(f).file_stem().unwrap() == id.as_str())
                .unwrap();
            let best = (0..3).max_by(|&i, &j| p[i].total_cmp(&p[j])).unwrap();
            assert_eq!(class, &class_of(best), "{id}");
        }
    }

    // An id the folder has no picture for: refused in words, nothing written.
    std::fs::write(&template, "image,ans\nnot-there,0\n").unwrap();
    let out = path("submission-bad.csv");
    let o = predict(
        &[&a],
        &out,
        &[
            "--format",
            "submission",
            "--id-col",
            "image",
            "--template",
            template.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 ids of the template match no picture (first: not-there)"),
        "{err}"
    );
    assert!(!out.exists());

    // Runs of other classes cannot be averaged with these: said in words.
    let other = dir.path().join("other");
    common::colour_images(&other, 12, 0);
    std::fs::remove_dir_all(other.join("red")).unwrap();
    let c = tiny_run(&other, "1");
    let o = predict(&[&a, &c], &path("mixed.csv"), &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("predict different classes"), "{err}");
}
