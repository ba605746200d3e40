//! Using a finished run: its config, classes and best checkpoint, for evaluation and prediction.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::engine::TrainConfig;
use crate::dataset::{probe, scan::io_pool};

pub struct Run {
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub classes: Vec<String>,
    pub img_size: u32,
    /// Validation paths of the run's split, relative to the dataset root.
    pub val_paths: Vec<String>,
    pub dataset_root: PathBuf,
    /// How the dataset was opened (ImageFolder or CSV with its columns).
    pub source: Option<crate::dataset::Source>,
    vs: nn::VarStore,
    net: Box<dyn ModuleT>,
}

impl Run {
    /// Loads `dir/config.json` and the best checkpoint (the last one when no epoch finished).
    pub fn open(dir: &Path, device: Device) -> anyhow::Result<Run> {
        let (config, v) = super::record::read_config(dir)?;
        let classes: Vec<String> = serde_json::from_value(v["classes"].clone())?;
        let img_size = v["img_size"]
            .as_u64()
            .unwrap_or(u64::from(config.model.default_size())) as u32;
        let val_paths = super::record::val_paths(&v);
        let dataset_root = PathBuf::from(v["dataset"]["root"].as_str().unwrap_or("."));
        let source = serde_json::from_value(v["dataset"]["source"].clone()).ok();
        let mut vs = nn::VarStore::new(device);
        let net = config.model.build(&vs.root(), classes.len() as i64);
        let ckpt = ["best.safetensors", "last.safetensors"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists());
        let ckpt =
            ckpt.ok_or_else(|| anyhow::anyhow!("{} has no checkpoint yet", dir.display()))?;
        vs.load(&ckpt)
            .map_err(|e| anyhow::anyhow!("cannot load {}: {e}", ckpt.display()))?;
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            classes,
            img_size,
            val_paths,
            dataset_root,
            source,
            vs,
            net,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Class probabilities for each file (in order); `Err` with the reason for files that do not
    /// decode. With `tta`, the mean over the image and its mirror.
    pub fn predict(
        &self,
        files: &[PathBuf],
        batch: usize,
        tta: bool,
    ) -> Vec<Result<Vec<f32>, String>> {
        let (mean, std) = self.config.model.normalization();
        let size = self.img_size;
        // Decode in parallel (CPU), run the network in batches on its device.
        let tensors: Vec<Result<Tensor, String>> = io_pool().install(|| {
            files
                .par_iter()
                .map(|f| {
                    probe::decode(f)
                        .map(|img| super::data::eval_tensor(&img, size, mean, std))
                        .map_err(|e| e.to_string())
                })
                .collect()
        });
        let mut out: Vec<Result<Vec<f32>, String>> = Vec::with_capacity(files.len());
        let ok: Vec<usize> = (0..tensors.len()).filter(|&i| tensors[i].is_ok()).collect();
        let mut probs: Vec<Option<Vec<f32>>> = vec![None; files.len()];
        tch::no_grad(|| {
            for chunk in ok.chunks(batch.max(1)) {
                let xs: Vec<&Tensor> = chunk
                    .iter()
                    .map(|&i| tensors[i].as_ref().expect("filtered to Ok"))
                    .collect();
                let x = Tensor::stack(&xs, 0).to_device(self.device());
                let mut p = self.net.forward_t(&x, false).softmax(1, Kind::Float);
                if tta {
                    p = (p + self
                        .net
                        .forward_t(&x.flip([3]), false)
                        .softmax(1, Kind::Float))
                        / 2.0;
                }
                let p = p.to_device(Device::Cpu);
                for (r, &i) in chunk.iter().enumerate() {
                    probs[i] = Vec::<f32>::try_from(p.get(r as i64)).ok();
                }
            }
        });
        for (i, t) in tensors.into_iter().enumerate() {
            out.push(match t {
                Ok(_) => probs[i].take().ok_or_else(|| "no prediction".to_string()),
                Err(e) => Err(e),
            });
        }
        out
    }
}
