//! `loupe issues` end to end: planted label flips in generated images are found, from given
//! probabilities, from embeddings of the pretrained network, and by training per fold.

mod common;

use common::loupe;

use std::path::Path;

use image::{ImageBuffer, Rgb};

const CLASSES: [(&str, [u8; 3]); 3] = [
    ("blue", [40, 40, 200]),
    ("green", [40, 200, 40]),
    ("red", [200, 40, 40]),
];

/// 20 noisy images per colour, each saved under its colour's folder, except the planted ones:
/// returns their paths (relative) and true colours.
fn planted_dataset(root: &Path) -> Vec<(String, &'static str)> {
    let mut planted = Vec::new();
    for (c, (name, rgb)) in CLASSES.iter().enumerate() {
        for k in 0..20u32 {
            // Image 7 of each colour goes into the next colour's folder.
            let folder = if k == 7 { CLASSES[(c + 1) % 3].0 } else { name };
            let img = ImageBuffer::from_fn(24, 24, |x, y| {
                let n = ((x * 31 + y * 17 + k * 13) % 50) as u8;
                Rgb([
                    rgb[0].saturating_add(n),
                    rgb[1].saturating_add(n),
                    rgb[2].saturating_add(n),
                ])
            });
            std::fs::create_dir_all(root.join(folder)).unwrap();
            let rel = format!("{folder}/{name}_{k:02}.png");
            img.save(root.join(&rel)).unwrap();
            if k == 7 {
                planted.push((rel, *name));
            }
        }
    }
    planted
}

/// Every row of an `issues.csv`.
fn all_rows(csv_path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(csv_path).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "path",
            "column",
            "given",
            "suggested",
            "score",
            "rank",
            "flagged",
            "p_given",
            "p_suggested"
        ]
    );
    r.records().map(Result::unwrap).collect()
}

/// The flagged rows of an `issues.csv`: (path, given, suggested, rank).
fn ranked(csv_path: &Path) -> Vec<(String, String, String, usize)> {
    all_rows(csv_path)
        .iter()
        .filter(|rec| &rec[6] == "1")
        .map(|rec| {
            assert_eq!(&rec[1], "class");
            (
                rec[0].to_string(),
                rec[2].to_string(),
                rec[3].to_string(),
                rec[5].parse().unwrap(),
            )
        })
        .collect()
}

fn assert_planted_on_top(list: &[(String, String, String, usize)], planted: &[(String, &str)]) {
    assert!(list.len() >= 3, "{list:?}");
    let top: Vec<&str> = list.iter().take(3).map(|r| r.0.as_str()).collect();
    for (path, truth) in planted {
        assert!(
            top.contains(&path.as_str()),
            "{path} not among the top 3: {list:?}"
        );
        let row = list.iter().find(|r| &r.0 == path).unwrap();
        assert_eq!(row.2, *truth, "suggested class of {path}");
    }
    assert_eq!(
        list.iter().map(|r| r.3).collect::<Vec<_>>(),
        (1..=list.len()).collect::<Vec<_>>()
    );
}

#[test]
fn given_probabilities_are_ranked_and_odd_rows_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let planted = planted_dataset(&data);
    // A model that knows the true colour (from the file name), 80-90% sure.
    let mut csv = String::from("path,label,blue,green,red\n");
    for (c, (name, _)) in CLASSES.iter().enumerate() {
        for k in 0..20u32 {
            let folder = if k == 7 { CLASSES[(c + 1) % 3].0 } else { name };
            let sure = 0.8 + (k % 10) as f32 / 100.0;
            let mut p = [(1.0 - sure) / 2.0; 3];
            p[c] = sure;
            csv.push_str(&format!(
                "{folder}/{name}_{k:02}.png,{folder},{},{},{}\n",
                p[0], p[1], p[2]
            ));
        }
    }
    csv.push_str("elsewhere/x.png,red,0.1,0.1,0.8\nblue/broken.png,blue,x,y,z\n");
    let probs = dir.path().join("probs.csv");
    std::fs::write(&probs, csv).unwrap();
    let out_csv = dir.path().join("issues.csv");
    let out = loupe(&[
        "issues",
        data.to_str().unwrap(),
        "--pred-probs",
        probs.to_str().unwrap(),
        "--out",
        out_csv.to_str().unwrap(),
        "--top",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 row(s)") && stderr.contains("line 63"),
        "{stderr}"
    );
    let list = ranked(&out_csv);
    assert_eq!(list.len(), 3, "exactly the planted flips: {list:?}");
    // Every examined image is ranked: the suspects first, then the others by score.
    let rows = all_rows(&out_csv);
    assert_eq!(rows.len(), 60);
    let scores: Vec<f64> = rows[3..].iter().map(|r| r[4].parse().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");
    // With the probabilities of the given and the suggested value: a flip's given value is
    // the model's 5-10%, its suggestion 80-89%; past the flips the model agrees with the label.
    let p = |r: &csv::StringRecord, k: usize| r[k].parse::<f64>().unwrap();
    assert!(rows[..3]
        .iter()
        .all(|r| p(r, 7) <= 0.1 && p(r, 8) >= 0.8 && p(r, 8) < 0.9));
    assert!(rows[3..].iter().all(|r| r[2] == r[3] && p(r, 7) == p(r, 8)));
    // --top 5 prints the three flagged, where they end, and two more.
    let printed: Vec<&str> = stdout
        .lines()
        .filter(|l| rows.iter().any(|r| l.contains(&r[0])))
        .collect();
    assert_eq!(printed.len(), 5, "{stdout}");
    assert!(printed[3].contains(&rows[3][0]), "{stdout}");
    let stop = stdout.find("the flagged ones end here").expect(&stdout);
    assert!(stdout.find(printed[2]).unwrap() < stop && stop < stdout.find(printed[3]).unwrap());
    assert!(stdout.contains("55 more in issues.csv"), "{stdout}");
    assert_planted_on_top(&list, &planted);
    assert!(
        stdout.contains("3 suspected label errors among 60 images"),
        "{stdout}"
    );
    // The run is kept beside the dataset with its probabilities.
    let folder = Path::new(stdout.lines().last().unwrap());
    assert!(
        folder.starts_with(data.join(".loupe/issues")),
        "{}",
        folder.display()
    );
    assert_eq!(ranked(&folder.join("issues.csv")), list);
    assert!(std::fs::read_to_string(folder.join("pred_probs.csv"))
        .unwrap()
        .starts_with("path,blue,green,red"));

    // A CSV without a column for every class is refused in words.
    std::fs::write(&probs, "path,blue,green\nblue/blue_00.png,0.5,0.5\n").unwrap();
    let out = loupe(&[
        "issues",
        data.to_str().unwrap(),
        "--pred-probs",
        probs.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no column for the classes red"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cross_validated_embeddings_find_the_planted_flips_and_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let planted = common::planted_photos(&data);
    let out_csv = dir.path().join("issues.csv");
    let args = [
        "issues",
        data.to_str().unwrap(),
        "--img-size",
        "96",
        "--device",
        "cpu",
        "--out",
        out_csv.to_str().unwrap(),
    ];
    let out = loupe(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = ranked(&out_csv);
    // The planted flips come first; a few hard variants may follow, never most of the data.
    assert_planted_on_top(&first, &planted);
    assert!(first.len() <= 6, "{first:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A search on few images cross-validates on 10 folds unless told otherwise.
    assert!(stderr.contains("cross-validation folds 10/10"), "{stderr}");
    // The second run embeds nothing: the cache answers (same ranking).
    assert!(data
        .join(".loupe/embeddings/efficientnet-lite0-96.emb")
        .exists());
    let out = loupe(&args);
    assert!(out.status.success());
    assert_eq!(ranked(&out_csv), first);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("60 image(s) embedded by an earlier search"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another labels file of the same pictures (the same labels) shares the folder's cache:
    // nothing embedded again, the planted flips found again.
    let mut csv = String::from("path,class\n");
    for entry in walkdir::WalkDir::new(&data)
        .min_depth(2)
        .max_depth(2)
        .sort_by_file_name()
    {
        let path = entry.unwrap().into_path();
        let rel = path.strip_prefix(&data).unwrap();
        if rel.starts_with(".loupe") {
            continue;
        }
        let class = rel.parent().unwrap().to_string_lossy().into_owned();
        csv += &format!("{},{class}\n", rel.to_string_lossy());
    }
    std::fs::write(data.join("labels.csv"), csv).unwrap();
    let mut with_csv = args.to_vec();
    with_csv.extend(["--csv", "labels.csv", "--label-col", "class"]);
    let out = loupe(&with_csv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("60 image(s) embedded by an earlier search"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_planted_on_top(&ranked(&out_csv), &planted);
    assert!(data.join(".loupe/csv-labels/issues").is_dir());
}

#[test]
fn training_per_fold_finds_the_planted_flips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let planted = planted_dataset(&data);
    let out_csv = dir.path().join("issues.csv");
    let out = loupe(&[
        "issues",
        data.to_str().unwrap(),
        "--full",
        "--model",
        "small-cnn",
        "--epochs",
        "6",
        "--img-size",
        "16",
        "--folds",
        "3",
        "--no-flip",
        "--crop-scale",
        "1",
        "--device",
        "cpu",
        "--out",
        out_csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_planted_on_top(&ranked(&out_csv), &planted);
    // The pretrained embeddings' heads ran too (at the resolution of a small search), and the
    // search says with which weights their probabilities were averaged in.
    assert!(data
        .join(".loupe/embeddings/efficientnet-lite0-224.emb")
        .exists());
    let search = std::fs::read_dir(data.join(".loupe/issues"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-small-cnn"))
        .expect("the search's folder");
    let how: serde_json::Value =
        serde_json::from_slice(&std::fs::read(search.join("config.json")).unwrap()).unwrap();
    let blend = how["how"]["oof"]["blend_weights"]
        .as_str()
        .unwrap_or_default();
    assert!(blend.ends_with("efficientnet-lite0.safetensors"), "{how}");
    // Each fold trained without flips or resized crops, as asked (pictures whose side matters),
    // and from scratch at the learning rate made for it.
    let folds: Vec<std::path::PathBuf> = std::fs::read_dir(data.join(".loupe/issues/folds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(folds.len(), 3, "{folds:?}");
    for fold in folds {
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fold.join("config.json")).unwrap()).unwrap();
        assert_eq!(run["config"]["flip"], false, "{run}");
        assert_eq!(run["config"]["crop_scale"], 1.0, "{run}");
        assert_eq!(
            run["config"]["lr"],
            loupe::train::config::SCRATCH_LR,
            "{run}"
        );
    }
}

#[test]
fn a_composite_label_is_examined_per_attribute_and_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("faces");
    let truth = common::composite_photos(&root, 30);
    let mut given = truth.clone();
    // A person whose gender is wrong on all seven photos; another's age.
    for p in given.iter_mut().filter(|p| p.id == "p003") {
        p.gender = "female";
    }
    for p in given.iter_mut().filter(|p| p.id == "p011") {
        p.age = "60+";
    }
    // "incorrect" and "not wear" swapped on one photo; a worn mask called not worn on another.
    given[7 * 5 + 5].mask = "not_wear";
    given[7 * 5 + 6].mask = "incorrect";
    given[7 * 20].mask = "not_wear";
    // One photo of a woman labelled male, against her six others.
    given[7 * 8 + 2].gender = "male";
    let csv = common::write_labels(&root, &given);
    let out_csv = dir.path().join("issues.csv");
    let out = loupe(&[
        "issues",
        root.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--label-col",
        "mask,gender,age",
        "--group-col",
        "id",
        "--img-size",
        "64",
        "--device",
        "cpu",
        "--out",
        out_csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows = all_rows(&out_csv);
    assert_eq!(rows.len(), 3 * truth.len(), "every image, every column");
    let flagged: Vec<(String, String, String, String)> = rows
        .iter()
        .filter(|r| &r[6] == "1")
        .map(|r| (r[0].into(), r[1].into(), r[2].into(), r[3].into()))
        .collect();
    // What was planted, as (path, column, given, true value).
    let planted: Vec<(String, String, String, String)> = given
        .iter()
        .zip(&truth)
        .flat_map(|(g, t)| {
            [
                ("mask", g.mask, t.mask),
                ("gender", g.gender, t.gender),
                ("age", g.age, t.age),
            ]
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(c, a, b)| (g.path.clone(), c.to_string(), a.to_string(), b.to_string()))
        })
        .collect();
    assert_eq!(planted.len(), 7 + 7 + 3 + 1);
    // Whole groups and photos against their group are found every one; a single photo's mask
    // when confident learning's per-value threshold lets it (p(wear) of a photo called
    // not_wear can fall just short of the mean p(wear) of worn masks).
    let missed: Vec<&(String, String, String, String)> =
        planted.iter().filter(|p| !flagged.contains(p)).collect();
    assert!(
        missed.len() <= 1 && missed.iter().all(|m| m.1 == "mask"),
        "missed {missed:?}; flagged {flagged:?}\n{stdout}"
    );
    assert!(
        flagged.len() <= planted.len() + 2,
        "{} flagged for {} planted: {flagged:?}",
        flagged.len(),
        planted.len()
    );
    assert!(stdout.contains("(group p003)"), "{stdout}");
    assert!(stdout.contains("(against its group)"), "{stdout}");

    // The probabilities were temperature scaled per column: one temperature each, recorded,
    // and every image's probabilities still sum to one in every column.
    let search = std::path::PathBuf::from(stdout.lines().last().unwrap().trim());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(search.join("config.json")).unwrap()).unwrap();
    let temperatures = config["how"]["temperatures"].as_array().unwrap();
    assert_eq!(temperatures.len(), 3, "{config}");
    assert!(temperatures
        .iter()
        .all(|t| t.as_f64().is_some_and(|t| t.is_finite() && t > 0.0)));
    // With the share of wrong labels the fit allowed for in each column.
    let noise = config["how"]["label_noise"].as_array().unwrap();
    assert_eq!(noise.len(), 3, "{config}");
    assert!(noise
        .iter()
        .all(|e| e.as_f64().is_some_and(|e| (0.0..=0.5).contains(&e))));
    let mut reader = csv::Reader::from_path(search.join("pred_probs.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let probs: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(probs.len(), truth.len());
    for column in ["mask", "gender", "age"] {
        let at: Vec<usize> = (0..header.len())
            .filter(|&i| header[i].starts_with(&format!("{column}=")))
            .collect();
        assert!(at.len() >= 2, "{header:?}");
        for row in &probs {
            let sum: f64 = at.iter().map(|&i| row[i].parse::<f64>().unwrap()).sum();
            assert!(
                (sum - 1.0).abs() < 1e-4,
                "{column} sums to {sum} in {row:?}"
            );
        }
    }
}
