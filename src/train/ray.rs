//! Runs on a Ray cluster, through its Jobs REST API (the dashboard port, 8265 by default): no
//! Python on this machine. Each run is one Ray job whose entrypoint is `loupe run-job JOB` on the
//! cluster (the command that starts Loupe there is the cluster's business: [`Cluster::command`]).
//!
//! The run folder is the source of truth, as for a local run: the dataset and the runs folder
//! must be at the same paths on the cluster's machines and on this one (shared storage). The
//! handle reads the run's `metrics.jsonl` for its curves, and the job's status for its end; a job
//! that fails is reported by its last `error:` line, a cluster that stops answering by its
//! address.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{EngineHandle, Wake};
use super::protocol::{Event, Job};
use super::record::{read_metrics, RunConfig};
use crate::util::now_secs;

/// How often a job's status and run folder are looked at.
const POLL: Duration = Duration::from_secs(1);

/// How long the cluster may not answer before a run is given up as failed.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(30);

/// How long after a stopped job ends its run's end may take to show on this machine (its
/// processes are gone by then; shared storage may show the last write late).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a running job's folder may stay invisible here before the user is told why.
const INVISIBLE_NOTE: Duration = Duration::from_secs(20);

/// Where runs go on a Ray cluster, and how they start there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cluster {
    /// The dashboard's address: `http://HOST:8265`.
    pub address: String,
    /// The job's shell command, `{args}` standing for Loupe's arguments: `loupe {args}` when
    /// `loupe` (and `loupe-engine` beside it) is on the cluster's PATH.
    pub command: String,
    /// GPUs each job asks for (Ray schedules the job where they are free).
    pub gpus: f64,
    /// CPUs each job asks for.
    pub cpus: f64,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            address: "http://127.0.0.1:8265".into(),
            command: "loupe {args}".into(),
            gpus: 0.0,
            cpus: 1.0,
        }
    }
}

/// A job's state as the cluster reports it.
#[derive(Debug, Clone, Deserialize)]
struct JobInfo {
    status: String,
    #[serde(default)]
    message: Option<String>,
}

impl Cluster {
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address.trim_end_matches('/'))
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> String {
        format!(
            "the Ray cluster at {} does not answer ({e}). Is it running (`ray start --head` on \
             its head node), and is its dashboard port open to this machine?",
            self.address
        )
    }

    /// The cluster's Ray version: proof that it answers.
    pub fn check(&self) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Version {
            ray_version: String,
        }
        Self::agent()
            .get(&self.url("/api/version"))
            .call()
            .and_then(|mut r| r.body_mut().read_json::<Version>())
            .map(|v| v.ray_version)
            .map_err(|e| self.unreachable(e))
    }

    /// The job's entrypoint: the command template with `run-job` and the job as its argument.
    pub fn entrypoint(&self, job: &Job) -> String {
        let json = serde_json::to_string(job).expect("a job always serializes");
        let args = format!("run-job {}", shell_quote(&json));
        if self.command.contains("{args}") {
            self.command.replace("{args}", &args)
        } else {
            format!("{} {args}", self.command)
        }
    }

    fn submit(&self, id: &str, job: &Job) -> Result<(), String> {
        let body = serde_json::json!({
            "entrypoint": self.entrypoint(job),
            "submission_id": id,
            "entrypoint_num_cpus": self.cpus,
            "entrypoint_num_gpus": self.gpus,
            "metadata": { "tool": "loupe" },
        });
        Self::agent()
            .post(&self.url("/api/jobs/"))
            .send_json(&body)
            .map(|_| ())
            .map_err(|e| match e {
                ureq::Error::StatusCode(code) => format!(
                    "the Ray cluster at {} refused the job (HTTP {code})",
                    self.address
                ),
                e => self.unreachable(e),
            })
    }

    fn info(&self, id: &str) -> Result<JobInfo, ureq::Error> {
        Self::agent()
            .get(&self.url(&format!("/api/jobs/{id}")))
            .call()?
            .body_mut()
            .read_json()
    }

    fn logs(&self, id: &str) -> String {
        #[derive(Deserialize)]
        struct Logs {
            logs: String,
        }
        Self::agent()
            .get(&self.url(&format!("/api/jobs/{id}/logs")))
            .call()
            .and_then(|mut r| r.body_mut().read_json::<Logs>())
            .map(|l| l.logs)
            .unwrap_or_default()
    }

    fn stop(&self, id: &str) {
        let _ = Self::agent()
            .post(&self.url(&format!("/api/jobs/{id}/stop")))
            .send_empty();
    }

    /// Submits a training run (`Train` with a name, or `Resume`) as a Ray job. Like
    /// [`super::client::Engine::start`] it never fails here: a refusal is a `Failed` event.
    pub fn start(&self, job: &Job, wake: Option<Wake>) -> EngineHandle {
        let (tx, rx) = mpsc::channel();
        let stop_asked = Arc::new(AtomicBool::new(false));
        let s = stop_asked.clone();
        let handle = EngineHandle::remote(rx, Arc::new(move || s.store(true, Ordering::Relaxed)));
        let emit = move |e: Event| {
            let _ = tx.send(e);
            if let Some(w) = &wake {
                w();
            }
        };
        let (cluster, job) = (self.clone(), job.clone());
        std::thread::Builder::new()
            .name("loupe-ray-job".into())
            .spawn(move || match named(job) {
                Ok((job, run_dir)) => cluster.follow(&job, &run_dir, &stop_asked, &emit),
                Err(e) => emit(Event::Failed {
                    message: format!("{e:#}"),
                }),
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        handle
    }

    /// Submits `job` and reports it until it ends.
    fn follow(&self, job: &Job, run_dir: &Path, stop_asked: &AtomicBool, emit: &dyn Fn(Event)) {
        let id = submission_id(run_dir);
        if let Err(message) = self.submit(&id, job) {
            emit(Event::Failed { message });
            return;
        }
        emit(Event::Progress {
            what: format!("Ray job {id} submitted to {}, waiting for it", self.address),
            done: 0,
            total: 1,
        });
        let mut watch = Watch::new(run_dir, id.clone());
        let mut last_answer = Instant::now();
        let submitted = Instant::now();
        let mut stop_sent = false;
        loop {
            std::thread::sleep(POLL);
            if stop_asked.load(Ordering::Relaxed) && !stop_sent {
                self.stop(&id);
                stop_sent = true;
            }
            let info = match self.info(&id) {
                Ok(info) => {
                    last_answer = Instant::now();
                    info
                }
                Err(e) if last_answer.elapsed() < UNREACHABLE_LIMIT => {
                    let _ = e;
                    continue;
                }
                Err(e) => {
                    watch.report(emit);
                    emit(Event::Failed {
                        message: format!(
                            "{}; the run is given up as failed. What it wrote is kept in {}",
                            self.unreachable(e),
                            run_dir.display()
                        ),
                    });
                    return;
                }
            };
            watch.report(emit);
            if info.status == "RUNNING"
                && !watch.visible
                && !watch.told_invisible
                && submitted.elapsed() > INVISIBLE_NOTE
            {
                watch.told_invisible = true;
                emit(Event::Note {
                    text: format!(
                        "the job runs but its folder {} is not visible on this machine yet: the \
                         runs folder must be on storage both see, at the same path",
                        run_dir.display()
                    ),
                });
            }
            match info.status.as_str() {
                "SUCCEEDED" | "FAILED" | "STOPPED" => {
                    if stop_sent {
                        // Ray ends the job's `loupe`; its engine (a process group of its own)
                        // then stops within a batch and writes the run's end: wait for it.
                        watch.await_end(STOP_GRACE);
                    }
                    watch.report(emit);
                    emit(watch.end(&info, &self.logs(&id), stop_sent));
                    return;
                }
                _ => {}
            }
        }
    }
}

/// The job with its run folder's name decided here (the folder is made on the cluster, and
/// this machine must know where to look), and that folder.
fn named(job: Job) -> anyhow::Result<(Job, PathBuf)> {
    match &job {
        Job::Train {
            runs_dir,
            name: Some(name),
            ..
        } => return Ok((job.clone(), runs_dir.join(name))),
        Job::Resume { run, .. } => return Ok((job.clone(), run.clone())),
        _ => {}
    }
    match job {
        Job::Train {
            dataset,
            config,
            runs_dir,
            name: None,
        } => {
            // The cluster's job checks that it sees the runs folder: it must exist first.
            std::fs::create_dir_all(&runs_dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", runs_dir.display()))?;
            let base = format!("{}-{}", crate::util::stamp(), config.model.id());
            let name = (1..)
                .map(|k| {
                    if k == 1 {
                        base.clone()
                    } else {
                        format!("{base}-{k}")
                    }
                })
                .find(|n| !runs_dir.join(n).exists())
                .expect("an unbounded counter finds a free name");
            let dir = runs_dir.join(&name);
            let job = Job::Train {
                dataset,
                config,
                runs_dir,
                name: Some(name),
            };
            Ok((job, dir))
        }
        _ => anyhow::bail!("only training runs go to a Ray cluster"),
    }
}

/// What has been reported of a job's run folder so far.
struct Watch {
    run_dir: PathBuf,
    id: String,
    visible: bool,
    told_invisible: bool,
    epochs_sent: usize,
    steps_sent: usize,
}

impl Watch {
    fn new(run_dir: &Path, id: String) -> Watch {
        Watch {
            run_dir: run_dir.to_path_buf(),
            id,
            visible: false,
            told_invisible: false,
            epochs_sent: 0,
            steps_sent: 0,
        }
    }

    /// Reports what the run folder has that was not reported yet: its start, steps, epochs.
    fn report(&mut self, emit: &dyn Fn(Event)) {
        let Ok(rc) = RunConfig::read(&self.run_dir) else {
            return;
        };
        let Ok(m) = read_metrics(&self.run_dir) else {
            return;
        };
        if !self.visible {
            self.visible = true;
            emit(Event::Started {
                run_dir: self.run_dir.clone(),
                device: format!("Ray job {}", self.id),
                train: rc.split.train,
                val: rc.split.val.len(),
                skipped: 0,
                classes: rc.classes.clone(),
            });
        }
        let per_epoch = rc
            .split
            .train
            .div_ceil((rc.config.batch * rc.config.accumulate).max(1))
            .max(1);
        if let Some(s) = m.steps.last().filter(|_| m.steps.len() > self.steps_sent) {
            self.steps_sent = m.steps.len();
            emit(Event::Step {
                epoch: s.epoch,
                step: s
                    .step
                    .saturating_sub((s.epoch - 1) * per_epoch)
                    .min(per_epoch),
                steps: per_epoch,
                loss: s.loss,
                lr: s.lr,
                images_per_s: s.images_per_s,
            });
        }
        for e in m.epochs.iter().skip(self.epochs_sent) {
            emit(Event::Epoch {
                metrics: Box::new(e.clone()),
            });
        }
        self.epochs_sent = self.epochs_sent.max(m.epochs.len());
    }

    /// Waits until the run folder records the run's end, or `limit` passes.
    fn await_end(&self, limit: Duration) {
        let since = Instant::now();
        while since.elapsed() < limit {
            if read_metrics(&self.run_dir).is_ok_and(|m| m.ended.is_some()) || !self.visible {
                return;
            }
            std::thread::sleep(POLL / 4);
        }
    }

    /// The last event of an ended job: the run's end as its folder has it, or why it failed.
    fn end(&self, info: &JobInfo, logs: &str, stop_sent: bool) -> Event {
        let rc = RunConfig::read(&self.run_dir);
        let m = read_metrics(&self.run_dir).unwrap_or_default();
        if let (Ok(rc), Some(cancelled)) = (&rc, m.ended) {
            let monitor = rc.config.monitor.clone();
            let best = m
                .epochs
                .iter()
                .map(|e| monitor.of(e))
                .max_by(f64::total_cmp);
            return Event::Finished {
                run_dir: self.run_dir.clone(),
                best,
                monitor,
                cancelled: cancelled || stop_sent,
            };
        }
        let why = last_error(logs)
            .or_else(|| {
                info.message
                    .clone()
                    .map(|m| m.lines().next().unwrap_or("").into())
            })
            .unwrap_or_else(|| format!("it ended {}", info.status.to_lowercase()));
        let mut message = if stop_sent {
            format!("Ray job {} was stopped ({why})", self.id)
        } else {
            format!("Ray job {} failed: {why}", self.id)
        };
        if self.visible {
            message.push_str(&format!(
                ". The run folder {} keeps its last finished epoch: resume it",
                self.run_dir.display()
            ));
        }
        Event::Failed { message }
    }
}

/// The last `error: ...` line of a job's logs (what `loupe` prints when it fails), without the
/// prefix.
fn last_error(logs: &str) -> Option<String> {
    logs.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
}

/// A submission id Ray has not seen: the run folder's name, and the time.
fn submission_id(run_dir: &Path) -> String {
    let name: String = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("loupe-{name}-{}-{nanos:09}", now_secs())
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What `loupe run-job` checks on the cluster before it runs a job: that the paths the job
/// names are there. A cluster without the shared storage fails here, in words.
pub fn check_paths(job: &Job) -> anyhow::Result<()> {
    let mut need: Vec<PathBuf> = Vec::new();
    match job {
        Job::Train {
            dataset, runs_dir, ..
        } => {
            need.push(match dataset {
                crate::dataset::Source::Csv(c) => c.csv.clone(),
                other => other.root(),
            });
            need.push(runs_dir.clone());
        }
        Job::Resume { run, .. } => need.push(run.clone()),
        _ => {}
    }
    for p in need {
        anyhow::ensure!(
            p.exists(),
            "this machine ({}) cannot see {}: a run on a Ray cluster needs the dataset and the \
             runs folder on storage that the cluster and the machine that sent it share, at the \
             same path",
            hostname(),
            p.display()
        );
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "the cluster".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Source;

    #[test]
    fn the_entrypoint_quotes_the_job_as_one_shell_word() {
        let job = Job::Resume {
            run: "/runs/it's here".into(),
            epochs: Some(3),
        };
        let c = Cluster {
            command: "/opt/loupe/bin/loupe {args} 2>&1".into(),
            ..Default::default()
        };
        let e = c.entrypoint(&job);
        assert!(e.starts_with("/opt/loupe/bin/loupe run-job '"), "{e}");
        assert!(e.ends_with("' 2>&1"), "{e}");
        // What the shell hands `loupe` is the job's JSON again.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(
                c.entrypoint(&job)
                    .replace("/opt/loupe/bin/loupe run-job", "printf %s"),
            )
            .output()
            .unwrap();
        let back: Job = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn a_failed_job_is_told_by_its_last_error_line() {
        let logs = "Running entrypoint\nepoch 1/2 ...\nerror: first\nnoise\nerror: this one\n";
        assert_eq!(last_error(logs).as_deref(), Some("this one"));
        assert_eq!(last_error("nothing here"), None);
    }

    #[test]
    fn paths_the_cluster_cannot_see_are_named() {
        let job = Job::Train {
            dataset: Source::ImageFolder {
                root: "/nowhere/data".into(),
            },
            config: Default::default(),
            runs_dir: "/nowhere/runs".into(),
            name: Some("r".into()),
        };
        let e = check_paths(&job).unwrap_err().to_string();
        assert!(e.contains("cannot see /nowhere/data"), "{e}");
        assert!(e.contains("on storage that the cluster"), "{e}");
    }

    #[test]
    fn an_unreachable_cluster_is_a_failed_event_not_a_crash() {
        // Port 9 (discard) on localhost: nothing listens in a test machine.
        let c = Cluster {
            address: "http://127.0.0.1:9".into(),
            ..Default::default()
        };
        assert!(c.check().unwrap_err().contains("does not answer"));
        let job = Job::Resume {
            run: "/r".into(),
            epochs: None,
        };
        let events = c.start(&job, None).wait();
        match events.last() {
            Some(Event::Failed { message }) => {
                assert!(message.contains("127.0.0.1:9"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
