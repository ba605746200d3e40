//! Index 100,000 small PNGs (headers only, in parallel) and time it, warm and cold.
//!
//! `cargo bench --bench scan` (or `make bench`). The folder is generated once under
//! `target/bench-data/scan100k` (10 classes x 10,000 28x28 grey PNGs, like Fashion-MNIST as
//! files); set LOUPE_BENCH_DIR to use another. Cold runs need root (they drop the page cache);
//! without it they are skipped and said so. The Python baseline is benches/scan_baseline.py;
//! results and method are in benches/RESULTS.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{ImageBuffer, Luma};
use loupe::dataset::{self, Progress, Source};
use rayon::prelude::*;

const CLASSES: usize = 10;
const PER_CLASS: usize = 10_000;

fn generate(root: &Path) {
    let marker = root.join(".complete");
    if marker.exists() {
        return;
    }
    eprintln!(
        "generating {} PNGs under {} (once)...",
        CLASSES * PER_CLASS,
        root.display()
    );
    (0..CLASSES * PER_CLASS).into_par_iter().for_each(|i| {
        let (c, k) = (i / PER_CLASS, i % PER_CLASS);
        let dir = root.join(format!("class_{c}"));
        std::fs::create_dir_all(&dir).unwrap();
        let img = ImageBuffer::from_fn(28, 28, |x, y| {
            Luma([((x * y + k as u32 * 7 + c as u32 * 31) % 256) as u8])
        });
        img.save(dir.join(format!("{k:05}.png"))).unwrap();
    });
    std::fs::write(marker, "").unwrap();
}

fn drop_caches() -> bool {
    // SAFETY of meaning: only the page cache is dropped; needs root.
    std::process::Command::new("sync").status().is_ok()
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn time_open(root: &Path) -> (f64, usize) {
    let t = Instant::now();
    let ds = dataset::open(
        &Source::ImageFolder {
            root: root.to_path_buf(),
        },
        &Progress::default(),
    )
    .unwrap();
    (t.elapsed().as_secs_f64(), ds.samples.len())
}

fn main() {
    let root = std::env::var_os("LOUPE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/scan100k")
        });
    generate(&root);
    println!(
        "scan benchmark: {} ({} threads)",
        root.display(),
        rayon::current_num_threads()
    );

    if drop_caches() {
        let (t, n) = time_open(&root);
        println!(
            "cold: {n} images indexed in {t:.3} s ({:.0} images/s)",
            n as f64 / t
        );
    } else {
        println!("cold: skipped (dropping the page cache needs root)");
    }
    let _ = time_open(&root);
    let mut warm: Vec<f64> = (0..5).map(|_| time_open(&root).0).collect();
    warm.sort_by(f64::total_cmp);
    let (n, median) = (time_open(&root).1, warm[2]);
    println!(
        "warm: {n} images indexed, median of 5 runs {median:.3} s (min {:.3}, max {:.3})",
        warm[0], warm[4]
    );

    // Statistics need the content hash of every file on top of the index: the scan keeps it for
    // the files it reads whole anyway (all of these), so only counting is left.
    let t = Instant::now();
    let ds = dataset::open_with(
        &Source::ImageFolder { root: root.clone() },
        &Progress::default(),
        dataset::OpenOptions { hash: true },
    )
    .unwrap();
    println!(
        "warm: index with content hashes in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let hashes = dataset::stats::hash_samples(&ds);
    let s = dataset::stats::compute_with_hashes(&ds, Some(&hashes));
    println!(
        "warm: statistics with content hashes in {:.3} s ({} duplicate groups)",
        t.elapsed().as_secs_f64(),
        s.duplicates.len()
    );
}
