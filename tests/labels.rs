//! Label edits you can trust: persistence, undo/redo across restarts, crashes, damaged journals,
//! untouched sources, export, read-only datasets and two writers at once.

mod common;

use common::loupe;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use loupe::dataset::export::{self, ExportFormat};
use loupe::dataset::{self, Dataset, LabelStore, Progress, Source};

/// 3 classes x 4 PNGs, all different.
fn small_dataset(root: &Path) {
    for (c, class) in ["cats", "dogs", "birds"].iter().enumerate() {
        for i in 0..4 {
            common::write_png(
                &root.join(class).join(format!("{i}.png")),
                6,
                6,
                (c * 10 + i) as u8,
            );
        }
    }
}

fn open(root: &Path) -> (Dataset, LabelStore) {
    let ds = dataset::open(
        &Source::ImageFolder {
            root: root.to_path_buf(),
        },
        &Progress::default(),
    )
    .unwrap();
    let store = LabelStore::open(&ds).unwrap();
    (ds, store)
}

fn s(x: &str) -> String {
    x.to_string()
}

/// Content hash of every file under `root` except the overlay.
fn checksums(root: &Path) -> BTreeMap<PathBuf, blake3::Hash> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".loupe")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                blake3::hash(&fs::read(e.path()).unwrap()),
            )
        })
        .collect()
}

#[test]
fn edits_persist_across_reopen_and_undo_redo_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    small_dataset(dir.path());
    {
        let (_, mut st) = open(dir.path());
        // A batch of two is one step.
        st.relabel(
            &[(s("cats/0.png"), s("dogs")), (s("cats/1.png"), s("dogs"))],
            "batch",
        )
        .unwrap()
        .unwrap();
        st.set_excluded(&[s("birds/3.png")], true, "exclude")
            .unwrap()
            .unwrap();
        st.relabel(&[(s("dogs/2.png"), s("lizards"))], "new class")
            .unwrap()
            .unwrap();
    }
    let (ds, mut st) = open(dir.path());
    assert!(st.warnings.is_empty(), "{:?}", st.warnings);
    assert_eq!(st.label("cats/0.png"), Some("dogs"));
    assert_eq!(st.label("cats/1.png"), Some("dogs"));
    assert!(st.is_excluded("birds/3.png"));
    assert_eq!(st.label("dogs/2.png"), Some("lizards"));
    assert_eq!(st.new_classes().collect::<Vec<_>>(), vec!["lizards"]);
    let eff = st.effective(&ds);
    assert_eq!(eff.samples.len(), 11);
    assert!(eff.classes.contains(&s("lizards")));

    // Undo the last step, restart, undo the batch as one step, restart, redo it.
    assert_eq!(st.undo().unwrap().note, "new class");
    let (_, mut st) = open(dir.path());
    assert_eq!(st.label("dogs/2.png"), Some("dogs"));
    assert!(st.new_classes().next().is_none());
    st.undo().unwrap();
    let undone = st.undo().unwrap();
    assert_eq!((undone.note.as_str(), undone.edits.len()), ("batch", 2));
    assert_eq!(st.label("cats/0.png"), Some("cats"));
    assert_eq!(st.label("cats/1.png"), Some("cats"));
    assert!(!st.is_excluded("birds/3.png"));
    assert!(matches!(
        st.undo(),
        Err(dataset::labels::LabelError::NothingToUndo)
    ));
    let (_, mut st) = open(dir.path());
    assert_eq!(st.redo().unwrap().note, "batch");
    assert_eq!(st.label("cats/1.png"), Some("dogs"));
    // Something new ends the redo branch.
    st.relabel(&[(s("birds/0.png"), s("cats"))], "fresh")
        .unwrap();
    assert!(!st.can_redo());
    let (_, st) = open(dir.path());
    assert!(!st.can_redo());
    assert_eq!(st.label("cats/1.png"), Some("dogs"));
    assert!(!st.is_excluded("birds/3.png"));
    let notes: Vec<(String, bool)> = st.history().map(|h| (h.note.clone(), h.undone)).collect();
    assert_eq!(notes, vec![(s("batch"), false), (s("fresh"), false)]);
    // The readable snapshot lists what differs from the original.
    let snapshot = fs::read_to_string(st.dir().join("labels.csv")).unwrap();
    assert!(
        snapshot.contains("cats/1.png,cats,dogs,,")
            && snapshot.contains("birds/0.png,birds,cats,,"),
        "{snapshot}"
    );
}

#[test]
fn unknown_files_and_bad_classes_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    small_dataset(dir.path());
    let (_, mut st) = open(dir.path());
    let err = st
        .relabel(
            &[
                (s("cats/0.png"), s("dogs")),
                (s("cats/nope.png"), s("dogs")),
            ],
            "x",
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "not in the dataset: cats/nope.png");
    assert!(st.relabel(&[(s("cats/0.png"), s(" "))], "x").is_err());
    let (_, st) = open(dir.path());
    assert_eq!(st.label("cats/0.png"), Some("cats"));
    assert_eq!(st.history().count(), 0);
}

/// Run only as the child of `sigkill_mid_run_keeps_every_acknowledged_edit`: relabels one file
/// after another, printing an acknowledgement after each edit returns.
#[test]
#[ignore = "a helper process of sigkill_mid_run_keeps_every_acknowledged_edit, not a test"]
fn child_relabel_forever() {
    let root = std::env::var_os("LOUPE_TEST_CHILD_ROOT")
        .expect("run by sigkill_mid_run_keeps_every_acknowledged_edit, which sets the root");
    let (ds, mut st) = open(Path::new(&root));
    let mut out = std::io::stdout().lock();
    // Forever, as named: however slowly the parent reads, the child is still writing when it
    // is killed.
    for round in 0.. {
        for (i, sample) in ds.samples.iter().enumerate() {
            let path = sample.path.to_string_lossy().replace('\\', "/");
            let to = format!("class{}", (i + round) % 7);
            st.relabel(&[(path.clone(), to.clone())], "kill test")
                .unwrap();
            writeln!(out, "ack {path} {to}").unwrap();
            out.flush().unwrap();
        }
    }
}

/// An acknowledgement of the child: `ack PATH CLASS`. The first one shares its line with the
/// test harness's `test child_relabel_forever ... `, which ends its line only when the test
/// does: look for it anywhere in the line.
fn parse_ack(line: &str) -> Option<(String, String)> {
    let rest = &line[line.find("ack ")? + 4..];
    let (p, c) = rest.rsplit_once(' ')?;
    Some((p.to_string(), c.to_string()))
}

#[test]
fn sigkill_mid_run_keeps_every_acknowledged_edit() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..400 {
        common::write_png(
            &dir.path().join(format!("c{}/{i:03}.png", i % 3)),
            2,
            2,
            i as u8,
        );
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_relabel_forever",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LOUPE_TEST_CHILD_ROOT", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<(String, String)> = Vec::new();
    while acked.len() < 60 {
        let line = lines.next().expect("the child stopped early").unwrap();
        if let Some(ack) = parse_ack(&line) {
            acked.push(ack);
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no flushing
    child.wait().unwrap();
    // Acks already in the pipe were acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(ack) = parse_ack(&line) {
            acked.push(ack);
        }
    }
    let (ds, st) = open(dir.path());
    // The child edits the samples in scan order, round after round: the edit it was writing
    // when killed (unacknowledged, so it may or may not have landed) is of the sample after the
    // last acknowledged one. Every other sample has exactly its last acknowledged label, or,
    // never edited, its own.
    let order: Vec<String> = ds
        .samples
        .iter()
        .map(|s| s.path.to_string_lossy().replace('\\', "/"))
        .collect();
    let last_acked = &acked.last().unwrap().0;
    let k = order.iter().position(|p| p == last_acked).unwrap();
    let in_flight = &order[(k + 1) % order.len()];
    let mut want: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (p, c) in &acked {
        want.insert(p, c);
    }
    for (p, s) in order.iter().zip(&ds.samples) {
        if p == in_flight {
            continue;
        }
        let expected = want.get(p.as_str()).copied().unwrap_or(s.label.as_str());
        assert_eq!(
            st.label(p),
            Some(expected),
            "the acknowledged state of {p} was lost"
        );
    }
    assert!(
        st.warnings.iter().all(|w| w.contains("cut off")),
        "{:?}",
        st.warnings
    );
}

#[test]
fn a_torn_last_line_and_a_damaged_middle_line_are_recovered_from() {
    let dir = tempfile::tempdir().unwrap();
    small_dataset(dir.path());
    let journal = {
        let (_, mut st) = open(dir.path());
        st.relabel(&[(s("cats/0.png"), s("dogs"))], "one").unwrap();
        st.relabel(&[(s("cats/1.png"), s("dogs"))], "two").unwrap();
        st.relabel(&[(s("cats/2.png"), s("dogs"))], "three")
            .unwrap();
        st.dir().join("journal.jsonl")
    };
    // Damage line 2 and leave a half-written entry at the end.
    let text = fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = lines[1].replace("\"op\"", "\"o#p\"");
    fs::write(
        &journal,
        format!("{}\n{{\"seq\":4,\"time\":17", lines.join("\n")),
    )
    .unwrap();

    let (_, mut st) = open(dir.path());
    assert_eq!(st.warnings.len(), 2, "{:?}", st.warnings);
    assert!(
        st.warnings.iter().any(|w| w.contains("line 2 is damaged")),
        "{:?}",
        st.warnings
    );
    assert!(
        st.warnings.iter().any(|w| w.contains("cut off")),
        "{:?}",
        st.warnings
    );
    assert_eq!(st.label("cats/0.png"), Some("dogs"));
    assert_eq!(
        st.label("cats/1.png"),
        Some("cats"),
        "the damaged step is lost, and only it"
    );
    assert_eq!(st.label("cats/2.png"), Some("dogs"));
    // Appending after recovery gives a clean journal.
    st.relabel(&[(s("cats/3.png"), s("birds"))], "four")
        .unwrap();
    let (_, st) = open(dir.path());
    assert_eq!(st.label("cats/3.png"), Some("birds"));
    assert_eq!(
        st.warnings.len(),
        1,
        "only the old damaged line remains: {:?}",
        st.warnings
    );
}

#[test]
fn two_writers_interleave_without_losing_edits() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..80 {
        common::write_png(&dir.path().join(format!("a/{i:02}.png")), 2, 2, i as u8);
    }
    let root = dir.path().to_path_buf();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let root = root.clone();
            std::thread::spawn(move || {
                let (_, mut st) = open(&root);
                for i in (w..80).step_by(2) {
                    st.relabel(&[(format!("a/{i:02}.png"), format!("w{w}"))], "writer")
                        .unwrap();
                }
            })
        })
        .collect();
    for t in writers {
        t.join().unwrap();
    }
    let (_, st) = open(&root);
    assert!(st.warnings.is_empty(), "{:?}", st.warnings);
    assert_eq!(st.history().count(), 80);
    for i in 0..80 {
        assert_eq!(
            st.label(&format!("a/{i:02}.png")),
            Some(format!("w{}", i % 2).as_str())
        );
    }
}

#[test]
fn sources_stay_byte_identical_and_export_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    small_dataset(&data);
    common::write_png(&data.join("cats/deep/x.png"), 5, 5, 99);
    let before = checksums(&data);
    let root = data.to_str().unwrap();

    assert!(loupe(&[
        "relabel",
        root,
        "--to",
        "dogs",
        "cats/0.png",
        "cats/deep/x.png"
    ])
    .status
    .success());
    let cwd_path = data.join("birds/1.png");
    assert!(loupe(&["exclude", root, cwd_path.to_str().unwrap()])
        .status
        .success());
    fs::write(
        dir.path().join("fixes.csv"),
        "path,label\nbirds/2.png,cats\ndogs/3.png,birds\n",
    )
    .unwrap();
    let out = loupe(&[
        "relabel",
        root,
        "--from-csv",
        dir.path().join("fixes.csv").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("birds/2.png: birds -> cats") && text.contains("dogs/3.png: dogs -> birds"),
        "{text}"
    );
    assert!(loupe(&["undo", root]).status.success());
    assert!(loupe(&["redo", root]).status.success());
    let history = String::from_utf8(loupe(&["history", root]).stdout).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");

    // Unknown files: non-zero, a clear message, nothing applied.
    let out = loupe(&[
        "relabel",
        root,
        "--to",
        "cats",
        "dogs/0.png",
        "dogs/missing.png",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the dataset: dogs/missing.png"));

    // Stats see the edits: 13 samples, one excluded; cats 5 - 2 + 1, dogs 4 + 2 - 1, birds 4 - 1 - 1 + 1.
    let v: serde_json::Value =
        serde_json::from_slice(&loupe(&["stats", root, "--json"]).stdout).unwrap();
    assert_eq!(v["images"], 12);
    let count = |name: &str| {
        v["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["count"]
            .clone()
    };
    assert_eq!(
        (count("cats"), count("dogs"), count("birds")),
        (4.into(), 5.into(), 3.into())
    );

    let out_dir = dir.path().join("clean");
    let out = loupe(&["export", root, "--out", out_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = checksums(&out_dir);
    assert_eq!(exported.len(), 12);
    assert_eq!(
        exported[Path::new("dogs/0.png")],
        before[Path::new("cats/0.png")]
    );
    assert_eq!(
        exported[Path::new("dogs/deep/x.png")],
        before[Path::new("cats/deep/x.png")]
    );
    assert_eq!(
        exported[Path::new("cats/2.png")],
        before[Path::new("birds/2.png")]
    );
    assert!(
        !exported.keys().any(|p| p.ends_with("birds/1.png")),
        "excluded file exported"
    );
    // Name clash: birds/3.png (original) and dogs/3.png (now birds) both want birds/3.png.
    assert_eq!(
        exported[Path::new("birds/3.png")],
        before[Path::new("birds/3.png")]
    );
    assert_eq!(
        exported[Path::new("birds/3~2.png")],
        before[Path::new("dogs/3.png")]
    );

    // Refuses a non-empty folder and a folder inside the dataset.
    assert!(
        !loupe(&["export", root, "--out", out_dir.to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        !loupe(&["export", root, "--out", data.join("sub").to_str().unwrap()])
            .status
            .success()
    );

    let csv_out = dir.path().join("clean_csv");
    assert!(loupe(&[
        "export",
        root,
        "--out",
        csv_out.to_str().unwrap(),
        "--format",
        "csv"
    ])
    .status
    .success());
    let labels = fs::read_to_string(csv_out.join("labels.csv")).unwrap();
    assert_eq!(labels.lines().count(), 13);
    assert!(labels.contains("images/cats/0.png,dogs\n"), "{labels}");
    assert_eq!(
        checksums(&csv_out)[Path::new("images/dogs/3.png")],
        before[Path::new("dogs/3.png")]
    );

    assert_eq!(checksums(&data), before, "a source file changed");
}

#[test]
fn export_api_counts() {
    let dir = tempfile::tempdir().unwrap();
    small_dataset(&dir.path().join("d"));
    let (ds, mut st) = open(&dir.path().join("d"));
    st.set_excluded(&[s("cats/0.png"), s("cats/1.png")], true, "x")
        .unwrap();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let r = export::export(
        &st.effective(&ds),
        &dir.path().join("o"),
        ExportFormat::Imagefolder,
        &done,
    )
    .unwrap();
    assert_eq!((r.images, r.classes, r.hardlinked + r.copied), (10, 3, 10));
    assert_eq!(done.into_inner(), 10, "progress counts every file written");
}

#[cfg(unix)]
#[test]
fn a_read_only_dataset_keeps_edits_in_the_user_data_folder() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let home = dir.path().join("home");
    small_dataset(&data);
    fs::create_dir_all(&home).unwrap();
    for d in [dir.path(), home.as_path()] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    for e in walkdir::WalkDir::new(&data)
        .into_iter()
        .filter_map(Result::ok)
    {
        let mode = if e.file_type().is_dir() { 0o555 } else { 0o444 };
        fs::set_permissions(e.path(), fs::Permissions::from_mode(mode)).unwrap();
    }
    // Root ignores permission bits: run the CLI as an unprivileged user then.
    let as_user = |args: &[&str]| {
        let bin = env!("CARGO_BIN_EXE_loupe");
        let mut cmd = if running_as_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(args).env("XDG_DATA_HOME", &home).output().unwrap()
    };
    let root = data.to_str().unwrap();
    let out = as_user(&["relabel", root, "--to", "birds", "cats/0.png"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("read-only") && err.contains(home.to_str().unwrap()),
        "the user is told where: {err}"
    );
    assert!(!data.join(".loupe").exists());
    let v: serde_json::Value =
        serde_json::from_slice(&as_user(&["stats", root, "--json"]).stdout).unwrap();
    let birds = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "birds")
        .unwrap()["count"]
        .clone();
    assert_eq!(birds, 5);
    assert!(as_user(&["undo", root]).status.success());
    let history = String::from_utf8(as_user(&["history", root]).stdout).unwrap();
    assert!(history.contains("[undone]"), "{history}");
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
