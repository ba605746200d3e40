//! The window as a new user meets it: every tab fits the smallest default size, names are in
//! words, every chart opens Browse on exactly its images, the start page opens a dataset,
//! File ▸ Export writes the dataset as edited.

mod common;

use std::path::Path;

use common::ui::{drag, idle, settle};
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use loupe::dataset::export::ExportFormat;
use loupe::dataset::workspace::LabelCmd;
use loupe::ui::command::Command;
use loupe::ui::{LoupeApp, Setup, Tab};

const SMALL: [f32; 2] = [1100.0, 720.0];
const LARGE: [f32; 2] = [1600.0, 1000.0];

/// 3 colours x 8 images, two sizes, and a class with a long name.
fn dataset(root: &Path) {
    common::colour_images(root, 8, 0);
    let long = root.join("a_class_with_a_rather_long_name");
    for k in 0..8u8 {
        common::write_png(&long.join(format!("wide_{k}.png")), 40, 20, k);
    }
}

/// `label`'s widget lies wholly inside the window.
fn inside(h: &Harness<'_, LoupeApp>, label: &str, size: [f32; 2]) {
    let r = h.get_by_label(label).rect();
    assert!(
        r.min.x >= 0.0 && r.min.y >= 0.0 && r.max.x <= size[0] + 0.5 && r.max.y <= size[1] + 0.5,
        "{label} at {r:?} is cut off in a {size:?} window"
    );
}

fn tab(h: &mut Harness<'_, LoupeApp>, t: Tab) {
    h.state_mut().tab = t;
    h.run_steps(3);
}

/// A quick CPU run from the Train tab, to its end.
fn train_once(h: &mut Harness<'_, LoupeApp>) {
    tab(h, Tab::Train);
    h.get_by_label("Quick, CPU").click();
    h.step();
    h.state_mut().train.cfg.epochs = 1;
    h.state_mut().train.cfg.img_size = 16;
    h.get_by_label("▶ Start").click();
    settle(h, |a| {
        a.train.live.as_ref().is_some_and(|l| !l.running()) && !a.train.loading_runs()
    });
    let outcome = h.state().train.live.as_ref().unwrap().outcome.clone();
    assert!(matches!(outcome, Some(Ok(_))), "{outcome:?}");
}

#[test]
fn every_tab_fits_the_smallest_default_window_and_a_large_one() {
    for size in [SMALL, LARGE] {
        let dir = tempfile::tempdir().unwrap();
        dataset(dir.path());
        let mut h = common::ui::open(dir.path(), size);
        settle(&mut h, idle);
        train_once(&mut h);
        for label in [
            "Loss",
            "Validation accuracy and macro-F1",
            "Learning rate",
            "▶ Start",
        ] {
            inside(&h, label, size);
        }
        let status = h.get_by_label_contains("finished:").rect();
        assert!(
            status.max.x <= size[0],
            "the run's end is readable: {status:?}"
        );

        tab(&mut h, Tab::Browse);
        inside(&h, "Search", size);
        inside(&h, "32 shown · 0 selected", size);

        tab(&mut h, Tab::Distribution);
        inside(&h, "Classes", size);
        inside(
            &h,
            "a_class_with_a_rather_long_name: 8 images (25.0%)",
            size,
        );

        tab(&mut h, Tab::Issues);
        inside(&h, "Find label issues", size);

        tab(&mut h, Tab::Evaluate);
        settle(&mut h, |a| {
            a.evaluate.run.is_some() && !a.evaluate.loading()
        });
        // The newest run opened by itself; its headers are the classes' full names.
        for class in ["a_class_with_a_rather_long_name", "blue", "red"] {
            let headers: Vec<_> = h.query_all_by_label(class).collect();
            assert!(!headers.is_empty(), "{class} is named in full");
            for n in headers {
                let r = n.rect();
                assert!(r.max.x <= size[0] && r.max.y <= size[1], "{class} at {r:?}");
            }
        }
    }
}

#[test]
fn the_train_form_speaks_words_and_shows_the_active_preset() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let mut h = common::ui::open(dir.path(), SMALL);
    settle(&mut h, idle);
    tab(&mut h, Tab::Train);
    h.get_by_label("Pretrained head only, CPU").click();
    h.run_steps(2);
    // Each choice shows its name in words (the combo box's value, labelled by its row).
    let value = |h: &Harness<'_, LoupeApp>, row: &str| {
        h.query_all_by_label(row)
            .find_map(|n| n.value())
            .unwrap_or_else(|| panic!("no field for {row}"))
    };
    for (row, words) in [
        ("model", "EfficientNet-Lite0"),
        ("loss", "cross-entropy"),
        ("optimiser", "AdamW"),
        ("device", "CPU"),
        // The effective image size, not a 0.
        ("image size", "224 (the model's)"),
    ] {
        assert_eq!(value(&h, row), words);
    }
    let chosen = h.get_by_label("Pretrained head only, CPU");
    use egui::accesskit::Toggled;
    assert_eq!(chosen.accesskit_node().toggled(), Some(Toggled::True));
    let other = h.get_by_label("Quick, CPU");
    assert_eq!(other.accesskit_node().toggled(), Some(Toggled::False));
    for internal in ["EfficientnetLite0", "SmallCnn", "Adamw", "Ce", "Cpu"] {
        assert!(h.query_by_label(internal).is_none(), "{internal} leaked");
    }
}

/// A CSV of people x photos: `mask` per photo, `gender` and `age` per person.
fn composite(root: &Path) -> std::path::PathBuf {
    let mut csv = String::from("id,path,mask,gender,age\n");
    for p in 0..6u8 {
        for (m, mask) in ["wear", "incorrect", "not wear"].iter().enumerate() {
            let rel = format!("img/{p}_{m}.png");
            let (w, h) = if m == 2 { (30, 40) } else { (16, 16) };
            common::write_png(&root.join(&rel), w, h, p * 3 + m as u8);
            let gender = if p < 2 { "female" } else { "male" };
            let age = ["<30", "30-59", "60+"][usize::from(p % 3)];
            csv.push_str(&format!("{p},{rel},{mask},{gender},{age}\n"));
        }
    }
    let file = root.join("train.csv");
    std::fs::write(&file, csv).unwrap();
    file
}

#[test]
fn every_chart_opens_browse_on_exactly_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let csv = composite(dir.path());
    let mut h = common::ui::open_in(&csv, dir.path(), SMALL);
    // The columns dialog guessed right: open as proposed.
    settle(&mut h, |a| !a.is_loading());
    h.run_steps(3);
    h.get_by_label("Open").click();
    settle(&mut h, idle);
    let ws = h.state().workspace().unwrap();
    assert_eq!(ws.dataset.label_columns, ["mask", "gender", "age"]);

    // A per-column bar: gender = female.
    tab(&mut h, Tab::Distribution);
    h.get_by_label("female: 6 images (33.3%)").click();
    settle(&mut h, |a| a.tab == Tab::Browse);
    h.get_by_label("gender = female ✕");
    let paths = h.state_mut().browse_paths();
    assert_eq!(paths.len(), 6);
    assert!(paths
        .iter()
        .all(|p| p.starts_with("img/0_") || p.starts_with("img/1_")));
    // Combined with a second column from Browse's own filter menu.
    h.state_mut().browse.set_column_filter(0, "wear".into());
    h.step();
    assert_eq!(h.state_mut().browse_paths(), ["img/0_0.png", "img/1_0.png"]);

    // An aspect-ratio bin: the 30x40 photos (0.75).
    tab(&mut h, Tab::Distribution);
    into_view(&mut h, "0.67–0.8: 6 images (33.3%)");
    h.get_by_label("0.67–0.8: 6 images (33.3%)").click();
    settle(&mut h, |a| a.tab == Tab::Browse);
    let paths = h.state_mut().browse_paths();
    assert_eq!(paths.len(), 6);
    assert!(paths.iter().all(|p| p.ends_with("_2.png")), "{paths:?}");

    // A format row.
    tab(&mut h, Tab::Distribution);
    into_view(&mut h, "PNG");
    h.get_by_label("PNG").click();
    settle(&mut h, |a| a.tab == Tab::Browse);
    assert_eq!(h.state_mut().browse_paths().len(), 18);

    // A box dragged over the size chart: exactly the images whose sizes lie in it.
    tab(&mut h, Tab::Distribution);
    into_view(&mut h, "Aspect ratio (width / height)");
    let top = h.get_by_label("Image sizes").rect();
    let bottom = h.get_by_label("Aspect ratio (width / height)").rect();
    let from = egui::pos2(top.left() + 60.0, top.bottom() + 20.0);
    let to = egui::pos2(top.left() + 700.0, bottom.top() - 40.0);
    drag(&mut h, from, to);
    settle(&mut h, |a| a.tab == Tab::Browse);
    let (title, _) = h.state().browse.only.clone().expect("a box of sizes");
    let numbers: Vec<u32> = title
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect();
    let [w0, w1, h0, h1] = numbers[..] else {
        panic!("{title}")
    };
    let ws = h.state().workspace().unwrap();
    let want: Vec<String> = (0..ws.dataset.samples.len())
        .filter(|&i| {
            let s = &ws.dataset.samples[i].info;
            (w0..=w1).contains(&s.width) && (h0..=h1).contains(&s.height)
        })
        .map(|i| ws.path(i))
        .collect();
    assert!(!want.is_empty(), "the box covers some images: {title}");
    assert_eq!(h.state_mut().browse_paths(), want, "{title}");
}

/// Scrolls the page with the mouse wheel until `label`'s widget is in the window (as a user
/// does: the charts no longer zoom under the wheel).
fn into_view(h: &mut Harness<'_, LoupeApp>, label: &str) {
    for _ in 0..50 {
        let r = h.get_by_label(label).rect();
        if r.max.y < SMALL[1] - 20.0 {
            return;
        }
        h.hover_at(egui::pos2(700.0, 400.0));
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, -120.0),
            modifiers: egui::Modifiers::NONE,
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
        });
        h.run_steps(2);
    }
    panic!("{label} never came into view");
}

#[test]
fn without_a_dataset_the_start_page_opens_one() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let setup = Setup {
        sample: Some(dir.path().to_path_buf()),
        ..common::ui::setup(dir.path())
    };
    let mut h = common::ui::harness(LoupeApp::start_page_with(setup), SMALL);
    h.run_steps(3);
    h.get_by_label("Open a dataset");
    h.get_by_label("Open folder…");
    h.get_by_label("Open CSV…");
    h.get_by_label("Open the sample data").click();
    settle(&mut h, idle);
    h.get_by_label("32 images");

    // A folder that is not a dataset says so on the same page, with the ways out.
    let mut h = common::ui::open(&dir.path().join("nowhere"), SMALL);
    settle(&mut h, |a| !a.is_loading());
    h.get_by_label("This dataset could not be opened");
    h.get_by_label_contains("does not exist");
    h.get_by_label("Open folder…");
}

#[test]
fn file_export_writes_the_dataset_as_edited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dataset(&data);
    let mut h = common::ui::open(&data, SMALL);
    settle(&mut h, idle);
    let ws = h.state().workspace().unwrap();
    let (first, second) = (ws.path(0), ws.path(1));
    let ws_classes = ws.classes.clone();
    // One image excluded, one relabelled, then exported at once: the export waits for the
    // edits before it to be written.
    let app = h.state_mut();
    app.command(LabelCmd::Exclude {
        paths: vec![first.clone()],
        excluded: true,
    });
    app.command(LabelCmd::Relabel {
        paths: vec![second.clone()],
        class: ws_classes[3].clone(),
    });
    app.command(Command::Export(
        dir.path().join("out"),
        ExportFormat::Imagefolder,
    ));
    settle(&mut h, |a| !a.exporting() && a.pending_writes() == 0);
    h.get_by_label_contains("exported 31 images in 4 classes");
    let out = dir.path().join("out");
    let count = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(count, 31, "the excluded image is left out");
    let name = Path::new(&second).file_name().unwrap();
    assert!(
        out.join(&ws_classes[3]).join(name).exists(),
        "relabelled into its new class"
    );
}
