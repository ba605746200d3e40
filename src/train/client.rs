//! Starting an engine process and listening to it, as a remote service: a versioned hello, a
//! time limit on it, events as they come, and a message in words when the process dies without
//! saying goodbye (killed, an abort inside libtorch, a missing or mismatched binary). The window
//! and the command line both use this; several engines can run at once, one process each.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::protocol::{Control, Event, Job, JobResult, PROTOCOL, VERSION};

/// The engine binary's file name.
pub const ENGINE_BIN: &str = "loupe-engine";

/// How long a starting engine may take to say hello (loading libtorch and CUDA takes a second or
/// two; a minute means it hangs).
const HELLO_LIMIT: Duration = Duration::from_secs(60);

/// Lines of the engine's stderr kept for a failure message.
const STDERR_TAIL: usize = 12;

/// How long a failure message waits for the rest of a dead engine's stderr: only a process the
/// engine started and left running can keep it open that long.
const STDERR_GRACE: Duration = Duration::from_secs(5);

/// Called after each event, from the listening thread (a repaint request in the window).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Where the engine binary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub program: PathBuf,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::locate()
    }
}

impl Engine {
    pub fn at(program: impl Into<PathBuf>) -> Engine {
        Engine {
            program: program.into(),
        }
    }

    /// `$LOUPE_ENGINE`, else `loupe-engine` beside this executable (or one folder up, where
    /// cargo puts binaries for the test executables in `deps/`).
    pub fn locate() -> Engine {
        if let Some(p) = std::env::var_os("LOUPE_ENGINE") {
            return Engine::at(p);
        }
        let exe = std::env::current_exe().unwrap_or_default();
        let dir = exe.parent().unwrap_or(Path::new("."));
        let beside = dir.join(ENGINE_BIN);
        let candidates = [beside.clone(), dir.join("..").join(ENGINE_BIN)];
        Engine::at(
            candidates
                .into_iter()
                .find(|p| p.is_file())
                .unwrap_or(beside),
        )
    }

    /// Starts an engine on `job`. Never fails here: a process that cannot start, or dies, shows
    /// as a `Failed` event on the handle, handled where every other failure is.
    pub fn start(&self, job: &Job, wake: Option<Wake>) -> EngineHandle {
        let (tx, rx) = mpsc::channel();
        let mut handle = EngineHandle {
            rx,
            stdin: Arc::new(Mutex::new(None)),
            child: Arc::new(Mutex::new(None)),
            pid: None,
            remote: None,
        };
        let mut cmd = Command::new(&self.program);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: Ctrl+C in a terminal reaches `loupe` only, whose exit closes the
        // engine's stdin, which stops the run cleanly (a checkpoint instead of a torn epoch).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // glibc maps allocations above 32 MiB afresh and hands them back on free; a batch's
        // activations are that large, so every batch faulted its memory in again (4.7 million
        // page faults in a 3,000-image search). Keeping them in the heap took that search from
        // 53 s to 41 s. Other allocators ignore these variables; a user's own setting wins.
        for (var, value) in [
            ("MALLOC_MMAP_THRESHOLD_", "268435456"),
            ("MALLOC_TRIM_THRESHOLD_", "1073741824"),
        ] {
            if std::env::var_os(var).is_none() {
                cmd.env(var, value);
            }
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Event::Failed {
                    message: self.cannot_start(&e),
                });
                if let Some(w) = wake {
                    w();
                }
                return handle;
            }
        };
        handle.pid = Some(child.id());
        let (stdin, stdout, stderr) = (
            child.stdin.take().expect("piped"),
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        *handle.stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(stdin);
        *handle.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        handle.send_line(&serde_json::to_string(job).expect("a job always serializes"));

        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let t = tail.clone();
        // Dropped when stderr ends, so that a failure message waits for the engine's last words.
        let (stderr_open, stderr_done) = mpsc::channel::<()>();
        spawn_named("loupe-engine-stderr", move || {
            let _open = stderr_open;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });

        let said_hello = Arc::new(AtomicBool::new(false));
        let hung = Arc::new(AtomicBool::new(false));
        {
            let (said_hello, hung, child) =
                (said_hello.clone(), hung.clone(), handle.child.clone());
            spawn_named("loupe-engine-hello", move || {
                let step = Duration::from_millis(100);
                let mut waited = Duration::ZERO;
                while waited < HELLO_LIMIT {
                    if said_hello.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(step);
                    waited += step;
                }
                if !said_hello.load(Ordering::Relaxed) {
                    hung.store(true, Ordering::Relaxed);
                    kill(&child);
                }
            });
        }

        let listener = Listener {
            program: self.program.clone(),
            tx,
            wake,
            child: handle.child.clone(),
            tail,
            stderr_done,
            said_hello,
            hung,
            training: matches!(job, Job::Train { .. } | Job::Resume { .. }),
        };
        spawn_named("loupe-engine-events", move || listener.listen(stdout));
        handle
    }

    fn cannot_start(&self, e: &std::io::Error) -> String {
        let path = self.program.display();
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "the engine ({ENGINE_BIN}, which runs the networks) was not found at {path}. It is \
                 built beside `loupe`: run `make run`, or `cargo build --release --bins`; or point \
                 LOUPE_ENGINE at it"
            )
        } else {
            format!("the engine at {path} could not be started: {e}")
        }
    }
}

/// Ends the engine process, if it is still there to end.
fn kill(child: &Mutex<Option<Child>>) {
    if let Some(c) = child.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        let _ = c.kill();
    }
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawning a thread only fails when the OS is out of resources");
}

/// A running engine: its events, and the way to stop it.
pub struct EngineHandle {
    pub rx: Receiver<Event>,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    child: Arc<Mutex<Option<Child>>>,
    pid: Option<u32>,
    /// How to stop work that runs elsewhere (a cluster job); `None` for a local process.
    remote: Option<Stop>,
}

/// Stops a remote job (asks; the job keeps its last checkpoint as a local run does).
pub type Stop = Arc<dyn Fn() + Send + Sync>;

impl EngineHandle {
    /// A handle on work that runs elsewhere: its events come on `rx`, `stop` stops it.
    pub fn remote(rx: Receiver<Event>, stop: Stop) -> EngineHandle {
        EngineHandle {
            rx,
            stdin: Arc::new(Mutex::new(None)),
            child: Arc::new(Mutex::new(None)),
            pid: None,
            remote: Some(stop),
        }
    }

    /// Asks the engine to stop within one batch (a run keeps its last checkpoint).
    pub fn cancel(&self) {
        match &self.remote {
            Some(stop) => stop(),
            None => self.send_line(&serde_json::to_string(&Control::Cancel).expect("serializes")),
        }
    }

    /// Ends the process at once (what a crash looks like to the client); a remote job is asked
    /// to stop.
    pub fn kill(&self) {
        match &self.remote {
            Some(stop) => stop(),
            None => kill(&self.child),
        }
    }

    /// The engine's process id (none when it could not start).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn send_line(&self, line: &str) {
        let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = stdin.as_mut() {
            // A dead engine cannot be told anything; its end is reported by the listener.
            if writeln!(w, "{line}").and_then(|()| w.flush()).is_err() {
                *stdin = None;
            }
        }
    }

    /// Waits for every remaining event up to the last one and returns them (the command line).
    pub fn wait(self) -> Vec<Event> {
        self.rx.iter().collect()
    }

    /// Waits for a job's result, passing progress lines on and asking the engine to stop once
    /// `cancel` is set (background work in the window). The error is the engine's message.
    pub fn result(
        self,
        cancel: &AtomicBool,
        mut progress: impl FnMut(String),
    ) -> Result<JobResult, String> {
        let mut asked_to_stop = false;
        loop {
            if cancel.load(Ordering::Relaxed) && !asked_to_stop {
                self.cancel();
                asked_to_stop = true;
            }
            match self.rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(Event::Progress { what, done, total }) => {
                    progress(format!("{what} {done} / {total}"))
                }
                Ok(Event::Done { result }) => return Ok(result),
                Ok(Event::Failed { message }) => return Err(message),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the engine ended without a result".to_string())
                }
            }
        }
    }
}

impl Drop for EngineHandle {
    /// Nobody listens any more: the engine is told to stop, and its stdin closed, which it also
    /// takes as "stop". The listener thread reaps the process when it ends.
    fn drop(&mut self) {
        self.cancel();
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The thread that reads the engine's stdout.
struct Listener {
    program: PathBuf,
    tx: Sender<Event>,
    wake: Option<Wake>,
    child: Arc<Mutex<Option<Child>>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Disconnects once the stderr reader has read everything.
    stderr_done: Receiver<()>,
    said_hello: Arc<AtomicBool>,
    hung: Arc<AtomicBool>,
    training: bool,
}

impl Listener {
    fn emit(&self, e: Event) {
        let _ = self.tx.send(e);
        if let Some(w) = &self.wake {
            w();
        }
    }

    fn listen(self, stdout: std::process::ChildStdout) {
        let mut lines = BufReader::new(stdout).lines();
        let mut ended = false;
        let mut run_dir: Option<PathBuf> = None;
        // No line at all (the process died at once) is reported below as a process that
        // stopped; a first line that is not the right hello is refused here.
        let refused = match lines.next() {
            Some(Ok(first)) => self.refusal(&first),
            _ => None,
        };
        if let Some(message) = refused {
            self.said_hello.store(true, Ordering::Relaxed);
            kill(&self.child);
            self.emit(Event::Failed { message });
            ended = true;
        } else {
            for line in lines.map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Event>(&line) else {
                    continue; // not a message (a library printing to stdout): ignored
                };
                if let Event::Started { run_dir: d, .. } = &event {
                    run_dir = Some(d.clone());
                }
                let last = event.is_last();
                self.emit(event);
                if last {
                    ended = true;
                    break;
                }
            }
        }
        // The engine closed its stdout: it is exiting. Reap it, and if it never said goodbye,
        // say what happened.
        let child = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
        let status = child.and_then(|mut c| c.wait().ok());
        if !ended {
            // The stderr reader may still be reading the last lines: wait for its end of file
            // (at once once the process has exited, unless a process it started holds stderr).
            let _ = self.stderr_done.recv_timeout(STDERR_GRACE);
            let message = self.obituary(status, run_dir.as_deref());
            self.emit(Event::Failed { message });
        }
    }

    /// Why the engine's first line is not the hello of this version, if it is not.
    fn refusal(&self, first: &str) -> Option<String> {
        match serde_json::from_str::<Event>(first) {
            Ok(Event::Hello { protocol, version })
                if protocol == PROTOCOL && version == VERSION =>
            {
                self.said_hello.store(true, Ordering::Relaxed);
                None
            }
            Ok(Event::Hello { protocol, version }) => Some(format!(
                "the engine at {} is version {version} (protocol {protocol}), this Loupe is \
                 {VERSION} (protocol {PROTOCOL}): build both from one checkout (`make run`, or \
                 `cargo build --release --bins`)",
                self.program.display()
            )),
            _ => Some(format!(
                "{} did not answer as a Loupe engine (it said {:?}); point LOUPE_ENGINE at \
                 {ENGINE_BIN}",
                self.program.display(),
                first.chars().take(80).collect::<String>()
            )),
        }
    }

    fn obituary(&self, status: Option<std::process::ExitStatus>, run_dir: Option<&Path>) -> String {
        let mut msg = if self.hung.load(Ordering::Relaxed) {
            format!(
                "the engine did not start within {} s and was stopped",
                HELLO_LIMIT.as_secs()
            )
        } else {
            match status {
                Some(s) => describe_exit(s),
                None => "the engine stopped unexpectedly".into(),
            }
        };
        let tail: Vec<String> = self
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        if let Some(last) = tail.iter().rev().find(|l| !l.trim().is_empty()) {
            msg.push_str(&format!(" (its last words: {})", last.trim()));
        }
        if self.training {
            match run_dir {
                Some(d) => msg.push_str(&format!(
                    ". The run folder {} keeps its last finished epoch: resume it (the runs \
                     list, or `loupe resume {}`)",
                    d.display(),
                    d.display()
                )),
                None => msg.push_str(". The run had not started yet: start it again"),
            }
        }
        msg
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            let what = match sig {
                9 => "was killed (SIGKILL: by a person, or by the system when memory ran out)",
                6 => "crashed (SIGABRT: an abort inside libtorch)",
                11 => "crashed (SIGSEGV)",
                15 => "was terminated (SIGTERM)",
                _ => "was ended by a signal",
            };
            return format!("the engine process {what}, signal {sig}");
        }
    }
    match s.code() {
        Some(code) => format!("the engine stopped with exit status {code} without a result"),
        None => "the engine stopped unexpectedly".into(),
    }
}
