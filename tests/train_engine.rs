//! The training engine on the CPU: it learns, writes a complete run folder, cancels within a
//! batch, and survives bad images and impossible set-ups with a message.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use image::{ImageBuffer, Rgb};
use loupe::dataset::{self, Progress, Source};
use loupe::train::engine::{self, Event, TrainConfig};
use loupe::train::models::ModelKind;

/// `per_class` noisy 16x16 images per class, each class its own dominant colour.
fn colour_dataset(root: &Path, per_class: usize) {
    let colours = [("red", [200u8, 40, 40]), ("green", [40, 200, 40]), ("blue", [40, 40, 200])];
    for (name, c) in colours {
        std::fs::create_dir_all(root.join(name)).unwrap();
        for k in 0..per_class {
            let img = ImageBuffer::from_fn(16, 16, |x, y| {
                let n = ((x * 31 + y * 17 + k as u32 * 13) % 60) as u8;
                Rgb([c[0].saturating_add(n), c[1].saturating_add(n), c[2].saturating_add(n)])
            });
            img.save(root.join(name).join(format!("{k:02}.png"))).unwrap();
        }
    }
}

fn quick() -> TrainConfig {
    TrainConfig { model: ModelKind::SmallCnn, epochs: 4, batch: 16, lr: 0.01, img_size: 16, warmup_epochs: 0.5, seed: 1, device: engine::DeviceChoice::Cpu, ..Default::default() }
}

fn open(root: &Path) -> dataset::Dataset {
    dataset::open(&Source::ImageFolder { root: root.to_path_buf() }, &Progress::default()).unwrap()
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
    let h = engine::spawn(open(&data), quick(), dir.path().join("runs"));
    let events = events_until_end(&h, Duration::from_secs(120));

    let Some(Event::Started { run_dir, skipped, train, val, .. }) = events.iter().find(|e| matches!(e, Event::Started { .. })).cloned() else {
        panic!("no Started event: {events:?}")
    };
    assert_eq!(skipped, 1);
    assert_eq!(train + val, 90);
    let epochs: Vec<_> = events.iter().filter_map(|e| if let Event::Epoch(m) = e { Some(m.clone()) } else { None }).collect();
    assert_eq!(epochs.len(), 4);
    let last = epochs.last().unwrap();
    assert!(last.accuracy > 0.8, "accuracy {} after 4 epochs (chance is 0.33)", last.accuracy);
    assert!(last.train_loss < epochs[0].train_loss, "training loss went down");
    assert!(matches!(events.last(), Some(Event::Finished { cancelled: false, .. })));

    for f in ["config.json", "metrics.jsonl", "best.safetensors", "last.safetensors", "val_predictions.csv", "confusion.json"] {
        assert!(run_dir.join(f).exists(), "{f} missing in {}", run_dir.display());
    }
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["seed"], 1);
    assert_eq!(config["classes"], serde_json::json!(["blue", "green", "red"]));
    assert_eq!(config["dataset"]["fingerprint"].as_str().unwrap().len(), 64);
    let lines = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().filter(|l| l.contains("\"kind\":\"epoch\"")).count(), 4);
    let preds = std::fs::read_to_string(run_dir.join("val_predictions.csv")).unwrap();
    assert!(preds.starts_with("path,label,predicted,blue,green,red"));
    assert_eq!(preds.lines().count(), val + 1, "a header and one row per validation image");

    // The best checkpoint loads back into the same network.
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = ModelKind::SmallCnn.build(&vs.root(), 3);
    vs.load(run_dir.join("best.safetensors")).unwrap();
}

#[test]
fn cancel_stops_within_a_batch_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    colour_dataset(&dir.path().join("data"), 20);
    let cfg = TrainConfig { epochs: 10_000, batch: 4, ..quick() };
    let h = engine::spawn(open(&dir.path().join("data")), cfg, dir.path().join("runs"));
    loop {
        match h.rx.recv_timeout(Duration::from_secs(60)).expect("no step within a minute") {
            Event::Step { .. } => break,
            Event::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    let t = Instant::now();
    h.cancel();
    let events = events_until_end(&h, Duration::from_secs(30));
    let Some(Event::Finished { run_dir, cancelled, .. }) = events.last() else { panic!("{events:?}") };
    assert!(cancelled);
    assert!(t.elapsed() < Duration::from_secs(5), "cancel took {:?}", t.elapsed());
    assert!(run_dir.join("last.safetensors").exists());
}

#[test]
fn impossible_set_ups_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    common::write_png(&dir.path().join("only/a.png"), 8, 8, 1);
    common::write_png(&dir.path().join("only/b.png"), 8, 8, 2);
    let h = engine::spawn(open(dir.path()), quick(), dir.path().join("runs"));
    let events = events_until_end(&h, Duration::from_secs(30));
    let Some(Event::Failed(msg)) = events.last() else { panic!("{events:?}") };
    assert!(msg.contains("at least two classes"), "{msg}");
}

#[test]
fn a_cache_larger_than_memory_is_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    colour_dataset(&dir.path().join("data"), 5);
    // 15 images at 60000x60000 would need 162 GB.
    let cfg = TrainConfig { img_size: 60_000, ..quick() };
    let h = engine::spawn(open(&dir.path().join("data")), cfg, dir.path().join("runs"));
    let events = events_until_end(&h, Duration::from_secs(30));
    let Some(Event::Failed(msg)) = events.last() else { panic!("{events:?}") };
    assert!(msg.contains("GB of memory") && msg.contains("--img-size"), "{msg}");
}
