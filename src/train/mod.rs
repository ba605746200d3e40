//! Everything that touches tch (libtorch). No egui here. So far: the device probe, the
//! EfficientNet-Lite0 backbone, evaluation preprocessing, metrics and the train/validation
//! split; the training engine itself is issue 5.

pub mod data;
pub mod device;
pub mod efficientnet_lite;
pub mod engine;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod split;
