//! The batch pipeline. Every training image is decoded once, resized to the training resolution
//! and kept as uint8 RGB in one buffer ([`Cache`]); batches are cut from it as tensors and
//! augmented on the device they train on. Decoding, the usual bottleneck of a PyTorch
//! DataLoader, then happens once per run instead of once per epoch. When the cache would not fit
//! the memory budget, [`Stream`] decodes each batch on the I/O pool instead (the engine prefetches
//! batches on a thread, so decoding overlaps training either way).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use loupe::dataset::{probe, scan::io_pool, Dataset};

/// A run's images, addressed by position: what the engine trains and validates on.
pub trait Frames: Sync {
    /// Side of every frame, in pixels.
    fn size(&self) -> u32;
    /// Class index of each position.
    fn labels(&self) -> &[i64];
    /// Dataset sample index of each position.
    fn samples(&self) -> &[usize];
    /// RGB bytes (`size * size * 3` each) of the positions `idx`, and the positions they are of:
    /// a streamed image that fails to decode is left out (and recorded in [`Frames::skipped`]).
    fn read(&self, idx: &[usize]) -> (Vec<u8>, Vec<usize>);
    /// Samples that could not be decoded, with the reason: skipped, never fatal.
    fn skipped(&self) -> Vec<(usize, String)>;

    fn len(&self) -> usize {
        self.labels().len()
    }

    fn is_empty(&self) -> bool {
        self.labels().is_empty()
    }
}

/// Bytes of `n` frames at `size`: what to compare with the memory budget.
pub fn bytes_for(n: usize, size: u32) -> u64 {
    n as u64 * u64::from(size) * u64::from(size) * 3
}

/// One image as a training frame: short side resized to `size`, the centre square cropped, so
/// augmentation crops see the whole object.
fn frame(ds: &Dataset, sample: usize, size: u32) -> Result<Vec<u8>, String> {
    probe::decode(&ds.abs_path(&ds.samples[sample].path))
        .map(|img| super::data::center_square(&img, size, size).into_raw())
        .map_err(|e| e.to_string())
}

/// Decoded frames in memory, in sample order.
pub struct Cache {
    size: u32,
    /// `len() * size * size * 3` bytes.
    pixels: Vec<u8>,
    labels: Vec<i64>,
    samples: Vec<usize>,
    skipped: Vec<(usize, String)>,
}

impl Cache {
    /// Decodes `samples` of `ds` (with class indices `labels`) on the I/O pool. `progress` is
    /// told how many images are decoded (counting from `offset`), about a hundred times in all.
    pub fn build(
        ds: &Dataset,
        samples: &[usize],
        labels: &[i64],
        size: u32,
        offset: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Cache {
        let done = AtomicUsize::new(0);
        let every = (samples.len() / 100).max(1);
        let decoded: Vec<Result<Vec<u8>, String>> = io_pool().install(|| {
            samples
                .par_iter()
                .map(|&i| {
                    let r = frame(ds, i, size);
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(every) || n == samples.len() {
                        progress(offset + n);
                    }
                    r
                })
                .collect()
        });
        let bytes = (size * size * 3) as usize;
        let mut cache = Cache {
            size,
            pixels: Vec::with_capacity(bytes * samples.len()),
            labels: Vec::new(),
            samples: Vec::new(),
            skipped: Vec::new(),
        };
        for ((&i, &label), r) in samples.iter().zip(labels).zip(decoded) {
            match r {
                Ok(px) => {
                    cache.pixels.extend_from_slice(&px);
                    cache.labels.push(label);
                    cache.samples.push(i);
                }
                Err(e) => cache.skipped.push((i, e)),
            }
        }
        cache
    }
}

impl Frames for Cache {
    fn size(&self) -> u32 {
        self.size
    }

    fn labels(&self) -> &[i64] {
        &self.labels
    }

    fn samples(&self) -> &[usize] {
        &self.samples
    }

    fn read(&self, idx: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let frame = (self.size * self.size * 3) as usize;
        let mut bytes = Vec::with_capacity(idx.len() * frame);
        for &k in idx {
            bytes.extend_from_slice(&self.pixels[k * frame..(k + 1) * frame]);
        }
        (bytes, idx.to_vec())
    }

    fn skipped(&self) -> Vec<(usize, String)> {
        self.skipped.clone()
    }
}

/// Frames decoded when a batch asks for them: for datasets whose cache exceeds the memory budget.
pub struct Stream {
    size: u32,
    files: Vec<PathBuf>,
    labels: Vec<i64>,
    samples: Vec<usize>,
    skipped: Mutex<Vec<(usize, String)>>,
}

impl Stream {
    pub fn new(ds: &Dataset, samples: &[usize], labels: &[i64], size: u32) -> Stream {
        let files = samples
            .iter()
            .map(|&i| ds.abs_path(&ds.samples[i].path))
            .collect();
        Stream {
            size,
            files,
            labels: labels.to_vec(),
            samples: samples.to_vec(),
            skipped: Mutex::new(Vec::new()),
        }
    }
}

impl Frames for Stream {
    fn size(&self) -> u32 {
        self.size
    }

    fn labels(&self) -> &[i64] {
        &self.labels
    }

    fn samples(&self) -> &[usize] {
        &self.samples
    }

    fn read(&self, idx: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let size = self.size;
        let decoded: Vec<Result<Vec<u8>, String>> = io_pool().install(|| {
            idx.par_iter()
                .map(|&k| {
                    probe::decode(&self.files[k])
                        .map(|img| super::data::center_square(&img, size, size).into_raw())
                        .map_err(|e| e.to_string())
                })
                .collect()
        });
        let mut bytes = Vec::with_capacity(idx.len() * (size * size * 3) as usize);
        let mut kept = Vec::with_capacity(idx.len());
        for (&k, r) in idx.iter().zip(decoded) {
            match r {
                Ok(px) => {
                    bytes.extend_from_slice(&px);
                    kept.push(k);
                }
                Err(e) => {
                    let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
                    if !skipped.iter().any(|(s, _)| *s == self.samples[k]) {
                        skipped.push((self.samples[k], e));
                    }
                }
            }
        }
        (bytes, kept)
    }

    fn skipped(&self) -> Vec<(usize, String)> {
        self.skipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// RGB frames (`bytes`, `n` of them at `size`) as a float batch `[n, 3, S, S]` on `device`,
/// normalised with `mean`/`std`. With `augment`: random horizontal flip, a random crop (zoomed
/// 1-1.25x, resized back) and light brightness/contrast jitter, per image, computed on `device`.
pub fn to_batch(
    bytes: &[u8],
    size: u32,
    device: Device,
    norm: ([f64; 3], [f64; 3]),
    augment: bool,
) -> Tensor {
    let s = i64::from(size);
    let n = bytes.len() as i64 / (s * s * 3);
    let mut x = Tensor::from_slice(bytes)
        .view([n, s, s, 3])
        .to_device(device)
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    if augment {
        x = augment_batch(&x);
    }
    let (mean, std) = norm;
    let mean = Tensor::from_slice(&mean)
        .view([1, 3, 1, 1])
        .to_kind(Kind::Float)
        .to_device(device);
    let std = Tensor::from_slice(&std)
        .view([1, 3, 1, 1])
        .to_kind(Kind::Float)
        .to_device(device);
    (x - mean) / std
}

/// Flip, zoom-crop and colour jitter on a `[B, 3, S, S]` batch in [0, 1], with tch's RNG (so
/// `tch::manual_seed` makes CPU runs repeatable).
fn augment_batch(x: &Tensor) -> Tensor {
    let size = x.size();
    let (b, s) = (size[0], size[2]);
    let device = x.device();
    let opts = (Kind::Float, device);
    // Horizontal flip for about half the images.
    let flip = Tensor::rand([b, 1, 1, 1], opts).lt(0.5);
    let x = x.flip([3]).where_self(&flip, x);
    // Zoom: an affine grid per image, scale 0.8-1.0 of the side, shifted within the image.
    let scale = Tensor::rand([b], opts) * 0.2 + 0.8;
    let room = (Tensor::ones([b], opts) - &scale).clamp_min(0.0);
    let tx = (Tensor::rand([b], opts) * 2.0 - 1.0) * &room;
    let ty = (Tensor::rand([b], opts) * 2.0 - 1.0) * &room;
    let zeros = Tensor::zeros([b], opts);
    let theta = Tensor::stack(&[&scale, &zeros, &tx, &zeros, &scale, &ty], 1).view([b, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, [b, 3, s, s], false);
    let x = x.grid_sampler(&grid, 0, 1, false);
    // Brightness and contrast, +-10%.
    let bright = Tensor::rand([b, 1, 1, 1], opts) * 0.2 + 0.9;
    let contrast = Tensor::rand([b, 1, 1, 1], opts) * 0.2 + 0.9;
    let mean = x.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
    (((x - &mean) * contrast + &mean) * bright).clamp(0.0, 1.0)
}

/// The uint8 cache, the streaming source and batches: exact pixels in, normalised tensors out,
/// bad images skipped, the same frames whichever way they are read.
#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb};
    use loupe::dataset::{self, Progress, Source};

    /// A valid PNG header whose pixel data cannot be decoded.
    fn write_png_header_only(path: &std::path::Path, w: u32, h: u32) {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc.finalize().to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn cache_and_stream_give_the_same_frames_skip_bad_images_and_batch_normalised_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Solid colours (so resizing cannot change them) in two classes; one image wider than tall.
        for class in ["a", "b"] {
            std::fs::create_dir_all(root.join(class)).unwrap();
        }
        ImageBuffer::from_pixel(40, 20, Rgb([255u8, 0, 0]))
            .save(root.join("a/red.png"))
            .unwrap();
        ImageBuffer::from_pixel(16, 16, Rgb([0u8, 0, 255]))
            .save(root.join("b/blue.png"))
            .unwrap();
        // A header that probes fine but pixel data that cannot be decoded.
        write_png_header_only(&root.join("b/broken.png"), 8, 8);

        let ds = dataset::open(
            &Source::ImageFolder {
                root: root.to_path_buf(),
            },
            &Progress::default(),
        )
        .unwrap();
        assert_eq!(
            ds.samples.len(),
            3,
            "the broken file passes the header check"
        );
        let labels: Vec<i64> = ds
            .samples
            .iter()
            .map(|s| if s.label == "a" { 0 } else { 1 })
            .collect();
        let all: Vec<usize> = (0..ds.samples.len()).collect();
        let reported = std::sync::Mutex::new(Vec::new());
        let cache = Cache::build(&ds, &all, &labels, 12, 5, &|n| {
            reported.lock().unwrap().push(n)
        });
        assert_eq!(cache.len(), 2);
        let skipped = cache.skipped();
        assert_eq!(skipped.len(), 1);
        assert_eq!(
            ds.samples[skipped[0].0].path,
            std::path::Path::new("b/broken.png")
        );
        let mut reported = reported.into_inner().unwrap();
        reported.sort();
        assert_eq!(
            reported,
            vec![6, 7, 8],
            "progress counts on from the offset"
        );
        assert_eq!(bytes_for(cache.len(), 12), 2 * 12 * 12 * 3);

        // The stream knows nothing until asked; then it leaves the broken image out and says so.
        let stream = Stream::new(&ds, &all, &labels, 12);
        assert_eq!(stream.len(), 3);
        let (sbytes, kept) = stream.read(&[0, 1, 2]);
        let broken = ds
            .samples
            .iter()
            .position(|s| s.path.ends_with("broken.png"))
            .unwrap();
        assert_eq!(
            kept,
            all.iter()
                .copied()
                .filter(|&k| k != broken)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            stream.skipped().iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![broken]
        );
        let _ = stream.read(&[broken]);
        assert_eq!(stream.skipped().len(), 1, "a bad image is reported once");
        let (cbytes, _) = cache.read(&[0, 1]);
        assert_eq!(sbytes, cbytes, "streamed frames are the cached frames");

        let x = to_batch(&cbytes, 12, Device::Cpu, ([0.5; 3], [0.5; 3]), false);
        assert_eq!(x.size(), vec![2, 3, 12, 12]);
        // red -> (1, -1, -1), blue -> (-1, -1, 1) everywhere.
        let means: Vec<f64> = Vec::try_from(
            x.mean_dim([2i64, 3].as_slice(), false, Kind::Float)
                .view([-1])
                .to_kind(Kind::Double),
        )
        .unwrap();
        let want = [1.0, -1.0, -1.0, -1.0, -1.0, 1.0];
        for (m, w) in means.iter().zip(want) {
            assert!((m - w).abs() < 1e-6, "{means:?}");
        }

        // Augmented batches keep shape and range, and follow tch's seed.
        let (four, _) = cache.read(&[0, 1, 0, 1]);
        tch::manual_seed(3);
        let a1 = to_batch(&four, 12, Device::Cpu, ([0.5; 3], [0.5; 3]), true);
        tch::manual_seed(3);
        let a2 = to_batch(&four, 12, Device::Cpu, ([0.5; 3], [0.5; 3]), true);
        assert_eq!(a1.size(), vec![4, 3, 12, 12]);
        assert!(a1.equal(&a2), "same seed, same augmentation");
        assert!(
            a1.max().double_value(&[]) <= 1.0 + 1e-6 && a1.min().double_value(&[]) >= -1.0 - 1e-6
        );
    }
}
