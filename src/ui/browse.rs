//! The Browse tab: a virtualised thumbnail grid with filters, sorting, selection, keyboard
//! relabeling, a class picker and a large view. Edits leave as [`LabelCmd`]s; nothing here
//! writes anything.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};

use egui::{Color32, Key, Modifiers, Rect, RichText, Sense, Stroke, TextureHandle, Vec2};

use super::command::Commands;
use super::keys;
use super::thumbs::Thumbs;
use crate::dataset::scan::label_parts;
use crate::dataset::workspace::{LabelCmd, Workspace};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum FlagFilter {
    #[default]
    All,
    Edited,
    Excluded,
    Unsure,
    Unreadable,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum SortBy {
    #[default]
    Path,
    Class,
    Size,
    /// The loss of the run chosen in Evaluate, highest first (its validation images only come
    /// first; the others follow by path).
    RunLoss,
    /// That run's confidence in its prediction, lowest first.
    RunConfidence,
}

/// Per sample, a run's (loss of the label, confidence of the prediction), from Evaluate.
#[derive(Debug, Clone, Default)]
pub struct RunScores {
    pub run: String,
    pub scores: std::collections::HashMap<usize, (f32, f32)>,
    /// The samples the run predicted wrong.
    pub wrong: std::collections::HashSet<usize>,
}

impl FlagFilter {
    pub fn title(self) -> &'static str {
        match self {
            FlagFilter::All => "all images",
            FlagFilter::Edited => "edited",
            FlagFilter::Excluded => "excluded",
            FlagFilter::Unsure => "unsure",
            FlagFilter::Unreadable => "unreadable files",
        }
    }
}

impl SortBy {
    pub fn title(self) -> &'static str {
        match self {
            SortBy::Path => "path",
            SortBy::Class => "class",
            SortBy::Size => "image size (pixels)",
            SortBy::RunLoss => "a run's loss",
            SortBy::RunConfidence => "a run's confidence",
        }
    }
}

/// Height of a tile's caption: the file name, then the class.
const LABEL_H: f32 = 32.0;

pub struct Browse {
    pub class_filter: Option<String>,
    /// Images whose label column (of a composite label) has a value: (column, value), all of
    /// them at once.
    pub column_filters: Vec<(usize, String)>,
    pub flag_filter: FlagFilter,
    pub search: String,
    pub sort: SortBy,
    /// A set of samples chosen elsewhere (a duplicate group, ...), with a title.
    pub only: Option<(String, BTreeSet<usize>)>,
    /// Scores of the run shown in Evaluate, for the run sorts.
    pub run_scores: Option<RunScores>,
    pub tile: f32,
    view: Vec<usize>,
    view_key: Option<u64>,
    pub selected: BTreeSet<usize>,
    anchor: Option<usize>,
    /// Position in the view of the keyboard cursor.
    cursor: Option<usize>,
    scroll_to_cursor: bool,
    columns: usize,
    /// The grid's scroll offset last frame, to bring the cursor into view.
    grid_offset: f32,
    /// Position in the view shown in the large view.
    pub large: Option<usize>,
    zoom: f32,
    viewer: Viewer,
    picker: Option<String>,
    /// What the number keys set: the class (`None`), or one column of a composite label.
    pub key_column: Option<usize>,
}

impl Default for Browse {
    fn default() -> Self {
        Browse {
            class_filter: None,
            column_filters: Vec::new(),
            flag_filter: FlagFilter::All,
            search: String::new(),
            sort: SortBy::Path,
            only: None,
            run_scores: None,
            tile: 112.0,
            view: Vec::new(),
            view_key: None,
            selected: BTreeSet::new(),
            anchor: None,
            cursor: None,
            scroll_to_cursor: false,
            columns: 1,
            grid_offset: 0.0,
            large: None,
            zoom: 0.0,
            viewer: Viewer::default(),
            picker: None,
            key_column: None,
        }
    }
}

impl Browse {
    /// Samples that pass the filters, in display order (recomputed only when something changed).
    pub fn view(&mut self, ws: &Workspace) -> &[usize] {
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (
                ws.generation,
                &self.class_filter,
                &self.column_filters,
                self.flag_filter,
                &self.search,
                self.sort,
            )
                .hash(&mut h);
            self.only.as_ref().map(|(t, s)| (t, s.len())).hash(&mut h);
            self.run_scores
                .as_ref()
                .map(|r| (&r.run, r.scores.len()))
                .hash(&mut h);
            h.finish()
        };
        if self.view_key != Some(key) {
            self.view = filtered(ws, self);
            self.view_key = Some(key);
            self.cursor = self.cursor.filter(|&c| c < self.view.len());
            self.large = self.large.filter(|&c| c < self.view.len());
        }
        &self.view
    }

    /// Shows only images whose label column `column` is `value` (with the other columns'
    /// filters kept).
    pub fn set_column_filter(&mut self, column: usize, value: String) {
        self.column_filters.retain(|(c, _)| *c != column);
        self.column_filters.push((column, value));
    }

    /// The samples an edit applies to: the selection, else the one under the cursor.
    fn targets(&self, ws: &Workspace) -> Vec<String> {
        if !self.selected.is_empty() {
            return self.selected.iter().map(|&i| ws.path(i)).collect();
        }
        self.cursor
            .and_then(|c| self.view.get(c))
            .map(|&i| vec![ws.path(i)])
            .unwrap_or_default()
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        ws: &Workspace,
        thumbs: &mut Thumbs,
        cmds: &mut Commands,
    ) {
        self.view(ws);
        self.toolbar(ui, ws);
        self.keys(ui.ctx(), ws, cmds);
        self.class_picker(ui.ctx(), ws, cmds);
        if self.flag_filter == FlagFilter::Unreadable {
            unreadable_list(ui, ws);
        } else if let Some(pos) = self.large {
            self.large_view(ui, ws, thumbs, pos);
        } else {
            self.grid(ui, ws, thumbs);
        }
    }

    fn toolbar(&mut self, ui: &mut egui::Ui, ws: &Workspace) {
        ui.horizontal_wrapped(|ui| {
            let search = ui.label("Search");
            ui.add(
                egui::TextEdit::singleline(&mut self.search)
                    .hint_text("part of a path")
                    .desired_width(160.0),
            )
            .labelled_by(search.id);
            let show = ui.label("Show");
            egui::ComboBox::from_id_salt("flag_filter")
                .selected_text(self.flag_filter.title())
                .show_ui(ui, |ui| {
                    for f in [
                        FlagFilter::All,
                        FlagFilter::Edited,
                        FlagFilter::Excluded,
                        FlagFilter::Unsure,
                        FlagFilter::Unreadable,
                    ] {
                        ui.selectable_value(&mut self.flag_filter, f, f.title());
                    }
                })
                .response
                .labelled_by(show.id);
            let order = ui.label("Order by");
            egui::ComboBox::from_id_salt("sort")
                .selected_text(self.sort.title())
                .show_ui(ui, |ui| {
                    for s in [SortBy::Path, SortBy::Class, SortBy::Size] {
                        ui.selectable_value(&mut self.sort, s, s.title());
                    }
                    let run = self.run_scores.as_ref().map(|r| r.run.clone());
                    for (s, what) in [
                        (SortBy::RunLoss, "loss"),
                        (SortBy::RunConfidence, "confidence"),
                    ] {
                        let text = match &run {
                            Some(r) => format!("{what} of run {r}"),
                            None => format!("{what} of a run (choose one in Evaluate)"),
                        };
                        ui.add_enabled_ui(run.is_some(), |ui| {
                            ui.selectable_value(&mut self.sort, s, text)
                        });
                    }
                })
                .response
                .labelled_by(order.id);
            let tile = ui.label("Tile size");
            ui.add(egui::Slider::new(&mut self.tile, 48.0..=256.0).show_value(false))
                .labelled_by(tile.id);
            if let Some(c) = self.class_filter.clone() {
                if ui
                    .button(format!("class: {c} ✕"))
                    .on_hover_text("Show all classes")
                    .clicked()
                {
                    self.class_filter = None;
                }
            }
            if let Some((title, _)) = &self.only {
                if ui.button(format!("{title} ✕")).clicked() {
                    self.only = None;
                }
            }
            let names = &ws.dataset.label_columns;
            let mut remove = None;
            for (k, (column, value)) in self.column_filters.iter().enumerate() {
                let name = names.get(*column).map_or("?", String::as_str);
                if ui
                    .button(format!("{name} = {value} ✕"))
                    .on_hover_text("Remove this filter")
                    .clicked()
                {
                    remove = Some(k);
                }
            }
            if let Some(k) = remove {
                self.column_filters.remove(k);
            }
            if ws.dataset.label_columns.len() > 1 {
                let names = &ws.dataset.label_columns;
                let title = |c: Option<usize>| c.map_or("class", |c| names[c].as_str());
                let keys = ui.label("1-9 set");
                egui::ComboBox::from_id_salt("key_column")
                    .selected_text(title(self.key_column))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut self.key_column, None, "class");
                        for c in 0..names.len() {
                            ui.selectable_value(&mut self.key_column, Some(c), title(Some(c)));
                        }
                    })
                    .response
                    .labelled_by(keys.id)
                    .on_hover_text(
                        "What the number keys change: the whole class, or one attribute of \
                         the selected images, the others kept (C cycles)",
                    );
                if let Some(c) = self.key_column {
                    let layout = ws.layout();
                    let keys: Vec<String> = layout.columns[c]
                        .values
                        .iter()
                        .take(9)
                        .enumerate()
                        .map(|(k, v)| format!("{} {v}", k + 1))
                        .collect();
                    ui.label(RichText::new(keys.join(" · ")).small().weak());
                }
            }
            if ws.stats.columns.len() > 1 {
                ui.menu_button("+ filter", |ui| {
                    for (column, col) in ws.stats.columns.iter().enumerate() {
                        ui.menu_button(&col.column, |ui| {
                            for c in &col.counts {
                                if ui.button(format!("{}  ({})", c.name, c.count)).clicked() {
                                    self.set_column_filter(column, c.name.clone());
                                    ui.close();
                                }
                            }
                        });
                    }
                });
            }
            let shown = if self.flag_filter == FlagFilter::Unreadable {
                ws.dataset.rejected.len()
            } else {
                self.view.len()
            };
            // One piece: it moves to the next line whole rather than break in two.
            ui.add(
                egui::Label::new(
                    RichText::new(format!("{shown} shown · {} selected", self.selected.len()))
                        .strong(),
                )
                .wrap_mode(egui::TextWrapMode::Extend),
            );
        });
        let keys = if ws.classes.len() > 9 {
            "1-9 relabel as the first nine classes, L picks any class"
        } else {
            "1-9 relabel · L class picker"
        };
        ui.label(
            RichText::new(format!(
                "{keys} · Del exclude · Ctrl+Z / Ctrl+Shift+Z undo/redo · arrows or J/K move · \
                 Enter view · Esc back"
            ))
            .small()
            .weak(),
        );
        ui.separator();
    }

    fn keys(&mut self, ctx: &egui::Context, ws: &Workspace, cmds: &mut Commands) {
        // A shortcut never fires while a text field (search, picker) has the keyboard.
        if ctx.egui_wants_keyboard_input()
            || self.picker.is_some()
            || self.flag_filter == FlagFilter::Unreadable
        {
            return;
        }
        let n = self.view.len();
        let layout = ws.layout();
        if self.key_column.is_some_and(|c| c >= layout.columns.len()) {
            self.key_column = None;
        }
        ctx.input_mut(|i| {
            keys::undo_redo(i, cmds);
            if i.consume_key(Modifiers::COMMAND, Key::A) {
                self.selected = self.view.iter().copied().collect();
            }
            match self.key_column {
                Some(column) => {
                    let values = &layout.columns[column].values;
                    if let Some(value) = keys::class_key(i, values) {
                        let paths = self.targets(ws);
                        if !paths.is_empty() {
                            cmds.push(LabelCmd::SetColumn {
                                paths,
                                column,
                                value: value.clone(),
                            });
                        }
                    }
                }
                None => {
                    if let Some(class) = keys::class_key(i, &ws.classes) {
                        let paths = self.targets(ws);
                        if !paths.is_empty() {
                            cmds.push(LabelCmd::Relabel {
                                paths,
                                class: class.clone(),
                            });
                        }
                    }
                }
            }
            if layout.is_composite() && i.consume_key(Modifiers::NONE, Key::C) {
                self.key_column = match self.key_column {
                    None => Some(0),
                    Some(c) if c + 1 < layout.columns.len() => Some(c + 1),
                    Some(_) => None,
                };
            }
            if i.consume_key(Modifiers::NONE, Key::Delete)
                || i.consume_key(Modifiers::NONE, Key::Backspace)
            {
                let paths = self.targets(ws);
                let all_excluded = paths
                    .iter()
                    .all(|p| ws.index_of(p).is_some_and(|j| ws.flags[j].excluded));
                if !paths.is_empty() {
                    cmds.push(LabelCmd::Exclude {
                        paths,
                        excluded: !all_excluded,
                    });
                }
            }
            if i.consume_key(Modifiers::NONE, Key::L) {
                self.picker = Some(String::new());
            }
            if i.consume_key(Modifiers::NONE, Key::Escape) {
                if self.large.is_some() {
                    self.large = None;
                    self.scroll_to_cursor = true;
                } else {
                    self.selected.clear();
                }
            }
            if (i.consume_key(Modifiers::NONE, Key::Enter)
                || i.consume_key(Modifiers::NONE, Key::Space))
                && n > 0
            {
                self.large = Some(self.cursor.unwrap_or(0));
                self.cursor = self.large;
            }
            let cols = if self.large.is_some() {
                1
            } else {
                self.columns.max(1)
            } as isize;
            let shift = i.modifiers.shift;
            let mut step = 0isize;
            for (key, d) in [
                (Key::ArrowRight, 1),
                (Key::J, 1),
                (Key::ArrowLeft, -1),
                (Key::K, -1),
                (Key::ArrowDown, cols),
                (Key::ArrowUp, -cols),
            ] {
                if i.key_pressed(key) {
                    step += d;
                }
            }
            if step != 0 && n > 0 {
                let cur = self
                    .cursor
                    .map_or(0, |c| (c as isize + step).clamp(0, n as isize - 1) as usize);
                self.move_cursor(cur, shift);
                if self.large.is_some() {
                    self.large = Some(cur);
                }
            }
        });
    }

    fn move_cursor(&mut self, pos: usize, extend: bool) {
        self.cursor = Some(pos);
        self.scroll_to_cursor = true;
        if extend {
            let a = self.anchor.unwrap_or(pos);
            self.selected = self.view[a.min(pos)..=a.max(pos)].iter().copied().collect();
        } else {
            self.anchor = Some(pos);
            self.selected = std::iter::once(self.view[pos]).collect();
        }
    }

    fn class_picker(&mut self, ctx: &egui::Context, ws: &Workspace, cmds: &mut Commands) {
        let Some(mut text) = self.picker.take() else {
            return;
        };
        let mut keep = true;
        let mut chosen = None;
        let mut chosen_part = None;
        egui::Modal::new(egui::Id::unique("class_picker")).show(ctx, |ui| {
            let heading = ui.heading("Relabel as…");
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut text)
                        .hint_text("type to filter, Enter to choose")
                        .desired_width(260.0),
                )
                .labelled_by(heading.id);
            edit.request_focus();
            let needle = text.to_lowercase();
            let matches: Vec<&String> = ws
                .classes
                .iter()
                .filter(|c| c.to_lowercase().contains(&needle))
                .collect();
            egui::ScrollArea::vertical()
                .max_height(240.0)
                .show(ui, |ui| {
                    for c in &matches {
                        if ui.selectable_label(false, c.as_str()).clicked() {
                            chosen = Some((*c).clone());
                        }
                    }
                    if matches.is_empty() && !text.trim().is_empty() {
                        ui.label(format!("Enter creates the class “{}”", text.trim()));
                    }
                });
            let layout = ws.layout();
            if layout.is_composite() {
                ui.separator();
                ui.label("or set one attribute, keeping the others:");
                egui::Grid::new("picker-columns").show(ui, |ui| {
                    for (k, col) in layout.columns.iter().enumerate() {
                        ui.label(&col.name);
                        ui.horizontal_wrapped(|ui| {
                            for v in &col.values {
                                if ui.button(v).clicked() {
                                    chosen_part = Some((k, v.clone()));
                                }
                            }
                        });
                        ui.end_row();
                    }
                });
            }
            if ui.input(|i| i.key_pressed(Key::Enter)) {
                chosen = matches
                    .first()
                    .map(|c| (*c).clone())
                    .or_else(|| Some(text.trim().to_string()).filter(|t| !t.is_empty()));
            }
            if ui.input(|i| i.key_pressed(Key::Escape)) || ui.button("Cancel").clicked() {
                keep = false;
            }
        });
        if let Some((column, value)) = chosen_part {
            let paths = self.targets(ws);
            if !paths.is_empty() {
                cmds.push(LabelCmd::SetColumn {
                    paths,
                    column,
                    value,
                });
            }
            keep = false;
        } else if let Some(class) = chosen {
            let paths = self.targets(ws);
            if paths.is_empty() {
                cmds.push(LabelCmd::AddClass(class));
            } else {
                cmds.push(LabelCmd::Relabel { paths, class });
            }
            keep = false;
        }
        if keep {
            self.picker = Some(text);
        }
    }

    fn grid(&mut self, ui: &mut egui::Ui, ws: &Workspace, thumbs: &mut Thumbs) {
        let spacing = ui.spacing().item_spacing;
        let cell = Vec2::new(self.tile, self.tile + LABEL_H);
        // What is visible, not what the toolbar stretched the panel to (side panels overlap it).
        let width = ui
            .available_width()
            .min(ui.clip_rect().right() - ui.cursor().left())
            - ui.spacing().scroll.bar_width;
        let cols = (((width + spacing.x) / (cell.x + spacing.x)).floor() as usize).max(1);
        self.columns = cols;
        let rows = self.view.len().div_ceil(cols);
        let row_h = cell.y + spacing.y;
        let mut area = egui::ScrollArea::vertical().auto_shrink(false);
        if self.scroll_to_cursor {
            if let Some(c) = self.cursor {
                let h = ui.available_height();
                let row_top = (c / cols) as f32 * row_h;
                let offset = self.grid_offset;
                if row_top < offset {
                    area = area.vertical_scroll_offset(row_top);
                } else if row_top + row_h > offset + h {
                    area = area.vertical_scroll_offset(row_top + row_h - h);
                }
            }
            self.scroll_to_cursor = false;
        }
        let mut visible = Vec::new();
        let out = area
            .id_salt("grid")
            .show_rows(ui, cell.y, rows, |ui, range| {
                for row in range {
                    ui.horizontal(|ui| {
                        for pos in row * cols..((row + 1) * cols).min(self.view.len()) {
                            let i = self.view[pos];
                            visible.push((i, ws.dataset.abs_path(&ws.dataset.samples[i].path)));
                            self.tile_ui(ui, ws, thumbs, pos, i, cell);
                        }
                    });
                }
            });
        self.grid_offset = out.state.clamped_offset().y;
        // A screen ahead, so scrolling finds thumbnails ready.
        let ahead: Vec<usize> = {
            let last = visible.last().map(|(i, _)| *i);
            let start = last
                .and_then(|l| self.view.iter().position(|&v| v == l))
                .map_or(0, |p| p + 1);
            self.view
                .iter()
                .skip(start)
                .take(visible.len())
                .copied()
                .collect()
        };
        visible.extend(
            ahead
                .into_iter()
                .map(|i| (i, ws.dataset.abs_path(&ws.dataset.samples[i].path))),
        );
        thumbs.want(ui.ctx(), visible);
    }

    fn tile_ui(
        &mut self,
        ui: &mut egui::Ui,
        ws: &Workspace,
        thumbs: &Thumbs,
        pos: usize,
        i: usize,
        cell: Vec2,
    ) {
        let (rect, resp) = ui.allocate_exact_size(cell, Sense::click());
        let path = ws.path(i);
        let label = &ws.labels[i];
        let flags = ws.flags[i];
        let selected = self.selected.contains(&i);
        resp.widget_info(|| {
            egui::WidgetInfo::selected(
                egui::Role::Image,
                true,
                selected,
                format!("{path} [{label}]"),
            )
        });
        if ui.is_rect_visible(rect) {
            let p = ui.painter_at(rect);
            let img_rect = Rect::from_min_size(rect.min, Vec2::splat(cell.x));
            p.rect_filled(img_rect, 3.0, ui.visuals().extreme_bg_color);
            if let Some(tex) = thumbs.get(i) {
                let tint = if flags.excluded {
                    Color32::from_gray(90)
                } else {
                    Color32::WHITE
                };
                p.image(
                    tex.id(),
                    fit(img_rect.shrink(2.0), tex.size_vec2()),
                    Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                    tint,
                );
            } else if let Some(err) = thumbs.error(i) {
                p.text(
                    img_rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "⚠",
                    egui::FontId::proportional(24.0),
                    Color32::LIGHT_RED,
                );
                resp.clone().on_hover_text(err.to_string());
            }
            let text_color = if flags.excluded {
                Color32::LIGHT_RED
            } else {
                ui.visuals().text_color()
            };
            let mut caption = label.clone();
            if flags.excluded {
                caption = format!("✕ {caption}");
            } else if flags.unsure {
                caption = format!("? {caption}");
            }
            // The file name (duplicates and near-copies told apart without hovering), then the
            // class; both cut to the tile's width.
            let name = path.rsplit('/').next().unwrap_or(&path);
            let width = cell.x - 4.0;
            let font = egui::FontId::proportional(11.5);
            let line = |text: &str, y: f32, color: Color32| {
                let mut job = egui::text::LayoutJob::single_section(
                    text.to_string(),
                    egui::TextFormat::simple(font.clone(), color),
                );
                job.wrap = egui::text::TextWrapping::truncate_at_width(width);
                p.galley(
                    egui::pos2(rect.min.x + 2.0, y),
                    ui.painter().layout_job(job),
                    color,
                );
            };
            let top = rect.max.y - LABEL_H + 1.0;
            line(name, top, ui.visuals().weak_text_color());
            line(&caption, top + LABEL_H / 2.0, text_color);
            if flags.edited {
                p.circle_filled(
                    img_rect.min + Vec2::splat(7.0),
                    4.5,
                    Color32::from_rgb(255, 165, 0),
                );
            }
            if selected {
                p.rect_stroke(
                    rect.shrink(1.0),
                    3.0,
                    Stroke::new(2.5, ui.visuals().selection.bg_fill),
                    egui::StrokeKind::Inside,
                );
            }
            if self.cursor == Some(pos) {
                p.rect_stroke(
                    rect,
                    3.0,
                    Stroke::new(1.0, ui.visuals().strong_text_color()),
                    egui::StrokeKind::Outside,
                );
            }
        }
        let resp = resp.on_hover_text(format!("{path}\n{label}"));
        if resp.double_clicked() {
            self.large = Some(pos);
            self.cursor = Some(pos);
        } else if resp.clicked() {
            let m = ui.input(|inp| inp.modifiers);
            if m.command {
                if !self.selected.remove(&i) {
                    self.selected.insert(i);
                }
                self.anchor = Some(pos);
                self.cursor = Some(pos);
            } else {
                self.move_cursor(pos, m.shift);
            }
        }
    }

    fn large_view(&mut self, ui: &mut egui::Ui, ws: &Workspace, thumbs: &mut Thumbs, pos: usize) {
        let Some(&i) = self.view.get(pos) else {
            self.large = None;
            return;
        };
        let s = &ws.dataset.samples[i];
        ui.horizontal(|ui| {
            if ui.button("⬅ Back (Esc)").clicked() {
                self.large = None;
                self.scroll_to_cursor = true;
            }
            if ui
                .add_enabled(pos > 0, egui::Button::new("◀ Previous"))
                .clicked()
            {
                self.move_cursor(pos - 1, false);
                self.large = Some(pos - 1);
            }
            if ui
                .add_enabled(pos + 1 < self.view.len(), egui::Button::new("Next ▶"))
                .clicked()
            {
                self.move_cursor(pos + 1, false);
                self.large = Some(pos + 1);
            }
            ui.add(egui::Slider::new(&mut self.zoom, 0.0..=4.0).text("zoom (0 = fit)"));
        });
        let flags = ws.flags[i];
        ui.label(
            RichText::new(format!(
                "{}   ·   {}x{} {} {}   ·   label: {}{}{}",
                ws.path(i),
                s.info.width,
                s.info.height,
                s.info.format_name(),
                s.info.color_name(),
                ws.labels[i],
                if flags.excluded {
                    "   ·   excluded"
                } else {
                    ""
                },
                if flags.edited { "   ·   edited" } else { "" },
            ))
            .strong(),
        );
        ui.separator();
        let tex = self
            .viewer
            .get(ui.ctx(), i, ws.dataset.abs_path(&s.path))
            .or_else(|| thumbs.get(i).cloned());
        thumbs.want(ui.ctx(), std::iter::once((i, ws.dataset.abs_path(&s.path))));
        egui::ScrollArea::both()
            .auto_shrink(false)
            .show(ui, |ui| match tex {
                Some(tex) => {
                    let size = if self.zoom <= 0.0 {
                        fit(
                            Rect::from_min_size(egui::Pos2::ZERO, ui.available_size()),
                            Vec2::new(s.info.width as f32, s.info.height as f32),
                        )
                        .size()
                    } else {
                        Vec2::new(s.info.width as f32, s.info.height as f32) * self.zoom
                    };
                    ui.add(egui::Image::new(&tex).fit_to_exact_size(size));
                }
                None => {
                    ui.spinner();
                }
            });
    }
}

/// `size` scaled to fit inside `r`, centred.
fn fit(r: Rect, size: Vec2) -> Rect {
    let s = (r.width() / size.x).min(r.height() / size.y);
    Rect::from_center_size(r.center(), size * s)
}

fn filtered(ws: &Workspace, b: &Browse) -> Vec<usize> {
    let needle = b.search.to_lowercase();
    let columns = ws.dataset.label_columns.len();
    let mut v: Vec<usize> = (0..ws.dataset.samples.len())
        .filter(|&i| b.class_filter.as_ref().is_none_or(|c| &ws.labels[i] == c))
        .filter(|&i| {
            b.column_filters.iter().all(|(column, value)| {
                label_parts(&ws.labels[i], columns).get(*column) == Some(value)
            })
        })
        .filter(|&i| match b.flag_filter {
            FlagFilter::All | FlagFilter::Unreadable => true,
            FlagFilter::Edited => ws.flags[i].edited,
            FlagFilter::Excluded => ws.flags[i].excluded,
            FlagFilter::Unsure => ws.flags[i].unsure,
        })
        .filter(|&i| b.only.as_ref().is_none_or(|(_, set)| set.contains(&i)))
        .filter(|&i| needle.is_empty() || ws.path(i).to_lowercase().contains(&needle))
        .collect();
    let samples = &ws.dataset.samples;
    match b.sort {
        SortBy::Path => {}
        SortBy::Class => v.sort_by(|&a, &c| ws.labels[a].cmp(&ws.labels[c]).then(a.cmp(&c))),
        SortBy::Size => v.sort_by_key(|&i| {
            (
                std::cmp::Reverse(
                    u64::from(samples[i].info.width) * u64::from(samples[i].info.height),
                ),
                i,
            )
        }),
        SortBy::RunLoss | SortBy::RunConfidence => {
            let empty = std::collections::HashMap::new();
            let scores = b.run_scores.as_ref().map_or(&empty, |r| &r.scores);
            // Scored images first, by the score; then the rest in path order.
            let key = |i: usize| -> f32 {
                match (scores.get(&i), b.sort) {
                    (Some(&(loss, _)), SortBy::RunLoss) => -loss,
                    (Some(&(_, conf)), _) => conf,
                    (None, _) => f32::INFINITY,
                }
            };
            v.sort_by(|&a, &c| key(a).total_cmp(&key(c)).then(a.cmp(&c)));
        }
    }
    v
}

fn unreadable_list(ui: &mut egui::Ui, ws: &Workspace) {
    egui::ScrollArea::vertical()
        .auto_shrink(false)
        .show(ui, |ui| {
            egui::Grid::new("unreadable")
                .striped(true)
                .num_columns(2)
                .show(ui, |ui| {
                    for r in &ws.dataset.rejected {
                        ui.label(crate::util::path_str(&r.path));
                        ui.label(r.reason.to_string());
                        ui.end_row();
                    }
                });
            if ws.dataset.rejected.is_empty() {
                ui.label("Every file is readable.");
            }
        });
}

/// The full-resolution image of the large view, decoded on a short-lived thread; only the
/// latest request counts.
#[derive(Default)]
pub(crate) struct Viewer {
    current: Option<(usize, TextureHandle)>,
    waiting: Option<(usize, Receiver<Option<egui::ColorImage>>)>,
}

/// Longest side uploaded for the large view (GPU texture limits; 4096 is plenty on screen).
const LARGE_MAX: u32 = 4096;

impl Viewer {
    pub(crate) fn get(
        &mut self,
        ctx: &egui::Context,
        i: usize,
        path: PathBuf,
    ) -> Option<TextureHandle> {
        if let Some((j, rx)) = &self.waiting {
            if let Ok(img) = rx.try_recv() {
                if let Some(img) = img {
                    self.current = Some((
                        *j,
                        ctx.load_texture(format!("large-{j}"), img, egui::TextureOptions::LINEAR),
                    ));
                }
                self.waiting = None;
            }
        }
        if let Some((j, tex)) = &self.current {
            if *j == i {
                return Some(tex.clone());
            }
        }
        if self.waiting.as_ref().is_none_or(|(j, _)| *j != i) {
            let (tx, rx) = mpsc::channel();
            let ctx = ctx.clone();
            let _ = std::thread::Builder::new()
                .name("loupe-large-view".into())
                .spawn(move || {
                    let img = crate::dataset::probe::decode(&path).ok().map(|im| {
                        let im = if im.width().max(im.height()) > LARGE_MAX {
                            im.thumbnail(LARGE_MAX, LARGE_MAX)
                        } else {
                            im
                        };
                        super::thumbs::to_color_image(&im.to_rgba8())
                    });
                    let _ = tx.send(img);
                    ctx.request_repaint();
                });
            self.waiting = Some((i, rx));
        }
        None
    }
}
