//! Image embeddings: each image through a frozen pretrained backbone once, the pooled features
//! kept in a cache file per (model, resolution) keyed by path, size and modification time, so a
//! re-run after relabelling (which changes no pixels) embeds nothing again.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use loupe::dataset::{probe, scan::io_pool, Dataset};
use loupe::train::config::ModelKind;
use loupe::util::path_str;

use super::data::eval_tensor;
use super::zoo;

/// Features of some samples: `dim` floats per embedded sample.
pub struct Embeddings {
    pub dim: usize,
    /// Sizes of the groups of features that make up a row (they sum to `dim`).
    pub blocks: Vec<usize>,
    /// Dataset sample indices that were embedded, in the order asked for.
    pub samples: Vec<usize>,
    /// `samples.len() * dim` floats, row-major.
    pub data: Vec<f32>,
    /// Samples that could not be decoded, with the reason.
    pub skipped: Vec<(usize, String)>,
    /// How many came from the cache.
    pub cached: usize,
}

/// Identity of an image file for the cache: a changed file is embedded again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileKey {
    path: String,
    len: u64,
    mtime: u64,
}

fn file_key(abs: &Path, rel: &str) -> Option<FileKey> {
    let (len, mtime) = loupe::util::file_stamp(abs)?;
    Some(FileKey {
        path: rel.to_string(),
        len,
        mtime,
    })
}

/// Bumped whenever the networks' arithmetic changes, so caches made by an older engine are
/// rebuilt rather than mixed with new descriptors (2: EfficientNet-Lite0's TensorFlow padding).
const REVISION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct CacheHeader {
    /// [`REVISION`] of the engine that wrote it; 0 for caches from before there was one.
    #[serde(default)]
    revision: u32,
    model: ModelKind,
    size: u32,
    /// Computed in bfloat16 ([`super::device::fast_bf16`]): not mixed with f32 descriptors.
    #[serde(default)]
    bf16: bool,
    /// The descriptor's layout: a cache from another layout (an older Loupe) is rebuilt.
    blocks: Vec<usize>,
    entries: Vec<FileKey>,
}

/// The cache file of one (model, size): a JSON header line, then `dim` little-endian f32 per entry.
fn cache_path(dir: &Path, model: ModelKind, size: u32) -> PathBuf {
    dir.join(format!("{}-{size}.emb", model.id()))
}

fn load_cache(
    path: &Path,
    model: ModelKind,
    size: u32,
    bf16: bool,
    blocks: &[usize],
) -> Option<HashMap<FileKey, Vec<f32>>> {
    let bytes = std::fs::read(path).ok()?;
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let header: CacheHeader = serde_json::from_slice(&bytes[..nl]).ok()?;
    let body = &bytes[nl + 1..];
    let dim: usize = blocks.iter().sum();
    if header.revision != REVISION
        || header.model != model
        || header.size != size
        || header.bf16 != bf16
        || header.blocks != blocks
        || body.len() != header.entries.len() * dim * 4
    {
        return None; // damaged, an older engine, another model or layout: rebuilt
    }
    let floats: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(
        header
            .entries
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, floats[i * dim..(i + 1) * dim].to_vec()))
            .collect(),
    )
}

fn save_cache(
    path: &Path,
    model: ModelKind,
    size: u32,
    bf16: bool,
    blocks: &[usize],
    entries: &[(FileKey, &[f32])],
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    loupe::util::replace_file(path, |tmp| {
        let mut w = BufWriter::new(std::fs::File::create(tmp)?);
        let header = CacheHeader {
            revision: REVISION,
            model,
            size,
            bf16,
            blocks: blocks.to_vec(),
            entries: entries.iter().map(|(k, _)| k.clone()).collect(),
        };
        serde_json::to_writer(&mut w, &header)?;
        w.write_all(b"\n")?;
        for (_, v) in entries {
            for x in *v {
                w.write_all(&x.to_le_bytes())?;
            }
        }
        w.flush()
    })
}

/// What to embed with.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    pub model: ModelKind,
    pub weights: PathBuf,
    /// Input resolution.
    pub size: u32,
    pub device: Device,
    pub batch: usize,
    /// Compute in bfloat16 (where [`super::device::fast_bf16`] says it pays).
    pub bf16: bool,
}

/// Embeds `samples` of `ds`, reusing and updating the cache in `cache_dir` (when given).
/// `progress(done, total)` is called after each batch; `None` when `cancel` was set.
pub fn embed(
    ds: &Dataset,
    samples: &[usize],
    cfg: &EmbedConfig,
    cache_dir: Option<&Path>,
    progress: &dyn Fn(usize, usize),
    cancel: &AtomicBool,
) -> anyhow::Result<Option<Embeddings>> {
    let mut vs = nn::VarStore::new(cfg.device);
    let (net, blocks) = zoo::build_embedder(cfg.model, &vs.root())?;
    let dim: usize = blocks.iter().sum();
    let report = zoo::load_pretrained(&mut vs, cfg.model, &cfg.weights)?;
    anyhow::ensure!(
        report.complete(),
        "the weights in {} do not fit {}: missing {:?}, mis-shaped {:?}",
        cfg.weights.display(),
        cfg.model.title(),
        report.missing,
        report.mismatched
    );
    let bf16 = cfg.bf16;
    if bf16 {
        tch::no_grad(|| vs.bfloat16());
    }
    zoo::weights_channels_last(&vs);
    let file = cache_dir.map(|d| cache_path(d, cfg.model, cfg.size));
    let mut cache = file
        .as_deref()
        .and_then(|f| load_cache(f, cfg.model, cfg.size, bf16, &blocks))
        .unwrap_or_default();

    let keys: Vec<Option<FileKey>> = samples
        .iter()
        .map(|&i| {
            file_key(
                &ds.abs_path(&ds.samples[i].path),
                &path_str(&ds.samples[i].path),
            )
        })
        .collect();
    let todo: Vec<usize> = (0..samples.len())
        .filter(|&k| keys[k].as_ref().is_none_or(|key| !cache.contains_key(key)))
        .collect();
    let cached = samples.len() - todo.len();
    let (mean, std) = cfg.model.normalization();
    let mut fresh: HashMap<usize, Vec<f32>> = HashMap::new();
    let mut skipped = Vec::new();
    progress(cached, samples.len());
    for (b, chunk) in todo.chunks(cfg.batch.max(1)).enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let decoded: Vec<Result<Tensor, String>> = io_pool().install(|| {
            chunk
                .par_iter()
                .map(|&k| {
                    probe::decode(&ds.abs_path(&ds.samples[samples[k]].path))
                        .map(|img| eval_tensor(&img, cfg.size, mean, std))
                        .map_err(|e| e.to_string())
                })
                .collect()
        });
        let mut ok = Vec::new();
        let mut xs = Vec::new();
        for (&k, r) in chunk.iter().zip(decoded) {
            match r {
                Ok(t) => {
                    ok.push(k);
                    xs.push(t);
                }
                Err(e) => skipped.push((samples[k], e)),
            }
        }
        if !xs.is_empty() {
            let batch = Tensor::stack(&xs, 0).to_device(cfg.device);
            let batch =
                zoo::channels_last(&batch.to_kind(if bf16 { Kind::BFloat16 } else { Kind::Float }));
            let feats = tch::no_grad(|| net.forward_t(&batch, false))
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .contiguous();
            let flat = Vec::<f32>::try_from(feats.view([-1]))?;
            for (r, &k) in ok.iter().enumerate() {
                fresh.insert(k, flat[r * dim..(r + 1) * dim].to_vec());
            }
        }
        progress(
            cached + (b * cfg.batch.max(1) + chunk.len()).min(todo.len()),
            samples.len(),
        );
    }

    let mut out = Embeddings {
        dim,
        blocks: blocks.clone(),
        samples: Vec::new(),
        data: Vec::new(),
        skipped,
        cached,
    };
    for (k, &i) in samples.iter().enumerate() {
        let v = fresh
            .get(&k)
            .or_else(|| keys[k].as_ref().and_then(|key| cache.get(key)));
        if let Some(v) = v {
            out.samples.push(i);
            out.data.extend_from_slice(v);
        }
    }
    if let Some(file) = &file {
        for (k, v) in fresh {
            if let Some(key) = keys[k].clone() {
                cache.insert(key, v);
            }
        }
        let entries: Vec<(FileKey, &[f32])> = cache
            .iter()
            .map(|(k, v)| (k.clone(), v.as_slice()))
            .collect();
        // A cache that cannot be written (read-only folder) only costs time next run.
        let _ = save_cache(file, cfg.model, cfg.size, bf16, &blocks, &entries);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_from_an_older_engine_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_path(dir.path(), ModelKind::EfficientnetLite0, 64);
        let key = FileKey {
            path: "a/1.png".into(),
            len: 10,
            mtime: 5,
        };
        let v = [1.0f32, 2.0];
        save_cache(
            &path,
            ModelKind::EfficientnetLite0,
            64,
            false,
            &[2],
            &[(key.clone(), &v[..])],
        )
        .unwrap();
        let back = load_cache(&path, ModelKind::EfficientnetLite0, 64, false, &[2]).unwrap();
        assert_eq!(back[&key], v);
        assert!(load_cache(&path, ModelKind::EfficientnetLite0, 96, false, &[2]).is_none());
        // Descriptors computed in bfloat16 are not mixed with f32 ones.
        assert!(load_cache(&path, ModelKind::EfficientnetLite0, 64, true, &[2]).is_none());

        // The same file as an engine without revisions wrote it.
        let bytes = std::fs::read(&path).unwrap();
        let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[..nl]).unwrap();
        header.as_object_mut().unwrap().remove("revision");
        let mut old = serde_json::to_vec(&header).unwrap();
        old.extend_from_slice(&bytes[nl..]);
        std::fs::write(&path, old).unwrap();
        assert!(load_cache(&path, ModelKind::EfficientnetLite0, 64, false, &[2]).is_none());
    }
}

/// The real network on real photos: what the bf16 path and the cache change, and what not.
/// Needs `scripts/bootstrap.sh test` (the weights and the photos).
#[cfg(test)]
mod real_photos {
    use super::*;
    use loupe::dataset::{self, scan::Progress, Source};

    fn embed_photos(dir: &Path, bf16: bool, cache: Option<&Path>) -> Embeddings {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let ds = dataset::open(
            &Source::ImageFolder {
                root: dir.to_path_buf(),
            },
            &Progress::default(),
        )
        .unwrap();
        let cfg = EmbedConfig {
            model: ModelKind::EfficientnetLite0,
            weights: root.join(".weights/efficientnet-lite0.safetensors"),
            size: 96,
            device: Device::Cpu,
            batch: 4,
            bf16,
        };
        let all: Vec<usize> = (0..ds.samples.len()).collect();
        embed(&ds, &all, &cfg, cache, &|_, _| {}, &AtomicBool::new(false))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn bfloat16_descriptors_point_where_the_f32_ones_do_and_never_stand_in_for_them() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let photos = root.join(".testdata/imagenet20");
        assert!(
            photos.join(".complete").exists(),
            "run scripts/bootstrap.sh test first (fetches weights and photos)"
        );
        // Ten photos as a two-class ImageFolder.
        let dir = tempfile::tempdir().unwrap();
        let mut files: Vec<_> = std::fs::read_dir(&photos)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        for (i, f) in files.iter().take(10).enumerate() {
            let class = dir.path().join(["a", "b"][i % 2]);
            std::fs::create_dir_all(&class).unwrap();
            std::fs::copy(f, class.join(f.file_name().unwrap())).unwrap();
        }
        let cache = dir.path().join("cache");
        let f32s = embed_photos(dir.path(), false, Some(&cache));
        let bf16s = embed_photos(dir.path(), true, Some(&cache));
        assert_eq!((f32s.samples.len(), f32s.cached), (10, 0));
        assert_eq!(
            bf16s.cached, 0,
            "f32 descriptors must not stand in for bf16 ones"
        );
        let row =
            |e: &Embeddings, i: usize| Tensor::from_slice(&e.data[i * e.dim..(i + 1) * e.dim]);
        for i in 0..10 {
            let (a, b) = (row(&f32s, i), row(&bf16s, i));
            let cos = (&a * &b).sum(Kind::Float).double_value(&[])
                / (a.norm().double_value(&[]) * b.norm().double_value(&[]));
            assert!(cos > 0.99, "photo {i}: cosine {cos} between bf16 and f32");
        }
        // Each photo is still nearest to itself across the two precisions.
        for i in 0..10 {
            let a = row(&bf16s, i);
            let nearest = (0..10)
                .min_by(|&j, &k| {
                    let d = |j| (&a - row(&f32s, j)).norm().double_value(&[]);
                    d(j).total_cmp(&d(k))
                })
                .unwrap();
            assert_eq!(nearest, i);
        }
        // A second bf16 run reads the cache the first one wrote.
        assert_eq!(embed_photos(dir.path(), true, Some(&cache)).cached, 10);
    }
}
