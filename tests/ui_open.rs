//! The window opens a dataset without blocking: driven with egui_kittest on the real app state.

mod common;

use common::ui::settle;

use std::io::Write;

use egui_kittest::kittest::Queryable;
use loupe::dataset::{CsvSource, Source};

#[cfg(unix)]
#[test]
fn frames_keep_coming_while_the_dataset_is_still_being_read() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        common::write_png(&dir.path().join(format!("img/{i}.png")), 8, 8, i);
    }
    // The labels arrive through a pipe: reading them blocks the loader until we write.
    let fifo = dir.path().join("labels.csv");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let source = Source::Csv(CsvSource {
        csv: fifo.clone(),
        path_col: "path".into(),
        label_cols: vec!["label".into()],
        group_col: None,
    });
    let mut h = common::ui::open_source(source, dir.path(), [1000.0, 700.0]);
    for _ in 0..5 {
        h.step();
    }
    assert!(h.state().is_loading());
    h.get_by_label_contains("Reading");

    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all("path,label\nimg/0.png,first\nimg/1.png,second\nimg/2.png,second\n".as_bytes())
        .unwrap();
    settle(&mut h, |a| !a.is_loading());
    let ws = h.state().workspace().expect("loaded");
    assert_eq!(ws.stats.images, 3);
    h.get_by_label("first");
    h.get_by_label("second");
    h.get_by_label("3 images");
}

#[test]
fn the_sample_data_shows_its_classes_and_problems() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    let cache = tempfile::tempdir().unwrap();
    let mut h = common::ui::open_in(&root, cache.path(), [1000.0, 700.0]);
    settle(&mut h, |a| !a.is_loading());
    h.get_by_label("1906 images");
    for class in ["people_body", "activities", "flags"] {
        h.get_by_label(class);
    }
    h.get_by_label_contains("386  20.3%");
    h.get_by_label("Distribution").click();
    h.run_steps(3);
    h.get_by_label_contains("Exact duplicates: 11 groups");
}

#[test]
fn a_missing_folder_shows_a_message_instead_of_crashing() {
    let mut h = common::ui::open(std::path::Path::new("/no/such/dataset"), [1000.0, 700.0]);
    // Looking at the path happens off the UI thread: wait for its answer, not for luck.
    settle(&mut h, |a| !a.is_loading());
    h.get_by_label("This dataset could not be opened");
    h.get_by_label("/no/such/dataset does not exist");
}

#[test]
fn class_names_in_korean_chinese_japanese_and_accents_have_glyphs() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["고양이", "강아지", "猫", "ねこ", "chats_é"];
    for (i, n) in names.iter().enumerate() {
        common::write_png(&dir.path().join(n).join("x.png"), 4, 4, i as u8);
    }
    let mut h = common::ui::open(dir.path(), [1000.0, 700.0]);
    settle(&mut h, |a| !a.is_loading());
    for n in names {
        h.get_by_label(n);
        // Every character has a glyph in some installed font: no empty boxes.
        let font = egui::FontId::proportional(14.0);
        assert!(
            h.ctx.fonts_mut(|f| f.has_glyphs(&font, n)),
            "no glyphs for {n}"
        );
    }
}
