//! Everything that touches tch (libtorch). No egui here: the device probe, the model zoo and
//! pretrained weights, the batch pipeline, the train/validation split, metrics, the training
//! engine (a worker thread with events) and finished runs (evaluation, prediction).

pub mod data;
pub mod device;
pub mod efficientnet_lite;
pub mod engine;
pub mod given_split;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod record;
pub mod runs;
pub mod schedule;
pub mod split;
