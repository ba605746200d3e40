//! The `eframe::App`: menu, class panel, Browse and Distribution tabs, edits list, status bar.
//!
//! State split (as in egui's demo app): [`Settings`] is small, serde, saved by eframe; everything
//! else (the open dataset, threads, textures) is runtime state. Panels never edit labels
//! themselves: they push [`LabelCmd`]s, applied in one place per frame (`apply`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use egui::{Color32, RichText};
use serde::{Deserialize, Serialize};

use super::browse::{Browse, FlagFilter};
use super::command::{BrowseFilter, Command, Commands};
use super::csv_dialog::{CsvSetup, Outcome};
use super::distribution::Distribution;
use super::evaluate::Evaluate;
use super::export::ExportJob;
use super::health::Health;
use super::review::Review;
use super::thumbs::{self, Thumbs};
use super::train::TrainTab;
use crate::dataset::export::ExportFormat;
use crate::dataset::loader::Loader;
use crate::dataset::workspace::{LabelCmd, Workspace};
use crate::dataset::Source;
use crate::train::client::Engine;

/// Texture memory for thumbnails (128 px RGBA: about 4,000 of them).
const THUMB_BUDGET: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tab {
    #[default]
    Browse,
    Distribution,
    Issues,
    Train,
    Evaluate,
    Health,
}

/// What survives a restart (eframe storage). Dataset edits never go here: they live beside
/// the dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub recent: Vec<Source>,
    pub tile: f32,
    pub tab: Tab,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recent: Vec::new(),
            tile: 112.0,
            tab: Tab::Browse,
        }
    }
}

/// Where the app's helpers live: the engine binary and the thumbnail cache. Tests point both at
/// their own, so that they never depend on the user's home.
#[derive(Debug, Clone)]
pub struct Setup {
    pub engine: Engine,
    pub thumb_cache: Option<PathBuf>,
    /// The bundled sample dataset, offered on the start page when it is there.
    pub sample: Option<PathBuf>,
}

impl Default for Setup {
    /// Looks at the disk once, before the first frame.
    fn default() -> Self {
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
        Setup {
            engine: Engine::locate(),
            thumb_cache: thumbs::default_cache_dir(),
            sample: sample.is_dir().then_some(sample),
        }
    }
}

enum State {
    Loading(Loader),
    Ready(Box<Workspace>),
    Failed(String),
}

enum Picked {
    Folder(PathBuf),
    Csv(Result<CsvSetup, String>),
    /// A path resolved to a dataset source, or why it is none.
    Dataset(Result<Source, (PathBuf, String)>),
    /// Where to export the dataset, and how.
    ExportTo(PathBuf, ExportFormat),
}

pub struct LoupeApp {
    pub settings: Settings,
    path: PathBuf,
    state: State,
    pub tab: Tab,
    pub browse: Browse,
    distribution: Distribution,
    pub review: Review,
    pub health: Health,
    pub train: TrainTab,
    pub evaluate: Evaluate,
    thumbs: Option<Thumbs>,
    cmds: Commands,
    setup: Setup,
    message: Option<(Result<String, String>, Instant)>,
    csv_setup: Option<CsvSetup>,
    export: Option<ExportJob>,
    export_waiting: Option<(PathBuf, ExportFormat)>,
    picking: Option<Receiver<Option<Picked>>>,
    show_edits: bool,
    debug_overlay: bool,
    frame_times: VecDeque<f32>,
    /// Time from process start to the end of the first frame.
    first_frame: Option<Duration>,
    fonts_installed: bool,
}

impl LoupeApp {
    /// The app as `loupe [PATH]` starts it: settings restored from eframe storage (before
    /// PATH opens: a CSV opened before gets its columns from the recent list); without a path,
    /// the start page.
    pub fn new(cc: &eframe::CreationContext<'_>, path: Option<PathBuf>) -> Self {
        let settings: Settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        let mut app = Self::start_page_with(Setup::default());
        app.browse.tile = settings.tile;
        app.tab = settings.tab;
        app.settings = settings;
        if let Some(path) = path {
            app.open_path(&cc.egui_ctx, path);
        }
        app
    }

    /// No dataset yet: the start page.
    pub fn start_page_with(setup: Setup) -> Self {
        Self::blank(PathBuf::new(), setup)
    }

    /// Opens the dataset at `path` (a folder of class folders, or a CSV: then its columns are
    /// asked for) in the background, with its own engine and thumbnail cache (tests).
    pub fn open_with(ctx: egui::Context, path: PathBuf, setup: Setup) -> Self {
        let mut app = Self::blank(path.clone(), setup);
        app.open_path(&ctx, path);
        app
    }

    pub fn with_source(ctx: egui::Context, source: Source, setup: Setup) -> Self {
        let mut app = Self::blank(PathBuf::new(), setup);
        app.start(&ctx, source);
        app
    }

    /// No dataset yet.
    fn blank(path: PathBuf, setup: Setup) -> Self {
        LoupeApp {
            settings: Settings::default(),
            path,
            state: State::Failed(String::new()),
            tab: Tab::Browse,
            browse: Browse::default(),
            distribution: Distribution::default(),
            review: Review::default(),
            health: Health::default(),
            train: TrainTab::default(),
            evaluate: Evaluate::default(),
            thumbs: None,
            cmds: Commands::default(),
            setup,
            message: None,
            csv_setup: None,
            export: None,
            export_waiting: None,
            picking: None,
            show_edits: false,
            debug_overlay: false,
            frame_times: VecDeque::new(),
            first_frame: None,
            fonts_installed: false,
        }
    }

    /// Opens `path`: a CSV asks for its columns, a folder opens as ImageFolder. Looking at the
    /// path is file I/O, done off the UI thread like everything else.
    fn open_path(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.path = path.clone();
        let recent = self.settings.recent.clone();
        self.pick_in_background(ctx, move || {
            let csv = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            Some(if csv && path.is_file() {
                Picked::Csv(CsvSetup::read(path).map(|s| s.recall(&recent)))
            } else {
                Picked::Dataset(
                    crate::dataset::source_for(&path).map_err(|e| (path, e.to_string())),
                )
            })
        });
    }

    fn start(&mut self, ctx: &egui::Context, source: Source) {
        self.settings.recent.retain(|s| s != &source);
        self.settings.recent.insert(0, source.clone());
        self.settings.recent.truncate(10);
        let repaint = ctx.clone();
        let loader = Loader::spawn(source, move || repaint.request_repaint());
        self.path = loader.path.clone();
        self.state = State::Loading(loader);
        let tile = self.browse.tile;
        self.browse = Browse::default();
        self.browse.tile = tile;
        // Dropping the old cache ends its workers; textures of the old dataset go with it.
        self.thumbs = Some(Thumbs::new(
            ctx,
            self.setup.thumb_cache.clone(),
            THUMB_BUDGET,
        ));
    }

    pub fn is_loading(&self) -> bool {
        matches!(self.state, State::Loading(_)) || self.picking.is_some()
    }

    pub fn workspace(&self) -> Option<&Workspace> {
        match &self.state {
            State::Ready(ws) => Some(ws),
            _ => None,
        }
    }

    /// The paths Browse shows, in its order.
    pub fn browse_paths(&mut self) -> Vec<String> {
        match &self.state {
            State::Ready(ws) => self.browse.view(ws).iter().map(|&i| ws.path(i)).collect(),
            _ => Vec::new(),
        }
    }

    /// Puts a search's findings in the review queue and shows it.
    pub fn review_findings(&mut self, findings: &crate::quality::issues::Findings) {
        if let State::Ready(ws) = &self.state {
            self.review.set_findings(ws, findings);
            self.tab = Tab::Issues;
        }
    }

    /// Label commands not yet answered by the labels worker (or not yet sent).
    pub fn pending_writes(&self) -> usize {
        self.cmds.label_edits() + self.workspace().map_or(0, |w| w.pending)
    }

    fn poll(&mut self, ctx: &egui::Context) {
        if let State::Loading(loader) = &mut self.state {
            match loader.poll() {
                Some(Ok(ws)) => {
                    self.review = Review::with_engine(self.setup.engine.clone());
                    self.review.reopen(ctx, &ws);
                    self.health = Health::with_engine(self.setup.engine.clone());
                    self.train = TrainTab::with_engine(self.setup.engine.clone());
                    self.train.open(ctx, &ws);
                    self.evaluate = Evaluate::default();
                    self.state = State::Ready(Box::new(ws));
                }
                Some(Err(msg)) => self.state = State::Failed(msg),
                // Progress counters change without events: look again soon, not every frame.
                None => ctx.request_repaint_after(Duration::from_millis(100)),
            }
        }
        if let Some(rx) = &self.picking {
            match rx.try_recv() {
                Ok(picked) => {
                    self.picking = None;
                    match picked {
                        Some(Picked::Folder(p)) => self.open_path(ctx, p),
                        Some(Picked::Csv(Ok(setup))) => self.csv_setup = Some(setup),
                        Some(Picked::Csv(Err(e))) => self.message = Some((Err(e), Instant::now())),
                        Some(Picked::Dataset(Ok(source))) => self.start(ctx, source),
                        Some(Picked::ExportTo(out, format)) => {
                            self.cmds.push(Command::Export(out, format))
                        }
                        Some(Picked::Dataset(Err((path, e)))) => {
                            self.path = path;
                            self.state = State::Failed(e);
                        }
                        None => {}
                    }
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => self.picking = None,
            }
        }
        if let State::Ready(ws) = &mut self.state {
            if ws.pending == 0 {
                if let Some((out, format)) = self.export_waiting.take() {
                    self.export = Some(ExportJob::start(ctx, ws.dataset.clone(), out, format));
                }
            }
            if let Some(done) = self.export.as_ref().and_then(ExportJob::poll) {
                self.message = Some((done, Instant::now()));
                self.export = None;
            }
            if self.export.is_some() {
                ctx.request_repaint_after(Duration::from_millis(250));
            }
            for m in ws.poll() {
                self.message = Some((m, Instant::now()));
            }
            // Polled here, not in its tab, so a search finishes while another tab is shown.
            self.review.poll(ctx, ws);
            self.health.poll();
            self.train.poll(ctx, ws);
        }
    }

    /// Carries out the frame's commands: the one place where label edits, runs, searches and
    /// navigation leave the panels.
    fn apply(&mut self, ctx: &egui::Context) {
        let State::Ready(ws) = &mut self.state else {
            self.cmds.take();
            return;
        };
        for cmd in self.cmds.take() {
            match cmd {
                Command::Label(c) => ws.send(c),
                Command::Browse(filter) => {
                    self.browse.class_filter = None;
                    self.browse.column_filters.clear();
                    self.browse.only = None;
                    self.browse.flag_filter = FlagFilter::All;
                    match filter {
                        BrowseFilter::Class(c) => self.browse.class_filter = Some(c),
                        BrowseFilter::Column { column, value } => {
                            self.browse.set_column_filter(column, value)
                        }
                        BrowseFilter::Paths { title, paths } => {
                            let set = paths.iter().filter_map(|p| ws.index_of(p)).collect();
                            self.browse.only = Some((title, set));
                        }
                        BrowseFilter::Unreadable => {
                            self.browse.flag_filter = FlagFilter::Unreadable
                        }
                    }
                    self.tab = Tab::Browse;
                }
                // Starts once the edits sent before it are on disk (see `poll`).
                Command::Export(out, format) => self.export_waiting = Some((out, format)),
                Command::FindIssues => self.review.start(ctx, ws),
                Command::CancelIssues => self.review.cancel(),
                Command::CheckHealth => self.health.start(ctx, ws),
                run => self.train.apply(ctx, ws, run),
            }
        }
    }

    /// What the window shows without a dataset: how to open one, the recent ones, the sample;
    /// and why the last one did not open, if it did not. Returns the dataset chosen.
    fn start_page(&mut self, ui: &mut egui::Ui, error: &str) -> Option<Source> {
        let ctx = ui.ctx().clone();
        let mut chosen = None;
        ui.vertical_centered(|ui| {
            ui.add_space(32.0);
            if error.is_empty() {
                ui.heading("Open a dataset");
            } else {
                ui.heading("This dataset could not be opened");
                ui.colored_label(ui.visuals().error_fg_color, error);
                ui.add_space(8.0);
                ui.label("Open another one:");
            }
            ui.label(
                RichText::new(
                    "a folder with one subfolder per class, or a CSV of labels (a path column \
                     and one or more label columns)",
                )
                .weak(),
            );
            ui.add_space(12.0);
            ui.horizontal(|ui| {
                // Centred: a row of buttons as wide as it needs.
                let width = 420.0f32.min(ui.available_width());
                ui.add_space(((ui.available_width() - width) / 2.0).max(0.0));
                if ui.button("Open folder…").clicked() {
                    self.ask_folder(&ctx);
                }
                if ui.button("Open CSV…").clicked() {
                    self.ask_csv(&ctx);
                }
                if let Some(sample) = self.setup.sample.clone() {
                    if ui
                        .button("Open the sample data")
                        .on_hover_text(format!("{}: 1,906 emoji in 9 categories", sample.display()))
                        .clicked()
                    {
                        chosen = Some(Source::ImageFolder { root: sample });
                    }
                }
            });
            if !self.settings.recent.is_empty() {
                ui.add_space(16.0);
                ui.label(RichText::new("Recent").strong());
                for src in &self.settings.recent {
                    if ui.link(source_name(src)).clicked() {
                        chosen = Some(src.clone());
                    }
                }
            }
        });
        chosen
    }

    fn ask_folder(&mut self, ctx: &egui::Context) {
        self.pick_in_background(ctx, || {
            rfd::FileDialog::new()
                .set_title("Open an image folder")
                .pick_folder()
                .map(Picked::Folder)
        });
    }

    fn ask_csv(&mut self, ctx: &egui::Context) {
        let recent = self.settings.recent.clone();
        self.pick_in_background(ctx, move || {
            let csv = rfd::FileDialog::new()
                .set_title("Open a CSV of labels")
                .add_filter("CSV", &["csv"])
                .pick_file()?;
            Some(Picked::Csv(CsvSetup::read(csv).map(|s| s.recall(&recent))))
        });
    }

    /// Asks for `c` as a panel does: carried out at the end of the frame, in order.
    pub fn command(&mut self, c: impl Into<Command>) {
        self.cmds.push(c);
    }

    /// Whether an export is under way (or waiting for edits to be written).
    pub fn exporting(&self) -> bool {
        self.export.is_some() || self.export_waiting.is_some()
    }

    /// Runs `pick` (a native dialog, or reading a file) off the UI thread.
    fn pick_in_background(
        &mut self,
        ctx: &egui::Context,
        pick: impl FnOnce() -> Option<Picked> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let _ = std::thread::Builder::new()
            .name("loupe-dialog".into())
            .spawn(move || {
                let _ = tx.send(pick());
                ctx.request_repaint();
            });
        self.picking = Some(rx);
    }

    pub fn show(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        if !self.fonts_installed {
            super::fonts::install(ui.ctx());
            self.fonts_installed = true;
        }
        let ctx = ui.ctx().clone();
        self.poll(&ctx);
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::F12)) {
            self.debug_overlay = !self.debug_overlay;
        }
        // Closing during a run asks first; once answered, the run is cancelled and the window closes.
        if ctx.input(|i| i.viewport().close_requested())
            && self.train.running()
            && !self.train.close_confirmed
        {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.train.ask_to_close();
        }
        if std::mem::take(&mut self.train.close_confirmed) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        self.menu(ui);
        self.status_bar(ui);
        self.csv_dialog(&ctx);
        let mut state = std::mem::replace(&mut self.state, State::Failed(String::new()));
        // A dataset chosen on the start page opens once the state is back in place.
        let mut chosen = None;
        match &mut state {
            State::Loading(_) => {
                egui::CentralPanel::default_margins().show(ui, |ui| {
                    ui.centered_and_justified(|ui| ui.spinner());
                });
            }
            State::Failed(msg) => {
                let msg = msg.clone();
                egui::CentralPanel::default_margins().show(ui, |ui| {
                    chosen = self.start_page(ui, &msg);
                });
            }
            State::Ready(ws) => self.workspace_ui(ui, ws),
        }
        self.state = state;
        if let Some(source) = chosen {
            self.start(&ctx, source);
        }
        self.apply(&ctx);
        if self.first_frame.is_none() {
            self.first_frame = super::PROCESS_START.get().map(Instant::elapsed);
            // For benches/startup.sh: the first frame's time, where a script can read it.
            if let (Some(t), Some(_)) = (
                self.first_frame,
                std::env::var_os("LOUPE_REPORT_FIRST_FRAME"),
            ) {
                eprintln!(
                    "loupe: first frame {:.0} ms after exec",
                    t.as_secs_f64() * 1e3
                );
            }
        }
        let dt = started.elapsed().as_secs_f32() * 1000.0;
        self.frame_times.push_back(dt);
        if self.frame_times.len() > 240 {
            self.frame_times.pop_front();
        }
        if self.debug_overlay {
            self.overlay(&ctx);
        }
    }

    fn menu(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("menu").show(ui, |ui| {
            egui::MenuBar::new().ui(ui, |ui| {
                ui.menu_button("File", |ui| {
                    if ui.button("Open folder…").clicked() {
                        self.ask_folder(&ui.ctx().clone());
                    }
                    if ui.button("Open CSV…").clicked() {
                        self.ask_csv(&ui.ctx().clone());
                    }
                    ui.separator();
                    let can_export = self.workspace().is_some() && self.export.is_none();
                    for (label, format) in [
                        ("Export as class folders…", ExportFormat::Imagefolder),
                        ("Export as images + CSV…", ExportFormat::Csv),
                    ] {
                        if ui
                            .add_enabled(can_export, egui::Button::new(label))
                            .on_hover_text(
                                "Copies the dataset as edited (excluded images left out) into a \
                                 new, empty folder; hardlinks where the disk allows",
                            )
                            .clicked()
                        {
                            let ctx = ui.ctx().clone();
                            self.pick_in_background(&ctx, move || {
                                rfd::FileDialog::new()
                                    .set_title("Export into a new, empty folder")
                                    .pick_folder()
                                    .map(|out| Picked::ExportTo(out, format))
                            });
                        }
                    }
                    ui.separator();
                    ui.menu_button("Recent", |ui| {
                        for src in self.settings.recent.clone() {
                            if ui.button(source_name(&src)).clicked() {
                                let ctx = ui.ctx().clone();
                                self.start(&ctx, src);
                            }
                        }
                    });
                });
                ui.menu_button("Edit", |ui| {
                    let (can_undo, can_redo) = self
                        .workspace()
                        .map_or((false, false), |w| (w.history.can_undo, w.history.can_redo));
                    if ui
                        .add_enabled(can_undo, egui::Button::new("Undo").shortcut_text("Ctrl+Z"))
                        .clicked()
                    {
                        self.cmds.push(LabelCmd::Undo);
                    }
                    if ui
                        .add_enabled(
                            can_redo,
                            egui::Button::new("Redo").shortcut_text("Ctrl+Shift+Z"),
                        )
                        .clicked()
                    {
                        self.cmds.push(LabelCmd::Redo);
                    }
                    ui.checkbox(&mut self.show_edits, "Show the edits list");
                });
                ui.menu_button("View", |ui| {
                    ui.checkbox(&mut self.debug_overlay, "Frame times (F12)");
                });
                // The tabs are the dataset's: without one, the start page has the stage.
                if self.workspace().is_none() {
                    return;
                }
                ui.separator();
                ui.selectable_value(&mut self.tab, Tab::Browse, "Browse");
                ui.selectable_value(&mut self.tab, Tab::Distribution, "Distribution");
                ui.selectable_value(
                    &mut self.tab,
                    Tab::Issues,
                    if self.review.running() {
                        "Issues (searching)"
                    } else {
                        "Issues"
                    },
                );
                ui.selectable_value(
                    &mut self.tab,
                    Tab::Train,
                    if self.train.running() {
                        "Train (running)"
                    } else {
                        "Train"
                    },
                );
                ui.selectable_value(&mut self.tab, Tab::Evaluate, "Evaluate");
                ui.selectable_value(
                    &mut self.tab,
                    Tab::Health,
                    if self.health.running() {
                        "Health (checking)"
                    } else {
                        "Health"
                    },
                );
                ui.separator();
                ui.toggle_value(&mut self.show_edits, "Edits");
            });
        });
    }

    fn workspace_ui(&mut self, ui: &mut egui::Ui, ws: &Workspace) {
        egui::Panel::left("classes")
            .default_size(250.0)
            .show(ui, |ui| self.class_panel(ui, ws));
        if self.show_edits {
            egui::Panel::right("edits")
                .default_size(300.0)
                .show(ui, |ui| self.edits_panel(ui, ws));
        }
        egui::CentralPanel::default_margins().show(ui, |ui| match self.tab {
            Tab::Browse => {
                let thumbs = self
                    .thumbs
                    .as_mut()
                    .expect("a thumbnail cache exists while a dataset is open");
                self.browse.show(ui, ws, thumbs, &mut self.cmds);
            }
            Tab::Issues => {
                let thumbs = self
                    .thumbs
                    .as_mut()
                    .expect("a thumbnail cache exists while a dataset is open");
                self.review.show(ui, ws, thumbs, &mut self.cmds);
            }
            Tab::Train => self.train.show(ui, &mut self.cmds),
            Tab::Evaluate => {
                let thumbs = self
                    .thumbs
                    .as_mut()
                    .expect("a thumbnail cache exists while a dataset is open");
                // The validation sets of the run, or of each fold of the experiment, shown.
                let vals: Option<(PathBuf, Vec<&[String]>)> =
                    self.evaluate.run.as_ref().and_then(|dir| {
                        let t = &self.train;
                        if let Some(r) = t.runs.iter().find(|r| &r.dir == dir) {
                            return Some((r.dir.clone(), vec![r.record.split.val.as_slice()]));
                        }
                        let e = t.experiments.iter().find(|e| &e.dir == dir)?;
                        let folds = e.folds.iter().map(|f| f.record.split.val.as_slice());
                        Some((e.dir.clone(), folds.collect()))
                    });
                let leaks = vals.and_then(|(dir, vals)| self.health.leaks_of(&dir, &vals));
                self.evaluate.show(
                    ui,
                    ws,
                    (&self.train.runs, &self.train.experiments),
                    leaks,
                    thumbs,
                    &mut self.cmds,
                );
                if self.evaluate.take_loaded() {
                    self.browse.run_scores = self.evaluate.run_scores(ws);
                }
            }
            Tab::Distribution => self.distribution.show(ui, ws, &mut self.cmds),
            Tab::Health => {
                let thumbs = self
                    .thumbs
                    .as_mut()
                    .expect("a thumbnail cache exists while a dataset is open");
                let layers = super::health::Layers {
                    suspects: &self.review.queue,
                    run: self.browse.run_scores.as_ref(),
                };
                self.health
                    .show(ui, ws, &self.train.runs, layers, thumbs, &mut self.cmds);
            }
        });
    }

    fn class_panel(&mut self, ui: &mut egui::Ui, ws: &Workspace) {
        let s = &ws.stats;
        ui.heading(RichText::new(format!("{} images", s.images)));
        let excluded = ws.flags.iter().filter(|f| f.excluded).count();
        let edited = ws.flags.iter().filter(|f| f.edited).count();
        ui.label(format!(
            "{} classes · {} unreadable · {} ignored",
            ws.classes.len(),
            s.unreadable.len(),
            s.ignored
        ));
        ui.label(format!("{edited} edited · {excluded} excluded"));
        ui.separator();
        let max = s.classes.iter().map(|c| c.count).max().unwrap_or(0).max(1);
        egui::ScrollArea::vertical().show(ui, |ui| {
            egui::Grid::new("class_list")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    for (k, name) in ws.classes.iter().enumerate() {
                        let count = s
                            .classes
                            .iter()
                            .find(|c| &c.name == name)
                            .map_or(0, |c| c.count);
                        ui.label(
                            RichText::new(if k < 9 {
                                format!("{}", k + 1)
                            } else {
                                String::new()
                            })
                            .weak()
                            .monospace(),
                        );
                        let (r, _) =
                            ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
                        ui.painter().rect_filled(r, 2.0, class_color(k));
                        let active = self.browse.class_filter.as_deref() == Some(name.as_str());
                        if ui
                            .selectable_label(active, name.as_str())
                            .on_hover_text("Show only this class in Browse")
                            .clicked()
                        {
                            self.browse.class_filter =
                                if active { None } else { Some(name.clone()) };
                            self.tab = Tab::Browse;
                        }
                        ui.add(
                            egui::ProgressBar::new(count as f32 / max as f32)
                                .desired_width(80.0)
                                .fill(class_color(k).gamma_multiply(0.7))
                                .text(format!(
                                    "{count}  {:.1}%",
                                    100.0 * count as f32 / s.images.max(1) as f32
                                )),
                        );
                        ui.end_row();
                    }
                });
            if !ws.notes.is_empty() {
                ui.separator();
                for n in &ws.notes {
                    ui.label(RichText::new(n).small().weak());
                }
            }
        });
    }

    fn edits_panel(&mut self, ui: &mut egui::Ui, ws: &Workspace) {
        ui.horizontal(|ui| {
            ui.heading("Edits");
            if ui
                .add_enabled(ws.history.can_undo, egui::Button::new("Undo"))
                .clicked()
            {
                self.cmds.push(LabelCmd::Undo);
            }
            if ui
                .add_enabled(ws.history.can_redo, egui::Button::new("Redo"))
                .clicked()
            {
                self.cmds.push(LabelCmd::Redo);
            }
        });
        egui::ScrollArea::vertical().show(ui, |ui| {
            for step in ws.history.steps.iter().rev().take(200) {
                let title = format!(
                    "#{} {}{}",
                    step.seq,
                    step.note,
                    if step.undone { " (undone)" } else { "" }
                );
                egui::CollapsingHeader::new(RichText::new(title).color(if step.undone {
                    Color32::GRAY
                } else {
                    ui.visuals().text_color()
                }))
                .id_salt(step.seq)
                .show(ui, |ui| {
                    for e in step.edits.iter().take(100) {
                        ui.horizontal(|ui| {
                            let text = match e {
                                crate::dataset::journal::Edit::Label { path, from, to } => {
                                    format!("{path}: {from} → {to}")
                                }
                                crate::dataset::journal::Edit::Excluded { path, to, .. } => {
                                    format!("{path}: {}", if *to { "excluded" } else { "included" })
                                }
                                crate::dataset::journal::Edit::Unsure { path, to, .. } => {
                                    format!("{path}: {}", if *to { "unsure" } else { "sure" })
                                }
                                crate::dataset::journal::Edit::Checked { path, to, .. } => format!(
                                    "{path}: {}",
                                    if *to { "checked, kept" } else { "unchecked" }
                                ),
                            };
                            ui.label(text);
                            let still_edited =
                                ws.index_of(e.path()).is_some_and(|i| ws.flags[i].edited);
                            if !step.undone
                                && still_edited
                                && ui
                                    .small_button("revert")
                                    .on_hover_text("Put this image back as in the dataset")
                                    .clicked()
                            {
                                self.cmds.push(LabelCmd::Revert(e.path().to_string()));
                            }
                        });
                    }
                });
            }
            if ws.history.steps.is_empty() {
                ui.label("No edits yet. Select images and press 1-9, L or Delete.");
            }
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                match &self.state {
                    State::Loading(l) => {
                        let (done, total) = l.counts();
                        let frac = if total == 0 {
                            0.0
                        } else {
                            done as f32 / total as f32
                        };
                        ui.add(
                            egui::ProgressBar::new(frac)
                                .desired_width(200.0)
                                .text(format!("Reading {done} / {total}")),
                        );
                    }
                    State::Ready(ws) => {
                        ui.label(format!(
                            "{} images · {} classes",
                            ws.stats.images,
                            ws.classes.len()
                        ));
                        if let Some(t) = &self.thumbs {
                            let busy = t.busy();
                            if busy > 0 {
                                ui.separator();
                                ui.spinner();
                                ui.label(format!("thumbnails: {busy} to decode"));
                            }
                        }
                    }
                    State::Failed(_) => {}
                }
                if let Some(job) = &self.export {
                    ui.separator();
                    ui.add(
                        egui::ProgressBar::new(job.fraction())
                            .desired_width(160.0)
                            .text(format!("exporting to {}", job.out.display())),
                    );
                }
                let pending = self.pending_writes();
                if pending > 0 {
                    ui.separator();
                    ui.label(format!("saving {pending} edit(s)…"));
                }
                if let Some((m, at)) = &self.message {
                    if at.elapsed() < Duration::from_secs(8) {
                        ui.separator();
                        match m {
                            Ok(t) => ui.label(t),
                            Err(e) => ui.colored_label(Color32::LIGHT_RED, e),
                        };
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.label(RichText::new(self.path.display().to_string()).weak());
                });
            });
        });
    }

    fn csv_dialog(&mut self, ctx: &egui::Context) {
        let Some(setup) = &mut self.csv_setup else {
            return;
        };
        match setup.show(ctx) {
            Some(Outcome::Open(source)) => {
                self.csv_setup = None;
                self.start(ctx, source);
            }
            Some(Outcome::Cancel) => self.csv_setup = None,
            None => {}
        }
    }

    fn overlay(&self, ctx: &egui::Context) {
        let mut v: Vec<f32> = self.frame_times.iter().copied().collect();
        v.sort_by(f32::total_cmp);
        let pct = |p: f32| {
            v.get(((v.len() as f32 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        egui::Area::new(egui::Id::unique("frame_overlay"))
            .anchor(egui::Align2::RIGHT_TOP, [-8.0, 32.0])
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.monospace(format!(
                        "frame (UI code) p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                        pct(0.5),
                        pct(0.99),
                        v.last().copied().unwrap_or(0.0)
                    ));
                    if let Some(t) = &self.thumbs {
                        ui.monospace(format!(
                            "thumbnail textures {:.1} MB",
                            t.memory_bytes() as f64 / 1e6
                        ));
                    }
                    if let Some(d) = self.first_frame {
                        ui.monospace(format!(
                            "first frame {:.0} ms after exec",
                            d.as_secs_f64() * 1e3
                        ));
                    }
                });
            });
    }
}

impl eframe::App for LoupeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.settings.tile = self.browse.tile;
        self.settings.tab = self.tab;
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}

/// A dataset as the Recent list names it.
fn source_name(src: &Source) -> String {
    match src {
        Source::ImageFolder { root } => root.display().to_string(),
        Source::Csv(c) => format!("{} ({})", c.csv.display(), c.label_cols.join(", ")),
    }
}

/// A stable colour per class position: ten well-told-apart colours, then hues spaced by the
/// golden angle, so that no two of the first few dozen classes look alike.
pub fn class_color(k: usize) -> Color32 {
    const P: [Color32; 10] = [
        Color32::from_rgb(76, 114, 176),
        Color32::from_rgb(221, 132, 82),
        Color32::from_rgb(85, 168, 104),
        Color32::from_rgb(196, 78, 82),
        Color32::from_rgb(129, 114, 179),
        Color32::from_rgb(147, 120, 96),
        Color32::from_rgb(218, 139, 195),
        Color32::from_rgb(140, 140, 140),
        Color32::from_rgb(204, 185, 116),
        Color32::from_rgb(100, 181, 205),
    ];
    if let Some(&c) = P.get(k) {
        return c;
    }
    let hue = ((k - P.len()) as f32 * 137.507_77).rem_euclid(360.0) / 360.0;
    // Two lightness steps alternate, for neighbours that land on similar hues.
    let value = if k.is_multiple_of(2) { 0.82 } else { 0.62 };
    egui::ecolor::Hsva::new(hue, 0.55, value, 1.0).into()
}

#[cfg(test)]
mod tests {
    use super::class_color;

    #[test]
    fn the_first_forty_classes_have_colours_told_apart() {
        let colours: Vec<egui::Color32> = (0..40).map(class_color).collect();
        for (a, ca) in colours.iter().enumerate() {
            for (b, cb) in colours.iter().enumerate().skip(a + 1) {
                let d: i32 = [(ca.r(), cb.r()), (ca.g(), cb.g()), (ca.b(), cb.b())]
                    .iter()
                    .map(|&(x, y)| (i32::from(x) - i32::from(y)).abs())
                    .sum();
                assert!(d > 12, "classes {a} and {b} look alike: {ca:?} {cb:?}");
            }
        }
    }
}
