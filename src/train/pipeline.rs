//! The batch pipeline: every training image is decoded once, resized to the training
//! resolution and kept as uint8 RGB in one buffer; batches are cut from it as tensors, augmented
//! on the device they train on. Decoding, the usual bottleneck of a PyTorch DataLoader, then
//! happens once per run instead of once per epoch.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::dataset::{probe, scan::io_pool, Dataset};

/// Decoded images at `size` x `size`, RGB, in sample order.
pub struct Cache {
    pub size: u32,
    /// `len() * size * size * 3` bytes.
    pixels: Vec<u8>,
    /// Class index of each cached image.
    pub labels: Vec<i64>,
    /// Dataset sample index of each cached image.
    pub samples: Vec<usize>,
    /// Samples that could not be decoded, with the reason: skipped, never fatal.
    pub skipped: Vec<(usize, String)>,
}

impl Cache {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes a cache of `n` images at `size` takes: what to compare with the memory budget.
    pub fn bytes_for(n: usize, size: u32) -> u64 {
        n as u64 * u64::from(size) * u64::from(size) * 3
    }

    /// Decodes `samples` of `ds` (with class indices `labels`) on the I/O pool. The short side
    /// is resized to `size` and the centre cropped square, so augmentation crops see the whole
    /// object. `done` counts decoded images for progress.
    pub fn build(ds: &Dataset, samples: &[usize], labels: &[i64], size: u32, done: &AtomicUsize) -> Cache {
        let frame = (size * size * 3) as usize;
        let decoded: Vec<Result<Vec<u8>, String>> = io_pool().install(|| {
            samples
                .par_iter()
                .map(|&i| {
                    let r = probe::decode(&ds.abs_path(&ds.samples[i].path)).map(|img| super::data::center_square(&img, size, size).into_raw()).map_err(|e| e.to_string());
                    done.fetch_add(1, Ordering::Relaxed);
                    r
                })
                .collect()
        });
        let mut cache = Cache { size, pixels: Vec::with_capacity(frame * samples.len()), labels: Vec::new(), samples: Vec::new(), skipped: Vec::new() };
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

    /// The images at cache positions `idx` as a float batch `[B, 3, S, S]` on `device`,
    /// normalised with `mean`/`std`, with their labels. With `augment`: random horizontal flip,
    /// a random crop (zoomed 1-1.25x, resized back) and light brightness/contrast jitter, per
    /// image, computed on `device`.
    pub fn batch(&self, idx: &[usize], device: Device, norm: ([f64; 3], [f64; 3]), augment: bool) -> (Tensor, Tensor) {
        let s = self.size as usize;
        let frame = s * s * 3;
        let mut bytes = Vec::with_capacity(idx.len() * frame);
        for &k in idx {
            bytes.extend_from_slice(&self.pixels[k * frame..(k + 1) * frame]);
        }
        let b = idx.len() as i64;
        let s = s as i64;
        let mut x = Tensor::from_slice(&bytes).view([b, s, s, 3]).to_device(device).permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
        if augment {
            x = augment_batch(&x);
        }
        let (mean, std) = norm;
        let mean = Tensor::from_slice(&mean).view([1, 3, 1, 1]).to_kind(Kind::Float).to_device(device);
        let std = Tensor::from_slice(&std).view([1, 3, 1, 1]).to_kind(Kind::Float).to_device(device);
        let y = Tensor::from_slice(&idx.iter().map(|&k| self.labels[k]).collect::<Vec<_>>()).to_device(device);
        ((x - mean) / std, y)
    }
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
