//! `loupe`: argument parsing and dispatch only.

use std::process::ExitCode;

use clap::Parser;
use loupe::cli::{self, Cli};

fn main() -> ExitCode {
    let _ = loupe::ui::PROCESS_START.set(std::time::Instant::now());
    // libtorch logs a deprecation warning on every autocast call; keep its logger to errors.
    // Set before anything asks libtorch for work (its logger reads the variable lazily).
    if std::env::var_os("TORCH_CPP_LOG_LEVEL").is_none() {
        std::env::set_var("TORCH_CPP_LOG_LEVEL", "ERROR");
    }
    let args = Cli::parse();
    let result = match args.command {
        Some(command) => cli::run(command),
        None => loupe::ui::run(args.path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
