//! The Train and Evaluate tabs on real (tiny) data: a CPU run started from the form sends curve
//! points and stops on Stop; the runs list shows it; clicking a confusion cell shows exactly its
//! images; relabelling from the gallery lands in the journal.

mod common;

use common::ui::{idle, settle, shown};

use std::path::Path;

use egui::accesskit::Role;
use egui::Key;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use loupe::dataset::{self, LabelStore, Progress, Source};
use loupe::train::{predictions, record};
use loupe::ui::evaluate::Gallery;
use loupe::ui::{LoupeApp, Tab};

/// Two visually distinct classes (dark and bright noise), 24 images each.
fn dataset(root: &Path) {
    for (c, (class, base)) in [("dark", 40u8), ("bright", 200u8)].into_iter().enumerate() {
        for i in 0..24u32 {
            let img = image::RgbImage::from_fn(24, 24, |x, y| {
                let n = ((x * 7 + y * 13 + i * 31 + c as u32 * 17) % 40) as u8;
                image::Rgb([base.saturating_add(n), base.saturating_add(n / 2), base])
            });
            std::fs::create_dir_all(root.join(class)).unwrap();
            img.save(root.join(format!("{class}/{i:02}.png"))).unwrap();
        }
    }
}

#[test]
fn a_run_from_the_train_tab_draws_curves_stops_and_is_evaluated_with_relabelling() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let mut h = common::ui::open(dir.path(), [1400.0, 900.0]);
    settle(&mut h, idle);
    h.state_mut().tab = Tab::Train;
    h.step();
    h.get_by_label("Quick, CPU").click();
    h.step();
    // Many short epochs so that Stop lands mid-run.
    h.state_mut().train.cfg.epochs = 200;
    h.state_mut().train.cfg.img_size = 16;
    h.state_mut().train.cfg.batch = 8;
    // The augmentation is in the form: flips off for this run.
    assert!(h.state().train.cfg.flip);
    h.get_by_label("flips").click();
    h.step();
    assert!(!h.state().train.cfg.flip);
    h.get_by_label("▶ Start").click();
    settle(&mut h, |a| {
        a.train.live.as_ref().is_some_and(|l| l.epochs.len() >= 2)
    });
    let live = h.state().train.live.as_ref().unwrap();
    assert!(
        live.steps.len() >= 2 * 5,
        "steps of two epochs arrived: {}",
        live.steps.len()
    );
    assert!(live.steps.iter().all(|(x, y)| *x > 0.0 && y.is_finite()));
    h.get_by_label_contains("img/s");
    // The runs list shows the run while it runs.
    settle(&mut h, |a| {
        !a.train.runs.is_empty() && !a.train.loading_runs()
    });
    h.get_by_label("■ Stop").click();
    settle(&mut h, |a| !a.train.running() && !a.train.loading_runs());
    let live = h.state().train.live.as_ref().unwrap();
    let outcome = live
        .outcome
        .clone()
        .expect("the run reported its end")
        .expect("it did not fail");
    assert!(outcome.starts_with("stopped"), "{outcome}");
    assert!(live.epochs.len() < 200);
    let run = h.state().train.runs[0].clone();
    assert!(run.status().starts_with("cancelled"), "{}", run.status());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["flip"], false);
    assert!(
        run.steps.len() >= live.steps.len() - 1,
        "the steps on disk are the ones drawn"
    );

    // Resume from the list: the run goes on in its folder, then stops again.
    let epochs_before = run.epochs.len();
    h.get_by_label("resume").click();
    settle(&mut h, |a| {
        a.train
            .live
            .as_ref()
            .is_some_and(|l| l.epochs.last().is_some_and(|e| e.epoch > epochs_before))
    });
    assert_eq!(
        h.state().train.live.as_ref().unwrap().run_dir.as_ref(),
        Some(&run.dir)
    );
    h.get_by_label("■ Stop").click();
    settle(&mut h, |a| !a.train.running() && !a.train.loading_runs());
    assert_eq!(
        h.state().train.runs.len(),
        1,
        "resumed in place, no new folder"
    );
    let run = h.state().train.runs[0].clone();
    assert!(run.epochs.len() > epochs_before);

    // Evaluate: the run's predictions; a cell shows exactly its images.
    h.state_mut().tab = Tab::Evaluate;
    h.state_mut()
        .evaluate
        .select(&egui::Context::default(), run.dir.clone());
    settle(&mut h, |a| !a.evaluate.loading());
    let p = predictions::read_labelled(
        &run.dir.join(record::VAL_PREDICTIONS),
        &run.record.label_columns(),
    )
    .unwrap();
    let (classes, preds) = (p.classes, p.rows);
    assert_eq!(preds.len(), 10, "20% of 48 images, stratified");
    let (t, p) = (0, 0);
    let expected: std::collections::BTreeSet<String> = preds
        .iter()
        .filter(|x| x.label == t && x.predicted == p)
        .map(|x| x.path.clone())
        .collect();
    h.get_by_role_and_label(
        Role::Button,
        &format!("{} → {}: {}", classes[t], classes[p], expected.len()),
    )
    .click();
    h.step();
    assert_eq!(h.state().evaluate.gallery, Some(Gallery::Cell(t, p)));
    let shown: std::collections::BTreeSet<String> = h
        .state()
        .evaluate
        .gallery_items()
        .iter()
        .map(|x| x.path.clone())
        .collect();
    assert_eq!(shown, expected);
    assert!(
        !shown.is_empty(),
        "a trained run predicts some of a class right"
    );
    // Each shown image is a tile; click one and relabel it with 2 (the second class).
    let first = shown.iter().next().unwrap().clone();
    h.get_by_label_contains(&format!("{first} [")).click();
    h.step();
    h.key_press(Key::Num2);
    settle(&mut h, |a| a.pending_writes() == 0);
    let ds = dataset::open(
        &Source::ImageFolder {
            root: dir.path().to_path_buf(),
        },
        &Progress::default(),
    )
    .unwrap();
    let store = LabelStore::open(&ds).unwrap();
    let ws_classes = h.state().workspace().unwrap().classes.clone();
    assert_eq!(store.label(&first).unwrap(), ws_classes[1]);
    // Top losses lists every validation image, the worst first.
    h.get_by_label("Top losses").click();
    h.step();
    let losses: Vec<f32> = h
        .state()
        .evaluate
        .gallery_items()
        .iter()
        .map(|x| x.loss())
        .collect();
    assert_eq!(losses.len(), 10);
    assert!(losses.windows(2).all(|w| w[0] >= w[1]));
    let worst: Vec<String> = h
        .state()
        .evaluate
        .gallery_items()
        .iter()
        .map(|x| x.path.clone())
        .collect();

    // Browse sorts by that run's loss: its validation images first, worst first.
    h.state_mut().tab = Tab::Browse;
    h.state_mut().browse.sort = loupe::ui::browse::SortBy::RunLoss;
    h.step();
    let order = h.state_mut().browse_paths();
    assert_eq!(order.len(), 48);
    assert_eq!(
        &order[..10],
        &worst[..],
        "the validation images by loss, then the rest"
    );
}

#[test]
fn a_bad_weights_file_is_reported_in_the_window_and_a_run_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dataset(&data);
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let mut h = common::ui::open(&data, [1400.0, 900.0]);
    settle(&mut h, idle);
    h.state_mut().tab = Tab::Train;
    h.step();
    h.state_mut().train.cfg.weights = Some(junk);
    h.state_mut().train.cfg.img_size = 16;
    h.get_by_label("▶ Start").click();
    settle(&mut h, |a| !a.train.running() && !a.train.loading_runs());
    let outcome = h
        .state()
        .train
        .live
        .as_ref()
        .unwrap()
        .outcome
        .clone()
        .unwrap();
    let err = outcome.expect_err("a junk weights file fails the run");
    assert!(
        err.contains("junk.safetensors"),
        "the message names the file: {err}"
    );
    h.get_by_label_contains("the run failed");

    // Delete asks first; keeping changes nothing, deleting removes the folder.
    let runs = h.state().train.runs.clone();
    assert_eq!(
        runs.len(),
        1,
        "the failed run left its folder with its config"
    );
    h.get_by_label("delete").click();
    shown(&mut h, "Keep");
    h.get_by_label("Keep").click();
    h.step();
    assert!(runs[0].dir.exists());
    h.get_by_label("delete").click();
    shown(&mut h, "Delete");
    h.get_by_label("Delete").click();
    settle(&mut h, |a| {
        a.train.runs.is_empty() && !a.train.loading_runs()
    });
    assert!(!runs[0].dir.exists());
}

/// The window's close button, as the windowing system reports it.
fn request_close(h: &mut Harness<'_, LoupeApp>) {
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
}

#[test]
fn closing_the_window_during_a_run_asks_then_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let mut h = common::ui::open(dir.path(), [1400.0, 900.0]);
    settle(&mut h, idle);
    h.state_mut().tab = Tab::Train;
    h.step();
    h.state_mut().train.cfg.epochs = 500;
    h.state_mut().train.cfg.img_size = 16;
    h.get_by_label("▶ Start").click();
    settle(&mut h, |a| {
        a.train.live.as_ref().is_some_and(|l| !l.epochs.is_empty())
    });
    // Keep training: the run goes on.
    request_close(&mut h);
    shown(&mut h, "Keep training");
    h.get_by_label("Keep training").click();
    h.step();
    assert!(h.state().train.running());
    let epochs = h.state().train.live.as_ref().unwrap().epochs.len();
    settle(&mut h, |a| {
        a.train
            .live
            .as_ref()
            .is_some_and(|l| l.epochs.len() > epochs)
    });
    // Stop and close: the run is cancelled (and says so on disk).
    request_close(&mut h);
    shown(&mut h, "Stop and close");
    h.get_by_label("Stop and close").click();
    settle(&mut h, |a| !a.train.running() && !a.train.loading_runs());
    let outcome = h
        .state()
        .train
        .live
        .as_ref()
        .unwrap()
        .outcome
        .clone()
        .unwrap()
        .unwrap();
    assert!(outcome.starts_with("stopped"), "{outcome}");
    assert!(h.state().train.runs[0].status().starts_with("cancelled"));
}

#[test]
fn an_engine_killed_mid_run_is_reported_in_the_train_tab_and_the_window_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let mut h = common::ui::open(dir.path(), [1400.0, 900.0]);
    settle(&mut h, idle);
    h.state_mut().tab = Tab::Train;
    h.step();
    h.state_mut().train.cfg.epochs = 500;
    h.state_mut().train.cfg.img_size = 16;
    h.get_by_label("▶ Start").click();
    settle(&mut h, |a| {
        a.train.live.as_ref().is_some_and(|l| !l.epochs.is_empty())
    });
    let pid = h.state().train.live.as_ref().unwrap().pid().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    settle(&mut h, |a| !a.train.running() && !a.train.loading_runs());
    let live = h.state().train.live.as_ref().unwrap();
    let err = live
        .outcome
        .clone()
        .unwrap()
        .expect_err("a killed engine fails the run");
    assert!(
        err.contains("was killed") && err.contains("resume"),
        "{err}"
    );
    h.get_by_label_contains("the run failed: the engine process was killed");
    let run = h.state().train.runs[0].clone();
    assert!(
        run.status().starts_with("running or interrupted"),
        "{}",
        run.status()
    );

    // The window goes on: a relabel lands in the journal, and the run resumes in its folder.
    let first = h.state().workspace().unwrap().path(0);
    h.state_mut().tab = Tab::Browse;
    h.step();
    h.get_by_label_contains(&format!("{first} [")).click();
    h.step();
    h.key_press(Key::Num2);
    settle(&mut h, |a| a.pending_writes() == 0);
    let ws = h.state().workspace().unwrap();
    assert_eq!(ws.labels[0], ws.classes[1]);
    h.state_mut().tab = Tab::Train;
    h.step();
    h.get_by_label("resume").click();
    let done = run.epochs.len();
    settle(&mut h, |a| {
        a.train
            .live
            .as_ref()
            .is_some_and(|l| l.epochs.last().is_some_and(|e| e.epoch > done))
    });
    assert_eq!(
        h.state().train.live.as_ref().unwrap().run_dir.as_ref(),
        Some(&run.dir)
    );
    h.get_by_label("■ Stop").click();
    settle(&mut h, |a| !a.train.running() && !a.train.loading_runs());
}

#[test]
fn a_missing_engine_is_named_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let setup = loupe::ui::Setup {
        engine: loupe::train::client::Engine::at("/nonexistent/loupe-engine"),
        thumb_cache: Some(dir.path().join(".thumbs")),
        sample: None,
    };
    let app = LoupeApp::open_with(egui::Context::default(), dir.path().to_path_buf(), setup);
    let mut h = common::ui::harness(app, [1400.0, 900.0]);
    settle(&mut h, idle);
    h.state_mut().tab = Tab::Train;
    settle(&mut h, |a| a.train.device_line.contains("was not found"));
    h.get_by_label_contains("was not found at /nonexistent/loupe-engine");
    h.get_by_label("▶ Start").click();
    settle(&mut h, |a| !a.train.running());
    let err = h
        .state()
        .train
        .live
        .as_ref()
        .unwrap()
        .outcome
        .clone()
        .unwrap()
        .unwrap_err();
    assert!(err.contains("make run"), "{err}");
    h.get_by_label_contains("the run failed: the engine (loupe-engine");
}
