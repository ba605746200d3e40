//! What decides a run, in plain data: the network, the recipe, the device. Shared by the window,
//! the command line and the engine process (which alone builds networks from it), and recorded in
//! every run's `config.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::given_split::GivenSplit;
use super::schedule::{Monitor, ScheduleKind};

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
    pub const ALL: [ModelKind; 5] = [
        ModelKind::SmallCnn,
        ModelKind::EfficientnetLite0,
        ModelKind::Resnet18,
        ModelKind::Resnet34,
        ModelKind::Resnet50,
    ];

    /// The name on the command line and in folder names (`efficientnet-lite0`).
    pub fn id(self) -> &'static str {
        match self {
            ModelKind::SmallCnn => "small-cnn",
            ModelKind::EfficientnetLite0 => "efficientnet-lite0",
            ModelKind::Resnet18 => "resnet18",
            ModelKind::Resnet34 => "resnet34",
            ModelKind::Resnet50 => "resnet50",
        }
    }

    /// The name people know it by.
    pub fn title(self) -> &'static str {
        match self {
            ModelKind::SmallCnn => "Small CNN",
            ModelKind::EfficientnetLite0 => "EfficientNet-Lite0",
            ModelKind::Resnet18 => "ResNet-18",
            ModelKind::Resnet34 => "ResNet-34",
            ModelKind::Resnet50 => "ResNet-50",
        }
    }

    /// Per-channel mean and std applied to [0, 1] RGB: what the pretrained weights expect
    /// (EfficientNet-Lite's TensorFlow weights: `(x - 0.5) / 0.5`).
    pub fn normalization(self) -> ([f64; 3], [f64; 3]) {
        match self {
            ModelKind::EfficientnetLite0 | ModelKind::SmallCnn => ([0.5; 3], [0.5; 3]),
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    Ce,
    /// Cross-entropy with label smoothing 0.1.
    Smooth,
    /// Focal loss, gamma 2.
    Focal,
}

impl LossKind {
    pub fn title(self) -> &'static str {
        match self {
            LossKind::Ce => "cross-entropy",
            LossKind::Smooth => "cross-entropy, label smoothing 0.1",
            LossKind::Focal => "focal loss (gamma 2)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    None,
    /// Loss weights inversely proportional to class frequency.
    Weights,
    /// Draw training images with probability inversely proportional to their class frequency.
    Sampler,
}

impl Balance {
    pub fn title(self) -> &'static str {
        match self {
            Balance::None => "none",
            Balance::Weights => "class weights in the loss",
            Balance::Sampler => "balanced sampling",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

impl OptimizerKind {
    pub fn title(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "SGD (momentum 0.9)",
            OptimizerKind::Adam => "Adam",
            OptimizerKind::Adamw => "AdamW",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn title(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "GPU if there is one",
            DeviceChoice::Cpu => "CPU",
            DeviceChoice::Cuda => "GPU (CUDA)",
        }
    }
}

/// How a network answers a composite label (`mask,gender,age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Heads {
    /// One softmax head per label column on a shared backbone, the losses summed; the joint
    /// class is the most probable combination of the heads' answers.
    Columns,
    /// One softmax head over the joint classes (18 for mask x gender x age).
    Joint,
}

impl Heads {
    pub fn title(self) -> &'static str {
        match self {
            Heads::Columns => "one head per label column",
            Heads::Joint => "one head over the combined classes",
        }
    }

    /// What runs recorded before there was a choice had.
    fn joint() -> Heads {
        Heads::Joint
    }
}

/// Everything that decides a run; saved in the run's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub model: ModelKind,
    /// Pretrained weights (.safetensors); the head is replaced for the dataset's classes.
    pub weights: Option<PathBuf>,
    /// For a composite label; with a single label column both kinds are the same network.
    #[serde(default = "Heads::joint")]
    pub heads: Heads,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Training resolution; 0 means the model's default.
    pub img_size: u32,
    /// Train only the head (the backbone frozen, BatchNorm in eval mode).
    pub freeze: bool,
    pub loss: LossKind,
    pub balance: Balance,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    /// Learning rate of the classifier head; `None`: see [`TrainConfig::head_lr`].
    pub head_lr: Option<f64>,
    /// Linear warm-up (in epochs), then `schedule`, per optimiser step.
    pub warmup_epochs: f64,
    pub schedule: ScheduleKind,
    /// Training augmentation, torchvision's RandomResizedCrop: a random crop keeping this share
    /// of the frame's area or more (aspect 3/4 to 4/3), resized to `img_size`. 1: torchvision's
    /// RandomCrop instead, an `img_size` window anywhere in the frame (shifts, no rescaling).
    pub crop_scale: f64,
    /// Random horizontal flips (off for pictures whose side matters: text, digits, arrows).
    pub flip: bool,
    /// Random brightness and contrast change of up to this fraction (0: none).
    pub jitter: f64,
    /// Step schedule: epochs between decays (0 = a third of the run).
    pub step_epochs: usize,
    /// Optimiser step every this many batches (an effective batch of `batch * accumulate`).
    pub accumulate: usize,
    /// The metric that picks the best checkpoint.
    pub monitor: Monitor,
    /// Stop after this many epochs without a better `monitor` (0 = never).
    pub patience: usize,
    pub val_frac: f64,
    /// A split the user gave (then `val_frac` is unused); see [`super::given_split::prepare`].
    pub given_split: Option<GivenSplit>,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Memory for the decoded-image cache in GB; beyond it images are decoded per batch.
    /// `None`: half of the memory available when the run starts.
    pub cache_gb: Option<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelKind::EfficientnetLite0,
            weights: None,
            heads: Heads::Columns,
            epochs: 10,
            batch: 32,
            lr: 3e-4,
            img_size: 0,
            freeze: false,
            loss: LossKind::Ce,
            balance: Balance::None,
            optimizer: OptimizerKind::Adamw,
            weight_decay: 0.01,
            head_lr: None,
            warmup_epochs: 0.0,
            schedule: ScheduleKind::Cosine,
            crop_scale: 0.5,
            flip: true,
            jitter: 0.0,
            step_epochs: 0,
            accumulate: 1,
            monitor: Monitor::MacroF1,
            patience: 0,
            val_frac: 0.2,
            given_split: None,
            seed: 0,
            device: DeviceChoice::Auto,
            cache_gb: None,
        }
    }
}

impl TrainConfig {
    /// The resolution the run trains at (`img_size`, or the model's own when 0).
    pub fn size(&self) -> u32 {
        if self.img_size == 0 {
            self.model.default_size()
        } else {
            self.img_size
        }
    }

    /// The side frames are kept at: the training resolution with room around it, so random
    /// crops see more than the centre and evaluation is torchvision's usual `Resize(size /
    /// 0.875)` + `CenterCrop(size)`.
    pub fn frame_side(&self) -> u32 {
        frame_side(self.size())
    }

    /// The head's learning rate: `head_lr` when given; when fine-tuning pretrained weights, ten
    /// times `lr` (the new head starts from random and has far to go, the pretrained layers
    /// should move little); otherwise `lr`.
    pub fn head_lr(&self) -> f64 {
        self.head_lr
            .unwrap_or(if self.weights.is_some() && !self.freeze {
                10.0 * self.lr
            } else {
                self.lr
            })
    }
}

/// See [`TrainConfig::frame_side`]; also what prediction resizes to.
pub fn frame_side(size: u32) -> u32 {
    (f64::from(size) / 0.875).round() as u32
}

/// The learning rate of a network trained per fold from scratch (no pretrained weights):
/// [`TrainConfig`]'s default is made for fine-tuning, and the small CNN learns little with it
/// in 10 epochs (MNIST digits at 28 px, one 80/20 split: validation accuracy 0.976 at 3e-4,
/// 0.990 at 3e-3, 0.992-0.993 at 1e-2 and 3e-2).
pub const SCRATCH_LR: f64 = 1e-2;

/// How out-of-fold probabilities are made for finding label issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OofConfig {
    /// Cross-validation folds; 0 means by the dataset's size ([`OofConfig::for_issues`]).
    pub folds: usize,
    pub model: ModelKind,
    pub weights: Option<PathBuf>,
    /// Input resolution; 0 means the embedding default ([`OofConfig::for_issues`]) or, with
    /// `full`, the model's.
    pub img_size: u32,
    /// Fine-tune the whole network per fold instead of a head on embeddings.
    pub full: bool,
    /// Epochs per fold of the full path.
    pub epochs: usize,
    /// The full path's training augmentation (see [`TrainConfig`]'s fields of these names):
    /// flips and crops made for photos turn a digit into another digit.
    pub crop_scale: f64,
    pub flip: bool,
    /// With `full`: EfficientNet-Lite0 weights to embed with as well, the linear heads'
    /// probabilities averaged with the fine-tuned ones ([`OofConfig::blend`]); `None`: the
    /// fine-tuned ones alone.
    pub blend_weights: Option<PathBuf>,
    pub seed: u64,
    pub device: DeviceChoice,
}

/// Resolution of the embeddings that the picture-similarity map uses, and that label-issue
/// searches use beyond [`SMALL_DATASET`] images: on the planted Fashion-MNIST noise 128 px
/// finds more than 96 (F1 0.73 against 0.70) in 1.5x the time; 224 is 2-3x slower again.
pub const EMBED_SIZE: u32 = 128;
/// A label-issue search on at most [`SMALL_DATASET`] images embeds at this resolution: on the
/// MNIST test set's human-confirmed errors it puts 8 of 15 in its first 50 and 11 in its first
/// 100, against 4 and 8 at 128 px (benches/digit_errors.sh confirmed), with the planted
/// Fashion-MNIST F1 unchanged (0.72 against 0.73).
pub const EMBED_SIZE_SMALL: u32 = 224;
/// Up to this many images a search can afford [`EMBED_SIZE_SMALL`] within 2 minutes on 2 CPU
/// cores (10,000 digits take 97 s at 224 px, 10,000 photos of 384x512 117 s; 18,900 photos
/// take 104-109 s at 128 px).
pub const SMALL_DATASET: usize = 10_000;
/// Folds of a search on embeddings: each fold's heads learn from (K-1)/K of the images, and
/// on a few thousand images 90 % finds more than 80 % (planted Fashion-MNIST noise, 3,000
/// images: F1 0.741 against 0.735 over three splits; whole people wrong in the composite
/// digits, 2,100 photos: F1 0.910 against 0.897 over nine draws and splits), for 10-20 s
/// more (22 → 32 s on those digits, 59 → 79 s on 5,000 photos of 384x512). Up to
/// [`FEW_IMAGES`] images [`FOLDS_FEW`], beyond [`FOLDS`]: at 10,000 images 10 folds change
/// nothing on MNIST's confirmed errors and cost 28 s.
pub const FOLDS: usize = 5;
pub const FOLDS_FEW: usize = 10;
pub const FEW_IMAGES: usize = 5_000;

impl OofConfig {
    /// This configuration for a search over `images` images, with the resolution it will
    /// embed at and the folds filled in (each kept as asked when given; fine-tuning per fold
    /// trains at the model's own resolution and on [`FOLDS`] folds: each is a whole run).
    pub fn for_issues(&self, images: usize) -> OofConfig {
        let img_size = match self.img_size {
            0 if !self.full && images <= SMALL_DATASET => EMBED_SIZE_SMALL,
            0 if !self.full => EMBED_SIZE,
            size => size,
        };
        let folds = match self.folds {
            0 if !self.full && images <= FEW_IMAGES => FOLDS_FEW,
            0 => FOLDS,
            k => k,
        };
        OofConfig {
            img_size,
            folds,
            ..self.clone()
        }
    }

    /// With `full` and `blend_weights`, the embedding search that runs beside the fine-tuned
    /// folds, on the same folds, at the resolution a search of `images` images embeds at. Two
    /// different models together rank real errors better than either: on MNIST's 15
    /// human-confirmed test-set errors the small CNN per fold puts 8-9 in its first 50 and
    /// 12-13 in its first 100, the embeddings' heads 8 and 12, their weighted geometric mean
    /// 10-11 and 13-14 over three seeds (benches/digit_errors.sh).
    pub fn blend(&self, images: usize) -> Option<OofConfig> {
        let weights = self.blend_weights.clone().filter(|_| self.full)?;
        Some(
            OofConfig {
                model: ModelKind::EfficientnetLite0,
                weights: Some(weights),
                img_size: 0,
                full: false,
                blend_weights: None,
                ..self.clone()
            }
            .for_issues(images),
        )
    }
}

impl Default for OofConfig {
    fn default() -> Self {
        OofConfig {
            folds: 0,
            model: ModelKind::EfficientnetLite0,
            weights: None,
            img_size: 0,
            full: false,
            epochs: 5,
            crop_scale: TrainConfig::default().crop_scale,
            flip: true,
            blend_weights: None,
            seed: 0,
            device: DeviceChoice::Auto,
        }
    }
}

/// Installed pretrained weights for `model`: `$LOUPE_WEIGHTS_DIR`, the checkout's `.weights/`
/// (where `make test` and scripts/fetch_weights.py put them), or the user data folder's
/// `weights/`. Looks at the disk: call it off the UI thread.
pub fn default_weights(model: ModelKind) -> Option<PathBuf> {
    let file = match model {
        ModelKind::EfficientnetLite0 => "efficientnet-lite0.safetensors",
        _ => return None,
    };
    [
        std::env::var_os("LOUPE_WEIGHTS_DIR").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".weights")),
        Some(crate::util::user_data_dir().join("weights")),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.join(file))
    .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_embeds_small_datasets_finer_and_keeps_a_size_it_was_given() {
        let auto = OofConfig::default();
        assert_eq!(auto.for_issues(2_100).img_size, EMBED_SIZE_SMALL);
        assert_eq!(auto.for_issues(SMALL_DATASET).img_size, EMBED_SIZE_SMALL);
        assert_eq!(auto.for_issues(18_900).img_size, EMBED_SIZE);
        let given = OofConfig {
            img_size: 96,
            ..Default::default()
        };
        assert_eq!(given.for_issues(100).img_size, 96);
        // Fine-tuning per fold trains at the model's own resolution, decided by the trainer.
        let full = OofConfig {
            full: true,
            ..Default::default()
        };
        assert_eq!(full.for_issues(100).img_size, 0);
    }

    #[test]
    fn a_search_on_few_images_uses_more_folds_unless_told_or_fine_tuning() {
        let auto = OofConfig::default();
        assert_eq!(auto.for_issues(2_100).folds, FOLDS_FEW);
        assert_eq!(auto.for_issues(FEW_IMAGES).folds, FOLDS_FEW);
        assert_eq!(auto.for_issues(FEW_IMAGES + 1).folds, FOLDS);
        let given = OofConfig {
            folds: 3,
            ..Default::default()
        };
        assert_eq!(given.for_issues(100).folds, 3);
        let full = OofConfig {
            full: true,
            ..Default::default()
        };
        assert_eq!(full.for_issues(100).folds, FOLDS);
    }

    #[test]
    fn fine_tuning_per_fold_is_blended_with_embeddings_on_the_same_folds_when_weights_exist() {
        let weights = PathBuf::from("lite0.safetensors");
        let full = OofConfig {
            model: ModelKind::SmallCnn,
            img_size: 28,
            full: true,
            blend_weights: Some(weights.clone()),
            seed: 3,
            ..Default::default()
        }
        .for_issues(2_000);
        let blend = full.blend(2_000).expect("full, with weights: blended");
        assert_eq!(blend.model, ModelKind::EfficientnetLite0);
        assert_eq!(blend.weights, Some(weights));
        assert!(!blend.full && blend.blend(2_000).is_none());
        assert_eq!(blend.img_size, EMBED_SIZE_SMALL);
        assert_eq!((blend.folds, blend.seed), (full.folds, full.seed));
        assert_eq!(full.blend(50_000).unwrap().img_size, EMBED_SIZE);
        // Without weights, or when the search embeds anyway, nothing to blend.
        let alone = OofConfig {
            blend_weights: None,
            ..full.clone()
        };
        assert!(alone.blend(2_000).is_none());
        let embedding = OofConfig {
            full: false,
            ..full
        };
        assert!(embedding.blend(2_000).is_none());
    }

    #[test]
    fn a_new_head_learns_ten_times_faster_only_when_fine_tuning() {
        let tuned = TrainConfig {
            weights: Some(PathBuf::from("w.safetensors")),
            lr: 3e-4,
            ..Default::default()
        };
        assert!((tuned.head_lr() - 3e-3).abs() < 1e-12);
        let given = TrainConfig {
            head_lr: Some(1e-2),
            ..tuned.clone()
        };
        assert_eq!(given.head_lr(), 1e-2);
        // Frozen (only the head trains) or from scratch: one rate for everything.
        let frozen = TrainConfig {
            freeze: true,
            ..tuned.clone()
        };
        assert_eq!(frozen.head_lr(), 3e-4);
        let scratch = TrainConfig {
            weights: None,
            ..tuned
        };
        assert_eq!(scratch.head_lr(), 3e-4);
    }

    #[test]
    fn frames_leave_room_for_a_centre_crop_of_seven_eighths() {
        assert_eq!(frame_side(224), 256);
        assert_eq!(frame_side(128), 146);
        let cfg = TrainConfig {
            img_size: 160,
            ..Default::default()
        };
        assert_eq!(cfg.frame_side(), 183);
    }
}
