//! Label quality: confident learning over out-of-fold predicted probabilities, to point at the
//! images whose given label is most likely wrong.

pub mod confident;
