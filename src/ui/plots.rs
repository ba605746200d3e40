//! Plot ranges that are always drawable. egui_plot debug-asserts on bounds of zero width (a
//! series with one point, a constant learning rate during warm-up) and draws nonsense for NaN or
//! infinite values (a diverged loss). Every plot of the app passes its series through here:
//! non-finite points are dropped, and the ranges it asks egui_plot to include are padded to a
//! sane width, relative to their magnitude.

use egui_plot::{Plot, PlotPoints};

/// The finite points of a series, as egui_plot takes them.
pub fn finite(points: impl IntoIterator<Item = [f64; 2]>) -> PlotPoints<'static> {
    PlotPoints::from(
        points
            .into_iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
            .collect::<Vec<[f64; 2]>>(),
    )
}

/// The extent of the series of one plot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Extent {
    x: Option<(f64, f64)>,
    y: Option<(f64, f64)>,
}

/// Values beyond this are clamped: their differences would overflow to infinity.
const LIMIT: f64 = 1e150;

fn grow(r: &mut Option<(f64, f64)>, v: f64) {
    if !v.is_finite() {
        return;
    }
    let v = v.clamp(-LIMIT, LIMIT);
    *r = Some(match *r {
        None => (v, v),
        Some((lo, hi)) => (lo.min(v), hi.max(v)),
    });
}

/// A range that is never empty: a single value (or one that is all but single, such as
/// 0.00096960208611562850..0.00096960208611562860) is widened around its centre by a tenth of
/// its magnitude, or by 0.5 when it is zero.
fn sane(r: Option<(f64, f64)>, default: (f64, f64)) -> (f64, f64) {
    let Some((lo, hi)) = r else { return default };
    let magnitude = lo.abs().max(hi.abs());
    if hi - lo > magnitude * 1e-6 {
        return (lo, hi);
    }
    let centre = (lo + hi) / 2.0;
    let half = if magnitude > 0.0 {
        magnitude * 0.1
    } else {
        0.5
    };
    (centre - half, centre + half)
}

impl Extent {
    pub fn add(&mut self, p: [f64; 2]) {
        if p[0].is_finite() && p[1].is_finite() {
            grow(&mut self.x, p[0]);
            grow(&mut self.y, p[1]);
        }
    }

    pub fn add_all(&mut self, points: impl IntoIterator<Item = [f64; 2]>) {
        for p in points {
            self.add(p);
        }
    }

    /// The x and y ranges to show, `default_x` / `default_y` where there is no data.
    pub fn ranges(&self, default_x: (f64, f64), default_y: (f64, f64)) -> [(f64, f64); 2] {
        [sane(self.x, default_x), sane(self.y, default_y)]
    }

    /// `plot`, told to include these ranges: whatever egui_plot adds from the items, the view
    /// is never degenerate.
    pub fn include<'a>(
        &self,
        plot: Plot<'a>,
        default_x: (f64, f64),
        default_y: (f64, f64),
    ) -> Plot<'a> {
        let [(x0, x1), (y0, y1)] = self.ranges(default_x, default_y);
        plot.include_x(x0).include_x(x1).include_y(y0).include_y(y1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(r: (f64, f64)) -> bool {
        r.0.is_finite() && r.1.is_finite() && r.1 - r.0 > 0.0
    }

    fn ranges(points: &[[f64; 2]]) -> [(f64, f64); 2] {
        let mut e = Extent::default();
        e.add_all(points.iter().copied());
        e.ranges((0.0, 1.0), (0.0, 1.0))
    }

    #[test]
    fn an_empty_series_gets_the_default_view() {
        assert_eq!(ranges(&[]), [(0.0, 1.0), (0.0, 1.0)]);
    }

    #[test]
    fn one_point_and_a_constant_series_get_room_around_them() {
        // The case that panicked: one learning-rate point during warm-up.
        let [x, y] = ranges(&[[2.2, 0.000_969_602_086_115_628_5]]);
        assert!(valid(x) && valid(y), "{x:?} {y:?}");
        assert!(x.0 < 2.2 && x.1 > 2.2);
        assert!(y.0 < 0.000_969 && y.1 > 0.000_97);
        let [x, y] = ranges(&[[1.0, 0.5], [2.0, 0.5], [3.0, 0.5]]);
        assert_eq!(x, (1.0, 3.0));
        assert!(valid(y) && y.0 < 0.5 && y.1 > 0.5);
        let [_, y] = ranges(&[[1.0, 0.0], [2.0, 0.0]]);
        assert_eq!(y, (-0.5, 0.5));
        // Two values a rounding error apart are one value.
        let [_, y] = ranges(&[
            [1.0, 0.000_969_602_086_115_628_5],
            [2.0, 0.000_969_602_086_115_628_6],
        ]);
        assert!(y.1 - y.0 > 1e-5, "{y:?}");
    }

    #[test]
    fn nan_and_infinite_values_are_left_out() {
        let [x, y] = ranges(&[
            [1.0, 2.0],
            [2.0, f64::NAN],
            [3.0, f64::INFINITY],
            [f64::NAN, 1.0],
            [4.0, 1.0],
        ]);
        assert_eq!(x, (1.0, 4.0));
        assert_eq!(y, (1.0, 2.0));
        assert_eq!(ranges(&[[f64::NAN, f64::NAN]]), [(0.0, 1.0), (0.0, 1.0)]);
        let kept = finite([[1.0, f64::NAN], [2.0, 3.0], [f64::NEG_INFINITY, 1.0]]);
        assert_eq!(kept.points().len(), 1);
    }

    #[test]
    fn a_huge_range_stays_finite() {
        let [x, y] = ranges(&[[0.0, 1e-12], [1.0, 1e300], [2.0, -1e300]]);
        assert!(valid(x) && valid(y), "{x:?} {y:?}");
    }
}
