//! Opening real, generated datasets: every file becomes a sample or a reason.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use loupe::dataset::{self, stats, CsvSource, OpenError, Progress, Source};

fn open_folder(root: &Path) -> Result<dataset::Dataset, OpenError> {
    dataset::open(
        &Source::ImageFolder {
            root: root.to_path_buf(),
        },
        &Progress::default(),
    )
}

#[test]
fn bad_collection_every_file_is_a_sample_or_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let expect = common::bad_collection(dir.path());
    let ds = open_folder(dir.path()).unwrap();

    let samples: BTreeMap<PathBuf, &str> = ds
        .samples
        .iter()
        .map(|s| (s.path.clone(), s.label.as_str()))
        .collect();
    let want: BTreeMap<PathBuf, &str> = expect
        .samples
        .iter()
        .map(|(p, l)| (PathBuf::from(p), *l))
        .collect();
    assert_eq!(samples, want);

    let rejected: BTreeMap<PathBuf, &str> = ds
        .rejected
        .iter()
        .map(|r| (r.path.clone(), r.reason.key()))
        .collect();
    let want: BTreeMap<PathBuf, &str> = expect
        .rejected
        .iter()
        .map(|(p, k)| (PathBuf::from(p), *k))
        .collect();
    assert_eq!(rejected, want);

    let mut ignored = ds.ignored.clone();
    ignored.sort();
    let mut want: Vec<PathBuf> = expect.ignored.iter().map(PathBuf::from).collect();
    want.sort();
    assert_eq!(ignored, want);
    assert_eq!(ds.classes, expect.classes);
}

#[test]
fn header_facts_are_right_and_exif_orientation_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    common::bad_collection(dir.path());
    let ds = open_folder(dir.path()).unwrap();
    let info = |p: &str| {
        ds.samples
            .iter()
            .find(|s| s.path == Path::new(p))
            .unwrap()
            .info
    };

    // Stored 40x20, EXIF orientation 6: displayed 20 wide, 40 high.
    let r = info("dogs/rotated.jpg");
    assert_eq!((r.width, r.height, r.orientation), (20, 40, 6));
    let pixels = dataset::probe::decode(&dir.path().join("dogs/rotated.jpg")).unwrap();
    assert_eq!((pixels.width(), pixels.height()), (20, 40));

    assert_eq!(
        (info("dogs/strip.png").width, info("dogs/strip.png").height),
        (1, 4000)
    );
    assert_eq!(info("dogs/sixteen_bit.png").color, image::ColorType::Rgb16);
    assert_eq!(info("dogs/rgba.png").color, image::ColorType::Rgba8);
    assert_eq!(
        info("dogs/actually_jpeg.png").format,
        image::ImageFormat::Jpeg
    );
    assert_eq!(info("dogs/lossless.webp").format, image::ImageFormat::WebP);
    assert_eq!(info("dogs/palette.gif").format, image::ImageFormat::Gif);
    assert_eq!(
        (info("dogs/one.png").width, info("dogs/one.png").height),
        (1, 1)
    );

    // CMYK JPEGs decode to RGB pixels.
    let cmyk = dataset::probe::decode(&dir.path().join("cats/cmyk.jpg")).unwrap();
    assert_eq!((cmyk.width(), cmyk.height()), (32, 16));

    // The bomb is refused from its header with its claimed size, and decoding refuses it too.
    let bomb = ds
        .rejected
        .iter()
        .find(|r| r.path == Path::new("dogs/bomb.png"))
        .unwrap();
    assert_eq!(
        bomb.reason,
        dataset::Reason::TooLarge {
            width: 100_000,
            height: 100_000
        }
    );
    assert!(dataset::probe::decode(&dir.path().join("dogs/bomb.png")).is_err());
}

#[test]
fn every_reason_has_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    common::bad_collection(dir.path());
    let ds = open_folder(dir.path()).unwrap();
    for r in &ds.rejected {
        let text = r.reason.to_string();
        assert!(text.len() > 10, "{:?} -> {text}", r.reason);
    }
}

#[test]
fn missing_and_empty_folders_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_folder(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, OpenError::NotFound(_)), "{err}");
    fs::create_dir_all(dir.path().join("empty/cls")).unwrap();
    fs::write(dir.path().join("empty/cls/notes.txt"), "x").unwrap();
    let err = open_folder(&dir.path().join("empty")).unwrap_err();
    assert!(matches!(err, OpenError::NoImages(_)), "{err}");
    assert!(err.to_string().contains("no images found"));
}

#[test]
fn hidden_tool_folders_are_not_scanned() {
    let dir = tempfile::tempdir().unwrap();
    common::write_png(&dir.path().join("a/x.png"), 4, 4, 1);
    common::write_png(&dir.path().join("a/.thumbs/x.png"), 4, 4, 1);
    common::write_png(&dir.path().join(".loupe/cache/x.png"), 4, 4, 1);
    let ds = open_folder(dir.path()).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(ds.classes, vec!["a"]);
}

fn csv_dataset(dir: &Path) -> CsvSource {
    for (i, name) in ["p1/a.jpg", "p1/b.jpg", "p2/c.jpg", "p3/d.jpg", "p3/e.jpg"]
        .iter()
        .enumerate()
    {
        common::write_jpeg(&dir.join("images").join(name), 16, 12, i as u8);
    }
    fs::write(
        dir.join("train.csv"),
        "id,path,mask,gender,age\n\
         p1,images/p1/a.jpg,wear,female,60+\n\
         p1,./images/p1/b.jpg,incorrect,female,60+\n\
         p2,images/p2/c.jpg,wear,male,<30\n\
         p3,images/p3/d.jpg,not wear,male,30-60\n\
         p3,images/p3/e.jpg,,male,30-60\n\
         p4,images/p4/missing.jpg,wear,male,<30\n\
         p2,images/p2/c.jpg,wear,male,<30\n",
    )
    .unwrap();
    CsvSource {
        csv: dir.join("train.csv"),
        path_col: "path".into(),
        label_cols: vec!["mask".into(), "gender".into(), "age".into()],
        group_col: Some("id".into()),
    }
}

#[test]
fn csv_with_composite_labels_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let src = csv_dataset(dir.path());
    let ds = dataset::open(&Source::Csv(src), &Progress::default()).unwrap();
    let got: Vec<(String, String, Option<String>)> = ds
        .samples
        .iter()
        .map(|s| {
            (
                s.path.to_string_lossy().into_owned(),
                s.label.clone(),
                s.group.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "images/p1/a.jpg".into(),
                "wear/female/60+".into(),
                Some("p1".into())
            ),
            (
                "images/p1/b.jpg".into(),
                "incorrect/female/60+".into(),
                Some("p1".into())
            ),
            (
                "images/p2/c.jpg".into(),
                "wear/male/<30".into(),
                Some("p2".into())
            ),
            (
                "images/p3/d.jpg".into(),
                "not wear/male/30-60".into(),
                Some("p3".into())
            ),
        ]
    );
    let reasons: Vec<(String, &str)> = ds
        .rejected
        .iter()
        .map(|r| (r.path.to_string_lossy().into_owned(), r.reason.key()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("images/p3/e.jpg".into(), "no-label"),
            ("images/p4/missing.jpg".into(), "missing"),
            ("train.csv:8".into(), "corrupt"),
        ]
    );
    let s = stats::compute(&ds);
    assert_eq!(s.columns.len(), 3);
    let mask = &s.columns[0];
    assert_eq!(mask.column, "mask");
    let counts: Vec<(&str, usize)> = mask
        .counts
        .iter()
        .map(|c| (c.name.as_str(), c.count))
        .collect();
    assert_eq!(counts, vec![("wear", 2), ("incorrect", 1), ("not wear", 1)]);
}

#[test]
fn csv_missing_column_names_the_columns_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = csv_dataset(dir.path());
    src.label_cols = vec!["class".into()];
    let err = dataset::open(&Source::Csv(src), &Progress::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column named 'class'") && err.contains("id, path, mask, gender, age"),
        "{err}"
    );
}

#[test]
fn stats_find_duplicates_and_label_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    common::write_png(&dir.path().join("a/1.png"), 8, 8, 1);
    common::write_png(&dir.path().join("a/2.png"), 8, 8, 2);
    fs::copy(dir.path().join("a/1.png"), dir.path().join("a/1 copy.png")).unwrap();
    fs::create_dir_all(dir.path().join("b")).unwrap();
    fs::copy(dir.path().join("a/2.png"), dir.path().join("b/2.png")).unwrap();
    common::write_jpeg(&dir.path().join("b/3.jpg"), 30, 10, 3);
    let ds = open_folder(dir.path()).unwrap();
    let hashes = stats::hash_samples(&ds);
    // Hashes kept by the scan (files it read whole) are the hashes of the files.
    let hashed = dataset::open_with(
        &Source::ImageFolder {
            root: dir.path().to_path_buf(),
        },
        &Default::default(),
        dataset::OpenOptions { hash: true },
    )
    .unwrap();
    assert!(hashed.samples.iter().all(|s| s.info.content_hash.is_some()));
    assert!(ds.samples.iter().all(|s| s.info.content_hash.is_none()));
    assert_eq!(stats::hash_samples(&hashed), hashes);
    let s = stats::compute_with_hashes(&ds, Some(&hashes));
    let mut dups = s.duplicates.clone();
    dups.sort();
    assert_eq!(
        dups,
        vec![vec!["a/1 copy.png", "a/1.png"], vec!["a/2.png", "b/2.png"]]
    );
    assert_eq!(s.label_conflicts.len(), 1);
    assert_eq!(s.label_conflicts[0].paths, vec!["a/2.png", "b/2.png"]);
    assert_eq!(s.label_conflicts[0].labels, vec!["a", "b"]);
    // Balance and sizes.
    assert_eq!(
        s.classes
            .iter()
            .map(|c| (c.name.as_str(), c.count))
            .collect::<Vec<_>>(),
        vec![("a", 3), ("b", 2)]
    );
    assert_eq!(s.imbalance_ratio, Some(1.5));
    assert_eq!(s.sizes.width.max, 30.0);
    assert_eq!(s.sizes.aspect.max, 3.0);
    assert_eq!(
        s.formats
            .iter()
            .map(|c| (c.name.as_str(), c.count))
            .collect::<Vec<_>>(),
        vec![("PNG", 4), ("JPEG", 1)]
    );
}
