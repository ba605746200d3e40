//! The append-only journal of label edits: one JSON object per line, fsynced before an edit is
//! acknowledged. It is the source of truth for every edit; everything else is derived from it.
//!
//! Several processes may edit the same dataset: each append takes an exclusive lock on
//! `journal.lock`, first reads what others appended since, then writes its own line. Lines carry
//! increasing sequence numbers so undo/redo always refer to one well-defined step.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One change to one sample. `from` is recorded for the history and for humans reading the
/// file; replay only needs `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum Edit {
    Label {
        path: String,
        from: String,
        to: String,
    },
    Excluded {
        path: String,
        from: bool,
        to: bool,
    },
    Unsure {
        path: String,
        from: bool,
        to: bool,
    },
    /// Looked at in review and kept as labelled: the review queue does not ask again.
    Checked {
        path: String,
        from: bool,
        to: bool,
    },
}

impl Edit {
    pub fn path(&self) -> &str {
        match self {
            Edit::Label { path, .. }
            | Edit::Excluded { path, .. }
            | Edit::Unsure { path, .. }
            | Edit::Checked { path, .. } => path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A batch of edits: one undo step. `note` says what the user did ("relabel 12 to cats").
    Apply {
        note: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        new_classes: Vec<String>,
        edits: Vec<Edit>,
    },
    Undo {
        target: u64,
    },
    Redo {
        target: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// Seconds since the Unix epoch.
    pub time: u64,
    #[serde(flatten)]
    pub op: Op,
}

/// What went wrong while reading a journal; the rest of it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The last line was cut off mid-write (a crash): dropped, and the file cut back to the last
    /// whole line so appends continue cleanly.
    TornTail { bytes: u64 },
    /// A line in the middle that is not a valid entry: skipped.
    BadLine { line: usize, text: String },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::TornTail { bytes } => {
                write!(f, "the last edit in the journal was cut off while being written ({bytes} bytes) and was dropped")
            }
            Damage::BadLine { line, text } => {
                write!(f, "journal line {line} is damaged and was skipped: {text}")
            }
        }
    }
}

pub struct Journal {
    path: PathBuf,
    lock_path: PathBuf,
    /// Bytes of the file already read (always at a line boundary).
    read_to: u64,
    /// Lines read so far, for messages that name a line.
    lines_read: usize,
    last_seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the label journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and reads every entry in it.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Entry>, Vec<Damage>), JournalError> {
        let path = dir.join("journal.jsonl");
        let lock_path = dir.join("journal.lock");
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut j = Journal {
            path: path.clone(),
            lock_path,
            read_to: 0,
            lines_read: 0,
            last_seq: 0,
        };
        let lock = j.lock().map_err(io_err)?;
        let (entries, damage) = j.read_new().map_err(io_err)?;
        drop(lock);
        Ok((j, entries, damage))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)?;
        f.lock()?;
        Ok(f)
    }

    /// Entries other processes appended since we last looked.
    pub fn refresh(&mut self) -> Result<(Vec<Entry>, Vec<Damage>), JournalError> {
        let lock = self.lock().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        let r = self.read_new().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        });
        drop(lock);
        r
    }

    /// Appends `op` after reading what others appended (returned first, to be
    /// applied before ours). Durable when this returns: written and fsynced.
    pub fn append(&mut self, op: Op) -> Result<(Vec<Entry>, Vec<Damage>, Entry), JournalError> {
        let path = self.path.clone();
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let lock = self.lock().map_err(io_err)?;
        let (others, damage) = self.read_new().map_err(io_err)?;
        let entry = Entry {
            seq: self.last_seq + 1,
            time: now(),
            op,
        };
        let mut line = serde_json::to_vec(&entry).expect("journal entries always serialize");
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err)?;
        if let Err(e) = f.write_all(&line).and_then(|()| f.sync_data()) {
            // Leave no half line behind for the next reader: cut back to where we started.
            let _ = f.set_len(self.read_to);
            return Err(io_err(e));
        }
        self.read_to += line.len() as u64;
        self.last_seq = entry.seq;
        drop(lock);
        Ok((others, damage, entry))
    }

    /// Reads complete lines from `read_to` on. Must hold the lock.
    fn read_new(&mut self) -> io::Result<(Vec<Entry>, Vec<Damage>)> {
        let mut entries = Vec::new();
        let mut damage = Vec::new();
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((entries, damage)),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if len < self.read_to {
            // Someone cut the file (a torn tail they repaired): start over would double-apply;
            // the torn bytes were never acknowledged, so just continue from the new end.
            self.read_to = len;
            return Ok((entries, damage));
        }
        f.seek(SeekFrom::Start(self.read_to))?;
        let mut reader = BufReader::new(&mut f);
        let mut line_no = self.lines_read;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if buf.last() != Some(&b'\n') {
                // A torn tail: the write of this line never completed, so it was never acked.
                damage.push(Damage::TornTail { bytes: n as u64 });
                drop(reader);
                OpenOptions::new()
                    .write(true)
                    .open(&self.path)?
                    .set_len(self.read_to)?;
                break;
            }
            self.read_to += n as u64;
            match serde_json::from_slice::<Entry>(&buf) {
                Ok(e) if e.seq > self.last_seq => {
                    self.last_seq = e.seq;
                    entries.push(e);
                }
                Ok(e) => damage.push(Damage::BadLine {
                    line: line_no,
                    text: format!("sequence number {} out of order", e.seq),
                }),
                Err(_) if buf.iter().all(u8::is_ascii_whitespace) => {}
                Err(err) => damage.push(Damage::BadLine {
                    line: line_no,
                    text: err.to_string(),
                }),
            }
        }
        self.lines_read = line_no;
        Ok((entries, damage))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
