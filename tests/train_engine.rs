//! The training engine on the CPU: it learns, writes a complete run folder, cancels within a
//! batch, and survives bad images and impossible set-ups with a message.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use image::{ImageBuffer, Rgb};
use loupe::dataset::{self, Progress, Source};
use loupe::train::engine::{self, Event, Start, TrainConfig};
use loupe::train::models::ModelKind;

/// `per_class` noisy 16x16 images per class, each class its own dominant colour.
fn colour_dataset(root: &Path, per_class: usize) {
    let colours = [
        ("red", [200u8, 40, 40]),
        ("green", [40, 200, 40]),
        ("blue", [40, 40, 200]),
    ];
    for (name, c) in colours {
        std::fs::create_dir_all(root.join(name)).unwrap();
        for k in 0..per_class {
            let img = ImageBuffer::from_fn(16, 16, |x, y| {
                let n = ((x * 31 + y * 17 + k as u32 * 13) % 60) as u8;
                Rgb([
                    c[0].saturating_add(n),
                    c[1].saturating_add(n),
                    c[2].saturating_add(n),
                ])
            });
            img.save(root.join(name).join(format!("{k:02}.png")))
                .unwrap();
        }
    }
}

fn quick() -> TrainConfig {
    TrainConfig {
        model: ModelKind::SmallCnn,
        epochs: 4,
        batch: 16,
        lr: 0.01,
        img_size: 16,
        warmup_epochs: 0.5,
        seed: 1,
        device: engine::DeviceChoice::Cpu,
        ..Default::default()
    }
}

fn runs(dir: &Path) -> Start {
    Start::New {
        runs_dir: dir.join("runs"),
        val: None,
    }
}

fn epochs_of(events: &[Event]) -> Vec<engine::EpochMetrics> {
    events
        .iter()
        .filter_map(|e| {
            if let Event::Epoch(m) = e {
                Some((**m).clone())
            } else {
                None
            }
        })
        .collect()
}

fn notes_of(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            if let Event::Note(n) = e {
                Some(n.clone())
            } else {
                None
            }
        })
        .collect()
}

fn config_of(run_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("config.json")).unwrap()).unwrap()
}

fn open(root: &Path) -> dataset::Dataset {
    dataset::open(
        &Source::ImageFolder {
            root: root.to_path_buf(),
        },
        &Progress::default(),
    )
    .unwrap()
}

/// Collects events until the run ends (or the deadline passes).
fn events_until_end(h: &engine::RunHandle, limit: Duration) -> Vec<Event> {
    let t = Instant::now();
    let mut out = Vec::new();
    while t.elapsed() < limit {
        match h.rx.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => {
                let end = matches!(e, Event::Finished { .. } | Event::Failed(_));
                out.push(e);
                if end {
                    return out;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => return out,
        }
    }
    panic!("the run did not end within {limit:?}");
}

#[test]
fn a_short_cpu_run_learns_and_writes_a_complete_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    colour_dataset(&data, 30);
    // A file whose header passes but whose pixels do not decode: skipped, not fatal.
    common::write_png_header_only(&data.join("red/zz_broken.png"), 16, 16);
    let h = engine::spawn(open(&data), quick(), runs(dir.path()));
    let events = events_until_end(&h, Duration::from_secs(120));

    let Some(Event::Started {
        run_dir,
        skipped,
        train,
        val,
        ..
    }) = events
        .iter()
        .find(|e| matches!(e, Event::Started { .. }))
        .cloned()
    else {
        panic!("no Started event: {events:?}")
    };
    assert_eq!(skipped, 1);
    assert_eq!(train + val, 90);
    let epochs: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Epoch(m) = e {
                Some(m.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(epochs.len(), 4);
    let last = epochs.last().unwrap();
    assert!(
        last.accuracy > 0.8,
        "accuracy {} after 4 epochs (chance is 0.33)",
        last.accuracy
    );
    assert!(
        last.train_loss < epochs[0].train_loss,
        "training loss went down"
    );
    assert!(matches!(
        events.last(),
        Some(Event::Finished {
            cancelled: false,
            ..
        })
    ));

    for f in [
        "config.json",
        "metrics.jsonl",
        "best.safetensors",
        "last.safetensors",
        "val_predictions.csv",
        "confusion.json",
    ] {
        assert!(
            run_dir.join(f).exists(),
            "{f} missing in {}",
            run_dir.display()
        );
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["seed"], 1);
    assert_eq!(
        config["classes"],
        serde_json::json!(["blue", "green", "red"])
    );
    assert_eq!(config["dataset"]["fingerprint"].as_str().unwrap().len(), 64);
    let lines = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.contains("\"kind\":\"epoch\""))
            .count(),
        4
    );
    let preds = std::fs::read_to_string(run_dir.join("val_predictions.csv")).unwrap();
    assert!(preds.starts_with("path,label,predicted,blue,green,red"));
    assert_eq!(
        preds.lines().count(),
        val + 1,
        "a header and one row per validation image"
    );

    // The best checkpoint loads back into the same network.
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = ModelKind::SmallCnn.build(&vs.root(), 3);
    vs.load(run_dir.join("best.safetensors")).unwrap();
}

#[test]
fn cancel_stops_within_a_batch_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    colour_dataset(&dir.path().join("data"), 20);
    let cfg = TrainConfig {
        epochs: 10_000,
        batch: 4,
        ..quick()
    };
    let h = engine::spawn(open(&dir.path().join("data")), cfg, runs(dir.path()));
    loop {
        match h
            .rx
            .recv_timeout(Duration::from_secs(60))
            .expect("no step within a minute")
        {
            Event::Step { .. } => break,
            Event::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    let t = Instant::now();
    h.cancel();
    let events = events_until_end(&h, Duration::from_secs(30));
    let Some(Event::Finished {
        run_dir, cancelled, ..
    }) = events.last()
    else {
        panic!("{events:?}")
    };
    assert!(cancelled);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        t.elapsed()
    );
    assert!(run_dir.join("last.safetensors").exists());
}

#[test]
fn impossible_set_ups_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    common::write_png(&dir.path().join("only/a.png"), 8, 8, 1);
    common::write_png(&dir.path().join("only/b.png"), 8, 8, 2);
    let h = engine::spawn(open(dir.path()), quick(), runs(dir.path()));
    let events = events_until_end(&h, Duration::from_secs(30));
    let Some(Event::Failed(msg)) = events.last() else {
        panic!("{events:?}")
    };
    assert!(msg.contains("at least two classes"), "{msg}");
}

#[test]
fn over_the_memory_budget_images_stream_and_accumulated_batches_still_learn() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    colour_dataset(&data, 30);
    common::write_png_header_only(&data.join("red/zz_broken.png"), 16, 16);
    // No memory for a cache at all; steps of 2 x 8 images.
    let cfg = TrainConfig {
        cache_gb: Some(0.0),
        batch: 8,
        accumulate: 2,
        ..quick()
    };
    let h = engine::spawn(open(&data), cfg, runs(dir.path()));
    let events = events_until_end(&h, Duration::from_secs(120));
    let notes = notes_of(&events);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("memory budget") && n.contains("decoding each batch")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("1 more image(s) could not be decoded")),
        "{notes:?}"
    );
    let Some(Event::Started { train, .. }) =
        events.iter().find(|e| matches!(e, Event::Started { .. }))
    else {
        panic!("{events:?}")
    };
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|e| {
            if let Event::Step { steps, .. } = e {
                Some(*steps)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        steps[0],
        train.div_ceil(16),
        "one optimiser step per 16 images"
    );
    let epochs = epochs_of(&events);
    assert_eq!(epochs.len(), 4);
    assert!(
        epochs[3].accuracy > 0.8,
        "accuracy {} after 4 epochs (chance is 0.33)",
        epochs[3].accuracy
    );
}

#[test]
fn a_run_resumes_where_it_stopped_on_the_same_validation_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    colour_dataset(&data, 20);
    let first = TrainConfig {
        epochs: 2,
        ..quick()
    };
    let h = engine::spawn(open(&data), first.clone(), runs(dir.path()));
    let events = events_until_end(&h, Duration::from_secs(120));
    let Some(Event::Finished {
        run_dir,
        cancelled: false,
        ..
    }) = events.last().cloned()
    else {
        panic!("{events:?}")
    };
    let val_before = config_of(&run_dir)["split"]["val"].clone();

    let more = TrainConfig { epochs: 4, ..first };
    let h = engine::spawn(open(&data), more.clone(), Start::Resume(run_dir.clone()));
    let events = events_until_end(&h, Duration::from_secs(120));
    assert!(
        notes_of(&events)
            .iter()
            .any(|n| n == "resuming at epoch 3 of 4"),
        "{events:?}"
    );
    assert_eq!(
        epochs_of(&events)
            .iter()
            .map(|m| m.epoch)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    let Some(Event::Finished {
        run_dir: same,
        cancelled: false,
        ..
    }) = events.last()
    else {
        panic!("{events:?}")
    };
    assert_eq!(same, &run_dir, "the same folder, not a new run");
    let config = config_of(&run_dir);
    assert_eq!(config["split"]["val"], val_before);
    assert_eq!(config["config"]["epochs"], 4);
    let lines = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let kinds: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] != "step")
        .collect();
    let summary: Vec<String> = kinds
        .iter()
        .map(|v| {
            format!(
                "{}{}",
                v["kind"].as_str().unwrap(),
                v["metrics"]["epoch"]
                    .as_u64()
                    .or(v["epoch"].as_u64())
                    .map_or(String::new(), |e| e.to_string())
            )
        })
        .collect();
    assert_eq!(
        summary,
        ["epoch1", "epoch2", "end", "resume3", "epoch3", "epoch4", "end"]
    );
    assert!(kinds
        .iter()
        .filter(|v| v["kind"] == "end")
        .all(|v| v["cancelled"] == false));

    // Nothing left to do: said, not done.
    let h = engine::spawn(open(&data), more, Start::Resume(run_dir.clone()));
    let events = events_until_end(&h, Duration::from_secs(30));
    let Some(Event::Failed(msg)) = events.last() else {
        panic!("{events:?}")
    };
    assert!(msg.contains("already finished 4 of 4 epochs"), "{msg}");
}

#[test]
fn a_given_split_is_used_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    colour_dataset(&data, 10);
    let ds = open(&data);
    let is_val: Vec<bool> = ds
        .samples
        .iter()
        .map(|s| s.path.to_string_lossy().ends_with("3.png"))
        .collect();
    let want: Vec<String> = ds
        .samples
        .iter()
        .zip(&is_val)
        .filter(|(_, v)| **v)
        .map(|(s, _)| s.path.to_string_lossy().into_owned())
        .collect();
    assert_eq!(want.len(), 3);
    let h = engine::spawn(
        ds,
        TrainConfig {
            epochs: 1,
            ..quick()
        },
        Start::New {
            runs_dir: dir.path().join("runs"),
            val: Some(is_val),
        },
    );
    let events = events_until_end(&h, Duration::from_secs(60));
    let Some(Event::Started {
        run_dir,
        val: 3,
        train: 27,
        ..
    }) = events.iter().find(|e| matches!(e, Event::Started { .. }))
    else {
        panic!("{events:?}")
    };
    assert_eq!(config_of(run_dir)["split"]["val"], serde_json::json!(want));
}

#[test]
fn early_stopping_ends_a_run_that_stopped_improving() {
    let dir = tempfile::tempdir().unwrap();
    colour_dataset(&dir.path().join("data"), 10);
    // Nothing can change (no learning rate, BatchNorm frozen): epoch 1 stays the best.
    let cfg = TrainConfig {
        epochs: 10,
        lr: 0.0,
        freeze: true,
        patience: 2,
        ..quick()
    };
    let h = engine::spawn(open(&dir.path().join("data")), cfg, runs(dir.path()));
    let events = events_until_end(&h, Duration::from_secs(60));
    assert_eq!(
        epochs_of(&events).len(),
        3,
        "epoch 1, then two without improvement"
    );
    assert!(
        notes_of(&events)
            .iter()
            .any(|n| n.contains("stopped early") && n.contains("macro-F1")),
        "{events:?}"
    );
    assert!(matches!(
        events.last(),
        Some(Event::Finished {
            cancelled: false,
            ..
        })
    ));
}

#[test]
fn a_split_column_of_the_csv_marks_the_validation_rows() {
    use loupe::dataset::CsvSource;
    use loupe::train::given_split::{self, GivenSplit};
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("file,label,fold\n");
    for k in 0..6 {
        common::write_png(&dir.path().join(format!("img/{k}.png")), 8, 8, k);
        let fold = ["train", "Val", "train", "test", "", "valid"][k as usize];
        csv.push_str(&format!(
            "./img/{k}.png,{},{fold}\n",
            if k % 2 == 0 { "cat" } else { "dog" }
        ));
    }
    std::fs::write(dir.path().join("labels.csv"), csv).unwrap();
    let source = Source::Csv(CsvSource {
        csv: dir.path().join("labels.csv"),
        path_col: "file".into(),
        label_cols: vec!["label".into()],
        group_col: None,
    });
    let ds = dataset::open(&source, &Progress::default()).unwrap();
    let (ds, is_val) = given_split::apply(ds, &GivenSplit::Column("fold".into())).unwrap();
    let val: Vec<String> = ds
        .samples
        .iter()
        .zip(&is_val)
        .filter(|(_, v)| **v)
        .map(|(s, _)| s.path.to_string_lossy().into_owned())
        .collect();
    assert_eq!(val, ["img/1.png", "img/3.png", "img/5.png"]);
    let err = given_split::apply(ds, &GivenSplit::Column("nope".into())).unwrap_err();
    assert!(err.to_string().contains("no column \"nope\""), "{err}");
}
