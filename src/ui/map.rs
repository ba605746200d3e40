//! A scatter map of many points (a dataset's embeddings in 2-D): scroll zooms around the
//! pointer, a right or middle drag pans, a double click shows everything again, and a left drag
//! draws a box whose points are the selection. The points are one mesh, built again only when
//! the view, the size or the colours change, so 100,000 of them cost a frame next to nothing.

use std::sync::Arc;

use egui::epaint::{Mesh, Vertex, WHITE_UV};
use egui::{Color32, Pos2, Rect, Sense, Shape, Stroke, Vec2};

/// Half the side of a point's square, in points.
const DOT: f32 = 1.6;
/// How close the pointer must be to a point to hover it, in points.
const REACH: f32 = 6.0;

/// What one frame of the map gave back.
#[derive(Default)]
pub struct MapOutput {
    /// The point under the pointer.
    pub hovered: Option<usize>,
    /// The points of a box that was just drawn.
    pub selected: Option<Vec<usize>>,
    /// The map's own response (for a tooltip on the hovered point).
    pub response: Option<egui::Response>,
}

/// The points' colours and which are drawn on top, with a version that changes whenever they
/// do (the cached mesh is kept while it does not).
pub struct Paint<'a> {
    pub colours: &'a [Color32],
    /// Drawn after (over) all the others: the points the colouring singles out.
    pub on_top: &'a [usize],
    pub version: u64,
}

#[derive(Default)]
pub struct MapView {
    /// The part of the data plane shown (None: all of it).
    view: Option<Rect>,
    /// Where a box selection started, on the screen.
    box_from: Option<Pos2>,
    mesh: Option<(MeshKey, Arc<Mesh>)>,
}

#[derive(PartialEq)]
struct MeshKey {
    screen: Rect,
    view: Rect,
    version: u64,
    points: usize,
}

/// The smallest rectangle around every finite point, a little larger; never empty, and
/// neither side below a tenth of the other (points on a line still get room).
fn bounds(points: &[[f32; 2]]) -> Rect {
    let mut r = Rect::NOTHING;
    for p in points
        .iter()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
    {
        r.extend_with(Pos2::new(p[0], p[1]));
    }
    if !r.is_finite() {
        r = Rect::from_center_size(Pos2::ZERO, Vec2::splat(1.0));
    }
    let least = (r.size().max_elem() * 0.1).max(1e-3);
    let r = Rect::from_center_size(r.center(), r.size().max(Vec2::splat(least)));
    r.expand2(r.size() * 0.03)
}

impl MapView {
    /// Shows everything again.
    pub fn reset(&mut self) {
        self.view = None;
        self.mesh = None;
    }

    pub fn show(&mut self, ui: &mut egui::Ui, points: &[[f32; 2]], paint: &Paint) -> MapOutput {
        let size = ui.available_size().max(Vec2::splat(64.0));
        let (screen, resp) = ui.allocate_exact_size(size, Sense::click_and_drag());
        resp.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Canvas,
                true,
                format!("map of {} pictures", points.len()),
            )
        });
        ui.painter()
            .rect_filled(screen, 2.0, ui.visuals().extreme_bg_color);
        let view = *self.view.get_or_insert_with(|| bounds(points));
        let to_screen = egui::emath::RectTransform::from_to(flip_y(view), screen);

        // Zoom around the pointer, pan with the secondary buttons, reset on a double click.
        if resp.hovered() {
            let (scroll, zoom) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = zoom * (scroll * 0.003).exp();
            if (factor - 1.0).abs() > 1e-4 {
                if let Some(at) = resp.hover_pos() {
                    let at = to_screen.inverse().transform_pos(at);
                    let zoomed = zoom_about(view, at, 1.0 / factor);
                    // No closer than a ten-thousandth of the whole: beyond, floats run out.
                    if zoomed.width() >= bounds(points).width() * 1e-4 {
                        self.view = Some(zoomed);
                    }
                }
            }
        }
        if resp.dragged_by(egui::PointerButton::Secondary)
            || resp.dragged_by(egui::PointerButton::Middle)
        {
            let d = resp.drag_delta() * to_screen.inverse().scale();
            self.view = Some(view.translate(Vec2::new(-d.x, d.y)));
        }
        if resp.double_clicked() {
            self.view = None;
        }
        let view = *self.view.get_or_insert_with(|| bounds(points));
        let to_screen = egui::emath::RectTransform::from_to(flip_y(view), screen);
        let place = |p: &[f32; 2]| to_screen.transform_pos(Pos2::new(p[0], -p[1]));

        let key = MeshKey {
            screen,
            view,
            version: paint.version,
            points: points.len(),
        };
        let mesh = match &self.mesh {
            Some((k, mesh)) if *k == key => mesh.clone(),
            _ => {
                let mesh = Arc::new(dots(points, paint, screen, &place));
                self.mesh = Some((key, mesh.clone()));
                mesh
            }
        };
        ui.painter().with_clip_rect(screen).add(Shape::Mesh(mesh));

        let mut out = MapOutput::default();
        // A box drawn with the primary button selects what it holds.
        if resp.drag_started_by(egui::PointerButton::Primary) {
            // Where the button went down: the drag starts only once the pointer has moved.
            self.box_from = ui
                .input(|i| i.pointer.press_origin())
                .or(resp.interact_pointer_pos());
        }
        if let (Some(from), Some(to)) = (self.box_from, resp.interact_pointer_pos()) {
            let b = Rect::from_two_pos(from, to);
            ui.painter().rect(
                b,
                0.0,
                ui.visuals().selection.bg_fill.gamma_multiply(0.25),
                ui.visuals().selection.stroke,
                egui::StrokeKind::Inside,
            );
            if resp.drag_stopped() {
                self.box_from = None;
                out.selected = Some(
                    (0..points.len())
                        .filter(|&i| b.contains(place(&points[i])))
                        .collect(),
                );
            }
        } else if resp.drag_stopped() {
            self.box_from = None;
        }
        // The nearest point within reach of the pointer.
        if self.box_from.is_none() {
            if let Some(at) = resp.hover_pos() {
                out.hovered = points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i, place(p).distance_sq(at)))
                    .filter(|&(_, d)| d <= REACH * REACH)
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(i, _)| i);
                if let Some(i) = out.hovered {
                    let c = place(&points[i]);
                    ui.painter().circle_stroke(
                        c,
                        DOT + 3.0,
                        Stroke::new(1.5, ui.visuals().strong_text_color()),
                    );
                }
            }
        }
        out.response = Some(resp);
        out
    }
}

/// The data plane with y pointing up, as a screen rectangle (y down) sees it.
fn flip_y(view: Rect) -> Rect {
    Rect::from_min_max(
        Pos2::new(view.min.x, -view.max.y),
        Pos2::new(view.max.x, -view.min.y),
    )
}

/// `view` scaled by `s` (below 1: closer) around `at`, a point in data coordinates (y up, as
/// `flip_y` turned it).
fn zoom_about(view: Rect, at: Pos2, s: f32) -> Rect {
    let at = Pos2::new(at.x, -at.y);
    let min = at + (view.min - at) * s;
    let max = at + (view.max - at) * s;
    Rect::from_min_max(min, max)
}

/// One quad per visible point, the singled-out ones last (on top).
fn dots(
    points: &[[f32; 2]],
    paint: &Paint,
    screen: Rect,
    place: &impl Fn(&[f32; 2]) -> Pos2,
) -> Mesh {
    let mut mesh = Mesh::default();
    let mut top = vec![false; points.len()];
    for &i in paint.on_top {
        if let Some(t) = top.get_mut(i) {
            *t = true;
        }
    }
    let order = (0..points.len())
        .filter(|&i| !top[i])
        .chain(paint.on_top.iter().copied().filter(|&i| i < points.len()));
    let area = screen.expand(DOT);
    for i in order {
        let c = place(&points[i]);
        if !area.contains(c) {
            continue;
        }
        let colour = paint.colours.get(i).copied().unwrap_or(Color32::GRAY);
        let base = mesh.vertices.len() as u32;
        for (dx, dy) in [(-DOT, -DOT), (DOT, -DOT), (DOT, DOT), (-DOT, DOT)] {
            mesh.vertices.push(Vertex {
                pos: Pos2::new(c.x + dx, c.y + dy),
                uv: WHITE_UV,
                color: colour,
            });
        }
        mesh.indices
            .extend_from_slice(&[base, base + 1, base + 2, base, base + 2, base + 3]);
    }
    mesh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_every_point_and_are_never_empty() {
        let b = bounds(&[[0.0, 0.0], [2.0, 1.0], [f32::NAN, 5.0]]);
        assert!(b.contains(Pos2::new(0.0, 0.0)) && b.contains(Pos2::new(2.0, 1.0)));
        assert!(b.max.y < 5.0, "a NaN point is left out: {b:?}");
        for one in [vec![[3.0, 3.0]], vec![], vec![[1.0, 1.0], [1.0, 1.0]]] {
            let b = bounds(&one);
            assert!(b.is_positive() && b.is_finite(), "{one:?}: {b:?}");
        }
    }

    #[test]
    fn zooming_keeps_the_point_under_the_pointer_in_place() {
        let view = Rect::from_min_max(Pos2::new(0.0, 0.0), Pos2::new(10.0, 10.0));
        let screen = Rect::from_min_max(Pos2::new(0.0, 0.0), Pos2::new(100.0, 100.0));
        let at_screen = Pos2::new(30.0, 80.0);
        let before = egui::emath::RectTransform::from_to(flip_y(view), screen);
        let at = before.inverse().transform_pos(at_screen);
        let zoomed = zoom_about(view, at, 0.5);
        assert!((zoomed.width() - 5.0).abs() < 1e-4);
        let after = egui::emath::RectTransform::from_to(flip_y(zoomed), screen);
        assert!(after.transform_pos(at).distance(at_screen) < 1e-3);
    }

    #[test]
    fn the_singled_out_points_are_drawn_last_and_hidden_points_not_at_all() {
        let points = [[0.0, 0.0], [1.0, 1.0], [50.0, 50.0]];
        let colours = [Color32::RED, Color32::GREEN, Color32::BLUE];
        let paint = Paint {
            colours: &colours,
            on_top: &[0],
            version: 0,
        };
        let screen = Rect::from_min_max(Pos2::ZERO, Pos2::new(10.0, 10.0));
        let mesh = dots(&points, &paint, screen, &|p| Pos2::new(p[0], p[1]));
        // Point 2 is off the screen; point 0 comes after point 1.
        assert_eq!(mesh.vertices.len(), 8);
        assert_eq!(mesh.vertices[0].color, Color32::GREEN);
        assert_eq!(mesh.vertices[4].color, Color32::RED);
    }
}
