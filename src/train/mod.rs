//! Training runs as the library knows them, without libtorch: what decides a run (`config`),
//! the run folder on disk (`record`, `predictions`, `runs`), the metrics, the split and the
//! schedule, and the engine process that does the work (`protocol`, `client`). The engine
//! itself (`src/engine/`, the `loupe-engine` binary) is the only code that links tch.

pub mod backend;
pub mod client;
pub mod config;
pub mod experiment;
pub mod given_split;
pub mod metrics;
pub mod predictions;
pub mod protocol;
pub mod ray;
pub mod record;
pub mod runs;
pub mod schedule;
pub mod split;
pub mod sweep;
