//! The model zoo: building the networks Loupe trains (the classifier head always in optimiser
//! group 1, so it can have its own learning rate), image descriptors for embeddings, and
//! loading torchvision/timm-style safetensors with the head replaced for the dataset's classes.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use tch::nn::{self, ModuleT};
use tch::vision::resnet;
use tch::Tensor;

use loupe::train::config::ModelKind;

use super::efficientnet_lite::EfficientNetLite0;

/// The optimiser group of every classifier head.
pub const HEAD_GROUP: usize = 1;

/// A new classifier head under `p` (in [`HEAD_GROUP`]), initialised as PyTorch's `nn.Linear`:
/// uniform within 1/sqrt(width). tch's default (Kaiming for ReLU) starts 2.4 times larger, with
/// confident, wrong logits that the pretrained layers then pay for in the first steps.
pub fn head(p: nn::Path, width: i64, classes: i64) -> nn::Linear {
    let bound = 1.0 / (width as f64).sqrt();
    let init = nn::Init::Uniform {
        lo: -bound,
        up: bound,
    };
    nn::linear(
        p.set_group(HEAD_GROUP),
        width,
        classes,
        nn::LinearConfig {
            ws_init: init,
            bs_init: Some(init),
            bias: true,
        },
    )
}

/// Builds `kind` with `classes` outputs under `p`.
pub fn build(kind: ModelKind, p: &nn::Path, classes: i64) -> Box<dyn ModuleT> {
    let head = |width: i64| self::head(p / kind.head().trim_end_matches('.'), width, classes);
    match kind {
        ModelKind::SmallCnn => Box::new(small_cnn(p).add(head(128))),
        ModelKind::EfficientnetLite0 => Box::new(EfficientNetLite0::new(p, classes)),
        ModelKind::Resnet18 => Box::new(
            nn::seq_t()
                .add(resnet::resnet18_no_final_layer(p))
                .add(head(512)),
        ),
        ModelKind::Resnet34 => Box::new(
            nn::seq_t()
                .add(resnet::resnet34_no_final_layer(p))
                .add(head(512)),
        ),
        ModelKind::Resnet50 => Box::new(
            nn::seq_t()
                .add(resnet::resnet50_no_final_layer(p))
                .add(head(2048)),
        ),
    }
}

/// The network without its classifier under `p` (the same variable names as [`build`], so
/// pretrained weights load alike), giving a descriptor per image; and the sizes of the
/// descriptor's groups of features (see [`EfficientNetLite0::embedding`]).
pub fn build_embedder(
    kind: ModelKind,
    p: &nn::Path,
) -> anyhow::Result<(Box<dyn ModuleT>, Vec<usize>)> {
    Ok(match kind {
        ModelKind::EfficientnetLite0 => (
            Box::new(LiteEmbedding(EfficientNetLite0::new(p, 1))),
            EfficientNetLite0::embedding_blocks(),
        ),
        ModelKind::Resnet18 => (Box::new(resnet::resnet18_no_final_layer(p)), vec![512]),
        ModelKind::Resnet34 => (Box::new(resnet::resnet34_no_final_layer(p)), vec![512]),
        ModelKind::Resnet50 => (Box::new(resnet::resnet50_no_final_layer(p)), vec![2048]),
        ModelKind::SmallCnn => anyhow::bail!(
            "the small CNN has no pretrained weights to embed images with: use a pretrained \
             model, or train per fold"
        ),
    })
}

/// EfficientNet-Lite0 as an image descriptor.
#[derive(Debug)]
struct LiteEmbedding(EfficientNetLite0);

impl ModuleT for LiteEmbedding {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.0.embedding(x, train)
    }
}

/// Three stages of two 3x3 conv layers (32, 64 and 128 channels, each with batch norm and
/// ReLU) and a 2x2 max pool, then global average pooling to 128 features and dropout (the head
/// is added by [`build`]). Two convs a stage, the way PyTorch users build their MNIST CNNs:
/// with one, the out-of-fold probabilities `loupe issues --full` ranks by were less accurate
/// (benches/RESULTS.md, "A stronger small CNN").
fn small_cnn(p: &nn::Path) -> nn::SequentialT {
    let mut seq = nn::seq_t();
    let mut c_in = 3;
    let mut layer = 0;
    for c_out in [32, 64, 128] {
        for _ in 0..2 {
            let cfg = nn::ConvConfig {
                padding: 1,
                bias: false,
                ..Default::default()
            };
            seq = seq
                .add(nn::conv2d(p / "features" / layer, c_in, c_out, 3, cfg))
                .add(nn::batch_norm2d(
                    p / "features" / (layer + 1),
                    c_out,
                    Default::default(),
                ))
                .add_fn(|x| x.relu());
            layer += 3;
            c_in = c_out;
        }
        seq = seq.add_fn(|x| x.max_pool2d_default(2));
    }
    seq.add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add_fn_t(|x, train| x.dropout(0.3, train))
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
    #[error("{path} shares no tensor name with {model} (first names in the file: {sample}); is it weights for another network?")]
    NothingMatches {
        path: String,
        model: &'static str,
        sample: String,
    },
}

/// The same 4-D tensor with channels-last strides (NHWC in memory, NCHW in shape). oneDNN's
/// CPU convolutions work in that layout and keep it: given NCHW they reorder every layer's
/// input and output. Fine-tuning EfficientNet-Lite0 at 128 px took 5.6 s an epoch instead of
/// 8.8 here, embedding it a tenth less (benches/RESULTS.md); cuDNN takes either layout.
/// Shapes are unchanged, so nothing that indexes a batch or a weight needs to know.
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Stores every convolution weight of `vs` channels-last (see [`channels_last`]), for
/// batches that are: call after loading weights, before building an optimizer.
pub fn weights_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                v.set_data(&channels_last(&v));
            }
        }
    });
}

/// Saves `vs` as safetensors, atomically: a crash or a full disk leaves the previous
/// checkpoint. The file holds plain NCHW tensors whatever the weights' layout in memory
/// ([`load_checkpoint`] copies into any layout).
pub fn save_checkpoint(vs: &nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.contiguous()))
        .collect();
    loupe::util::replace_file(path, |tmp| {
        Tensor::write_safetensors(&named, tmp).map_err(std::io::Error::other)
    })
    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Loads a checkpoint Loupe saved into `vs`, refusing in words one whose tensors do not fit
/// the network (libtorch's own message is a C++ backtrace): a run saved by an earlier version
/// of a network whose layers have changed since, say.
pub fn load_checkpoint(vs: &mut nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let file: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .into_iter()
        .collect();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let misfits: Vec<String> = vars
        .iter()
        .filter_map(|(name, var)| match file.get(name) {
            Some(t) if t.size() == var.size() => None,
            Some(t) => Some(format!(
                "{name}: {:?} in the file, {:?} in the network",
                t.size(),
                var.size()
            )),
            None => Some(format!("{name}: not in the file")),
        })
        .collect();
    if let Some(first) = misfits.first() {
        let more = match misfits.len() {
            1 => String::new(),
            n => format!(", and {} more", n - 1),
        };
        anyhow::bail!(
            "{} does not fit the network this version of Loupe builds ({first}{more}); a run \
             saved by an earlier version has to be trained again",
            path.display()
        );
    }
    tch::no_grad(|| {
        for (name, mut var) in vars {
            var.copy_(&file[&name].to_kind(var.kind()).to_device(var.device()));
        }
    });
    Ok(())
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
            model: kind.title(),
            sample,
        });
    }
    Ok(report)
}

/// The zoo builds, and pretrained weights load by name with the head replaced, with a clear
/// report (or error) when names do not match.
#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn lite_weights() -> std::path::PathBuf {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".weights/efficientnet-lite0.safetensors");
        assert!(
            p.exists(),
            "run scripts/bootstrap.sh test first (fetches the weights)"
        );
        p
    }

    #[test]
    fn every_model_gives_one_logit_per_class() {
        for (kind, size) in [
            (ModelKind::SmallCnn, 32),
            (ModelKind::EfficientnetLite0, 64),
            (ModelKind::Resnet18, 64),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = build(kind, &vs.root(), 7);
            let out = tch::no_grad(|| {
                net.forward_t(
                    &Tensor::rand([2, 3, size, size], (Kind::Float, Device::Cpu)),
                    false,
                )
            });
            assert_eq!(out.size(), vec![2, 7], "{kind:?}");
        }
    }

    #[test]
    fn a_checkpoint_loads_into_its_network_and_one_that_does_not_fit_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("best.safetensors");
        let saved = nn::VarStore::new(Device::Cpu);
        let _a = build(ModelKind::SmallCnn, &saved.root(), 3);
        saved.save(&file).unwrap();

        let mut same = nn::VarStore::new(Device::Cpu);
        let _b = build(ModelKind::SmallCnn, &same.root(), 3);
        load_checkpoint(&mut same, &file).unwrap();
        for (name, var) in saved.variables() {
            assert!(var.equal(&same.variables()[&name]), "{name}");
        }

        let mut other = nn::VarStore::new(Device::Cpu);
        let _c = build(ModelKind::SmallCnn, &other.root(), 5);
        let err = load_checkpoint(&mut other, &file).unwrap_err().to_string();
        assert!(
            err.contains("head.bias: [3] in the file, [5] in the network, and 1 more"),
            "{err}"
        );
        let mut resnet = nn::VarStore::new(Device::Cpu);
        let _d = build(ModelKind::Resnet18, &resnet.root(), 3);
        let err = load_checkpoint(&mut resnet, &file).unwrap_err().to_string();
        assert!(err.contains("not in the file"), "{err}");
    }

    #[test]
    fn channels_last_weights_and_batches_compute_what_plain_ones_do_and_save_plain() {
        tch::manual_seed(3);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("last.safetensors");
        let x = Tensor::rand([2, 3, 48, 48], (Kind::Float, Device::Cpu));
        for kind in [ModelKind::SmallCnn, ModelKind::EfficientnetLite0] {
            let plain = nn::VarStore::new(Device::Cpu);
            let net = build(kind, &plain.root(), 5);
            let expected = tch::no_grad(|| net.forward_t(&x, false));

            weights_channels_last(&plain);
            let conv = plain
                .variables()
                .into_values()
                .find(|v| v.dim() == 4 && v.size()[1] > 1 && v.size()[2] > 1)
                .unwrap();
            assert!(!conv.is_contiguous(), "{kind:?}: weights left NCHW");
            let got = tch::no_grad(|| net.forward_t(&channels_last(&x), false));
            assert!(got.allclose(&expected, 1e-4, 1e-5, false), "{kind:?}");

            // Saved from channels-last weights, read back as the same values in NCHW.
            save_checkpoint(&plain, &file).unwrap();
            let saved: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
                .unwrap()
                .into_iter()
                .collect();
            let mut fresh = nn::VarStore::new(Device::Cpu);
            let _again = build(kind, &fresh.root(), 5);
            load_checkpoint(&mut fresh, &file).unwrap();
            for (name, var) in plain.variables() {
                assert!(
                    saved[&name].is_contiguous() && saved[&name].equal(&var),
                    "{name}"
                );
                assert!(fresh.variables()[&name].equal(&var), "{name}");
            }
        }
    }

    #[test]
    fn lite0_imagenet_weights_load_into_a_new_head() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _net = build(ModelKind::EfficientnetLite0, &vs.root(), 9);
        let r = load_pretrained(&mut vs, ModelKind::EfficientnetLite0, &lite_weights()).unwrap();
        assert!(r.complete(), "{r:?}");
        assert_eq!((r.loaded, r.unexpected.len()), (245, 0), "{r:?}");
        assert_eq!(r.head, vec!["_fc.bias", "_fc.weight"]);
    }

    #[test]
    fn weights_of_another_network_are_refused_in_words() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _net = build(ModelKind::Resnet18, &vs.root(), 4);
        let err = load_pretrained(&mut vs, ModelKind::Resnet18, &lite_weights()).unwrap_err();
        assert!(matches!(err, WeightsError::NothingMatches { .. }));
        assert!(err.to_string().contains("shares no tensor name"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.safetensors");
        std::fs::write(&bad, b"not safetensors at all").unwrap();
        assert!(matches!(
            load_pretrained(&mut vs, ModelKind::Resnet18, &bad),
            Err(WeightsError::Read { .. })
        ));
    }

    #[test]
    fn resnet_checkpoint_round_trip_with_a_different_head() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r18.safetensors");
        let src = nn::VarStore::new(Device::Cpu);
        let _a = build(ModelKind::Resnet18, &src.root(), 10);
        src.save(&file).unwrap();

        let mut dst = nn::VarStore::new(Device::Cpu);
        let _b = build(ModelKind::Resnet18, &dst.root(), 3);
        let r = load_pretrained(&mut dst, ModelKind::Resnet18, &file).unwrap();
        assert!(r.complete() && r.unexpected.is_empty(), "{r:?}");
        assert_eq!(r.head, vec!["fc.bias", "fc.weight"]);
        let (a, b) = (src.variables(), dst.variables());
        assert!(a["conv1.weight"].equal(&b["conv1.weight"]));
        assert!(a["layer4.1.bn2.running_var"].equal(&b["layer4.1.bn2.running_var"]));
    }
}
