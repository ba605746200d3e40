//! The Issues tab: a search from the window finds planted label flips in real photos, the queue
//! keys decide through the journal (undoable), the queue goes on past the flagged images through
//! the whole ranking, and a reopened window goes on where the review stopped without asking
//! about kept images again.

mod common;

use common::ui::{idle, settle};

use std::path::Path;

use egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use loupe::dataset::{self, LabelStore, Progress, Source};
use loupe::quality::confident::{Method, RankBy};
use loupe::quality::issues;
use loupe::ui::{LoupeApp, Tab};

fn open(root: &Path) -> Harness<'static, LoupeApp> {
    let mut h = common::ui::open(root, [1200.0, 800.0]);
    settle(&mut h, idle);
    h
}

fn store(root: &Path) -> LabelStore {
    let ds = dataset::open(
        &Source::ImageFolder {
            root: root.to_path_buf(),
        },
        &Progress::default(),
    )
    .unwrap();
    LabelStore::open(&ds).unwrap()
}

/// Images of three classes; the probabilities say three of them belong elsewhere.
fn flipped(root: &Path) -> Vec<(&'static str, &'static str)> {
    for (c, class) in ["cats", "dogs", "owls"].iter().enumerate() {
        for i in 0..6 {
            common::write_png(
                &root.join(format!("{class}/{i}.png")),
                8,
                8,
                (c * 10 + i) as u8,
            );
        }
    }
    vec![
        ("cats/0.png", "dogs"),
        ("dogs/0.png", "owls"),
        ("owls/0.png", "cats"),
    ]
}

#[test]
fn queue_keys_decide_through_the_journal_and_undo() {
    let dir = tempfile::tempdir().unwrap();
    let flips = flipped(dir.path());
    let mut h = open(dir.path());
    let ws = h.state().workspace().unwrap();
    let ds = ws.dataset.clone();
    let k = ds.classes.len();
    let mut probs = Vec::new();
    for s in &ds.samples {
        let path = s.path.to_string_lossy().replace('\\', "/");
        let truth = flips
            .iter()
            .find(|f| f.0 == path)
            .map_or(s.label.as_str(), |f| f.1);
        let t = ds.classes.iter().position(|c| c == truth).unwrap();
        // Confident about the true class; the first flip is the most confident one.
        let top = if path == flips[0].0 { 0.97 } else { 0.9 };
        probs.extend((0..k).map(|j| {
            if j == t {
                top
            } else {
                (1.0 - top) / (k - 1) as f32
            }
        }));
    }
    let samples: Vec<usize> = (0..ds.samples.len()).collect();
    let findings = issues::find(
        &ds,
        &samples,
        &[probs],
        Method::PruneByNoiseRate,
        RankBy::SelfConfidence,
    );
    let queue: Vec<&str> = findings.issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(queue.len(), 3, "{queue:?}");
    assert_eq!(queue[0], flips[0].0);
    // Every image is ranked once, the flagged ones first, the rest by falling doubt.
    let mut ranked: Vec<&str> = findings.ranking.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(&ranked[..3], &queue[..]);
    assert!(findings.ranking[..3].iter().all(|r| r.flagged));
    assert!(findings.ranking[3..].iter().all(|r| !r.flagged));
    assert!(findings.ranking[3..]
        .windows(2)
        .all(|w| w[0].score <= w[1].score));
    ranked.sort();
    ranked.dedup();
    assert_eq!(ranked.len(), ds.samples.len());
    h.state_mut().review_findings(&findings);
    h.step();
    assert_eq!(h.state().tab, Tab::Issues);
    assert_eq!(h.state().review.queue.len(), ds.samples.len());
    h.get_by_label_contains("reviewed 0 of 18 ranked");
    h.get_by_label_contains("suggested stop: 3 flagged, 3 left");
    h.get_by_label_contains(&format!("suggested: {}", flips[0].1));

    // A accepts the suggestion.
    h.key_press(Key::A);
    settle(&mut h, idle);
    assert_eq!(store(dir.path()).label(queue[0]).unwrap(), flips[0].1);
    h.get_by_label_contains("reviewed 1 of 18 ranked");
    // Space keeps the given label: checked, label unchanged.
    let second = queue[1];
    h.key_press(Key::Space);
    settle(&mut h, idle);
    let st = store(dir.path());
    assert!(st.is_checked(second));
    assert_eq!(st.label(second).unwrap(), second.split('/').next().unwrap());
    // X excludes the third; the queue is done.
    let third = queue[2];
    h.key_press(Key::X);
    settle(&mut h, idle);
    assert!(store(dir.path()).sample_state(third).excluded);
    h.get_by_label_contains("suggested stop: 3 flagged, 0 left");
    // Past the stop: the least surely labelled of the rest, which the model does not doubt
    // (nothing to accept: A does nothing), kept with Space.
    h.get_by_label_contains("#4 of 18");
    h.get_by_label_contains("past the suggested stop");
    let fourth = findings.ranking[3].path.clone();
    h.get_by_label_contains(&fourth);
    assert!(h.query_by_label_contains("accept").is_none());
    h.key_press(Key::A);
    settle(&mut h, idle);
    h.get_by_label_contains("reviewed 3 of 18 ranked");
    h.key_press(Key::Space);
    settle(&mut h, idle);
    assert!(store(dir.path()).is_checked(&fourth));
    h.get_by_label_contains("reviewed 4 of 18 ranked");
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut h, idle);
    assert!(!store(dir.path()).is_checked(&fourth));

    // Ctrl+Z brings the third back to the queue; 1 files it under the first class instead.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut h, idle);
    assert!(!store(dir.path()).sample_state(third).excluded);
    h.get_by_label_contains("suggested stop: 3 flagged, 1 left");
    h.get_by_label_contains(third);
    h.key_press(Key::Num1);
    settle(&mut h, idle);
    assert_eq!(store(dir.path()).label(third).unwrap(), "cats");
    // The buttons do what the keys do: undo it, then accept with the button.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    settle(&mut h, idle);
    h.get_by_label_contains(&format!("accept {}", flips[2].1))
        .click();
    settle(&mut h, idle);
    assert_eq!(store(dir.path()).label(third).unwrap(), flips[2].1);
    h.get_by_label_contains("suggested stop: 3 flagged, 0 left");
}

#[test]
fn a_search_from_the_window_finds_planted_flips_and_a_review_resumes_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let planted = common::planted_photos(&root);
    let mut h = open(&root);
    h.state_mut().tab = Tab::Issues;
    h.state_mut().review.img_size = 96;
    h.step();
    h.get_by_label_contains("No search yet");
    h.get_by_role_and_label(egui::accesskit::Role::Button, "Find label issues")
        .click();
    h.step();
    assert!(h.state().review.running());
    settle(&mut h, idle);
    let status = h.state().review.status.clone().unwrap_or_default();
    assert!(
        status.contains("suspected label errors among 60 images"),
        "{status}"
    );
    let queue: Vec<String> = h
        .state()
        .review
        .queue
        .iter()
        .map(|s| h.state().workspace().unwrap().path(s.samples[0]))
        .collect();
    let top: Vec<&str> = queue
        .iter()
        .take(planted.len())
        .map(String::as_str)
        .collect();
    for (path, _) in &planted {
        assert!(
            top.contains(&path.as_str()),
            "{path} not among the first {}: {queue:?}",
            planted.len()
        );
    }
    // The first suspect suggests its true class; keep the second as labelled.
    let first = &h.state().review.queue[0];
    let truth = planted.iter().find(|p| p.0 == queue[0]).unwrap().1;
    assert_eq!(first.suggested, truth);
    h.key_press(Key::A);
    settle(&mut h, idle);
    h.key_press(Key::Space);
    settle(&mut h, idle);
    assert!(store(&root).is_checked(&queue[1]));
    drop(h);

    // A new window reopens the search where the review stopped.
    let mut h = open(&root);
    h.state_mut().tab = Tab::Issues;
    h.step();
    assert_eq!(h.state().review.queue.len(), queue.len());
    h.get_by_label_contains(&format!("reviewed 2 of {} ranked", queue.len()));
    // Searching again (the embeddings are cached) does not ask about the kept image.
    h.state_mut().review.img_size = 96;
    h.get_by_role_and_label(egui::accesskit::Role::Button, "Find label issues")
        .click();
    settle(&mut h, idle);
    let again: Vec<String> = h
        .state()
        .review
        .queue
        .iter()
        .map(|s| h.state().workspace().unwrap().path(s.samples[0]))
        .collect();
    assert!(!again.contains(&queue[1]), "{again:?}");
    let flagged = &again[..h.state().review.flagged];
    assert!(
        !flagged.contains(&queue[0]),
        "the accepted fix is no longer flagged: {flagged:?}"
    );
}

#[test]
fn the_embedding_resolution_follows_the_dataset_size_until_set_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    flipped(dir.path());
    let mut h = open(dir.path());
    h.state_mut().tab = Tab::Issues;
    h.step();
    h.get_by_label("Advanced").click();
    settle(&mut h, idle);
    // By dataset size, no slider: the engine picks the resolution from the image count.
    assert_eq!(h.state().review.img_size, 0);
    h.get_by_label_contains("224 px up to");
    assert!(h
        .query_by_role_and_label(egui::accesskit::Role::Slider, "Embedding resolution")
        .is_none());
    // Unticked, the slider appears at the size used beyond the small-dataset limit.
    h.get_by_label("by dataset size").click();
    settle(&mut h, idle);
    assert_eq!(h.state().review.img_size, loupe::train::config::EMBED_SIZE);
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "Embedding resolution");
}
