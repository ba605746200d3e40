//! Everything that touches tch (libtorch). No egui here. So far: the device probe, the
//! EfficientNet-Lite0 backbone and evaluation preprocessing; the training engine is issue 5.

pub mod data;
pub mod device;
pub mod efficientnet_lite;
