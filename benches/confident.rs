//! Confident learning speed, side by side with cleanlab 2.9 on the same input.
//!
//! `benches/confident_compare.sh` writes the input (labels and float64 predicted probabilities as
//! .npy files), times cleanlab's `find_label_issues` on it, then runs this:
//!     cargo bench --bench confident -- LABELS.npy PROBS.npy MASK_OUT.bin
//! It prints the best of 5 runs per method and writes the default method's flags (one byte each)
//! so the script can check both found the same examples.

use std::time::Instant;

use loupe::quality::confident::{self, Method, Probs, RankBy};

/// The data of a little-endian .npy file (format 1.0 or 2.0) and its dtype string.
fn read_npy(path: &str) -> (String, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{path} is not a .npy file");
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = String::from_utf8_lossy(&bytes[start..start + header_len]).to_string();
    assert!(
        header.contains("'fortran_order': False"),
        "{path}: C order expected"
    );
    let descr = header
        .split("'descr': '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap_or("")
        .to_string();
    (descr, bytes[start + header_len..].to_vec())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [labels_path, probs_path, mask_out] = args.as_slice() else {
        eprintln!("usage: cargo bench --bench confident -- LABELS.npy PROBS.npy MASK_OUT.bin (see benches/confident_compare.sh)");
        return;
    };
    let (ldt, lbytes) = read_npy(labels_path);
    assert_eq!(ldt, "<i8", "labels as int64");
    let labels: Vec<usize> = lbytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
        .collect();
    let (pdt, pbytes) = read_npy(probs_path);
    assert_eq!(pdt, "<f8", "probabilities as float64 (numpy's default)");
    let probs: Vec<f64> = pbytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let k = probs.len() / labels.len();
    let p = Probs::new(&probs, k);
    println!(
        "loupe: N = {}, K = {k}, {} threads",
        labels.len(),
        rayon::current_num_threads()
    );
    for method in [
        Method::PruneByNoiseRate,
        Method::PruneByClass,
        Method::Both,
        Method::ConfidentLearning,
        Method::PredictedNeqGiven,
    ] {
        let mut best = f64::INFINITY;
        let mut flags = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            flags = confident::find_label_issues(&labels, p, method);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let n = flags.iter().filter(|&&f| f).count();
        println!("loupe {method:?}: {best:.3} s, {n} flagged");
        if method == Method::PruneByNoiseRate {
            std::fs::write(
                mask_out,
                flags.iter().map(|&f| u8::from(f)).collect::<Vec<u8>>(),
            )
            .unwrap();
            let t = Instant::now();
            let ranked = confident::rank(
                &flags,
                &confident::label_quality(&labels, p, RankBy::SelfConfidence),
            );
            println!(
                "loupe ranking {} flagged by self-confidence: {:.3} s",
                ranked.len(),
                t.elapsed().as_secs_f64()
            );
        }
    }
}
