//! A composite label (mask x gender x age, grouped by person) in the window: one attribute set
//! for a selection, Evaluate per column, the Issues queue showing a suspected person once, the
//! Distribution table of photos against their group. Driven through egui_kittest, checked
//! against the journal on disk.

mod common;

use common::ui::{idle, settle, shown};
use common::Photo;

use std::path::Path;

use egui::accesskit::Role;
use egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use loupe::dataset::{self, CsvSource, LabelStore, Progress, Source};
use loupe::quality::confident::{Method, RankBy};
use loupe::quality::issues;
use loupe::train::{predictions, record};
use loupe::ui::{LoupeApp, Tab};

fn source(root: &Path) -> Source {
    Source::Csv(CsvSource {
        csv: root.join("labels.csv"),
        path_col: "path".into(),
        label_cols: vec!["mask".into(), "gender".into(), "age".into()],
        group_col: Some("id".into()),
    })
}

/// `people` people's photos with `plant` applied to their labels, and the app on them.
fn opened(
    root: &Path,
    people: usize,
    plant: impl Fn(&mut [Photo]),
) -> (Vec<Photo>, Harness<'static, LoupeApp>) {
    let mut photos = common::composite_photos(root, people);
    plant(&mut photos);
    common::write_labels(root, &photos);
    let mut h = common::ui::open_source(source(root), root, [1300.0, 850.0]);
    settle(&mut h, idle);
    (photos, h)
}

/// The labels as the journal on disk has them, read by a fresh store.
fn on_disk(root: &Path, path: &str) -> String {
    let ds = dataset::open(&source(root), &Progress::default()).unwrap();
    LabelStore::open(&ds)
        .unwrap()
        .label(path)
        .unwrap()
        .to_string()
}

fn label(p: &Photo) -> String {
    format!("{}/{}/{}", p.mask, p.gender, p.age)
}

#[test]
fn one_attribute_of_a_selection_is_set_by_key_in_one_undo_step() {
    let dir = tempfile::tempdir().unwrap();
    let (photos, mut h) = opened(dir.path(), 4, |_| {});
    let mine: Vec<&Photo> = photos.iter().filter(|p| p.id == "p001").collect();
    assert_eq!(mine[0].gender, "male");

    h.state_mut().tab = Tab::Browse;
    h.state_mut().browse.search = "p001_".into();
    h.step();
    h.get_by_label_contains(&format!("{} [", mine[0].path))
        .click();
    h.step();
    h.key_press_modifiers(Modifiers::COMMAND, Key::A);
    // C cycles what the number keys set: mask, then gender.
    h.key_press(Key::C);
    h.key_press(Key::C);
    h.step();
    assert_eq!(h.state().browse.key_column, Some(1));
    h.get_by_label_contains("1 female · 2 male");
    h.key_press(Key::Num1);
    settle(&mut h, idle);
    for p in &mine {
        assert_eq!(
            on_disk(dir.path(), &p.path),
            format!("{}/female/{}", p.mask, p.age),
            "only the gender of {} changes",
            p.path
        );
    }
    // The other people are untouched, and one undo brings all seven back.
    let other = photos.iter().find(|p| p.id == "p002").unwrap();
    assert_eq!(on_disk(dir.path(), &other.path), label(other));
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut h, idle);
    for p in &mine {
        assert_eq!(on_disk(dir.path(), &p.path), label(p));
    }

    // The picker sets one attribute too.
    h.get_by_label_contains(&format!("{} [", mine[5].path))
        .click();
    h.step();
    h.key_press(Key::L);
    shown(&mut h, "or set one attribute, keeping the others:");
    // A grid measures itself unseen on its first frame.
    h.step();
    assert_eq!(mine[5].age, "30-59");
    h.get_by_role_and_label(Role::Button, "<30").click();
    settle(&mut h, idle);
    assert_eq!(
        on_disk(dir.path(), &mine[5].path),
        format!("{}/male/<30", mine[5].mask)
    );
}

#[test]
fn evaluate_shows_each_column_and_relabels_one_attribute_from_a_cell() {
    let dir = tempfile::tempdir().unwrap();
    let mut photos = common::composite_photos(dir.path(), 10);
    photos.truncate(70);
    let csv = common::write_labels(dir.path(), &photos);
    let out = common::loupe(&[
        "train",
        dir.path().to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--label-col",
        "mask,gender,age",
        "--group-col",
        "id",
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
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::path::PathBuf::from(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    );
    let mut h = common::ui::open_source(source(dir.path()), dir.path(), [1300.0, 850.0]);
    settle(&mut h, idle);

    // The Train tab offers the heads for this dataset, and a column's F1 as the monitor.
    h.state_mut().tab = Tab::Train;
    h.step();
    h.get_by_label("heads");

    h.state_mut().tab = Tab::Evaluate;
    settle(&mut h, |a| {
        a.evaluate.run.is_some() && !a.evaluate.loading()
    });
    h.get_by_label("joint classes");
    h.get_by_label("gender").click();
    // The matrix and table are laid out anew for the column: let them settle before clicking.
    h.step();
    h.step();
    assert_eq!(h.state().evaluate.column, Some(1));
    let p = predictions::read_labelled(
        &run.join(record::VAL_PREDICTIONS),
        &["mask".into(), "gender".into(), "age".into()],
    )
    .unwrap()
    .column(1);
    assert_eq!(p.classes, ["female", "male"]);
    let females: Vec<String> = p
        .rows
        .iter()
        .filter(|r| r.label == 0 && r.predicted == 0)
        .map(|r| r.path.clone())
        .collect();
    // A 2x2 matrix: its cells are named by the column's values.
    h.get_by_role_and_label(Role::Button, &format!("female → female: {}", females.len()))
        .click();
    h.step();
    assert_eq!(h.state().evaluate.gallery_items().len(), females.len());
    assert!(!females.is_empty(), "a trained run gets some gender right");
    h.get_by_label_contains("then 1-9 set gender");
    // 2 in the gender view sets the gender, nothing else.
    let first = &females[0];
    h.get_by_label_contains(&format!("{first} [")).click();
    h.step();
    h.key_press(Key::Num2);
    settle(&mut h, idle);
    let before = photos.iter().find(|x| &x.path == first).unwrap();
    assert_eq!(
        on_disk(dir.path(), first),
        format!("{}/male/{}", before.mask, before.age)
    );
}

#[test]
fn the_queue_shows_a_suspected_person_once_and_one_key_fixes_all_photos() {
    let dir = tempfile::tempdir().unwrap();
    let (photos, mut h) = opened(dir.path(), 12, |p| {
        // Person p003 (male) labelled female on all seven photos.
        for x in p.iter_mut().filter(|x| x.id == "p003") {
            x.gender = "female";
        }
    });
    // A model that knows the true genders (from the pixels), 90% sure, per column.
    let ws = h.state().workspace().unwrap();
    let ds = ws.dataset.clone();
    let layout = loupe::dataset::Layout::of(&ds);
    let mut probs = vec![Vec::new(); 3];
    for s in &ds.samples {
        let id = s.group.clone().unwrap();
        let n: usize = id[1..].parse().unwrap();
        for (c, col) in layout.columns.iter().enumerate() {
            let truth = if c == 1 {
                if n.is_multiple_of(2) {
                    "female"
                } else {
                    "male"
                }
                .to_string()
            } else {
                s.parts[c].clone()
            };
            let k = col.values.len();
            probs[c].extend(col.values.iter().map(|v| {
                if *v == truth {
                    0.9
                } else {
                    0.1 / (k - 1) as f32
                }
            }));
        }
    }
    let samples: Vec<usize> = (0..ds.samples.len()).collect();
    let findings = issues::find(
        &ds,
        &samples,
        &probs,
        Method::PruneByNoiseRate,
        RankBy::SelfConfidence,
    );
    assert!(
        findings
            .issues
            .iter()
            .all(|i| i.column == "gender" && i.group.as_deref() == Some("p003")),
        "{:?}",
        findings.issues
    );
    assert_eq!(findings.issues.len(), 7);
    h.state_mut().review_findings(&findings);
    h.step();
    h.get_by_label_contains("group p003: 7 photos");
    h.get_by_label_contains("gender: given: female");
    h.get_by_label_contains("suggested: male");
    h.get_by_label_contains("suggested stop: 1 flagged, 1 left");
    h.key_press(Key::A);
    settle(&mut h, idle);
    for p in photos.iter().filter(|x| x.id == "p003") {
        assert_eq!(
            on_disk(dir.path(), &p.path),
            format!("{}/male/{}", p.mask, p.age)
        );
    }
    // The flagged group is decided; the ranking goes on past it.
    h.get_by_label_contains("suggested stop: 1 flagged, 0 left");
    h.get_by_label_contains("past the suggested stop");
    // One step undoes all seven.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut h, idle);
    for p in photos.iter().filter(|x| x.id == "p003") {
        assert_eq!(on_disk(dir.path(), &p.path), label(p));
    }
    h.get_by_label_contains("suggested stop: 1 flagged, 1 left");
}

#[test]
fn distribution_lists_photos_against_their_group_and_sets_one_to_the_groups_value() {
    let dir = tempfile::tempdir().unwrap();
    let (photos, mut h) = opened(dir.path(), 12, |p| {
        // Photo 2 of p004 (female, <30) labelled male.
        p[7 * 4 + 2].gender = "male";
    });
    let odd = &photos[7 * 4 + 2];
    h.state_mut().tab = Tab::Distribution;
    h.step();
    h.get_by_label_contains("1 image(s) disagree with their group's majority");
    h.get_by_label("gender: male");
    h.get_by_label("group p004 says female (6 of 7)");
    h.get_by_label("varies within groups");
    let button = h.get_by_label("set to female");
    button.scroll_to_me();
    // Scrolling there is animated: a few frames to get there.
    h.run_steps(10);
    let r = h.get_by_label("set to female").rect();
    assert!(r.max.y < 850.0, "scrolled into view: {r:?}");
    h.get_by_label("set to female").click();
    settle(&mut h, idle);
    assert_eq!(
        on_disk(dir.path(), &odd.path),
        format!("{}/female/{}", odd.mask, odd.age)
    );
    h.get_by_label_contains("0 image(s) disagree with their group's majority");
}
