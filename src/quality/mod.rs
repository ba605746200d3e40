//! Data quality, pure math and files: what is wrong with the pictures (`health`); and label
//! quality: confident learning (as cleanlab) over out-of-fold
//! probabilities, temperature scaled first (`calibration`), ranks the images whose given label is most likely wrong (`confident`), and a
//! search's findings are kept beside the dataset (`issues`). The probabilities themselves come
//! from the engine process (`train::protocol::Job::FindIssues`).

pub mod calibration;
pub mod confident;
pub mod health;
pub mod issues;
