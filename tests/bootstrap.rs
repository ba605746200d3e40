//! `scripts/bootstrap.sh` on a machine whose package manager fails: once (it repairs with
//! `dpkg --configure -a` and goes on), and for good (it names the package and the command).
//! apt-get, dpkg, ldconfig and id are stand-ins on PATH that log what they were asked; the rest
//! of the set-up (the venv, the weights) is this checkout's, already in place.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Stand-ins: `ldconfig` knows no library (so every one is "missing"), `id` says root, `dpkg`
/// logs its arguments, `apt-get` logs them and fails its first `fail_first` installs, and always
/// fails to install `broken` (a package name, or empty).
fn fake_tools(bin: &Path, fail_first: usize, broken: &str) {
    let log = bin.join("calls.log");
    let tool = |name: &str, body: String| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    tool("ldconfig", "exit 0".into());
    tool("id", "echo 0".into());
    tool("dpkg", format!("echo \"dpkg $*\" >> {}", log.display()));
    tool(
        "apt-get",
        format!(
            r#"echo "apt-get $*" >> {log}
[ "$1" = install ] || exit 0
n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}
if [ "$n" -lt {fail_first} ]; then echo "E: Sub-process /usr/bin/dpkg returned an error code (2)" >&2; exit 100; fi
for p in "$@"; do if [ -n "{broken}" ] && [ "$p" = "{broken}" ]; then echo "E: Unable to locate package $p" >&2; exit 100; fi; done
exit 0"#,
            log = log.display(),
            count = bin.join("count").display(),
        ),
    );
}

fn bootstrap(bin: &Path) -> std::process::Output {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bootstrap.sh"))
        .arg("gui")
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn an_apt_failure_is_repaired_and_retried_once() {
    let bin = tempfile::tempdir().unwrap();
    fake_tools(bin.path(), 1, "");
    let out = bootstrap(bin.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("repairing with dpkg --configure -a and trying again"),
        "{stderr}"
    );
    let calls = std::fs::read_to_string(bin.path().join("calls.log")).unwrap();
    let installs = calls
        .lines()
        .filter(|l| l.starts_with("apt-get install"))
        .count();
    assert_eq!(installs, 2, "{calls}");
    assert!(calls.contains("dpkg --configure -a"), "{calls}");
}

#[test]
fn a_package_that_keeps_failing_is_named_with_the_command_to_run() {
    let bin = tempfile::tempdir().unwrap();
    fake_tools(bin.path(), 0, "libxi6");
    let out = bootstrap(bin.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("could not install libxi6 ")
            && last.contains("Run: sudo dpkg --configure -a && sudo apt-get update && sudo apt-get install libxi6"),
        "{stderr}"
    );
}
