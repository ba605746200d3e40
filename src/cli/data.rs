//! The commands that read or edit data, never a network: `stats`, `relabel`, `exclude`, `undo`,
//! `redo`, `history`, `export`. They run in this process, on the library calls the window makes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::DatasetArgs;
use crate::dataset::export::{self, ExportFormat};
use crate::dataset::labels::{LabelStore, Step};
use crate::dataset::{self, stats, Dataset, OpenOptions};
use crate::quality::health;
use crate::train::config::DeviceChoice;
use crate::util::{path_str, utc};

pub(super) fn relabel(
    args: &DatasetArgs,
    to: Option<String>,
    from_csv: Option<PathBuf>,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    let (ds, mut store) = open_labeled(args)?;
    let changes: Vec<(String, String)> = match (to, from_csv) {
        (Some(to), _) => resolve_files(&ds, files)?
            .into_iter()
            .map(|p| (p, to.clone()))
            .collect(),
        (None, Some(csv)) => read_fixes(&ds, &csv)?,
        (None, None) => unreachable!("clap requires --to or --from-csv"),
    };
    let note = match changes.first() {
        Some((_, to)) if changes.iter().all(|(_, t)| t == to) => {
            format!("relabel {} file(s) to {to}", changes.len())
        }
        _ => format!("relabel {} file(s) from a list", changes.len()),
    };
    report_step(store.relabel(&changes, &note)?.as_ref(), &store)
}

pub(super) fn exclude(args: &DatasetArgs, include: bool, files: &[PathBuf]) -> anyhow::Result<()> {
    let (ds, mut store) = open_labeled(args)?;
    let paths = resolve_files(&ds, files)?;
    let verb = if include { "include" } else { "exclude" };
    let note = format!("{verb} {} file(s)", paths.len());
    report_step(
        store.set_excluded(&paths, !include, &note)?.as_ref(),
        &store,
    )
}

pub(super) fn undo(args: &DatasetArgs) -> anyhow::Result<()> {
    let (_, mut store) = open_labeled(args)?;
    let step = store.undo()?;
    println!("undid step {}: {}", step.seq, step.note);
    Ok(())
}

pub(super) fn redo(args: &DatasetArgs) -> anyhow::Result<()> {
    let (_, mut store) = open_labeled(args)?;
    let step = store.redo()?;
    println!("redid step {}: {}", step.seq, step.note);
    Ok(())
}

pub(super) fn export(args: &DatasetArgs, out: &Path, format: ExportFormat) -> anyhow::Result<()> {
    let (ds, store) = open_labeled(args)?;
    let effective = store.effective(&ds);
    let r = export::export(&effective, out, format, &Default::default())?;
    println!(
        "exported {} images in {} classes to {} ({} hardlinked, {} copied; {} excluded left out)",
        r.images,
        r.classes,
        out.display(),
        r.hardlinked,
        r.copied,
        ds.samples.len() - effective.samples.len()
    );
    Ok(())
}

#[derive(Serialize)]
struct StatsReport<'a> {
    root: String,
    label_columns: &'a [String],
    #[serde(flatten)]
    stats: &'a stats::Stats,
}

/// Opens the dataset and its label overlay, telling the user (on stderr) about anything the
/// overlay had to recover from or where it lives.
pub(super) fn open_labeled(args: &DatasetArgs) -> anyhow::Result<(Dataset, LabelStore)> {
    let ds = dataset::open(&args.source()?, &Default::default())?;
    let store = LabelStore::open(&ds)?;
    for w in &store.warnings {
        eprintln!("note: {w}");
    }
    Ok((ds, store))
}

/// Turns FILE arguments into dataset-relative paths: as given relative to the dataset root, or
/// a path (absolute or from the current folder) that lies inside it.
fn resolve_files(ds: &Dataset, files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let root = ds.root.canonicalize().unwrap_or_else(|_| ds.root.clone());
    Ok(files
        .iter()
        .map(|f| {
            let given: PathBuf = f
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            let inside = || {
                f.canonicalize()
                    .ok()
                    .and_then(|abs| abs.strip_prefix(&root).ok().map(Path::to_path_buf))
            };
            let rel = if f.is_relative() && ds.root.join(f).exists() {
                given
            } else {
                inside().unwrap_or(given)
            };
            path_str(&rel)
        })
        .collect())
}

/// A fixes CSV: columns `path,label` (header required), paths relative to the dataset root.
fn read_fixes(ds: &Dataset, csv_path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut r = csv::Reader::from_path(csv_path)
        .with_context(|| format!("cannot read {}", csv_path.display()))?;
    let headers = r.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| {
                format!(
                    "{} needs the columns path,label; it has: {}",
                    csv_path.display(),
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
    };
    let (pi, li) = (col("path")?, col("label")?);
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{} line {}", csv_path.display(), i + 2))?;
        files.push(PathBuf::from(rec.get(pi).unwrap_or("").trim()));
        labels.push(rec.get(li).unwrap_or("").trim().to_string());
    }
    Ok(resolve_files(ds, &files)?.into_iter().zip(labels).collect())
}

fn report_step(step: Option<&Step>, store: &LabelStore) -> anyhow::Result<()> {
    let Some(step) = step else {
        println!("nothing changed");
        return Ok(());
    };
    for c in &step.new_classes {
        println!("new class: {c}");
    }
    for e in &step.edits {
        match e {
            dataset::journal::Edit::Label { path, from, to } => println!("{path}: {from} -> {to}"),
            dataset::journal::Edit::Excluded { path, to, .. } => {
                println!("{path}: {}", if *to { "excluded" } else { "included" })
            }
            dataset::journal::Edit::Unsure { path, to, .. } => {
                println!("{path}: {}", if *to { "unsure" } else { "sure" })
            }
            dataset::journal::Edit::Checked { path, to, .. } => println!(
                "{path}: {}",
                if *to { "checked, kept" } else { "unchecked" }
            ),
        }
    }
    println!(
        "step {}: {} (saved in {})",
        step.seq,
        step.note,
        store.dir().display()
    );
    Ok(())
}

pub(super) fn history(args: &DatasetArgs, json: bool) -> anyhow::Result<()> {
    let (_, store) = open_labeled(args)?;
    print_history(&store, json)
}

fn print_history(store: &LabelStore, json: bool) -> anyhow::Result<()> {
    if json {
        #[derive(Serialize)]
        struct H<'a> {
            seq: u64,
            time: u64,
            note: &'a str,
            edits: usize,
            undone: bool,
        }
        let h: Vec<H> = store
            .history()
            .map(|s| H {
                seq: s.seq,
                time: s.time,
                note: &s.note,
                edits: s.edits.len(),
                undone: s.undone,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(());
    }
    let mut any = false;
    for s in store.history() {
        any = true;
        println!(
            "{:>4}  {}  {}  ({} edit{}){}",
            s.seq,
            utc(s.time),
            s.note,
            s.edits.len(),
            if s.edits.len() == 1 { "" } else { "s" },
            if s.undone { "  [undone]" } else { "" }
        );
    }
    if !any {
        println!("no label edits yet");
    }
    Ok(())
}

/// The dataset with its label edits applied (files hashed while read), its notes on stderr.
fn open_edited_noted(args: &DatasetArgs) -> anyhow::Result<Dataset> {
    let (ds, notes) = dataset::open_edited(
        &args.source()?,
        &Default::default(),
        OpenOptions { hash: true },
    )?;
    for n in notes {
        eprintln!("note: {n}");
    }
    Ok(ds)
}

pub(super) fn stats(args: &DatasetArgs, json: bool) -> anyhow::Result<()> {
    // Statistics reflect the label edits; a dataset never edited gets no overlay folder from this.
    let ds = open_edited_noted(args)?;
    let hashes = stats::hash_samples(&ds);
    let s = stats::compute_with_hashes(&ds, Some(&hashes));
    // Stdout flushes at every newline; the JSON of a large dataset has 100,000 lines.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        let report = StatsReport {
            root: ds.root.display().to_string(),
            label_columns: &ds.label_columns,
            stats: &s,
        };
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_summary(&mut out, &ds.root, &ds.label_columns, &s)?;
    }
    out.flush()?;
    Ok(())
}

/// `loupe health`.
pub(super) fn health(
    args: &DatasetArgs,
    json: bool,
    out: Option<&Path>,
    threshold_args: &[String],
    embeddings: Option<DeviceChoice>,
    run: Option<&Path>,
) -> anyhow::Result<()> {
    let mut thresholds = health::Thresholds::default();
    for t in threshold_args {
        thresholds
            .parse_into(t)
            .map_err(|e| anyhow::anyhow!("--threshold {e}"))?;
    }
    // Labels as edited (a label conflict is judged on today's labels).
    let ds = open_edited_noted(args)?;
    let store = LabelStore::open(&ds)?;
    let store_dir = store.dir().to_path_buf();
    // Near-duplicates and outliers need the engine; without it the pixel checks still stand.
    let neighbours = embeddings.and_then(|device| {
        let cache = super::absolute(store.embeddings_dir().to_path_buf());
        let source = args.source().ok()?.absolute();
        super::jobs::neighbours(source, cache, device)
            .map_err(|e| eprintln!("note: near-duplicates and outliers skipped: {e:#}"))
            .ok()
    });
    let mut inputs = health::Inputs::gather(&ds, Some(&store_dir.join("health")));
    inputs.neighbours = neighbours;
    let mut report = health::Report::judge(&ds, &inputs, &thresholds);
    if let Some(run) = run {
        let rc = crate::train::record::RunConfig::read(run)?;
        let same = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        if same(&rc.dataset.root) != same(&ds.root) {
            eprintln!(
                "note: {} trained on {}; its validation paths are matched in {}",
                run.display(),
                rc.dataset.root.display(),
                ds.root.display()
            );
        }
        report.add_leaks(&ds, &rc.split.val);
    }
    if let Some(path) = out {
        report.write_csv(path, &ds)?;
    }
    let threshold = |c: health::Check| {
        health::Check::THRESHOLDED
            .contains(&c)
            .then(|| thresholds.get(c))
    };
    let path_of = |f: &health::Finding| path_str(&ds.samples[f.sample].path);
    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        let mut checks: Vec<serde_json::Value> = health::Check::ALL
            .iter()
            .map(|&c| {
                let found = report.of_check(c);
                serde_json::json!({
                    "check": c.name(),
                    "ran": report.ran(c),
                    "threshold": threshold(c),
                    "count": found.len(),
                    "findings": found.iter().map(|f| serde_json::json!({
                        "path": path_of(f),
                        "score": f.score,
                        "group": f.group,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        checks.push(serde_json::json!({
            "check": health::UNREADABLE,
            "count": report.unreadable.len(),
            "findings": report.unreadable.iter().map(|(p, why)| serde_json::json!({
                "path": p,
                "reason": why,
            })).collect::<Vec<_>>(),
        }));
        serde_json::to_writer_pretty(
            &mut w,
            &serde_json::json!({ "images": report.images, "checks": checks }),
        )?;
        writeln!(w)?;
    } else {
        writeln!(w, "{} images checked", report.images)?;
        for c in health::Check::ALL {
            let found = report.of_check(c);
            let rule = threshold(c)
                .map(|t| format!("  (score: {}; flagged at >= {t})", c.meaning()))
                .unwrap_or_default();
            if !report.ran(c) {
                let needs = if c == health::Check::Leak {
                    "--run RUN"
                } else {
                    "the embeddings"
                };
                writeln!(w, "{:16} not run (needs {needs})", c.name())?;
                continue;
            }
            writeln!(w, "{:16} {:6}{rule}", c.name(), found.len())?;
            for f in found.iter().take(5) {
                let group = f.group.map(|g| format!("  group {g}")).unwrap_or_default();
                writeln!(w, "    {:.3}  {}{group}", f.score, path_of(f))?;
            }
        }
        writeln!(w, "{:16} {:6}", health::UNREADABLE, report.unreadable.len())?;
        for (p, why) in report.unreadable.iter().take(5) {
            writeln!(w, "    {p}: {why}")?;
        }
        if let Some(path) = out {
            let rows = report.findings.len() + report.unreadable.len();
            writeln!(w, "all {rows} findings in {}", path.display())?;
        }
    }
    w.flush()?;
    Ok(())
}

fn write_summary(
    out: &mut impl Write,
    root: &Path,
    columns: &[String],
    s: &stats::Stats,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} images in {} classes ({} unreadable, {} ignored)",
        root.display(),
        s.images,
        s.classes.len(),
        s.unreadable.len(),
        s.ignored
    )?;
    writeln!(out, "\nClasses ({}):", columns.join(" / "))?;
    let width = s
        .classes
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    write_counts(out, &s.classes, s.images, width)?;
    match s.imbalance_ratio {
        Some(r) => writeln!(
            out,
            "Imbalance: {r:.2}x (largest / smallest non-empty class)"
        )?,
        None => writeln!(out, "Imbalance: n/a")?,
    }
    let rarest: Vec<String> = s
        .rarest
        .iter()
        .map(|c| format!("{} ({})", c.name, c.count))
        .collect();
    writeln!(out, "Rarest: {}", rarest.join(", "))?;
    for col in &s.columns {
        writeln!(out, "\nColumn {}:", col.column)?;
        let w = col
            .counts
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0);
        write_counts(out, &col.counts, s.images, w)?;
    }
    if s.images > 0 {
        let z = &s.sizes;
        writeln!(out, "\nSizes:")?;
        writeln!(
            out,
            "  width   {:>7.0} .. {:<7.0} median {:.0}",
            z.width.min, z.width.max, z.width.median
        )?;
        writeln!(
            out,
            "  height  {:>7.0} .. {:<7.0} median {:.0}",
            z.height.min, z.height.max, z.height.median
        )?;
        writeln!(
            out,
            "  aspect  {:>7.2} .. {:<7.2} median {:.2}",
            z.aspect.min, z.aspect.max, z.aspect.median
        )?;
        let common: Vec<String> = z
            .common
            .iter()
            .take(5)
            .map(|c| format!("{} ({})", c.name, c.count))
            .collect();
        writeln!(out, "  most common: {}", common.join(", "))?;
        let join = |v: &[stats::Count]| {
            v.iter()
                .map(|c| format!("{} {}", c.name, c.count))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(out, "Formats: {}", join(&s.formats))?;
        writeln!(out, "Colour modes: {}", join(&s.color_modes))?;
    }
    if !s.unreadable.is_empty() {
        writeln!(out, "\nUnreadable ({}):", s.unreadable.len())?;
        for u in &s.unreadable {
            writeln!(out, "  {}: {}", u.path, u.reason)?;
        }
    }
    writeln!(
        out,
        "\nDuplicates: {} groups of identical files ({} files)",
        s.duplicates.len(),
        s.duplicates.iter().map(Vec::len).sum::<usize>()
    )?;
    for g in s.duplicates.iter().take(10) {
        writeln!(out, "  {}", g.join("  =  "))?;
    }
    writeln!(
        out,
        "Label conflicts: {} (identical files with different labels)",
        s.label_conflicts.len()
    )?;
    for c in s.label_conflicts.iter().take(10) {
        let pairs: Vec<String> = c
            .paths
            .iter()
            .zip(&c.labels)
            .map(|(p, l)| format!("{p} [{l}]"))
            .collect();
        writeln!(out, "  {}", pairs.join("  =  "))?;
    }
    Ok(())
}

fn write_counts(
    out: &mut impl Write,
    counts: &[stats::Count],
    total: usize,
    width: usize,
) -> std::io::Result<()> {
    let max = counts.iter().map(|c| c.count).max().unwrap_or(0).max(1);
    for c in counts {
        let share = 100.0 * c.count as f64 / total.max(1) as f64;
        let bar = "#".repeat((30 * c.count).div_ceil(max));
        let pad = width.saturating_sub(c.name.chars().count());
        writeln!(
            out,
            "  {}{} {:>7} {:>5.1}%  {}",
            c.name,
            " ".repeat(pad),
            c.count,
            share,
            bar
        )?;
    }
    Ok(())
}
