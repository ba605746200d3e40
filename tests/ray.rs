//! The Ray backend against a real Ray head started on this machine, from the pinned
//! `ray[default]` that `make test` installs in `.ray-venv` (scripts/bootstrap.sh). Skipped, with
//! the reason, only where that install failed (`.ray-venv.unavailable`).
//!
//! This machine is both the cluster and the client, so the shared storage the backend needs is
//! simply the local disk.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use loupe::dataset::Source;
use loupe::train::config::{ModelKind, TrainConfig};
use loupe::train::protocol::{Event, Job};
use loupe::train::ray::Cluster;

/// A Ray head for one test; `ray stop` when dropped (which stops every Ray process of this
/// user on this machine: test machines run no other).
struct Head {
    ray: PathBuf,
    address: String,
    _tmp: tempfile::TempDir,
}

impl Drop for Head {
    fn drop(&mut self) {
        let _ = Command::new(&self.ray).args(["stop", "--force"]).output();
    }
}

/// `N` ports free now, all different: the listeners are held together until each has its port
/// (one at a time, the system may hand out the same port twice).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Starts a head with 2 CPUs, or says why it cannot (`None`: skipped).
fn head() -> Option<Head> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ray = root.join(".ray-venv/bin/ray");
    if !ray.exists() {
        let why =
            std::fs::read_to_string(root.join(".ray-venv.unavailable")).unwrap_or_else(|_| {
                panic!(
                    "no Ray in .ray-venv and no reason why: run `make test` (scripts/bootstrap.sh \
                 test installs it)"
                )
            });
        eprintln!("skipped: {}", why.trim());
        return None;
    }
    // Ray's socket paths must be short: a temp folder straight under /tmp.
    let tmp = tempfile::Builder::new()
        .prefix("lray")
        .tempdir_in("/tmp")
        .unwrap();
    let [port, dashboard] = free_ports();
    let out = Command::new(&ray)
        .args([
            "start",
            "--head",
            "--port",
            &port.to_string(),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            &dashboard.to_string(),
            "--num-cpus",
            "2",
            "--include-dashboard",
            "true",
            "--disable-usage-stats",
            "--temp-dir",
            tmp.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let head = Head {
        ray,
        address: format!("http://127.0.0.1:{dashboard}"),
        _tmp: tmp,
    };
    assert!(
        out.status.success(),
        "ray start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The dashboard answers a little after `ray start` returns.
    let cluster = head.cluster();
    let since = std::time::Instant::now();
    while let Err(e) = cluster.check() {
        assert!(since.elapsed() < common::HANG, "{e}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Some(head)
}

impl Head {
    fn cluster(&self) -> Cluster {
        Cluster {
            address: self.address.clone(),
            command: format!("{} {{args}}", env!("CARGO_BIN_EXE_loupe")),
            ..Default::default()
        }
    }

    /// (submission id, status, start, end) of every job the head has had.
    fn jobs(&self) -> Vec<(String, String, u64, u64)> {
        let list: Vec<serde_json::Value> = ureq::get(&format!("{}/api/jobs/", self.address))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        list.iter()
            .map(|j| {
                (
                    j["submission_id"].as_str().unwrap_or("").to_string(),
                    j["status"].as_str().unwrap_or("").to_string(),
                    j["start_time"].as_u64().unwrap_or(0),
                    j["end_time"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }
}

fn tiny() -> TrainConfig {
    TrainConfig {
        model: ModelKind::SmallCnn,
        img_size: 16,
        batch: 8,
        lr: 0.01,
        epochs: 2,
        device: loupe::train::config::DeviceChoice::Cpu,
        ..Default::default()
    }
}

#[test]
fn folds_run_as_parallel_ray_jobs_stop_when_asked_and_failures_are_told_in_words() {
    let Some(head) = head() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::colour_images(&data, 8, 0);
    let runs = dir.path().join("runs");

    // Two folds, submitted together, as two jobs on the cluster.
    let command = format!("{} {{args}}", env!("CARGO_BIN_EXE_loupe"));
    let out = common::loupe(&[
        "train",
        data.to_str().unwrap(),
        "--folds",
        "2",
        "--epochs",
        "2",
        "--model",
        "small-cnn",
        "--img-size",
        "16",
        "--batch",
        "8",
        "--device",
        "cpu",
        "--runs",
        runs.to_str().unwrap(),
        "--backend",
        "ray",
        "--ray-address",
        &head.address,
        "--ray-command",
        &command,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("fold 1/2: training on Ray job"), "{text}");
    assert!(text.contains("fold 2/2: epoch 2/2"), "{text}");
    assert!(text.contains("out of fold (24 images"), "{text}");
    let jobs = head.jobs();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.1 == "SUCCEEDED"), "{jobs:?}");
    // Both were on the cluster before either ended: the backend does not wait for one job to
    // submit the next.
    let last_start = jobs.iter().map(|j| j.2).max().unwrap();
    let first_end = jobs.iter().map(|j| j.3).min().unwrap();
    assert!(last_start < first_end, "{jobs:?}");

    // A job whose data the cluster cannot see fails in words.
    let cluster = head.cluster();
    let job = Job::Train {
        dataset: Source::ImageFolder {
            root: dir.path().join("not-shared"),
        },
        config: tiny(),
        runs_dir: runs.clone(),
        name: Some("blind".into()),
    };
    let events = cluster.start(&job, None).wait();
    match events.last() {
        Some(Event::Failed { message }) => assert!(
            message.contains("failed: this machine")
                && message.contains(&format!(
                    "cannot see {}",
                    dir.path().join("not-shared").display()
                )),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }

    // Stop: the job ends, and the run keeps its checkpoint and says it was cancelled.
    let job = Job::Train {
        dataset: Source::ImageFolder { root: data.clone() },
        config: TrainConfig {
            epochs: 100_000,
            ..tiny()
        },
        runs_dir: runs.clone(),
        name: Some("long".into()),
    };
    let h = cluster.start(&job, None);
    let mut last = None;
    for e in h.rx.iter() {
        if matches!(e, Event::Epoch { .. }) {
            h.cancel();
        }
        if e.is_last() {
            last = Some(e);
            break;
        }
    }
    match last {
        Some(Event::Finished {
            cancelled, run_dir, ..
        }) => {
            assert!(cancelled);
            assert_eq!(run_dir, runs.join("long"));
            assert!(run_dir.join("last.safetensors").exists());
        }
        other => panic!("{other:?}"),
    }

    // The cluster vanishes mid-run: the run is marked failed with the reason, and what it
    // wrote stays.
    let job = Job::Train {
        dataset: Source::ImageFolder { root: data.clone() },
        config: TrainConfig {
            epochs: 100_000,
            ..tiny()
        },
        runs_dir: runs.clone(),
        name: Some("orphan".into()),
    };
    let h = cluster.start(&job, None);
    let mut last = None;
    for e in h.rx.iter() {
        if matches!(e, Event::Epoch { .. }) && last.is_none() {
            let out = Command::new(&head.ray)
                .args(["stop", "--force"])
                .output()
                .unwrap();
            assert!(out.status.success());
            last = Some(Event::Note {
                text: "stopped".into(),
            });
        }
        if e.is_last() {
            last = Some(e);
            break;
        }
    }
    match last {
        Some(Event::Failed { message }) => {
            assert!(
                message.contains(&format!(
                    "the Ray cluster at {} does not answer",
                    head.address
                )) && message.contains("the run is given up as failed")
                    && message.contains(&runs.join("orphan").display().to_string()),
                "{message}"
            );
            // The epoch that was seen is still on disk.
            let metrics = std::fs::read_to_string(runs.join("orphan/metrics.jsonl")).unwrap();
            assert!(metrics.contains(r#""kind":"epoch""#));
        }
        other => panic!("{other:?}"),
    }
}
