//! The model zoo and pretrained weights: which networks can be trained, how their inputs are
//! normalised, and loading torchvision/timm-style safetensors with the classifier head replaced
//! for the dataset's classes.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::efficientnet_lite::{self as lite, EfficientNetLite0};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A few conv layers: quick CPU runs and tests.
    SmallCnn,
    /// The default, with ImageNet weights.
    EfficientnetLite0,
    Resnet18,
    Resnet34,
    Resnet50,
}

/// ImageNet statistics, what torchvision's ResNets were trained with.
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

impl ModelKind {
    /// Per-channel mean and std applied to [0, 1] RGB.
    pub fn normalization(self) -> ([f64; 3], [f64; 3]) {
        match self {
            ModelKind::EfficientnetLite0 => (lite::MEAN, lite::STD),
            ModelKind::SmallCnn => ([0.5; 3], [0.5; 3]),
            _ => (IMAGENET_MEAN, IMAGENET_STD),
        }
    }

    pub fn default_size(self) -> u32 {
        match self {
            ModelKind::SmallCnn => 64,
            _ => 224,
        }
    }

    /// Name prefix of the classifier head, which pretrained loading leaves freshly initialised.
    pub fn head(self) -> &'static str {
        match self {
            ModelKind::EfficientnetLite0 => "_fc.",
            ModelKind::SmallCnn => "head.",
            _ => "fc.",
        }
    }

    /// The network without its classifier under `p` (the same variable names as [`Self::build`],
    /// so pretrained weights load alike), giving a descriptor per image; and the sizes of the
    /// descriptor's groups of features (see [`EfficientNetLite0::embedding`]).
    pub fn build_embedder(self, p: &nn::Path) -> anyhow::Result<(Box<dyn ModuleT>, Vec<usize>)> {
        use tch::vision::resnet;
        Ok(match self {
            ModelKind::EfficientnetLite0 => (Box::new(LiteEmbedding(EfficientNetLite0::new(p, 1))), EfficientNetLite0::embedding_blocks()),
            ModelKind::Resnet18 => (Box::new(resnet::resnet18_no_final_layer(p)), vec![512]),
            ModelKind::Resnet34 => (Box::new(resnet::resnet34_no_final_layer(p)), vec![512]),
            ModelKind::Resnet50 => (Box::new(resnet::resnet50_no_final_layer(p)), vec![2048]),
            ModelKind::SmallCnn => anyhow::bail!("the small CNN has no pretrained weights to embed images with: use a pretrained model, or train per fold"),
        })
    }

    /// Builds the network with `classes` outputs under `p`.
    pub fn build(self, p: &nn::Path, classes: i64) -> Box<dyn ModuleT> {
        match self {
            ModelKind::SmallCnn => Box::new(small_cnn(p, classes)),
            ModelKind::EfficientnetLite0 => Box::new(EfficientNetLite0::new(p, classes)),
            ModelKind::Resnet18 => Box::new(tch::vision::resnet::resnet18(p, classes)),
            ModelKind::Resnet34 => Box::new(tch::vision::resnet::resnet34(p, classes)),
            ModelKind::Resnet50 => Box::new(tch::vision::resnet::resnet50(p, classes)),
        }
    }
}

/// Installed pretrained weights for `model`: `$LOUPE_WEIGHTS_DIR`, the checkout's `.weights/`
/// (where `make test` and scripts/fetch_weights.py put them), or `$XDG_DATA_HOME/loupe/weights`.
pub fn default_weights(model: ModelKind) -> Option<std::path::PathBuf> {
    let file = match model {
        ModelKind::EfficientnetLite0 => "efficientnet-lite0.safetensors",
        _ => return None,
    };
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
        });
    [
        std::env::var_os("LOUPE_WEIGHTS_DIR").map(std::path::PathBuf::from),
        Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".weights")),
        data.map(|d| d.join("loupe/weights")),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.join(file))
    .find(|p| p.exists())
}

/// EfficientNet-Lite0 as an image descriptor.
#[derive(Debug)]
struct LiteEmbedding(EfficientNetLite0);

impl ModuleT for LiteEmbedding {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.0.embedding(x, train)
    }
}

fn small_cnn(p: &nn::Path, classes: i64) -> nn::SequentialT {
    let mut seq = nn::seq_t();
    let mut c_in = 3;
    for (k, c_out) in [32, 64, 128].into_iter().enumerate() {
        let cfg = nn::ConvConfig {
            padding: 1,
            bias: false,
            ..Default::default()
        };
        seq = seq
            .add(nn::conv2d(p / "features" / (3 * k), c_in, c_out, 3, cfg))
            .add(nn::batch_norm2d(
                p / "features" / (3 * k + 1),
                c_out,
                Default::default(),
            ))
            .add_fn(|x| x.relu().max_pool2d_default(2));
        c_in = c_out;
    }
    seq.add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(p / "head", c_in, classes, Default::default()))
}

/// What loading pretrained weights did, in names a user can act on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    pub loaded: usize,
    /// Variables of the model with no tensor in the file (left as initialised).
    pub missing: Vec<String>,
    /// Tensors in the file the model has no variable for (ignored).
    pub unexpected: Vec<String>,
    /// Same name, different shape: `name: file [..] vs model [..]` (left as initialised).
    pub mismatched: Vec<String>,
    /// Head variables kept freshly initialised for the dataset's classes.
    pub head: Vec<String>,
}

impl LoadReport {
    /// True when every backbone variable came from the file.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read the weights file {path}: {source}. Loupe reads .safetensors files (torchvision or timm state dicts saved with safetensors)")]
    Read { path: String, source: tch::TchError },
    #[error("{path} shares no tensor name with {model:?} (first names in the file: {sample}); is it weights for another network?")]
    NothingMatches {
        path: String,
        model: ModelKind,
        sample: String,
    },
}

/// Copies the tensors of a safetensors file into `vs` by name, except the classifier head.
pub fn load_pretrained(
    vs: &mut nn::VarStore,
    kind: ModelKind,
    path: &Path,
) -> Result<LoadReport, WeightsError> {
    let named = Tensor::read_safetensors(path).map_err(|source| WeightsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut file: HashMap<String, Tensor> = named
        .into_iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .collect();
    let mut report = LoadReport::default();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let from_file = file.remove(&name);
            if name.starts_with(kind.head()) {
                report.head.push(name);
                continue;
            }
            match from_file {
                Some(t) if t.size() == var.size() => {
                    var.copy_(&t.to_kind(var.kind()).to_device(var.device()));
                    report.loaded += 1;
                }
                Some(t) => report.mismatched.push(format!(
                    "{name}: file {:?} vs model {:?}",
                    t.size(),
                    var.size()
                )),
                None => report.missing.push(name),
            }
        }
    });
    report.unexpected = file
        .into_keys()
        .filter(|n| !n.starts_with(kind.head()))
        .collect();
    report.unexpected.sort();
    if report.loaded == 0 {
        let sample = report
            .unexpected
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        return Err(WeightsError::NothingMatches {
            path: path.display().to_string(),
            model: kind,
            sample,
        });
    }
    Ok(report)
}
