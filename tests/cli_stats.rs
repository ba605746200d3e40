//! `loupe stats` end to end: the real binary on real generated files.

mod common;

use common::loupe;

#[test]
fn stats_json_on_the_bad_collection() {
    let dir = tempfile::tempdir().unwrap();
    let expect = common::bad_collection(dir.path());
    let out = loupe(&["stats", dir.path().to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"], expect.samples.len());
    assert_eq!(v["ignored"], expect.ignored.len());
    let classes: Vec<(String, u64)> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        vec![
            ("dogs".into(), 8),
            ("cats".into(), 4),
            ("고양이".into(), 1),
            ("empty_class".into(), 0)
        ]
    );
    let mut unreadable: Vec<(String, String)> = v["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["path"].as_str().unwrap().to_string(),
                u["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    unreadable.sort();
    let mut want: Vec<(String, String)> = expect
        .rejected
        .iter()
        .map(|(p, k)| (p.to_string(), k.to_string()))
        .collect();
    want.sort();
    assert_eq!(unreadable, want);
    assert!(v["unreadable"][0]["reason"].as_str().unwrap().len() > 10);
    assert_eq!(v["duplicates"].as_array().unwrap().len(), 0);
    assert_eq!(v["label_conflicts"].as_array().unwrap().len(), 0);
    assert_eq!(v["sizes"]["height"]["max"], 4000.0);
    assert_eq!(v["rarest"][0]["name"], "empty_class");
}

#[test]
fn stats_readable_summary_on_a_csv_dataset() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (p, _)) in [("img/a.jpg", 0), ("img/b.jpg", 1), ("img/c.jpg", 2)]
        .iter()
        .enumerate()
    {
        common::write_jpeg(&dir.path().join(p), 10 + i as u32, 10, i as u8);
    }
    std::fs::write(
        dir.path().join("labels.csv"),
        "file,mask,gender\nimg/a.jpg,wear,female\nimg/b.jpg,wear,male\nimg/c.jpg,off,male\n",
    )
    .unwrap();
    let root = dir.path().to_str().unwrap();
    let out = loupe(&[
        "stats",
        root,
        "--csv",
        "labels.csv",
        "--path-col",
        "file",
        "--label-col",
        "mask,gender",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("3 images in 3 classes"), "{text}");
    assert!(
        text.contains("wear/female") && text.contains("off/male"),
        "{text}"
    );
    assert!(
        text.contains("Column mask:") && text.contains("Column gender:"),
        "{text}"
    );
}

#[test]
fn stats_on_a_missing_path_fails_with_one_sentence() {
    let out = loupe(&["stats", "/definitely/not/here"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim(), "error: /definitely/not/here does not exist");
}

#[test]
fn stats_on_a_folder_without_images_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("cls")).unwrap();
    let out = loupe(&["stats", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: no images found in") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn device_probe_runs_libtorch() {
    let out = loupe(&["device"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // 64x64 ones matrix squared: every entry 64, sum 64^3.
    assert!(
        text.contains("smoke test") && text.contains("(262144)"),
        "{text}"
    );
}
