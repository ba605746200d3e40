//! The engine process on the CPU, through its protocol as the window and the command line use
//! it: a run learns and writes a complete run folder, cancels, resumes, stops early, survives bad
//! images, fails in words; and the client survives the engine: killed mid-run, missing, of
//! another version, several at once.

mod common;

use std::path::{Path, PathBuf};

use loupe::dataset::{CsvSource, Source};
use loupe::train::client::{Engine, EngineHandle};
use loupe::train::config::{DeviceChoice, ModelKind, TrainConfig};
use loupe::train::given_split::GivenSplit;
use loupe::train::protocol::{Event, Job, JobResult};
use loupe::train::record::{self, EpochMetrics, MetricsLine, RunConfig};

fn quick() -> TrainConfig {
    TrainConfig {
        model: ModelKind::SmallCnn,
        epochs: 4,
        batch: 16,
        lr: 0.01,
        img_size: 16,
        warmup_epochs: 0.5,
        seed: 1,
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

fn train(data: &Path, config: TrainConfig) -> Job {
    Job::Train {
        dataset: Source::ImageFolder {
            root: data.to_path_buf(),
        },
        config,
        runs_dir: data.parent().unwrap().join("runs"),
        name: None,
    }
}

fn start(job: &Job) -> EngineHandle {
    common::engine().start(job, None)
}

/// Every event up to the last one (the engine always ends with one).
fn events(job: &Job) -> Vec<Event> {
    let events = start(job).wait();
    assert!(
        events.last().is_some_and(Event::is_last),
        "no last event: {events:?}"
    );
    events
}

fn epochs_of(events: &[Event]) -> Vec<EpochMetrics> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch { metrics } => Some((**metrics).clone()),
            _ => None,
        })
        .collect()
}

fn notes_of(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Note { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn started(events: &[Event]) -> (PathBuf, usize, usize, usize) {
    events
        .iter()
        .find_map(|e| match e {
            Event::Started {
                run_dir,
                train,
                val,
                skipped,
                ..
            } => Some((run_dir.clone(), *train, *val, *skipped)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Started event: {events:?}"))
}

fn failure(events: &[Event]) -> String {
    match events.last() {
        Some(Event::Failed { message }) => message.clone(),
        other => panic!("the job did not fail: {other:?}"),
    }
}

/// Waits for the first training step of a run.
fn first_step(h: &EngineHandle) {
    loop {
        match h.rx.recv_timeout(common::HANG).expect("no step came") {
            Event::Step { .. } => return,
            Event::Failed { message } => panic!("{message}"),
            _ => {}
        }
    }
}

#[test]
fn a_short_cpu_run_learns_and_writes_a_complete_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 30, 0);
    // A file whose header passes but whose pixels do not decode: skipped, not fatal.
    common::write_png_header_only(&data.join("red/zz_broken.png"), 16, 16);
    let events = events(&train(&data, quick()));
    let (run_dir, train_n, val, skipped) = started(&events);
    assert_eq!(skipped, 1);
    assert_eq!(train_n + val, 90);
    let epochs = epochs_of(&events);
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
    assert!(
        events.iter().any(|e| matches!(e, Event::Progress { .. })),
        "decoding reports progress"
    );
    assert!(matches!(
        events.last(),
        Some(Event::Finished {
            cancelled: false,
            ..
        })
    ));

    for f in [
        record::CONFIG,
        record::METRICS,
        record::BEST,
        record::LAST,
        record::VAL_PREDICTIONS,
        record::CONFUSION,
    ] {
        assert!(
            run_dir.join(f).exists(),
            "{f} missing in {}",
            run_dir.display()
        );
    }
    let rc = RunConfig::read(&run_dir).unwrap();
    assert_eq!(rc.config.seed, 1);
    assert_eq!(rc.classes, ["blue", "green", "red"]);
    assert_eq!(rc.dataset.fingerprint.len(), 64);
    let m = record::read_metrics(&run_dir).unwrap();
    assert_eq!(m.epochs, epochs, "the file holds what the events said");
    assert_eq!(m.ended, Some(false));
    let preds = loupe::train::predictions::read_labelled(
        &run_dir.join(record::VAL_PREDICTIONS),
        &["class".into()],
    )
    .unwrap();
    assert_eq!(preds.classes, ["blue", "green", "red"]);
    assert_eq!(preds.rows.len(), val, "one row per validation image");

    // The best checkpoint loads back into the network: an evaluation of the run runs on it.
    let events = self::events(&Job::Eval {
        run: run_dir.clone(),
        dataset: None,
    });
    let Some(Event::Done {
        result: JobResult::Eval {
            predictions,
            skipped: 0,
        },
    }) = events.last()
    else {
        panic!("{events:?}")
    };
    let eval = loupe::train::predictions::read_labelled(predictions, &["class".into()]).unwrap();
    assert_eq!(eval.rows.len(), val);
    assert!(eval.report().accuracy > 0.8);
}

#[test]
fn cancel_stops_the_run_early_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 20, 0);
    let config = TrainConfig {
        epochs: 10_000,
        batch: 4,
        ..quick()
    };
    let h = start(&train(&data, config));
    first_step(&h);
    h.cancel();
    let events = h.wait();
    let Some(Event::Finished {
        run_dir, cancelled, ..
    }) = events.last()
    else {
        panic!("{events:?}")
    };
    assert!(cancelled);
    assert!(run_dir.join(record::LAST).exists());
    let m = record::read_metrics(run_dir).unwrap();
    assert_eq!(m.ended, Some(true));
    assert!(m.epochs.len() < 10_000, "it stopped long before the end");
}

#[test]
fn impossible_set_ups_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::write_png(&data.join("only/a.png"), 8, 8, 1);
    common::write_png(&data.join("only/b.png"), 8, 8, 2);
    let msg = failure(&events(&train(&data, quick())));
    assert!(msg.contains("at least two classes"), "{msg}");
    let msg = failure(&events(&train(&dir.path().join("nowhere"), quick())));
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = failure(&events(&Job::Resume {
        run: dir.path().to_path_buf(),
        epochs: None,
    }));
    assert!(msg.contains("is not a run folder"), "{msg}");
}

#[test]
fn over_the_memory_budget_images_stream_and_accumulated_batches_still_learn() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 30, 0);
    common::write_png_header_only(&data.join("red/zz_broken.png"), 16, 16);
    // No memory for a cache at all; steps of 2 x 8 images.
    let config = TrainConfig {
        cache_gb: Some(0.0),
        batch: 8,
        accumulate: 2,
        ..quick()
    };
    let events = events(&train(&data, config));
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
    let (_, train_n, _, _) = started(&events);
    let steps = events
        .iter()
        .find_map(|e| match e {
            Event::Step { steps, .. } => Some(*steps),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        steps,
        train_n.div_ceil(16),
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
    common::colour_images(&data, 20, 0);
    let events = events(&train(
        &data,
        TrainConfig {
            epochs: 2,
            ..quick()
        },
    ));
    let (run_dir, ..) = started(&events);
    let val_before = RunConfig::read(&run_dir).unwrap().split.val;

    let resume = Job::Resume {
        run: run_dir.clone(),
        epochs: Some(4),
    };
    let events = self::events(&resume);
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
    let rc = RunConfig::read(&run_dir).unwrap();
    assert_eq!(rc.split.val, val_before);
    assert_eq!(rc.config.epochs, 4);
    let text = std::fs::read_to_string(run_dir.join(record::METRICS)).unwrap();
    let summary: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<MetricsLine>(l).unwrap())
        .filter_map(|line| match line {
            MetricsLine::Step { .. } => None,
            MetricsLine::Epoch { metrics } => Some(format!("epoch{}", metrics.epoch)),
            MetricsLine::Resume { epoch, .. } => Some(format!("resume{epoch}")),
            MetricsLine::End { cancelled } => Some(format!("end{}", u8::from(cancelled))),
        })
        .collect();
    assert_eq!(
        summary,
        ["epoch1", "epoch2", "end0", "resume3", "epoch3", "epoch4", "end0"]
    );

    // Nothing left to do: said, not done.
    let msg = failure(&self::events(&resume));
    assert!(msg.contains("already finished 4 of 4 epochs"), "{msg}");
}

#[test]
fn a_split_column_of_the_csv_is_the_split_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("file,label,fold\n");
    for k in 0..12u8 {
        common::write_png(&dir.path().join(format!("img/{k}.png")), 8, 8, k);
        let fold = if k % 4 == 1 { "val" } else { "train" };
        let label = if k % 2 == 0 { "cat" } else { "dog" };
        csv.push_str(&format!("./img/{k}.png,{label},{fold}\n"));
    }
    std::fs::write(dir.path().join("labels.csv"), csv).unwrap();
    let job = Job::Train {
        dataset: Source::Csv(CsvSource {
            csv: dir.path().join("labels.csv"),
            path_col: "file".into(),
            label_cols: vec!["label".into()],
            group_col: None,
        }),
        config: TrainConfig {
            epochs: 1,
            given_split: Some(GivenSplit::Column("fold".into())),
            ..quick()
        },
        runs_dir: dir.path().join("runs"),
        name: None,
    };
    let events = events(&job);
    let (run_dir, train_n, val, _) = started(&events);
    assert_eq!((train_n, val), (9, 3));
    assert_eq!(
        RunConfig::read(&run_dir).unwrap().split.val,
        ["img/1.png", "img/5.png", "img/9.png"]
    );
}

#[test]
fn early_stopping_ends_a_run_that_stopped_improving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 10, 0);
    // Nothing can change (no learning rate, BatchNorm frozen): epoch 1 stays the best.
    let config = TrainConfig {
        epochs: 10,
        lr: 0.0,
        freeze: true,
        patience: 2,
        ..quick()
    };
    let events = events(&train(&data, config));
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
fn an_engine_killed_mid_run_is_reported_and_the_run_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 20, 0);
    let config = TrainConfig {
        epochs: 10_000,
        batch: 4,
        ..quick()
    };
    let h = start(&train(&data, config));
    // After a finished epoch there is a checkpoint to go back to.
    let mut run_dir = None;
    loop {
        match h.rx.recv_timeout(common::HANG).expect("no epoch came") {
            Event::Started { run_dir: d, .. } => run_dir = Some(d),
            Event::Epoch { .. } => break,
            Event::Failed { message } => panic!("{message}"),
            _ => {}
        }
    }
    let run_dir = run_dir.expect("a run starts before its first epoch");
    assert!(run_dir.join(record::LAST).exists());
    let pid = h.pid().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let events = h.wait();
    let msg = failure(&events);
    assert!(msg.contains("was killed (SIGKILL"), "{msg}");
    assert!(
        msg.contains(&run_dir.display().to_string()) && msg.contains("resume"),
        "{msg}"
    );
    let m = record::read_metrics(&run_dir).unwrap();
    assert_eq!(m.ended, None, "the run never wrote its end");
    let done = m.epochs.len();
    assert!(done >= 1);

    let events = self::events(&Job::Resume {
        run: run_dir.clone(),
        epochs: Some(done + 1),
    });
    assert_eq!(
        epochs_of(&events)
            .iter()
            .map(|e| e.epoch)
            .collect::<Vec<_>>(),
        vec![done + 1]
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
fn a_missing_engine_is_named_with_what_to_do() {
    let events = Engine::at("/nonexistent/loupe-engine")
        .start(&Job::Device, None)
        .wait();
    let msg = failure(&events);
    assert!(
        msg.contains("was not found at /nonexistent/loupe-engine") && msg.contains("make run"),
        "{msg}"
    );
}

#[cfg(unix)]
#[test]
fn an_engine_of_another_version_or_no_engine_at_all_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let old = script(
        "old-engine",
        r#"echo '{"event":"hello","protocol":0,"version":"0.0.1"}'; sleep 30"#,
    );
    let msg = failure(&Engine::at(&old).start(&Job::Device, None).wait());
    assert!(
        msg.contains("is version 0.0.1 (protocol 0)") && msg.contains("build both"),
        "{msg}"
    );
    let other = script("other", "echo hello world");
    let msg = failure(&Engine::at(&other).start(&Job::Device, None).wait());
    assert!(msg.contains("did not answer as a Loupe engine"), "{msg}");
    let crashing = script(
        "crashing",
        "echo 'Segmentation fault: in libtorch' >&2; kill -ABRT $$",
    );
    let msg = failure(&Engine::at(&crashing).start(&Job::Device, None).wait());
    assert!(
        msg.contains("crashed (SIGABRT") && msg.contains("in libtorch"),
        "{msg}"
    );
    // Every engine starts with glibc keeping large blocks in its heap (batches of activations
    // are not faulted in afresh), unless the user chose otherwise.
    let seen = dir.path().join("env.txt");
    let env = script(
        "env-engine",
        &format!(
            "echo \"$MALLOC_MMAP_THRESHOLD_ $MALLOC_TRIM_THRESHOLD_\" > '{}'",
            seen.display()
        ),
    );
    let _ = failure(&Engine::at(&env).start(&Job::Device, None).wait());
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap().trim(),
            "268435456 1073741824"
        );
    }
}

#[test]
fn several_engines_run_at_once_and_one_dying_spoils_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a/data"), dir.path().join("b/data"));
    common::colour_images(&a, 10, 0);
    common::colour_images(&b, 10, 7);
    let long = start(&train(
        &a,
        TrainConfig {
            epochs: 10_000,
            batch: 4,
            ..quick()
        },
    ));
    let short = start(&train(
        &b,
        TrainConfig {
            epochs: 2,
            ..quick()
        },
    ));
    first_step(&long);
    assert_ne!(long.pid(), short.pid());
    long.kill();
    let short_events = short.wait();
    assert!(
        matches!(
            short_events.last(),
            Some(Event::Finished {
                cancelled: false,
                ..
            })
        ),
        "{short_events:?}"
    );
    assert_eq!(epochs_of(&short_events).len(), 2);
    let msg = failure(&long.wait());
    assert!(msg.contains("was killed"), "{msg}");
}
