//! Everything that touches tch (libtorch). No egui here. For now only the device probe;
//! the training engine comes with its own issue.

pub mod device;
