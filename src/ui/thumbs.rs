//! Thumbnails: decoded on a fixed pool of worker threads, what is on screen first, requests for
//! tiles that scrolled away dropped, a bounded number of textures uploaded per frame, textures
//! evicted by a byte budget, and a disk cache keyed by path + size + mtime so a second visit
//! does not decode again. The UI thread never touches the filesystem.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use egui::{ColorImage, TextureHandle, TextureOptions};

/// Longest side of a thumbnail, in pixels.
pub const THUMB_SIZE: u32 = 128;
/// Textures uploaded per frame at most: decoding bursts must not cost a frame.
const UPLOADS_PER_FRAME: usize = 48;

/// What the workers should decode next: replaced wholesale every frame with what is visible, so
/// tiles that scrolled away are never decoded.
#[derive(Default)]
struct Queue {
    items: Vec<(usize, PathBuf)>,
    /// Taken by a worker, result not yet picked up by the UI.
    taken: HashSet<usize>,
    closed: bool,
}

pub struct Thumbs {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    done_rx: Receiver<(usize, Result<ColorImage, String>)>,
    workers: Vec<JoinHandle<()>>,
    textures: HashMap<usize, (TextureHandle, u64)>,
    failed: HashMap<usize, String>,
    bytes: usize,
    budget: usize,
    frame: u64,
}

impl Thumbs {
    /// `cache_dir`: where encoded thumbnails are kept between runs (None: no disk cache).
    pub fn new(ctx: &egui::Context, cache_dir: Option<PathBuf>, budget_bytes: usize) -> Self {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let (done_tx, done_rx) = mpsc::channel();
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8);
        let workers = (0..threads)
            .map(|i| {
                let (queue, tx, ctx, cache) = (
                    queue.clone(),
                    done_tx.clone(),
                    ctx.clone(),
                    cache_dir.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("loupe-thumb-{i}"))
                    .spawn(move || worker(&queue, &tx, &ctx, cache.as_deref()))
                    .expect("spawning a thread only fails when the OS is out of resources")
            })
            .collect();
        Thumbs {
            queue,
            done_rx,
            workers,
            textures: HashMap::new(),
            failed: HashMap::new(),
            bytes: 0,
            budget: budget_bytes,
            frame: 0,
        }
    }

    /// Call once per frame with the samples on screen (and a few ahead), in priority order.
    pub fn want(
        &mut self,
        ctx: &egui::Context,
        visible: impl IntoIterator<Item = (usize, PathBuf)>,
    ) {
        self.frame += 1;
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock().expect("thumbnail queue poisoned");
        for _ in 0..UPLOADS_PER_FRAME {
            let Ok((i, result)) = self.done_rx.try_recv() else {
                break;
            };
            q.taken.remove(&i);
            match result {
                Ok(img) => {
                    let size = img.pixels.len() * 4;
                    let tex = ctx.load_texture(format!("thumb-{i}"), img, TextureOptions::LINEAR);
                    self.bytes += size;
                    self.textures.insert(i, (tex, self.frame));
                }
                Err(e) => {
                    self.failed.insert(i, e);
                }
            }
        }
        let mut items = Vec::new();
        for (i, path) in visible {
            if let Some(t) = self.textures.get_mut(&i) {
                t.1 = self.frame;
            } else if !self.failed.contains_key(&i) && !q.taken.contains(&i) {
                items.push((i, path));
            }
        }
        // Workers take from the end: reverse so the first visible tile comes first.
        items.reverse();
        // Whatever was queued and not started is dropped: it is no longer what the user sees.
        q.items = items;
        cv.notify_all();
        drop(q);
        self.evict();
    }

    /// Drops the least recently shown textures once over budget (never one shown this frame).
    fn evict(&mut self) {
        if self.bytes <= self.budget {
            return;
        }
        let mut by_age: Vec<(u64, usize)> =
            self.textures.iter().map(|(i, (_, f))| (*f, *i)).collect();
        by_age.sort_unstable();
        for (last_used, i) in by_age {
            if self.bytes <= self.budget * 9 / 10 || last_used == self.frame {
                break;
            }
            if let Some((tex, _)) = self.textures.remove(&i) {
                self.bytes -= tex.size()[0] * tex.size()[1] * 4;
            }
        }
    }

    pub fn get(&self, i: usize) -> Option<&TextureHandle> {
        self.textures.get(&i).map(|(t, _)| t)
    }

    pub fn error(&self, i: usize) -> Option<&str> {
        self.failed.get(&i).map(String::as_str)
    }

    /// Decodes queued or running.
    pub fn busy(&self) -> usize {
        self.queue
            .0
            .lock()
            .map(|q| q.items.len() + q.taken.len())
            .unwrap_or(0)
    }

    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Thumbs {
    fn drop(&mut self) {
        if let Ok(mut q) = self.queue.0.lock() {
            q.closed = true;
            q.items.clear();
        }
        self.queue.1.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(
    queue: &(Mutex<Queue>, Condvar),
    tx: &Sender<(usize, Result<ColorImage, String>)>,
    ctx: &egui::Context,
    cache: Option<&Path>,
) {
    loop {
        let (i, path) = {
            let mut q = queue.0.lock().expect("thumbnail queue poisoned");
            loop {
                if q.closed {
                    return;
                }
                if let Some(item) = q.items.pop() {
                    q.taken.insert(item.0);
                    break item;
                }
                q = queue.1.wait(q).expect("thumbnail queue poisoned");
            }
        };
        // A panic in a decoder (a hostile file) must not leave the tile loading forever or end
        // the worker: it becomes the tile's error, and the worker goes on.
        let result = std::panic::catch_unwind(|| thumbnail(&path, cache))
            .unwrap_or_else(|_| {
                Err(crate::dataset::Reason::Io(
                    "the decoder crashed on this file".into(),
                ))
            })
            .map_err(|e| e.to_string());
        if tx.send((i, result)).is_err() {
            return;
        }
        ctx.request_repaint();
    }
}

/// The thumbnail of one image: from the disk cache when its key matches, else decoded (EXIF
/// orientation applied), scaled, and written to the cache.
pub fn thumbnail(path: &Path, cache: Option<&Path>) -> Result<ColorImage, crate::dataset::Reason> {
    let key = cache.and_then(|dir| {
        let meta = std::fs::metadata(path).ok()?;
        let mtime = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let id = format!("{}|{}|{}|{}", path.display(), meta.len(), mtime, THUMB_SIZE);
        Some(dir.join(format!(
            "{}.png",
            &blake3::hash(id.as_bytes()).to_hex()[..32]
        )))
    });
    if let Some(cached) = key.as_ref().and_then(|k| image::open(k).ok()) {
        return Ok(to_color_image(&cached.to_rgba8()));
    }
    let img = crate::dataset::probe::decode(path)?;
    let small = img.thumbnail(THUMB_SIZE, THUMB_SIZE).to_rgba8();
    if let Some(k) = key {
        // A cache that cannot be written only costs a decode next time.
        let _ = k.parent().map(std::fs::create_dir_all);
        let _ = crate::util::replace_file(&k, |tmp| {
            small
                .save_with_format(tmp, image::ImageFormat::Png)
                .map_err(std::io::Error::other)
        });
    }
    Ok(to_color_image(&small))
}

pub fn to_color_image(img: &image::RgbaImage) -> ColorImage {
    ColorImage::from_rgba_unmultiplied([img.width() as usize, img.height() as usize], img.as_raw())
}

/// The user cache folder's `thumbs/` (see `util::user_cache_dir`; tests point it elsewhere).
pub fn default_cache_dir() -> Option<PathBuf> {
    Some(crate::util::user_cache_dir().join("thumbs"))
}
