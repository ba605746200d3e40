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

fn ranked(csv_path: &Path) -> Vec<(String, String, String, usize)> {
    let mut r = csv::Reader::from_path(csv_path).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["path", "given", "suggested", "self_confidence", "rank"]
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[0].to_string(),
                rec[1].to_string(),
                rec[2].to_string(),
                rec[4].parse().unwrap(),
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
    assert!(stderr.contains("cross-validation folds 5/5"), "{stderr}");
    // The second run embeds nothing: the cache answers (same ranking).
    assert!(data
        .join(".loupe/issues/embeddings/efficientnet-lite0-96.emb")
        .exists());
    let out = loupe(&args);
    assert!(out.status.success());
    assert_eq!(ranked(&out_csv), first);
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
}
