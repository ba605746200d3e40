//! The runs table of the Train tab and experiments in Evaluate, on a run and a 2-fold experiment
//! trained by the command line: rows sort by a column, two ticked rows show what differs, "Run
//! again" starts from a row's config and warns only once the labels changed, and Evaluate shows
//! the experiment's out-of-fold confusion.

mod common;

use common::ui::{idle, settle, shown};

use std::path::Path;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use loupe::dataset::workspace::LabelCmd;
use loupe::ui::command::Command;
use loupe::ui::train::View;
use loupe::ui::Tab;

/// Two classes of noise, dark and bright, 12 images each.
fn dataset(root: &Path) {
    for (c, (class, base)) in [("dark", 40u8), ("bright", 200u8)].into_iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..12u32 {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                let n = ((x * 7 + y * 13 + i * 31 + c as u32 * 17) % 40) as u8;
                image::Rgb([base.saturating_add(n), base.saturating_add(n / 2), base])
            });
            img.save(root.join(format!("{class}/{i:02}.png"))).unwrap();
        }
    }
}

fn train(root: &Path, extra: &[&str]) {
    let mut args = vec![
        "train",
        root.to_str().unwrap(),
        "--model",
        "small-cnn",
        "--epochs",
        "1",
        "--img-size",
        "16",
        "--batch",
        "8",
        "--device",
        "cpu",
    ];
    args.extend(extra);
    let out = common::loupe(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_runs_table_sorts_compares_and_runs_again_and_evaluate_shows_an_experiment() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    train(dir.path(), &["--lr", "0.01"]);
    train(dir.path(), &["--lr", "0.003", "--folds", "2"]);

    let mut h = common::ui::open(dir.path(), [1400.0, 900.0]);
    settle(&mut h, |a| idle(a) && !a.train.runs.is_empty());
    h.state_mut().tab = Tab::Train;
    h.step();
    h.get_by_label("Runs table").click();
    h.step();
    assert_eq!(h.state().train.view, View::Table);
    let (run, exp) = {
        let t = &h.state().train;
        assert_eq!((t.runs.len(), t.experiments.len()), (1, 1));
        (t.runs[0].clone(), t.experiments[0].clone())
    };
    assert!(exp.oof.is_some(), "both folds finished: scored out of fold");

    // Sorting by lr: the experiment (0.003) above the run (0.01), then (clicked again) below.
    let y = |h: &mut egui_kittest::Harness<'_, loupe::ui::LoupeApp>, label: &str| {
        h.get_by_role_and_label(Role::CheckBox, label).rect().min.y
    };
    h.get_by_label("lr").click();
    // One frame takes the click, the next draws the rows in their new order.
    h.step();
    h.step();
    assert!(y(&mut h, &exp.label) < y(&mut h, &run.label));
    h.get_by_label("lr ↑").click();
    h.step();
    h.step();
    h.get_by_label("lr ↓");
    assert!(y(&mut h, &exp.label) > y(&mut h, &run.label));

    // Two ticked rows: what differs between a run at lr 0.01 and two folds at 0.003.
    h.get_by_role_and_label(Role::CheckBox, &run.label).click();
    h.get_by_role_and_label(Role::CheckBox, &exp.label).click();
    h.step();
    h.get_by_label("config.lr");
    h.get_by_label("0.01");
    h.get_by_label("0.003");
    assert_eq!(
        h.get_all_by_label("folds").count(),
        2,
        "the table's heading and the difference"
    );
    assert!(
        h.query_by_label("config.epochs").is_none(),
        "only what differs"
    );

    // Run again on unchanged data: no question, a new run with the row's config.
    let again = |h: &mut egui_kittest::Harness<'_, loupe::ui::LoupeApp>, label: &str| {
        let row_y = h
            .get_by_role_and_label(Role::CheckBox, label)
            .rect()
            .center()
            .y;
        let buttons = h.get_all_by_label("Run again").collect::<Vec<_>>();
        let b = buttons
            .into_iter()
            .min_by(|a, b| {
                let d = |n: &egui_kittest::Node<'_>| (n.rect().center().y - row_y).abs();
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        b.click();
    };
    again(&mut h, &run.label);
    h.step();
    assert!(
        h.query_by_label_contains("The labels or files changed")
            .is_none(),
        "the window's fingerprint of the data is the engine's"
    );
    assert!(h.state().train.running());
    assert_eq!(h.state().train.cfg.lr, 0.01);
    settle(&mut h, |a| !a.train.running() && !a.train.loading_runs());
    assert_eq!(h.state().train.runs.len(), 2, "a second run");

    // After a relabel, Run again asks first.
    h.state_mut().command(Command::Label(LabelCmd::Relabel {
        paths: vec!["dark/00.png".into()],
        class: "bright".into(),
    }));
    settle(&mut h, idle);
    h.state_mut().tab = Tab::Train;
    h.step();
    again(&mut h, &exp.label);
    shown(&mut h, "Run on the data as it is now");
    assert!(!h.state().train.running());
    h.get_by_label("Cancel").click();
    h.step();
    assert!(!h.state().train.running());

    // Folds from the form: a 2-fold experiment, its folds one after the other in the curves,
    // its end the out-of-fold score.
    h.get_by_label("Train and curves").click();
    h.step();
    {
        let t = &mut h.state_mut().train;
        t.cfg.img_size = 16;
        t.cfg.batch = 8;
        t.cfg.epochs = 1;
        t.folds = 2;
    }
    h.get_by_label("▶ Start").click();
    settle(&mut h, |a| !a.train.running() && !a.train.loading_runs());
    let live = h.state().train.live.as_ref().unwrap();
    let outcome = live.outcome.clone().unwrap().unwrap();
    assert!(
        outcome.starts_with("finished: best validation macro-F1"),
        "{outcome}"
    );
    assert!(
        live.notes
            .iter()
            .any(|n| n.starts_with("fold 1/2 finished")),
        "{:?}",
        live.notes
    );
    assert!(
        live.notes
            .iter()
            .any(|n| n.starts_with("out of fold (24 images)")),
        "{:?}",
        live.notes
    );
    assert_eq!(live.epochs.len(), 1, "the curves show one fold at a time");
    assert_eq!(h.state().train.experiments.len(), 2);

    // Evaluate: the experiment's out-of-fold predictions, all 24 images.
    h.state_mut().tab = Tab::Evaluate;
    h.step();
    let dir_of = exp.dir.clone();
    h.state_mut()
        .evaluate
        .select(&egui::Context::default(), dir_of);
    settle(&mut h, |a| !a.evaluate.loading());
    h.get_by_label_contains("24 images, each predicted by the fold that did not train on it");
}

#[test]
fn a_window_opened_on_a_relative_path_knows_its_live_run() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    // The dataset as `make run` names it: relative to the working folder.
    let cwd = std::env::current_dir().unwrap();
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(dir.path().strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    let mut h = common::ui::open_in(&relative, dir.path(), [1400.0, 900.0]);
    settle(&mut h, idle);
    h.state_mut().tab = Tab::Train;
    h.step();
    {
        let cfg = &mut h.state_mut().train.cfg;
        cfg.model = loupe::train::config::ModelKind::SmallCnn;
        cfg.weights = None;
        cfg.epochs = 100_000;
        cfg.img_size = 16;
        cfg.batch = 8;
        cfg.device = loupe::train::config::DeviceChoice::Cpu;
    }
    h.get_by_label("▶ Start").click();
    settle(&mut h, |a| {
        a.train.live.as_ref().is_some_and(|l| !l.epochs.is_empty())
            && !a.train.runs.is_empty()
            && !a.train.loading_runs()
    });
    // The list shows it as the live run, and will not delete it under the engine.
    h.get_by_label_contains("running, epoch");
    let run = h.state().train.runs[0].dir.clone();
    h.state_mut().command(Command::DeleteRun(run.clone()));
    h.step();
    assert_eq!(
        h.state().train.message,
        Some(Err("stop the run before deleting it".to_string()))
    );
    assert!(run.exists());
    h.get_by_label("■ Stop").click();
    settle(&mut h, |a| !a.train.running());
}
