//! Where runs run, and several runs at once.
//!
//! A [`Backend`] starts one run: an engine process on this machine, or a job on a Ray cluster.
//! Either way the caller gets an [`EngineHandle`] with the same events, so the command line and
//! the window follow a cluster run as they follow a local one. [`Batch`] runs a list of jobs (the
//! folds of an experiment, the trials of a sweep) as many at once as the backend allows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{Engine, EngineHandle, Wake};
use super::protocol::{Event, Job};
use super::ray::Cluster;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// An engine process on this machine.
    Local,
    /// A job on a Ray cluster.
    Ray(Cluster),
}

impl Backend {
    pub fn start(&self, engine: &Engine, job: &Job, wake: Option<Wake>) -> EngineHandle {
        match self {
            Backend::Local => engine.start(job, wake),
            Backend::Ray(cluster) => cluster.start(job, wake),
        }
    }

    /// How many runs go at once: one here (a run takes every core, or the GPU); all of them on
    /// a cluster, which starts each when it has the resources for it.
    pub fn parallel(&self) -> usize {
        match self {
            Backend::Local => 1,
            Backend::Ray(_) => usize::MAX,
        }
    }

    /// Refuses a cluster that does not answer, before anything is created for it.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Backend::Local => Ok(()),
            Backend::Ray(cluster) => cluster.check().map(|_| ()),
        }
    }
}

/// Several runs: their events tagged with the job's index, in the order they come.
pub struct Batch {
    pub rx: Receiver<(usize, Event)>,
    stop: Arc<AtomicBool>,
}

impl Batch {
    /// Starts `jobs`, as many at once as `backend` allows, each when one before it ends. Every
    /// started job ends with its last event (`Finished`, `Done` or `Failed`); after a stop, the
    /// jobs not started yet are not started and send nothing.
    pub fn start(backend: Backend, engine: Engine, jobs: Vec<Job>, wake: Option<Wake>) -> Batch {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("loupe-batch".into())
            .spawn(move || {
                let mut running: Vec<(usize, EngineHandle)> = Vec::new();
                let mut next = 0;
                let mut stop_sent = false;
                loop {
                    let stopping = stopped.load(Ordering::Relaxed);
                    while !stopping && running.len() < backend.parallel() && next < jobs.len() {
                        running.push((next, backend.start(&engine, &jobs[next], wake.clone())));
                        next += 1;
                    }
                    if stopping && !stop_sent {
                        running.iter().for_each(|(_, h)| h.cancel());
                        stop_sent = true;
                    }
                    if running.is_empty() {
                        return;
                    }
                    let mut quiet = true;
                    running.retain(|(i, h)| loop {
                        match h.rx.try_recv() {
                            Ok(e) => {
                                quiet = false;
                                let last = e.is_last();
                                let _ = tx.send((*i, e));
                                if last {
                                    return false;
                                }
                            }
                            Err(TryRecvError::Empty) => return true,
                            Err(TryRecvError::Disconnected) => return false,
                        }
                    });
                    if quiet {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        Batch { rx, stop }
    }

    /// Stops the running jobs (each keeps its last checkpoint) and starts no more.
    pub fn cancel(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.cancel();
    }
}
