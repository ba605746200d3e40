//! Browse, relabel, undo, filter: egui_kittest driving the real app state, checked against the
//! app's state and against the journal on disk.

mod common;

use common::ui::settle;

use std::path::Path;

use egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use loupe::dataset::{self, LabelStore, Progress, Source};
use loupe::ui::LoupeApp;

fn loaded(app: &LoupeApp) -> bool {
    !app.is_loading() && app.workspace().is_some()
}

fn written(app: &LoupeApp) -> bool {
    app.pending_writes() == 0
}

/// The app on a fresh copy of [`dataset`], loaded.
fn opened() -> (tempfile::TempDir, Harness<'static, LoupeApp>) {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let mut h = common::ui::open(dir.path(), [1200.0, 800.0]);
    settle(&mut h, loaded);
    (dir, h)
}

/// cats: 3, dogs: 2, 고양이: 1 (classes in key order: 1 cats, 2 dogs, 3 고양이).
fn dataset(root: &Path) {
    for i in 0..3 {
        common::write_png(&root.join(format!("cats/{i}.png")), 8, 8, i);
    }
    for i in 0..2 {
        common::write_png(&root.join(format!("dogs/{i}.png")), 8, 8, 10 + i);
    }
    common::write_png(&root.join("고양이/0.png"), 8, 8, 20);
}

fn label_of(app: &LoupeApp, path: &str) -> String {
    let ws = app.workspace().unwrap();
    ws.labels[ws.index_of(path).unwrap()].clone()
}

/// The label as the journal on disk has it, read by a fresh store.
fn label_on_disk(root: &Path, path: &str) -> String {
    let ds = dataset::open(
        &Source::ImageFolder {
            root: root.to_path_buf(),
        },
        &Progress::default(),
    )
    .unwrap();
    LabelStore::open(&ds)
        .unwrap()
        .label(path)
        .unwrap()
        .to_string()
}

/// Clicks the grid tile of `path` (tiles are labelled "path [label]").
fn click_tile(h: &Harness<'_, LoupeApp>, path: &str, modifiers: Modifiers) {
    let label = format!("{path} [");
    h.get_by_label_contains(&label).click_modifiers(modifiers);
}

#[test]
fn select_relabel_by_key_undo_redo() {
    let (dir, mut h) = opened();

    click_tile(&h, "cats/0.png", Modifiers::NONE);
    h.step();
    h.key_press(Key::Num2);
    settle(&mut h, written);
    assert_eq!(label_of(h.state(), "cats/0.png"), "dogs");
    assert_eq!(label_on_disk(dir.path(), "cats/0.png"), "dogs");
    h.get_by_label_contains("1 edited · 0 excluded");

    // A Korean class by its number key.
    click_tile(&h, "cats/1.png", Modifiers::NONE);
    h.step();
    h.key_press(Key::Num3);
    settle(&mut h, written);
    assert_eq!(label_of(h.state(), "cats/1.png"), "고양이");

    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut h, written);
    assert_eq!(label_of(h.state(), "cats/1.png"), "cats");
    assert_eq!(label_on_disk(dir.path(), "cats/1.png"), "cats");
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    settle(&mut h, written);
    assert_eq!(label_of(h.state(), "cats/1.png"), "고양이");
}

#[test]
fn shift_and_ctrl_click_select_and_delete_excludes_as_one_step() {
    let (_dir, mut h) = opened();

    click_tile(&h, "cats/0.png", Modifiers::NONE);
    h.step();
    click_tile(&h, "cats/2.png", Modifiers::SHIFT);
    h.step();
    assert_eq!(h.state().browse.selected.len(), 3);
    click_tile(&h, "cats/1.png", Modifiers::COMMAND);
    h.step();
    assert_eq!(
        h.state().browse.selected.len(),
        2,
        "ctrl-click toggles one out"
    );

    h.key_press(Key::Delete);
    settle(&mut h, written);
    let ws = h.state().workspace().unwrap();
    let excluded: Vec<String> = (0..ws.flags.len())
        .filter(|&i| ws.flags[i].excluded)
        .map(|i| ws.path(i))
        .collect();
    assert_eq!(excluded, vec!["cats/0.png", "cats/2.png"]);
    assert_eq!(ws.stats.images, 4);
    assert_eq!(ws.history.steps.len(), 1, "a batch is one step");

    // One undo brings both back.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut h, written);
    assert!(h
        .state()
        .workspace()
        .unwrap()
        .flags
        .iter()
        .all(|f| !f.excluded));

    // Ctrl+A selects everything shown.
    h.key_press_modifiers(Modifiers::COMMAND, Key::A);
    h.step();
    assert_eq!(h.state().browse.selected.len(), 6);
}

#[test]
fn shortcuts_do_not_fire_while_typing_in_search() {
    let (_dir, mut h) = opened();
    click_tile(&h, "dogs/0.png", Modifiers::NONE);
    h.step();
    let search = h.get_by_role(egui::accesskit::Role::TextInput);
    search.focus();
    search.type_text("1");
    h.step();
    h.key_press(Key::Num1);
    h.step();
    settle(&mut h, written);
    assert_eq!(
        label_of(h.state(), "dogs/0.png"),
        "dogs",
        "typing '1' in search must not relabel"
    );
    // The search filters the grid: cats/1.png and dogs/1.png contain "1".
    h.get_by_label_contains("2 shown");
    assert!(h.query_by_label_contains("cats/0.png [").is_none());
}

#[test]
fn clicking_a_class_and_a_bar_filters_browse() {
    let (_dir, mut h) = opened();

    h.get_by_label("dogs").click();
    settle(&mut h, |_| true);
    h.get_by_label_contains("2 shown");
    assert!(h.query_by_label_contains("cats/0.png [").is_none());
    h.get_by_label("dogs").click();
    settle(&mut h, |_| true);
    h.get_by_label_contains("6 shown");

    // Distribution: each bar is a button; the largest class (cats) comes first.
    h.get_by_label("Distribution").click();
    settle(&mut h, |_| true);
    let cats = h.get_by_label("cats: 3 images (50.0%)").rect();
    let dogs = h.get_by_label("dogs: 2 images (33.3%)").rect();
    assert!(cats.top() < dogs.top(), "largest first");
    h.get_by_label("cats: 3 images (50.0%)").click();
    settle(&mut h, |_| true);
    h.get_by_label_contains("class: cats");
    h.get_by_label_contains("3 shown");
}

#[test]
fn large_view_opens_and_escape_returns() {
    let (_dir, mut h) = opened();
    click_tile(&h, "dogs/1.png", Modifiers::NONE);
    h.step();
    h.key_press(Key::Enter);
    settle(&mut h, |_| true);
    h.get_by_label("⬅ Back (Esc)");
    h.get_by_label_contains("dogs/1.png   ·   8x8 PNG");
    h.key_press(Key::ArrowRight);
    settle(&mut h, |_| true);
    h.get_by_label_contains("고양이/0.png");
    h.key_press(Key::Escape);
    settle(&mut h, |_| true);
    assert!(h.state().browse.large.is_none());
    assert!(h.query_by_label_contains("cats/0.png [").is_some());
}

#[test]
fn class_picker_creates_a_class_and_the_edits_list_reverts_one_edit() {
    let (dir, mut h) = opened();
    click_tile(&h, "dogs/0.png", Modifiers::NONE);
    h.step();
    h.key_press(Key::L);
    settle(&mut h, |_| true);
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Relabel as…")
        .type_text("lions");
    h.step();
    h.get_by_label_contains("Enter creates the class “lions”");
    h.key_press(Key::Enter);
    settle(&mut h, written);
    assert_eq!(label_of(h.state(), "dogs/0.png"), "lions");
    assert!(h
        .state()
        .workspace()
        .unwrap()
        .classes
        .contains(&"lions".to_string()));
    assert_eq!(label_on_disk(dir.path(), "dogs/0.png"), "lions");

    // Typing filters the picker; Enter takes the first match.
    click_tile(&h, "dogs/1.png", Modifiers::NONE);
    h.step();
    h.key_press(Key::L);
    settle(&mut h, |_| true);
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Relabel as…")
        .type_text("ca");
    h.step();
    h.key_press(Key::Enter);
    settle(&mut h, written);
    assert_eq!(label_of(h.state(), "dogs/1.png"), "cats");

    // The Edits list shows both steps; revert puts dogs/0.png back.
    h.get_by_label("Edits").click();
    settle(&mut h, |_| true);
    h.get_by_label_contains("relabel 1 image to lions").click();
    settle(&mut h, |_| true);
    h.get_by_label("revert").click();
    settle(&mut h, written);
    assert_eq!(label_of(h.state(), "dogs/0.png"), "dogs");
    assert_eq!(label_on_disk(dir.path(), "dogs/0.png"), "dogs");
    assert_eq!(
        label_of(h.state(), "dogs/1.png"),
        "cats",
        "revert touches only its image"
    );
}

#[test]
fn past_nine_classes_the_hint_says_how_to_reach_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..12u8 {
        common::write_png(&dir.path().join(format!("class_{k:02}/a.png")), 8, 8, k);
    }
    let mut h = common::ui::open(dir.path(), [1200.0, 800.0]);
    settle(&mut h, loaded);
    h.get_by_label_contains("1-9 relabel as the first nine classes, L picks any class");
    // Tiles name their file and class for the accessibility tree as for the eye.
    h.get_by_label("class_11/a.png [class_11]");
}
