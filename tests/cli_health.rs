//! `loupe health` end to end on real photos (the foolbox ImageNet photos that
//! `scripts/bootstrap.sh test` fetches): problems planted into copies of them are found, the
//! untouched photos are not flagged, thresholds move, and a greyscale dataset is not called grey.

mod common;

use common::loupe;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use image::{imageops, DynamicImage, GenericImageView};

fn photos() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".testdata/imagenet20");
    assert!(
        dir.join(".complete").exists(),
        "run scripts/bootstrap.sh test first (fetches the photos)"
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files
}

fn save(img: &DynamicImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.to_rgb8().save(path).unwrap();
}

/// The 20 photos in two classes, plus planted copies: returns (relative path, planted check).
fn planted(root: &Path) -> Vec<(String, &'static str)> {
    let files = photos();
    for (i, f) in files.iter().enumerate() {
        let class = ["a", "b"][i % 2];
        std::fs::create_dir_all(root.join(class)).unwrap();
        std::fs::copy(f, root.join(class).join(f.file_name().unwrap())).unwrap();
    }
    let img = |i: usize| image::open(&files[i]).unwrap();
    let map = |i: usize, f: &dyn Fn([u8; 3]) -> [u8; 3]| {
        let mut rgb = img(i).to_rgb8();
        rgb.pixels_mut().for_each(|p| p.0 = f(p.0));
        DynamicImage::ImageRgb8(rgb)
    };
    let (w, h) = img(5).dimensions();
    let plants: Vec<(&str, &str, DynamicImage)> = vec![
        ("a/dark.jpg", "dark", map(0, &|p| p.map(|c| c / 6))),
        ("a/washed.jpg", "light", map(1, &|p| p.map(|c| 200 + c / 5))),
        (
            "b/blurred.jpg",
            "blurry",
            DynamicImage::ImageRgba8(imageops::blur(&img(2), 4.0)),
        ),
        (
            "b/grey.jpg",
            "grayscale",
            DynamicImage::ImageLuma8(img(3).to_luma8()),
        ),
        (
            "a/tiny.jpg",
            "odd-size",
            img(4).resize_exact(w / 5, h / 5, imageops::FilterType::Triangle),
        ),
        (
            "b/wide.jpg",
            "odd-aspect",
            img(5).resize_exact(w * 3, h / 2, imageops::FilterType::Triangle),
        ),
    ];
    let mut out = Vec::new();
    for (rel, check, pic) in plants {
        save(&pic, &root.join(rel));
        out.push((rel.to_string(), check));
    }
    // The same file under the other class: a duplicate whose labels disagree.
    let src = files[6].file_name().unwrap().to_str().unwrap().to_string();
    std::fs::copy(&files[6], root.join("b/copy.jpg")).unwrap();
    out.push(("b/copy.jpg".into(), "label-conflict"));
    out.push((format!("a/{src}"), "label-conflict"));
    std::fs::write(root.join("a/broken.jpg"), b"\xff\xd8\xff\xe0 not really").unwrap();
    out
}

/// `check -> paths` from `--out`.
fn findings(csv_path: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut r = csv::Reader::from_path(csv_path).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["path", "check", "score", "group"]
    );
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        out.entry(rec[1].to_string())
            .or_default()
            .insert(rec[0].to_string());
    }
    out
}

#[test]
fn planted_problems_in_real_photos_are_found_and_the_photos_themselves_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let plants = planted(&root);
    let csv_path = dir.path().join("health.csv");
    let out = loupe(&[
        "health",
        root.to_str().unwrap(),
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = findings(&csv_path);
    for (path, check) in &plants {
        assert!(
            found.get(*check).is_some_and(|s| s.contains(path)),
            "{path} ({check}) not found; found {found:?}"
        );
    }
    assert!(found["unreadable"].contains("a/broken.jpg"));
    // Nothing else: the untouched photos pass every check (the one that has a copy is only a
    // duplicate), and each planted picture is flagged for what was done to it.
    let planted_paths: BTreeSet<&str> = plants.iter().map(|(p, _)| p.as_str()).collect();
    for (check, paths) in &found {
        for p in paths {
            assert!(
                planted_paths.contains(p.as_str()) || p == "a/broken.jpg",
                "untouched photo {p} flagged {check}"
            );
        }
    }
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("27 images checked"), "{summary}");

    // (The broken file is not an image the scan keeps: 20 photos, 6 planted, 1 copy.)
    // The statistics are cached beside the dataset; thresholds move what is flagged.
    assert!(root.join(".loupe/health/pixels.jsonl").exists());
    let out = loupe(&[
        "health",
        root.to_str().unwrap(),
        "--threshold",
        "blurry=2",
        "--threshold",
        "dark=0.1",
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let moved = findings(&csv_path);
    assert!(!moved.contains_key("blurry"));
    assert!(moved["dark"].len() > found["dark"].len());

    let out = loupe(&["health", root.to_str().unwrap(), "--threshold", "fuzzy=1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a check"));
}

#[test]
fn a_greyscale_dataset_is_not_flagged_greyscale() {
    let dir = tempfile::tempdir().unwrap();
    for (i, f) in photos().iter().take(8).enumerate() {
        let grey = DynamicImage::ImageLuma8(image::open(f).unwrap().to_luma8());
        save(
            &grey,
            &dir.path().join(["x", "y"][i % 2]).join(format!("{i}.png")),
        );
    }
    let out = loupe(&["health", dir.path().to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(report["images"], 8);
    assert_eq!(count("grayscale"), 0);
    assert_eq!(count("unreadable"), 0);
}
