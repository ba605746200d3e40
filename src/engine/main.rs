//! `loupe-engine`: the process that runs networks. The only code of Loupe that links libtorch
//! (through tch); `loupe` (the window and the data commands) starts it for each job and reads its
//! events, so a native abort in here (a CUDA assertion, an out-of-memory that is not a Rust
//! error) ends this process only. The protocol is in `loupe::train::protocol`: a hello, one job
//! on stdin, events on stdout, cancel on stdin (or stdin closing).

mod data;
mod device;
mod efficientnet_lite;
mod embed;
mod heads;
mod oof;
mod pipeline;
mod predict;
mod similar;
mod trainer;
mod zoo;

use std::io::{BufRead, Write};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use loupe::dataset;
use loupe::train::given_split;
use loupe::train::protocol::{Control, Event, Job, JobResult, PROTOCOL, VERSION};
use loupe::train::record::RunConfig;

use trainer::Start;

/// Where the engine's code reports: the protocol's stdout, from any thread.
pub type Emit<'a> = dyn Fn(Event) + Sync + 'a;

/// Stdout as the client reads it: one JSON line per event, flushed at once.
struct Output {
    out: Mutex<std::io::Stdout>,
    /// Set when stdout is gone (the client died): the work is cancelled, nobody would hear it.
    cancel: Arc<AtomicBool>,
}

impl Output {
    fn send(&self, e: &Event) {
        let line = serde_json::to_string(e).expect("events always serialize");
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

fn main() -> ExitCode {
    // libtorch logs a deprecation warning on every autocast call; keep its logger to errors.
    // Set before anything asks libtorch for work (its logger reads the variable lazily).
    if std::env::var_os("TORCH_CPP_LOG_LEVEL").is_none() {
        std::env::set_var("TORCH_CPP_LOG_LEVEL", "ERROR");
    }
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("loupe-engine {VERSION} (protocol {PROTOCOL})");
        return ExitCode::SUCCESS;
    }
    let cancel = Arc::new(AtomicBool::new(false));
    // SIGTERM is a request to stop, as a cancel line is: a cluster stopping a job (Ray sends it
    // to the job's whole process tree, then SIGKILL a few seconds later) gets a run that ends
    // within one batch with its checkpoint and its end written.
    #[cfg(unix)]
    let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, cancel.clone());
    let output = Output {
        out: Mutex::new(std::io::stdout()),
        cancel: cancel.clone(),
    };
    output.send(&Event::Hello {
        protocol: PROTOCOL,
        version: VERSION.into(),
    });

    let mut first = String::new();
    let job: Job = match std::io::stdin().read_line(&mut first) {
        Ok(n) if n > 0 => match serde_json::from_str(&first) {
            Ok(job) => job,
            Err(e) => {
                output.send(&Event::Failed {
                    message: format!("the engine could not read its job: {e}"),
                });
                return ExitCode::from(2);
            }
        },
        _ => return ExitCode::from(2), // nobody asked for anything
    };
    // Cancel on request, or when stdin closes: the client is gone or wants us gone.
    let c = cancel.clone();
    std::thread::Builder::new()
        .name("loupe-engine-control".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line.map(|l| serde_json::from_str::<Control>(&l)) {
                    Ok(Ok(Control::Cancel)) => c.store(true, Ordering::Relaxed),
                    Ok(Err(_)) => {} // not a control line: ignored
                    Err(_) => break,
                }
            }
            c.store(true, Ordering::Relaxed);
        })
        .expect("spawning a thread only fails when the OS is out of resources");

    let emit = |e: Event| output.send(&e);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(job, &emit, &cancel)));
    let message = match result {
        Ok(Ok(None)) => return ExitCode::SUCCESS, // a run reported its own end
        Ok(Ok(Some(result))) => {
            emit(Event::Done { result });
            return ExitCode::SUCCESS;
        }
        Ok(Err(e)) => trainer::explain(&format!("{e:#}")),
        Err(panic) => trainer::explain(&trainer::panic_text(panic.as_ref())),
    };
    emit(Event::Failed { message });
    ExitCode::FAILURE
}

/// Does the job. Training reports its end itself (`Finished`): `None`; other jobs return their
/// result.
fn run(job: Job, emit: &Emit<'_>, cancel: &AtomicBool) -> anyhow::Result<Option<JobResult>> {
    match job {
        Job::Train {
            dataset,
            config,
            runs_dir,
            name,
        } => {
            let (ds, notes) =
                dataset::open_edited(&dataset, &Default::default(), Default::default())?;
            for text in notes {
                emit(Event::Note { text });
            }
            let (ds, val) = given_split::prepare(ds, config.given_split.as_ref())?;
            let start = Start::New {
                runs_dir,
                name,
                val,
            };
            trainer::train(&ds, &config, &start, emit, cancel)?;
            Ok(None)
        }
        Job::Resume { run, epochs } => {
            let rc = RunConfig::read(&run)?;
            let mut config = rc.config.clone();
            if let Some(e) = epochs {
                config.epochs = e;
            }
            let (ds, _) =
                dataset::open_edited(&rc.source(), &Default::default(), Default::default())?;
            let (ds, _) = given_split::prepare(ds, config.given_split.as_ref())?;
            trainer::train(&ds, &config, &Start::Resume(run), emit, cancel)?;
            Ok(None)
        }
        Job::Eval { run, dataset } => predict::eval(&run, dataset, emit, cancel).map(Some),
        Job::Predict {
            runs,
            folder,
            out,
            tta,
            format,
        } => predict::folder(&runs, &folder, &out, tta, &format, emit, cancel).map(Some),
        Job::Neighbours {
            dataset,
            config,
            embeddings,
            k,
        } => similar::neighbours(&dataset, &config, &embeddings, k, emit, cancel).map(Some),
        Job::FindIssues {
            dataset,
            config,
            method,
            rank_by,
            issues_dir,
            embeddings,
        } => oof::find_issues(
            &dataset,
            &config,
            (method, rank_by),
            (&issues_dir, &embeddings),
            emit,
            cancel,
        )
        .map(Some),
        Job::Device => Ok(Some(JobResult::Device(device::probe()))),
    }
}
