//! Small helpers that every layer uses, at the bottom of the crate: it imports nothing of
//! Loupe's own. Time stamps, the one crash-safe way to replace a file, path spelling, and the
//! user's data and cache folders.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Display form of a dataset-relative path: always `/`-separated.
pub fn path_str(p: &Path) -> String {
    match p.to_str() {
        // The common case, one copy: statistics spell out every path of a large dataset.
        Some(s) if !s.contains('\\') => s.to_owned(),
        _ => p.to_string_lossy().replace('\\', "/"),
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds (civil-from-days, Howard Hinnant's algorithm).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

/// How long ago this process was started (exec), from the kernel's record of it (Linux:
/// /proc/self/stat and /proc/uptime, in hundredths of a second). Time to first frame is
/// counted from here, so that loading the binary and its libraries is part of it. `None`
/// where the kernel does not say.
pub fn since_exec() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its closing paren.
    let after = stat.rsplit_once(')')?.1;
    let start_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // USER_HZ, the unit of starttime, is 100 on every Linux ABI.
    let age = uptime - start_ticks / 100.0;
    (age >= 0.0).then(|| std::time::Duration::from_secs_f64(age))
}

/// A duration for people: `4m05s`, `1h02m`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Replaces `path` with `bytes` so that a crash or a full disk leaves either the old or the new
/// file, never a mix: a temporary file in the same folder, fsynced, renamed over `path`, and the
/// folder fsynced so the rename itself survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// [`write_atomic`] for writers that want a path of their own (a checkpoint saved by libtorch, a
/// buffered stream): `write` fills the temporary file, which is then fsynced and renamed.
/// A file's length and modification time (whole seconds): what caches key a file's content
/// by, so a changed file is read again.
pub fn file_stamp(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some((meta.len(), mtime))
}

pub fn replace_file(path: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Same folder (a rename across file systems is a copy), same extension (libtorch picks the
    // checkpoint format by it), hidden.
    let tmp = dir.join(format!(".tmp-{name}"));
    let result = write(&tmp).and_then(|()| std::fs::File::open(&tmp)?.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `parent/<UTC time>-<name>` (with `-2`, `-3`... when taken), created; never an existing folder.
/// Run folders and saved searches are made this way, so they sort by time and are never reused.
pub fn new_dir(parent: &Path, name: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(parent).map_err(|e| with_path(e, parent))?;
    let stamp = stamp();
    for k in 1.. {
        let dir = parent.join(if k == 1 {
            format!("{stamp}-{name}")
        } else {
            format!("{stamp}-{name}-{k}")
        });
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(with_path(e, &dir)),
        }
    }
    unreachable!("an unbounded counter always finds a free name")
}

/// The time as folder names start with: `2026-11-24-08-00-30`.
pub fn stamp() -> String {
    utc(now_secs()).replace([' ', ':'], "-").replace("-UTC", "")
}

/// Creates `parent/name`, which must not exist yet (a run folder is never reused).
pub fn named_dir(parent: &Path, name: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(parent).map_err(|e| with_path(e, parent))?;
    let dir = parent.join(name);
    std::fs::create_dir(&dir).map_err(|e| with_path(e, &dir))?;
    Ok(dir)
}

/// An I/O error that names the path it is about.
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The user's data folder for Loupe: `$LOUPE_DATA_DIR`, else `$XDG_DATA_HOME/loupe`, else
/// `~/.local/share/loupe` (the temp folder when there is no home).
pub fn user_data_dir() -> PathBuf {
    user_dir("LOUPE_DATA_DIR", "XDG_DATA_HOME", ".local/share")
}

/// The user's cache folder for Loupe: `$LOUPE_CACHE_DIR`, else `$XDG_CACHE_HOME/loupe`, else
/// `~/.cache/loupe`. Tests point `LOUPE_CACHE_DIR` at a temporary folder.
pub fn user_cache_dir() -> PathBuf {
    user_dir("LOUPE_CACHE_DIR", "XDG_CACHE_HOME", ".cache")
}

fn user_dir(own: &str, xdg: &str, home_sub: &str) -> PathBuf {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = absolute(own) {
        return dir;
    }
    absolute(xdg)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_sub)))
        .unwrap_or_else(std::env::temp_dir)
        .join("loupe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_355_520), "2026-11-22 13:52 UTC");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_a_failed_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let err = replace_file(&f, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"two", "the old file is intact");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_started_before_now() {
        let age = since_exec().unwrap();
        assert!(age < std::time::Duration::from_secs(24 * 3600), "{age:?}");
    }

    #[test]
    fn new_dirs_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = new_dir(dir.path(), "run").unwrap();
        let b = new_dir(dir.path(), "run").unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
    }
}
