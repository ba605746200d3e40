//! File ▸ Export from the window: the same export as `loupe export` (edits applied, excluded
//! images left out, hardlinks where possible), on a background thread with a progress bar.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use crate::dataset::export::{self, ExportFormat};
use crate::dataset::{Dataset, LabelStore};

pub struct ExportJob {
    pub out: PathBuf,
    pub total: usize,
    pub done: Arc<AtomicUsize>,
    rx: Receiver<Result<String, String>>,
}

impl ExportJob {
    /// Exports `dataset` as edited (its overlay on disk, which the labels worker keeps up to
    /// date) into `out`.
    pub fn start(
        ctx: &egui::Context,
        dataset: Arc<Dataset>,
        out: PathBuf,
        format: ExportFormat,
    ) -> ExportJob {
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let (d, o, c) = (done.clone(), out.clone(), ctx.clone());
        let total = dataset.samples.len();
        let _ = std::thread::Builder::new()
            .name("loupe-export".into())
            .spawn(move || {
                let result = LabelStore::open(&dataset)
                    .map_err(|e| e.to_string())
                    .and_then(|store| {
                        let eff = store.effective(&dataset);
                        export::export(&eff, &o, format, &d).map_err(|e| e.to_string())
                    })
                    .map(|r| {
                        format!(
                            "exported {} images in {} classes to {} ({} hardlinked, {} copied)",
                            r.images,
                            r.classes,
                            o.display(),
                            r.hardlinked,
                            r.copied
                        )
                    });
                let _ = tx.send(result);
                c.request_repaint();
            });
        ExportJob {
            out,
            total,
            done,
            rx,
        }
    }

    /// The outcome, once it is there.
    pub fn poll(&self) -> Option<Result<String, String>> {
        self.rx.try_recv().ok()
    }

    pub fn fraction(&self) -> f32 {
        self.done.load(Ordering::Relaxed) as f32 / self.total.max(1) as f32
    }
}
