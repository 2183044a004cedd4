//! Shape approximations of 2D binary masks, sample by sample: convex hull and the star
//! polygon, each filled by the even-odd rule with its boundary included.
//!
//! The exact transcription of the PyTorch reference (`qgfast/corrupt/approx.py`): the
//! hull's chain runs in integer arithmetic, and every floating-point step of the star and
//! the fill is an IEEE-rounded +, −, ×, ÷ or sqrt done in the reference's order (Rust does
//! not contract them into fused multiply-adds), so the outputs are equal bit for bit (tests
//! on both sides).

/// Tolerance of the fill's span ends (the reference's `eps`).
const EPS: f64 = 1e-9;

/// A polygon's vertices as (row, column).
type Polygon = Vec<[f64; 2]>;

/// Convex hull vertices (counter-clockwise) of the pixel centres of `fg` [h, w] (non-zero =
/// foreground; at least one pixel): each row's two extreme pixels, Andrew's monotone chain.
pub fn hull(fg: &[u8], h: usize, w: usize) -> Polygon {
    let mut pts: Vec<[i64; 2]> = Vec::new();
    for (r, row) in fg.chunks_exact(w).take(h).enumerate() {
        let Some(left) = row.iter().position(|&v| v != 0) else {
            continue;
        };
        let right = row.iter().rposition(|&v| v != 0).unwrap_or(left);
        pts.push([r as i64, left as i64]);
        if right != left {
            pts.push([r as i64, right as i64]);
        }
    }
    let as_f64 = |p: &[i64; 2]| [p[0] as f64, p[1] as f64];
    if pts.len() <= 2 {
        return pts.iter().map(as_f64).collect();
    }
    let lower = chain(pts.iter());
    let upper = chain(pts.iter().rev());
    let (lower, upper) = (&lower[..lower.len() - 1], &upper[..upper.len() - 1]);
    lower.iter().chain(upper).map(as_f64).collect()
}

/// One monotone chain: only left turns kept.
fn chain<'a>(points: impl Iterator<Item = &'a [i64; 2]>) -> Vec<[i64; 2]> {
    let mut out: Vec<[i64; 2]> = Vec::new();
    for &p in points {
        while out.len() >= 2 {
            let ([oy, ox], [ay, ax]) = (out[out.len() - 2], out[out.len() - 1]);
            if (ay - oy) * (p[1] - ox) - (ax - ox) * (p[0] - oy) > 0 {
                break;
            }
            out.pop();
        }
        out.push(p);
    }
    out
}

/// The star polygon of `fg` (at least one pixel): per ray (cos, sin) of `rays`, the
/// farthest foreground pixel centre (the first in row-major order among equals) whose
/// offset d from the centroid has d·ray ≥ |d|·`cos_half`; rays with none are dropped.
pub fn star(fg: &[u8], h: usize, w: usize, rays: &[[f64; 2]], cos_half: f64) -> Polygon {
    let (mut n, mut sum) = (0i64, [0i64; 2]);
    for (r, row) in fg[..h * w].chunks_exact(w).enumerate() {
        let (mut count, mut first) = (0i64, 0i64);
        for (c, &v) in row.iter().enumerate() {
            let f = i64::from(v != 0);
            count += f;
            first += f * c as i64;
        }
        n += count;
        sum[0] += count * r as i64;
        sum[1] += first;
    }
    let centre = [sum[0] as f64 / n as f64, sum[1] as f64 / n as f64];
    // per ray: the radius and pixel of the farthest so far (radius −∞: none yet)
    let mut best_radius = vec![f64::NEG_INFINITY; rays.len()];
    let mut best_pixel = vec![[0usize; 2]; rays.len()];
    for (r, row) in fg[..h * w].chunks_exact(w).enumerate() {
        let d0 = r as f64 - centre[0];
        for (c, _) in row.iter().enumerate().filter(|(_, &v)| v != 0) {
            let d = [d0, c as f64 - centre[1]];
            let radius = (d[0] * d[0] + d[1] * d[1]).sqrt();
            let bound = radius * cos_half;
            for ((ray, best), pixel) in rays.iter().zip(&mut best_radius).zip(&mut best_pixel) {
                let dot = d[0] * ray[0] + d[1] * ray[1];
                // selects, not a branch: which ray a pixel improves is unpredictable
                let take = (dot >= bound) & (radius > *best);
                *best = if take { radius } else { *best };
                *pixel = if take { [r, c] } else { *pixel };
            }
        }
    }
    let corners: Polygon = best_radius
        .iter()
        .zip(&best_pixel)
        .filter(|(r, _)| r.is_finite())
        .map(|(_, p)| [p[0] as f64, p[1] as f64])
        .collect();
    if corners.is_empty() {
        vec![centre]
    } else {
        corners
    }
}

/// Pixel centres of [h, w] inside `poly` by the even-odd rule, scanline by scanline, with
/// the boundary included (vertices, horizontal edges, pixels within `EPS` of a span's
/// ends), written as 0/1 into `out` (h·w, cleared first).
pub fn fill(poly: &[[f64; 2]], h: usize, w: usize, out: &mut [u8]) {
    out.fill(0);
    if poly.is_empty() || w == 0 {
        return;
    }
    let edges = || (0..poly.len()).map(|i| (poly[i], poly[(i + 1) % poly.len()]));
    let mut xs: Vec<f64> = Vec::with_capacity(poly.len());
    for (r, row) in out.chunks_exact_mut(w).take(h).enumerate() {
        let y = r as f64;
        xs.clear();
        for ([y0, x0], [y1, x1]) in edges() {
            // half-open: each crossing of row y counted once
            if (y0 > y) != (y1 > y) {
                let dy = if y1 == y0 { 1.0 } else { y1 - y0 };
                xs.push(x0 + (x1 - x0) * (y - y0) / dy);
            }
        }
        xs.sort_by(f64::total_cmp);
        for pair in xs.chunks_exact(2) {
            span(row, pair[0] - EPS, pair[1] + EPS);
        }
    }
    for ([ya, xa], [yb, xb]) in edges() {
        if ya == yb && 0.0 <= ya && ya < h as f64 {
            // horizontal edges lie on the boundary (the reference's int() truncates)
            let r = ya as usize;
            span(
                &mut out[r * w..(r + 1) * w],
                xa.min(xb) - EPS,
                xa.max(xb) + EPS,
            );
        }
    }
    for &[r, c] in poly {
        let inside = 0.0 <= r && r < h as f64 && 0.0 <= c && c < w as f64;
        if inside && r.fract() == 0.0 && c.fract() == 0.0 {
            out[r as usize * w + c as usize] = 1;
        }
    }
}

/// Set the columns x of `row` with lo ≤ x ≤ hi.
fn span(row: &mut [u8], lo: f64, hi: f64) {
    let first = lo.ceil().max(0.0);
    let last = hi.floor().min(row.len() as f64 - 1.0);
    if first <= last {
        row[first as usize..=last as usize].fill(1);
    }
}

/// Which vertices `batch` fills each sample with.
pub enum Shape<'a> {
    Hull,
    Star { rays: &'a [[f64; 2]], cos_half: f64 },
}

/// Every sample of `masks` [b, h, w] replaced by its filled shape (an empty sample stays
/// empty), as 0/1 in a new buffer.
pub fn batch(masks: &[u8], [b, h, w]: [usize; 3], shape: &Shape) -> Vec<u8> {
    let n = h * w;
    assert_eq!(masks.len(), b * n, "masks do not match their shape");
    let mut out = vec![0u8; b * n];
    if n == 0 {
        return out;
    }
    for (fg, out) in masks.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        if fg.iter().all(|&v| v == 0) {
            continue;
        }
        let poly = match shape {
            Shape::Hull => hull(fg, h, w),
            Shape::Star { rays, cos_half } => star(fg, h, w, rays, *cos_half),
        };
        fill(&poly, h, w, out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let w = rows[0].len();
        let v = rows
            .iter()
            .flat_map(|r| r.bytes().map(|c| u8::from(c == b'#')))
            .collect();
        (v, rows.len(), w)
    }

    fn show(v: &[u8], w: usize) -> Vec<String> {
        v.chunks(w)
            .map(|r| r.iter().map(|&x| if x != 0 { '#' } else { '.' }).collect())
            .collect()
    }

    #[test]
    fn hull_fills_the_convex_closure() {
        let (m, h, w) = mask(&["......", ".#..#.", "......", "...#..", "......"]);
        let out = batch(&m, [1, h, w], &Shape::Hull);
        assert_eq!(
            show(&out, w),
            ["......", ".####.", "..##..", "...#..", "......"]
        );
    }

    #[test]
    fn degenerate_hulls_keep_their_points_and_segments() {
        for rows in [
            &["....", ".#..", "...."][..],
            &["....", ".##.", "...."][..],
            &["....", ".#.#", "...."][..],
            &[".#..", ".#..", ".#.."][..],
        ] {
            let (m, h, w) = mask(rows);
            let out = batch(&m, [1, h, w], &Shape::Hull);
            // a point, a row segment, a column: the hull is the closure of the points
            let expect: Vec<String> = rows
                .iter()
                .map(|r| {
                    let (a, b) = (r.find('#'), r.rfind('#'));
                    (0..r.len())
                        .map(|i| match (a, b) {
                            (Some(a), Some(b)) if a <= i && i <= b => '#',
                            _ => '.',
                        })
                        .collect()
                })
                .collect();
            assert_eq!(show(&out, w), expect, "{rows:?}");
        }
    }

    #[test]
    fn fill_includes_the_boundary_and_clips_to_the_image() {
        let mut out = vec![9u8; 5 * 4];
        // a square partly outside the image: rows 1..=3, columns 2..=5 (4 columns exist)
        let square = [[1.0, 2.0], [1.0, 5.0], [3.0, 5.0], [3.0, 2.0]];
        fill(&square, 5, 4, &mut out);
        assert_eq!(show(&out, 4), ["....", "..##", "..##", "..##", "...."]);
        fill(&[], 5, 4, &mut out);
        assert!(out.iter().all(|&v| v == 0));
        // span ends within EPS of a pixel centre include it (a right edge at 3 − 4e-16)
        let almost = 2.9999999999999996;
        fill(
            &[[0.0, 0.0], [0.0, almost], [2.0, almost], [2.0, 0.0]],
            5,
            4,
            &mut out,
        );
        assert_eq!(show(&out, 4), ["####", "####", "####", "....", "...."]);
        // a lone non-integral vertex (a star with no corner): nothing
        fill(&[[1.5, 2.25]], 5, 4, &mut out);
        assert!(out.iter().all(|&v| v == 0));
    }

    #[test]
    fn star_picks_the_farthest_pixel_per_ray() {
        let (m, h, w) = mask(&[".....", "..#..", ".###.", "..#..", "....."]);
        let rays: Vec<[f64; 2]> = (0..4)
            .map(|k| {
                let t = -std::f64::consts::PI + std::f64::consts::FRAC_PI_2 * k as f64;
                [t.cos(), t.sin()]
            })
            .collect();
        let cos_half = std::f64::consts::FRAC_PI_4.cos();
        let poly = star(&m, h, w, &rays, cos_half);
        // rays: up (−row), left (−col), down, right: the plus's four tips
        assert_eq!(poly, vec![[1.0, 2.0], [2.0, 1.0], [3.0, 2.0], [2.0, 3.0]]);
        let out = batch(
            &m,
            [1, h, w],
            &Shape::Star {
                rays: &rays,
                cos_half,
            },
        );
        assert_eq!(show(&out, w), [".....", "..#..", ".###.", "..#..", "....."]);
    }

    #[test]
    fn empty_and_zero_sized_samples() {
        assert_eq!(batch(&[0; 12], [2, 2, 3], &Shape::Hull), vec![0; 12]);
        assert!(batch(&[], [3, 0, 5], &Shape::Hull).is_empty());
    }
}
