//! The uint8 cache and batches: exact pixels in, normalised tensors out, bad images skipped.

mod common;

use std::sync::atomic::AtomicUsize;

use image::{ImageBuffer, Rgb};
use loupe::dataset::{self, Progress, Source};
use loupe::train::pipeline::Cache;
use tch::{Device, Kind};

#[test]
fn cache_decodes_once_skips_bad_images_and_batches_normalised_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Solid colours (so resizing cannot change them) in two classes; one image wider than tall.
    for class in ["a", "b"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    ImageBuffer::from_pixel(40, 20, Rgb([255u8, 0, 0])).save(root.join("a/red.png")).unwrap();
    ImageBuffer::from_pixel(16, 16, Rgb([0u8, 0, 255])).save(root.join("b/blue.png")).unwrap();
    // A header that probes fine but pixel data that cannot be decoded.
    common::write_png_header_only(&root.join("b/broken.png"), 8, 8);

    let ds = dataset::open(&Source::ImageFolder { root: root.to_path_buf() }, &Progress::default()).unwrap();
    assert_eq!(ds.samples.len(), 3, "the broken file passes the header check");
    let labels: Vec<i64> = ds.samples.iter().map(|s| if s.label == "a" { 0 } else { 1 }).collect();
    let all: Vec<usize> = (0..ds.samples.len()).collect();
    let done = AtomicUsize::new(0);
    let cache = Cache::build(&ds, &all, &labels, 12, &done);
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.skipped.len(), 1);
    assert_eq!(ds.samples[cache.skipped[0].0].path, std::path::Path::new("b/broken.png"));
    assert_eq!(done.into_inner(), 3);
    assert_eq!(Cache::bytes_for(cache.len(), 12), 2 * 12 * 12 * 3);

    let (x, y) = cache.batch(&[0, 1], Device::Cpu, ([0.5; 3], [0.5; 3]), false);
    assert_eq!(x.size(), vec![2, 3, 12, 12]);
    assert_eq!(Vec::<i64>::try_from(&y).unwrap(), vec![0, 1]);
    // red -> (1, -1, -1), blue -> (-1, -1, 1) everywhere.
    let means: Vec<f64> = Vec::try_from(x.mean_dim([2i64, 3].as_slice(), false, Kind::Float).view([-1]).to_kind(Kind::Double)).unwrap();
    let want = [1.0, -1.0, -1.0, -1.0, -1.0, 1.0];
    for (m, w) in means.iter().zip(want) {
        assert!((m - w).abs() < 1e-6, "{means:?}");
    }

    // Augmented batches keep shape and range, and follow tch's seed.
    tch::manual_seed(3);
    let (a1, _) = cache.batch(&[0, 1, 0, 1], Device::Cpu, ([0.5; 3], [0.5; 3]), true);
    tch::manual_seed(3);
    let (a2, _) = cache.batch(&[0, 1, 0, 1], Device::Cpu, ([0.5; 3], [0.5; 3]), true);
    assert_eq!(a1.size(), vec![4, 3, 12, 12]);
    assert!(a1.equal(&a2), "same seed, same augmentation");
    assert!(a1.max().double_value(&[]) <= 1.0 + 1e-6 && a1.min().double_value(&[]) >= -1.0 - 1e-6);
}
