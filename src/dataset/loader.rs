//! Opening a dataset off the UI thread: a named worker scans and computes the statistics, the
//! UI polls a channel each frame and shows the shared progress counters meanwhile.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::workspace::Workspace;
use super::{stats, LabelStore, Progress, Source};

pub struct Loader {
    pub path: PathBuf,
    pub progress: Arc<Progress>,
    rx: Receiver<Result<Workspace, String>>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts opening `source` on a background thread: the scan, content hashes, the label
    /// overlay and the workspace built on them. `repaint` is called from there when the result
    /// is ready, and later by the workspace's labels worker after each answer.
    pub fn spawn(source: Source, repaint: impl Fn() + Clone + Send + 'static) -> Loader {
        let progress = Arc::new(Progress::default());
        let (tx, rx) = mpsc::sync_channel(1);
        let path = match &source {
            Source::ImageFolder { root } => root.clone(),
            Source::Csv(c) => c.csv.clone(),
        };
        let worker_progress = progress.clone();
        let handle = std::thread::Builder::new()
            .name("loupe-open-dataset".into())
            .spawn(move || {
                let hashed = super::OpenOptions { hash: true };
                let result = super::open_with(&source, &worker_progress, hashed)
                    .map_err(|e| e.to_string())
                    .and_then(|dataset| {
                        let store = LabelStore::open(&dataset).map_err(|e| e.to_string())?;
                        let hashes = stats::hash_samples(&dataset);
                        Ok(Workspace::new(dataset, hashes, store, repaint.clone()))
                    });
                let _ = tx.send(result);
                repaint();
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        Loader {
            path,
            progress,
            rx,
            handle: Some(handle),
        }
    }

    /// The result, once: `None` while still working.
    pub fn poll(&mut self) -> Option<Result<Workspace, String>> {
        match self.rx.try_recv() {
            Ok(r) => {
                if let Some(h) = self.handle.take() {
                    let _ = h.join();
                }
                Some(r)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(Err("the dataset loader stopped unexpectedly".into()))
            }
        }
    }

    /// (probed, found) so far.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.progress.probed.load(Ordering::Relaxed),
            self.progress.found.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.progress.cancel.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
