//! `loupe`: argument parsing and dispatch only. Links no libtorch: networks run in the
//! `loupe-engine` process (see `loupe::train::client`).

use std::process::ExitCode;

use clap::Parser;
use loupe::cli::{self, Cli};

fn main() -> ExitCode {
    // Counted from exec, not from here: loading the binary and its libraries is start-up too.
    let now = std::time::Instant::now();
    let started = loupe::util::since_exec().and_then(|age| now.checked_sub(age));
    let _ = loupe::ui::PROCESS_START.set(started.unwrap_or(now));
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
