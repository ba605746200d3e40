//! Command-line interface: argument definitions and the commands that are not the GUI. Each
//! command is a thin layer over the same library calls the GUI makes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::dataset::{self, stats, CsvSource, Source};

#[derive(Debug, Parser)]
#[command(name = "loupe", version, about = "A desktop studio for image-classification datasets", args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Dataset to open in the desktop app (a folder of class folders).
    #[arg(default_value = "sample_data")]
    pub path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Summarise a dataset: classes, balance, sizes, formats, unreadable files, duplicates.
    Stats {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Print one JSON object instead of the readable summary.
        #[arg(long)]
        json: bool,
    },
    /// Show which compute device libtorch sees (CUDA GPUs or CPU).
    Device {
        #[arg(long)]
        json: bool,
    },
}

/// How to open a dataset: a folder of class folders, or a CSV of labels.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// The dataset folder (ImageFolder: one folder per class), or the folder the CSV lives in.
    pub path: PathBuf,
    /// A CSV of labels; relative to PATH unless it exists as given. Image paths inside it are
    /// relative to the CSV's folder.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// CSV column holding the image path.
    #[arg(long, default_value = "path", requires = "csv")]
    pub path_col: String,
    /// CSV label column(s); several, comma-separated, combine into one class (a/b/c).
    #[arg(long, default_value = "label", value_delimiter = ',', requires = "csv")]
    pub label_col: Vec<String>,
    /// CSV column that groups samples (e.g. a person id) so splits keep them together.
    #[arg(long, requires = "csv")]
    pub group_col: Option<String>,
}

impl DatasetArgs {
    pub fn source(&self) -> anyhow::Result<Source> {
        let Some(csv) = &self.csv else {
            return Ok(dataset::source_for(&self.path)?);
        };
        let csv = if csv.is_absolute() || csv.exists() && !self.path.join(csv).exists() {
            csv.clone()
        } else {
            self.path.join(csv)
        };
        Ok(Source::Csv(CsvSource {
            csv,
            path_col: self.path_col.clone(),
            label_cols: self.label_col.clone(),
            group_col: self.group_col.clone(),
        }))
    }
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Stats { dataset, json } => stats_cmd(&dataset, json),
        Command::Device { json } => {
            let info = crate::train::device::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("{info}");
                let v = crate::train::device::smoke_test().context("libtorch failed a 64x64 matrix product")?;
                println!("libtorch smoke test on {}: ok ({v})", info.default_device);
            }
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct StatsReport<'a> {
    root: String,
    label_columns: &'a [String],
    #[serde(flatten)]
    stats: &'a stats::Stats,
}

fn stats_cmd(args: &DatasetArgs, json: bool) -> anyhow::Result<()> {
    let source = args.source()?;
    let ds = dataset::open(&source, &Default::default())?;
    let hashes = stats::hash_samples(&ds);
    let s = stats::compute_with_hashes(&ds, Some(&hashes));
    let mut out = std::io::stdout().lock();
    if json {
        let report = StatsReport { root: ds.root.display().to_string(), label_columns: &ds.label_columns, stats: &s };
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_summary(&mut out, &ds.root, &ds.label_columns, &s)?;
    }
    Ok(())
}

fn write_summary(out: &mut impl Write, root: &Path, columns: &[String], s: &stats::Stats) -> std::io::Result<()> {
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
    let width = s.classes.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
    write_counts(out, &s.classes, s.images, width)?;
    match s.imbalance_ratio {
        Some(r) => writeln!(out, "Imbalance: {r:.2}x (largest / smallest non-empty class)")?,
        None => writeln!(out, "Imbalance: n/a")?,
    }
    let rarest: Vec<String> = s.rarest.iter().map(|c| format!("{} ({})", c.name, c.count)).collect();
    writeln!(out, "Rarest: {}", rarest.join(", "))?;
    for col in &s.columns {
        writeln!(out, "\nColumn {}:", col.column)?;
        let w = col.counts.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
        write_counts(out, &col.counts, s.images, w)?;
    }
    if s.images > 0 {
        let z = &s.sizes;
        writeln!(out, "\nSizes:")?;
        writeln!(out, "  width   {:>7.0} .. {:<7.0} median {:.0}", z.width.min, z.width.max, z.width.median)?;
        writeln!(out, "  height  {:>7.0} .. {:<7.0} median {:.0}", z.height.min, z.height.max, z.height.median)?;
        writeln!(out, "  aspect  {:>7.2} .. {:<7.2} median {:.2}", z.aspect.min, z.aspect.max, z.aspect.median)?;
        let common: Vec<String> = z.common.iter().take(5).map(|c| format!("{} ({})", c.name, c.count)).collect();
        writeln!(out, "  most common: {}", common.join(", "))?;
        let join = |v: &[stats::Count]| v.iter().map(|c| format!("{} {}", c.name, c.count)).collect::<Vec<_>>().join(", ");
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
    writeln!(out, "Label conflicts: {} (identical files with different labels)", s.label_conflicts.len())?;
    for c in s.label_conflicts.iter().take(10) {
        let pairs: Vec<String> = c.paths.iter().zip(&c.labels).map(|(p, l)| format!("{p} [{l}]")).collect();
        writeln!(out, "  {}", pairs.join("  =  "))?;
    }
    Ok(())
}

fn write_counts(out: &mut impl Write, counts: &[stats::Count], total: usize, width: usize) -> std::io::Result<()> {
    let max = counts.iter().map(|c| c.count).max().unwrap_or(0).max(1);
    for c in counts {
        let share = 100.0 * c.count as f64 / total.max(1) as f64;
        let bar = "#".repeat((30 * c.count).div_ceil(max));
        let pad = width.saturating_sub(c.name.chars().count());
        writeln!(out, "  {}{} {:>7} {:>5.1}%  {}", c.name, " ".repeat(pad), c.count, share, bar)?;
    }
    Ok(())
}
