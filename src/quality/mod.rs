//! Label quality: out-of-fold predicted probabilities (cross-validation with the training
//! engine, or a head on embeddings), then confident learning over them to rank the images whose
//! given label is most likely wrong.

pub mod confident;
pub mod embed;
pub mod issues;
pub mod oof;
