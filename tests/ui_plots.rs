//! Every plot of the app draws a sane view of awkward data: an empty series, one point, a
//! constant series, NaN and infinite values (a diverged loss), a huge range. Drawn through
//! egui_kittest in a debug build, where egui_plot asserts on degenerate bounds (the bug these
//! tests were written for: one learning-rate point during warm-up panicked).

use egui_kittest::Harness;
use loupe::dataset::stats::Count;
use loupe::dataset::Source;
use loupe::train::config::TrainConfig;
use loupe::train::metrics::report;
use loupe::train::record::{DataRecord, EpochMetrics, RunConfig, SplitRecord, StepPoint, Versions};
use loupe::train::runs::RunSummary;
use loupe::ui::command::Commands;
use loupe::ui::distribution;
use loupe::ui::train::TrainTab;

/// The fonts the window has: the system's (as eframe adds them) and the bundled Hangul.
fn fonts<S>(b: egui_kittest::HarnessBuilder<S>) -> egui_kittest::HarnessBuilder<S> {
    b.with_context_setup(|ctx| {
        ctx.add_font_provider(std::sync::Arc::new(
            egui_system_font_provider::SystemFontProvider::new(),
        ));
        loupe::ui::fonts::install(ctx);
    })
}

/// A run as the runs list has it, with these steps (epoch, loss, lr) and epochs (val loss, F1).
fn run(name: &str, steps: &[(usize, f64, f64)], epochs: &[(f64, f64)]) -> RunSummary {
    RunSummary {
        dir: format!("/runs/{name}").into(),
        label: name.to_string(),
        record: RunConfig {
            config: TrainConfig::default(),
            img_size: 224,
            dataset: DataRecord {
                root: "/data".into(),
                source: Some(Source::ImageFolder {
                    root: "/data".into(),
                }),
                images: 2,
                fingerprint: String::new(),
            },
            classes: vec!["a".into(), "b".into()],
            split: SplitRecord {
                train: 1,
                val: vec!["a/1.png".into()],
            },
            versions: Versions::default(),
        },
        config_text: String::new(),
        epochs: epochs
            .iter()
            .enumerate()
            .map(|(k, &(val_loss, f1))| EpochMetrics {
                epoch: k + 1,
                lr: 0.001,
                train_loss: val_loss,
                val_loss,
                accuracy: f1,
                macro_f1: f1,
                report: report(&[0, 1], &[0, 1], 2),
                columns: Vec::new(),
                seconds: 1.0,
            })
            .collect(),
        steps: steps
            .iter()
            .enumerate()
            .map(|(k, &(epoch, loss, lr))| StepPoint {
                step: k + 1,
                epoch,
                loss,
                lr,
                images_per_s: 10.0,
            })
            .collect(),
        ended: Some(false),
        created: 0,
    }
}

/// The Train tab's curves with these runs overlaid, drawn at two sizes, linear and log.
fn draw_curves(runs: Vec<RunSummary>) {
    for log in [false, true] {
        for size in [[1100.0, 720.0], [500.0, 300.0]] {
            let mut tab = TrainTab::default();
            tab.overlay = runs.iter().map(|r| r.dir.clone()).collect();
            tab.runs = runs.clone();
            tab.log_scale = log;
            let mut h = fonts(Harness::builder()).with_size(size).build_ui_state(
                |ui, tab: &mut TrainTab| tab.show(ui, &mut Commands::default()),
                tab,
            );
            h.run_steps(3);
        }
    }
}

#[test]
fn train_curves_of_no_data_draw() {
    draw_curves(Vec::new());
    draw_curves(vec![run("empty", &[], &[])]);
}

#[test]
fn train_curves_of_one_point_draw() {
    // One step during warm-up: a single learning-rate point around 1e-3.
    draw_curves(vec![run(
        "one",
        &[(1, 2.3, 0.000_969_602_086_115_628_5)],
        &[(2.1, 0.4)],
    )]);
}

#[test]
fn train_curves_of_a_constant_series_draw() {
    draw_curves(vec![run(
        "flat",
        &[
            (1, 0.5, 0.01),
            (1, 0.5, 0.01),
            (2, 0.5, 0.01),
            (2, 0.5, 0.01),
        ],
        &[(0.5, 0.0), (0.5, 0.0)],
    )]);
}

#[test]
fn train_curves_of_a_diverged_loss_draw() {
    draw_curves(vec![run(
        "diverged",
        &[
            (1, 2.0, 0.01),
            (1, f64::NAN, 0.01),
            (2, f64::INFINITY, f64::NAN),
            (2, f64::NEG_INFINITY, 0.01),
        ],
        &[(f64::NAN, f64::NAN), (f64::INFINITY, 0.5)],
    )]);
    draw_curves(vec![run(
        "all-nan",
        &[(1, f64::NAN, f64::NAN)],
        &[(f64::NAN, f64::NAN)],
    )]);
}

#[test]
fn train_curves_of_a_huge_range_draw() {
    draw_curves(vec![
        run(
            "tiny",
            &[(1, 1e-12, 1e-9), (2, 1e-11, 1e-9)],
            &[(1e-12, 1.0)],
        ),
        run(
            "huge",
            &[(1, 1e30, 1.0), (2, 1e-3, 1e-8)],
            &[(1e30, 0.0), (1e-3, 1.0)],
        ),
    ]);
}

fn counts(pairs: &[(&str, usize)]) -> Vec<Count> {
    pairs
        .iter()
        .map(|&(name, count)| Count {
            name: name.into(),
            count,
        })
        .collect()
}

/// The Distribution charts with this data.
fn draw_charts(classes: Vec<Count>, sizes: Vec<(u32, u32)>, aspect: Vec<usize>) {
    let mut h = fonts(Harness::builder())
        .with_size([900.0, 700.0])
        .build_ui(move |ui| {
            let rows: Vec<distribution::BarRow> = classes
                .iter()
                .map(|c| distribution::BarRow {
                    name: &c.name,
                    count: c.count,
                    color: egui::Color32::GRAY,
                })
                .collect();
            distribution::count_bars(ui, "classes", &rows, 10);
            distribution::size_plot(ui, sizes.iter().copied(), None);
            distribution::aspect_histogram(ui, &aspect);
        });
    h.run_steps(3);
}

#[test]
fn distribution_charts_of_no_data_draw() {
    draw_charts(Vec::new(), Vec::new(), Vec::new());
    draw_charts(counts(&[("a", 0), ("b", 0)]), Vec::new(), vec![0; 7]);
}

#[test]
fn distribution_charts_of_one_class_and_one_size_draw() {
    draw_charts(
        counts(&[("only", 5)]),
        vec![(384, 512); 5],
        vec![0, 0, 5, 0, 0, 0, 0],
    );
    draw_charts(counts(&[("one", 1)]), vec![(1, 1)], vec![1]);
}

#[test]
fn distribution_charts_of_a_huge_range_draw() {
    draw_charts(
        counts(&[("big", 10_000_000), ("tiny", 1)]),
        vec![(1, 4000), (40_000, 1), (1, 1)],
        vec![0, 1, 10_000_000, 0],
    );
}

/// The Train tab with the live curves of a run these events describe.
fn draw_live(events: Vec<loupe::train::protocol::Event>) {
    for log in [false, true] {
        let mut tab = TrainTab::default();
        tab.live = Some(loupe::ui::train::Live::from_events(events.clone(), 5));
        tab.log_scale = log;
        let mut h = fonts(Harness::builder())
            .with_size([1100.0, 720.0])
            .build_ui_state(
                |ui, tab: &mut TrainTab| tab.show(ui, &mut Commands::default()),
                tab,
            );
        h.run_steps(3);
    }
}

fn step(epoch: usize, step: usize, loss: f64, lr: f64) -> loupe::train::protocol::Event {
    loupe::train::protocol::Event::Step {
        epoch,
        step,
        steps: 5,
        loss,
        lr,
        images_per_s: 10.0,
    }
}

#[test]
fn the_live_curves_of_the_bounds_that_panicked_draw() {
    // Two learning rates a rounding error apart at the same point of the run (x = 2.2): the
    // bounds egui_plot asserted on, `[2.2, 0.00096960208611562850] .. [2.2, ...60]`.
    draw_live(vec![
        step(3, 1, 0.7, 0.000_969_602_086_115_628_5),
        step(3, 1, 0.7, 0.000_969_602_086_115_628_6),
    ]);
    draw_live(vec![step(1, 1, f64::NAN, f64::INFINITY)]);
    draw_live(Vec::new());
}
