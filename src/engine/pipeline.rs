//! The batch pipeline. Every training image is decoded once, resized to a frame a little larger
//! than the training resolution and kept as uint8 RGB in one buffer ([`Cache`]); batches are cut
//! from it as tensors and cropped (randomly for training, centred for validation) and augmented
//! on the device they train on. Decoding, the usual bottleneck of a PyTorch
//! DataLoader, then happens once per run instead of once per epoch. When the cache would not fit
//! the memory budget, [`Stream`] decodes each batch on the I/O pool instead (the engine prefetches
//! batches on a thread, so decoding overlaps training either way).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use loupe::dataset::{probe, scan::io_pool, Dataset};
use loupe::train::config::TrainConfig;

use super::zoo;

/// A run's images, addressed by position: what the engine trains and validates on.
pub trait Frames: Sync {
    /// Side of every frame, in pixels.
    fn side(&self) -> u32;
    /// Class index of each position.
    fn labels(&self) -> &[i64];
    /// Dataset sample index of each position.
    fn samples(&self) -> &[usize];
    /// RGB bytes (`side * side * 3` each) of the positions `idx`, and the positions they are of:
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

/// Bytes of `n` frames of `side`: what to compare with the memory budget.
pub fn bytes_for(n: usize, side: u32) -> u64 {
    n as u64 * u64::from(side) * u64::from(side) * 3
}

/// One image as a frame: short side resized to `side`, the centre square cropped.
fn frame(path: &std::path::Path, side: u32) -> Result<Vec<u8>, String> {
    probe::decode(path)
        .map(|img| super::data::center_square(&img, side, side).into_raw())
        .map_err(|e| e.to_string())
}

/// Decoded frames in memory, in sample order.
pub struct Cache {
    side: u32,
    /// `len() * side * side * 3` bytes.
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
        side: u32,
        offset: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Cache {
        let done = AtomicUsize::new(0);
        let every = (samples.len() / 100).max(1);
        let decoded: Vec<Result<Vec<u8>, String>> = io_pool().install(|| {
            samples
                .par_iter()
                .map(|&i| {
                    let r = frame(&ds.abs_path(&ds.samples[i].path), side);
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(every) || n == samples.len() {
                        progress(offset + n);
                    }
                    r
                })
                .collect()
        });
        let bytes = (side * side * 3) as usize;
        let mut cache = Cache {
            side,
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
    fn side(&self) -> u32 {
        self.side
    }

    fn labels(&self) -> &[i64] {
        &self.labels
    }

    fn samples(&self) -> &[usize] {
        &self.samples
    }

    fn read(&self, idx: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let frame = (self.side * self.side * 3) as usize;
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
    side: u32,
    files: Vec<PathBuf>,
    labels: Vec<i64>,
    samples: Vec<usize>,
    skipped: Mutex<Vec<(usize, String)>>,
}

impl Stream {
    pub fn new(ds: &Dataset, samples: &[usize], labels: &[i64], side: u32) -> Stream {
        let files = samples
            .iter()
            .map(|&i| ds.abs_path(&ds.samples[i].path))
            .collect();
        Stream {
            side,
            files,
            labels: labels.to_vec(),
            samples: samples.to_vec(),
            skipped: Mutex::new(Vec::new()),
        }
    }
}

impl Frames for Stream {
    fn side(&self) -> u32 {
        self.side
    }

    fn labels(&self) -> &[i64] {
        &self.labels
    }

    fn samples(&self) -> &[usize] {
        &self.samples
    }

    fn read(&self, idx: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let side = self.side;
        let decoded: Vec<Result<Vec<u8>, String>> = io_pool().install(|| {
            idx.par_iter()
                .map(|&k| frame(&self.files[k], side))
                .collect()
        });
        let mut bytes = Vec::with_capacity(idx.len() * (side * side * 3) as usize);
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

/// Training augmentation, from [`TrainConfig`]'s `crop_scale`, `flip` and `jitter`.
#[derive(Debug, Clone, Copy)]
pub struct Augment {
    pub crop_scale: f64,
    pub flip: bool,
    pub jitter: f64,
}

impl Augment {
    pub fn of(cfg: &TrainConfig) -> Augment {
        Augment {
            crop_scale: cfg.crop_scale.clamp(0.01, 1.0),
            flip: cfg.flip,
            jitter: cfg.jitter.clamp(0.0, 1.0),
        }
    }
}

/// RGB frames (`bytes`, each `side` x `side`) as a float batch `[n, 3, size, size]` on `device`,
/// normalised with `mean`/`std`. Without `augment`, the centre `size` square of each frame (what
/// evaluation and prediction see); with it, per image on `device`: a flip, a random resized
/// crop and a brightness/contrast change, as `augment` asks. Channels-last in memory, as the
/// networks' weights are ([`zoo::channels_last`]).
pub fn to_batch(
    bytes: &[u8],
    side: u32,
    size: u32,
    device: Device,
    norm: ([f64; 3], [f64; 3]),
    augment: Option<Augment>,
) -> Tensor {
    let s = i64::from(side);
    let n = bytes.len() as i64 / (s * s * 3);
    let x = Tensor::from_slice(bytes)
        .view([n, s, s, 3])
        .to_device(device)
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    let x = match augment {
        Some(a) => augment_batch(&x, i64::from(size), a),
        None => center_crop(&x, i64::from(size)),
    };
    let (mean, std) = norm;
    let mean = Tensor::from_slice(&mean)
        .view([1, 3, 1, 1])
        .to_kind(Kind::Float)
        .to_device(device);
    let std = Tensor::from_slice(&std)
        .view([1, 3, 1, 1])
        .to_kind(Kind::Float)
        .to_device(device);
    zoo::channels_last(&((x - mean) / std))
}

/// The centre `size` x `size` of a `[B, 3, S, S]` batch.
fn center_crop(x: &Tensor, size: i64) -> Tensor {
    let side = x.size()[2];
    let at = (side - size).max(0) / 2;
    x.narrow(2, at, size.min(side))
        .narrow(3, at, size.min(side))
}

/// Flip, random resized crop and colour change on a `[B, 3, S, S]` batch in [0, 1], out at
/// `size`, with tch's RNG (so `tch::manual_seed` makes CPU runs repeatable).
fn augment_batch(x: &Tensor, size: i64, a: Augment) -> Tensor {
    let b = x.size()[0];
    let opts = (Kind::Float, x.device());
    let x = if a.flip {
        let flip = Tensor::rand([b, 1, 1, 1], opts).lt(0.5);
        x.flip([3]).where_self(&flip, x)
    } else {
        x.shallow_clone()
    };
    let (w, h) = if a.crop_scale >= 1.0 {
        // torchvision's RandomCrop: a window of `size` anywhere inside the frame, unscaled. The
        // frame's margin around the centre (1/16 of its side) is the most it shifts: on small
        // pictures whose place and scale matter (digits) shifts are what helps.
        let share = Tensor::full([b], size as f64 / x.size()[2] as f64, opts).clamp_max(1.0);
        (share.shallow_clone(), share)
    } else {
        // torchvision's RandomResizedCrop: an area share in [crop_scale, 1] and a log-uniform
        // aspect in [3/4, 4/3] give the crop's width and height (as shares of the side, at most
        // the whole side).
        let area = Tensor::rand([b], opts) * (1.0 - a.crop_scale) + a.crop_scale;
        let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
        let aspect = (Tensor::rand([b], opts) * (hi - lo) + lo).exp();
        let w = (&area * &aspect).sqrt().clamp_max(1.0);
        let h = (&area / &aspect).sqrt().clamp_max(1.0);
        (w, h)
    };
    // Placed anywhere inside the frame; an affine grid samples it at `size`.
    let tx = (Tensor::rand([b], opts) * 2.0 - 1.0) * (1.0 - &w);
    let ty = (Tensor::rand([b], opts) * 2.0 - 1.0) * (1.0 - &h);
    let zeros = Tensor::zeros([b], opts);
    let theta = Tensor::stack(&[&w, &zeros, &tx, &zeros, &h, &ty], 1).view([b, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, [b, 3, size, size], false);
    let x = x.grid_sampler(&grid, 0, 1, false);
    if a.jitter <= 0.0 {
        return x;
    }
    let bright = Tensor::rand([b, 1, 1, 1], opts) * (2.0 * a.jitter) + (1.0 - a.jitter);
    let contrast = Tensor::rand([b, 1, 1, 1], opts) * (2.0 * a.jitter) + (1.0 - a.jitter);
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
        // A header that probes fine but pixel data that cannot be decoded: a real PNG with its
        // compressed pixels overwritten.
        let broken = root.join("b/broken.png");
        ImageBuffer::from_pixel(8, 8, Rgb([0u8, 255, 0]))
            .save(&broken)
            .unwrap();
        let mut bytes = std::fs::read(&broken).unwrap();
        let idat = bytes.windows(4).position(|w| w == b"IDAT").unwrap() + 4;
        bytes[idat..idat + 6].fill(0xff);
        std::fs::write(&broken, bytes).unwrap();

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

        let x = to_batch(&cbytes, 12, 10, Device::Cpu, ([0.5; 3], [0.5; 3]), None);
        assert_eq!(x.size(), vec![2, 3, 10, 10]);
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

        // Augmented batches keep shape and range. (Not checked here: that a seed repeats them.
        // Tests share torch's one generator across threads, so a draw by another test between
        // the seed and this one would make such a check flaky.)
        let (four, _) = cache.read(&[0, 1, 0, 1]);
        let aug = Some(Augment {
            crop_scale: 0.5,
            flip: true,
            jitter: 0.1,
        });
        let a1 = to_batch(&four, 12, 10, Device::Cpu, ([0.5; 3], [0.5; 3]), aug);
        assert_eq!(a1.size(), vec![4, 3, 10, 10]);
        assert!(
            a1.max().double_value(&[]) <= 1.0 + 1e-6 && a1.min().double_value(&[]) >= -1.0 - 1e-6
        );
    }

    /// A frame whose red channel is its column (0..16) and green its row: what a crop keeps is
    /// read off the pixels.
    fn ramp_frame(side: u8) -> Vec<u8> {
        let mut px = Vec::new();
        for y in 0..side {
            for x in 0..side {
                px.extend_from_slice(&[x, y, 0]);
            }
        }
        px
    }

    /// Red and green of every pixel of image `i` of a batch normalised with mean 0, std 1/255.
    fn channels(x: &Tensor, i: i64) -> (Vec<f64>, Vec<f64>) {
        let get = |c: i64| {
            Vec::<f64>::try_from(x.get(i).get(c).reshape([-1]).to_kind(Kind::Double)).unwrap()
        };
        (get(0), get(1))
    }

    #[test]
    fn validation_sees_the_centre_and_training_crops_flip_or_not_as_asked() {
        let frame = ramp_frame(16);
        let norm = ([0.0; 3], [1.0 / 255.0; 3]);
        // The centre 8 of 16: columns and rows 4..=11, exactly.
        let x = to_batch(&frame, 16, 8, Device::Cpu, norm, None);
        let (r, g) = channels(&x, 0);
        let r: Vec<f64> = r.iter().map(|v| v.round()).collect();
        assert_eq!(r[..8], [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!((g[0].round(), g[63].round()), (4.0, 11.0));

        // Random crops: inside the frame, at the asked size, different from image to image, and
        // never mirrored when flips are off (red grows from left to right in every row).
        let many: Vec<u8> = (0..64).flat_map(|_| frame.clone()).collect();
        let no_flip = Augment {
            crop_scale: 0.25,
            flip: false,
            jitter: 0.0,
        };
        let x = to_batch(&many, 16, 8, Device::Cpu, norm, Some(no_flip));
        assert_eq!(x.size(), vec![64, 3, 8, 8]);
        let mut lefts = Vec::new();
        for i in 0..64 {
            let (r, _) = channels(&x, i);
            assert!(
                r.iter().all(|&v| (-1e-3..=15.0 + 1e-3).contains(&v)),
                "{r:?}"
            );
            assert!(r[0] < r[7], "image {i} is mirrored: {r:?}");
            lefts.push((r[0] * 10.0).round() as i64);
        }
        lefts.sort();
        lefts.dedup();
        assert!(lefts.len() > 1, "every crop starts at the same column");

        // With flips on, some images of a batch are mirrored.
        let flip_only = Augment {
            crop_scale: 1.0,
            flip: true,
            jitter: 0.0,
        };
        let x = to_batch(&many, 16, 16, Device::Cpu, norm, Some(flip_only));
        let mirrored = (0..64)
            .filter(|&i| channels(&x, i).0[0].round() == 15.0)
            .count();
        assert!((1..64).contains(&mirrored), "{mirrored} of 64 mirrored");
    }

    #[test]
    fn crop_scale_one_shifts_windows_of_the_asked_size_without_rescaling() {
        let frame = ramp_frame(16);
        let norm = ([0.0; 3], [1.0 / 255.0; 3]);
        let many: Vec<u8> = (0..64).flat_map(|_| frame.clone()).collect();
        let shift = Augment {
            crop_scale: 1.0,
            flip: false,
            jitter: 0.0,
        };
        let x = to_batch(&many, 16, 12, Device::Cpu, norm, Some(shift));
        assert_eq!(x.size(), vec![64, 3, 12, 12]);
        let mut corners = Vec::new();
        for i in 0..64 {
            let (r, g) = channels(&x, i);
            // Unscaled: neighbours one column (row) apart differ by one; inside the frame.
            for row in 0..12 {
                for col in 1..12 {
                    let step = r[row * 12 + col] - r[row * 12 + col - 1];
                    assert!(
                        (step - 1.0).abs() < 1e-3,
                        "image {i}: a column step of {step}"
                    );
                }
            }
            assert!(
                (g[12] - g[0] - 1.0).abs() < 1e-3,
                "image {i}: rows rescaled"
            );
            assert!(r[0] >= -1e-3 && r[11] <= 15.0 + 1e-3, "image {i}: {r:?}");
            assert!(g[0] >= -1e-3 && g[143] <= 15.0 + 1e-3, "image {i}: {g:?}");
            corners.push(((r[0] * 4.0).round() as i64, (g[0] * 4.0).round() as i64));
        }
        corners.sort();
        corners.dedup();
        assert!(
            corners.len() > 8,
            "only {} different windows",
            corners.len()
        );
    }
}
