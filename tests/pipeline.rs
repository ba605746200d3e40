//! The uint8 cache, the streaming source and batches: exact pixels in, normalised tensors out,
//! bad images skipped, the same frames whichever way they are read.

mod common;

use std::sync::atomic::AtomicUsize;

use image::{ImageBuffer, Rgb};
use loupe::dataset::{self, Progress, Source};
use loupe::train::pipeline::{bytes_for, to_batch, Cache, Frames, Stream};
use tch::{Device, Kind};

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
    common::write_png_header_only(&root.join("b/broken.png"), 8, 8);

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
    let done = AtomicUsize::new(0);
    let cache = Cache::build(&ds, &all, &labels, 12, &done);
    assert_eq!(cache.len(), 2);
    let skipped = cache.skipped();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        ds.samples[skipped[0].0].path,
        std::path::Path::new("b/broken.png")
    );
    assert_eq!(done.into_inner(), 3);
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
    assert!(a1.max().double_value(&[]) <= 1.0 + 1e-6 && a1.min().double_value(&[]) >= -1.0 - 1e-6);
}
