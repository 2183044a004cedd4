//! In-plane rotation of a sample by any angle, sampled from the volume itself (nnU-Net's
//! way, not a rotated crop: the patch's corners show the volume around it, not zeros).
//!
//! The rotated patch's output voxel o has, in the rotation plane (a, b), the offsets
//! (u, v) = (o_a − (p_a − 1)/2, o_b − (p_b − 1)/2) from the patch centre; it reads the
//! volume at origin + (p − 1)/2 + R(θ)(u, v), R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]
//! (the third axis unchanged): bilinear for images, nearest for labels (a tie goes to the
//! larger index), zero outside the volume (scipy's `affine_transform` with mode
//! "grid-constant": tests). To reuse the crop machinery (padding, normalisation, any
//! layout), the volume is first cropped to a window that holds every position read plus a
//! one-voxel margin, and the rotation samples that window, row by row of the plane.

/// Where a rotated patch reads: the window to crop and the sampling geometry inside it.
pub struct Window {
    /// window origin in the volume and its shape
    pub origin: [i64; 3],
    pub shape: [usize; 3],
    patch: [usize; 3],
    plane: (usize, usize),
    /// the patch's half extents along a and b, and its centre in window coordinates
    half: [f64; 2],
    centre: [f64; 2],
    cos: f64,
    sin: f64,
    /// the output's orientation in the plane: output offsets (x, y) from the patch centre
    /// read the rotation at (u, v) = turn · (x, y), a signed permutation (identity unless
    /// `oriented`)
    turn: [[f64; 2]; 2],
    /// element strides along (a, b, third axis) of the patch and of the window
    patch_strides: [usize; 3],
    strides: [usize; 3],
}

impl Window {
    /// The window for a patch `p` at `origin` rotated by `degrees` in `plane`.
    pub fn new(origin: [i64; 3], p: [usize; 3], plane: (usize, usize), degrees: f32) -> Window {
        let (a, b) = plane;
        let (sin, cos) = (degrees as f64).to_radians().sin_cos();
        let half = [(p[a] as f64 - 1.0) / 2.0, (p[b] as f64 - 1.0) / 2.0];
        // the farthest a read strays from the centre along each axis, beyond the patch's
        // own half-extent; + 1 for the bilinear neighbour and float slack
        let reach = [
            cos.abs() * half[0] + sin.abs() * half[1],
            sin.abs() * half[0] + cos.abs() * half[1],
        ];
        let margin = |axis: usize| ((reach[axis] - half[axis]).max(0.0).ceil() as usize) + 1;
        let (ma, mb) = (margin(0), margin(1));
        let mut shape = p;
        let mut win_origin = origin;
        shape[a] += 2 * ma;
        shape[b] += 2 * mb;
        win_origin[a] -= ma as i64;
        win_origin[b] -= mb as i64;
        let t = 3 - a - b;
        let strides = |s: [usize; 3]| {
            let c = [s[1] * s[2], s[2], 1];
            [c[a], c[b], c[t]]
        };
        Window {
            origin: win_origin,
            shape,
            patch: p,
            plane,
            half,
            centre: [ma as f64 + half[0], mb as f64 + half[1]],
            cos,
            sin,
            turn: [[1.0, 0.0], [0.0, 1.0]],
            patch_strides: strides(p),
            strides: strides(shape),
        }
    }

    /// The same window writing its patch mirrored along the plane's axes and quarter-turned
    /// `rot90` times, out = rot90(flip(rotated)), as `stream::permute` rearranges a crop
    /// (rot90 needs a square plane). Each output voxel reads what the rearranged one would:
    /// its offsets are exactly ± the other's, so the sums are the same bit for bit.
    pub fn oriented(mut self, rot90: u8, flip: [bool; 2]) -> Window {
        let (x, y) = ([1.0, 0.0], [0.0, 1.0]);
        let neg = |[p, q]: [f64; 2]| [-p, -q];
        // rows of `turn`: what u and v are made of; `permute`'s source(): a quarter turn
        // reads (q_a, q_b) = (o_b, n − 1 − o_a), i.e. (u, v) = (y, −x)
        let mut turn = match rot90 % 4 {
            1 => [y, neg(x)],
            2 => [neg(x), neg(y)],
            3 => [neg(y), x],
            _ => [x, y],
        };
        if rot90 % 2 == 1 {
            assert_eq!(self.half[0], self.half[1], "rot90 needs a square plane");
        }
        for (row, &f) in turn.iter_mut().zip(&flip) {
            if f {
                *row = neg(*row);
            }
        }
        self.turn = turn;
        self
    }

    /// Voxels in the largest window any angle needs for patch `p` in `plane` (a bound).
    pub fn max_window(p: [usize; 3], (a, b): (usize, usize)) -> u128 {
        let side = (p[a] + p[b] + 4) as u128;
        side * side * p[3 - a - b] as u128
    }

    /// Whether every read (bilinear cell and nearest voxel) lies inside the window
    /// unclamped: checked at the patch's corners, where an affine map reaches its extremes.
    #[cfg(test)]
    fn reads_inside(&self) -> bool {
        let (a, b) = self.plane;
        let last = [self.shape[a] as f64 - 1.0, self.shape[b] as f64 - 1.0];
        [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]
            .iter()
            .all(|&(su, sv)| {
                let (sa, sb) = self.source(su * self.half[0], sv * self.half[1]);
                sa.floor() >= 0.0
                    && sb.floor() >= 0.0
                    && sa.floor() + 1.0 <= last[0]
                    && sb.floor() + 1.0 <= last[1]
                    && (sa + 0.5).floor() <= last[0]
                    && (sb + 0.5).floor() <= last[1]
            })
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Window position (along a, b) read by plane offset (u, v) from the patch centre
    /// (`row_taps` computes the same with the row's fixed terms hoisted).
    #[cfg(test)]
    fn source(&self, u: f64, v: f64) -> (f64, f64) {
        (
            self.centre[0] + self.cos * u - self.sin * v,
            self.centre[1] + self.sin * u + self.cos * v,
        )
    }

    /// Rotate: `windows` holds the C channels' cropped windows back to back, `out` the C
    /// rotated patches (C order over the patch, bilinear); `label` = (cropped window,
    /// rotated patch), nearest. Row by row of the plane (a major): each row's reads are
    /// worked out once, kept in `row` (scratch), and used for every channel and the label.
    /// (Tiling the plane for locality measured no faster.)
    pub fn rotate(
        &self,
        windows: &[f32],
        out: &mut [f32],
        mut label: Option<(&[u8], &mut [u8])>,
        row: &mut Row,
    ) {
        let n = self.patch.iter().product::<usize>();
        let len = self.len();
        assert!(n > 0 && out.len().is_multiple_of(n), "rotated patch size");
        assert_eq!(windows.len() / len, out.len() / n, "one window per channel");
        assert!(windows.len().is_multiple_of(len), "rotation window size");
        // window indices are u32 (`Row`); `max_window` bounds the size at configuration
        assert!(len <= u32::MAX as usize, "rotation window too large");
        if let Some((win, lab)) = &label {
            assert_eq!((win.len(), lab.len()), (len, n), "label rotation sizes");
        }
        for i in 0..self.patch[self.plane.0] {
            self.row_taps(i, row);
            self.apply(i, windows, out, label.as_mut(), row);
        }
    }

    /// Plane row i of every channel and the label, from `row`'s reads.
    #[inline(always)]
    fn apply(
        &self,
        i: usize,
        windows: &[f32],
        out: &mut [f32],
        label: Option<&mut (&[u8], &mut [u8])>,
        row: &Row,
    ) {
        let (os, ws) = (self.patch_strides, self.strides);
        let (m, depth) = (
            self.patch[self.plane.1],
            self.patch[3 - self.plane.0 - self.plane.1],
        );
        let (n, len) = (self.patch.iter().product::<usize>(), self.len());
        let corners = [0, ws[1], ws[0], ws[0] + ws[1]];
        // every read inside the window, checked once (the loads below then skip their own
        // checks)
        let last_step = (depth - 1) * ws[2];
        let reach = corners[3] + last_step;
        assert!(row.linear.iter().all(|&c| (c as usize) + reach < len));
        assert!(row.nearest.iter().all(|&c| (c as usize) + last_step < len));
        // 2D rows: the plane is (0, 1) of a [H, W, 1] patch, so an output row is contiguous
        let flat = depth == 1 && os[1] == 1;
        if flat {
            // channel by channel, the whole output row from the row's reads
            let start = i * os[0];
            for (win, out) in windows.chunks_exact(len).zip(out.chunks_exact_mut(n)) {
                plane_row(win, &mut out[start..start + m], row, corners);
            }
        } else {
            for (win, out) in windows.chunks_exact(len).zip(out.chunks_exact_mut(n)) {
                for j in 0..m {
                    let (cell, w) = (row.linear[j] as usize, row.weights(j));
                    let dst = i * os[0] + j * os[1];
                    for k in 0..depth {
                        let s = cell + k * ws[2];
                        // SAFETY: s + corners[c] <= cell + reach < len = win.len() (above).
                        let v = unsafe {
                            w[0] * *win.get_unchecked(s)
                                + w[1] * *win.get_unchecked(s + corners[1])
                                + w[2] * *win.get_unchecked(s + corners[2])
                                + w[3] * *win.get_unchecked(s + corners[3])
                        };
                        out[dst + k * os[2]] = v;
                    }
                }
            }
        }
        if let Some((win, lab)) = label {
            if flat {
                let start = i * os[0];
                let out = &mut lab[start..start + m];
                for (o, &c) in out.iter_mut().zip(&row.nearest[..m]) {
                    // SAFETY: c + last_step < len = win.len() for every nearest read (above)
                    *o = unsafe { *win.get_unchecked(c as usize) };
                }
            } else {
                for j in 0..m {
                    let dst = i * os[0] + j * os[1];
                    for k in 0..depth {
                        lab[dst + k * os[2]] = win[row.nearest[j] as usize + k * ws[2]];
                    }
                }
            }
        }
    }

    /// The reads of plane row `i` into `row`, one per position j along b.
    fn row_taps(&self, i: usize, row: &mut Row) {
        // compiled for AVX2 where the CPU has it: the loop below then runs four positions
        // a step and `floor` is one instruction (the baseline x86-64 target has no
        // rounding instruction: a libm call per value)
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn avx2(w: &Window, i: usize, row: &mut Row) {
                w.row_taps_impl(i, row)
            }
            // SAFETY: the CPU was just checked for AVX2.
            return unsafe { avx2(self, i, row) };
        }
        self.row_taps_impl(i, row)
    }

    #[inline(always)]
    fn row_taps_impl(&self, i: usize, row: &mut Row) {
        let (a, b) = self.plane;
        let ws = self.strides;
        // the margin keeps every read inside the window (floor ≥ 0 and floor + 1 ≤ last
        // along a and b, with a voxel of slack for rounding: `reads_inside`, tests); the
        // clamps below only make an index out of range impossible, and keep every value
        // converted to an integer in range (comparisons, not `max`/`min`: those would add
        // NaN handling; positions are finite, the angle is checked finite)
        let last = [self.shape[a] as f64 - 1.0, self.shape[b] as f64 - 1.0];
        let clamp = |x: f64, hi: f64| {
            let x = if x > 0.0 { x } else { 0.0 };
            if x < hi {
                x
            } else {
                hi
            }
        };
        // window indices fit u32 (`rotate` asserts the window size; `max_window` bounds it
        // at configuration).
        // SAFETY (both conversions): x and y are clamped to [0, last] above, finite, and below
        // 2^31 (each plane side is at least 3, margins included, so none reaches 2^32 / 3).
        // Unchecked, a conversion is one instruction a vector (a checked `as` adds
        // saturation logic, and one to u32 the emulation AVX2 needs for unsigned).
        let index = |x: f64, y: f64| unsafe {
            (x.to_int_unchecked::<i32>() as u32) * ws[0] as u32
                + (y.to_int_unchecked::<i32>() as u32) * ws[1] as u32
        };
        let m = self.patch[b];
        row.linear.resize(m, 0);
        row.nearest.resize(m, 0);
        row.weights.iter_mut().for_each(|w| w.resize(m, 0.0));
        let x = i as f64 - self.half[0];
        let [tu, tv] = self.turn;
        let (linear, nearest) = (&mut row.linear[..m], &mut row.nearest[..m]);
        let [w0, w1, w2, w3] = row.weights.each_mut().map(|w| &mut w[..m]);
        // (u, v) = turn · (x, y): one of them is ± x, fixed along the row, the other ± y
        // (a signed permutation; ± x plus a zero is exact). The fixed one's products are
        // hoisted out of the loop: the same operations in the same order as `source`.
        let (c, (cos, sin)) = (self.centre, (self.cos, self.sin));
        let u_fixed = tu[1] == 0.0;
        let (fixed, sign) = match u_fixed {
            true => (tu[0] * x, tv[1]),
            false => (tv[0] * x, tu[1]),
        };
        // u fixed: (c0 + cos·u) − sin·v, (c1 + sin·u) + cos·v with only v = ± y varying
        let (pa, pb) = (c[0] + cos * fixed, c[1] + sin * fixed);
        // v fixed: (c0 + cos·u) − sin·v, (c1 + sin·u) + cos·v with only u = ± y varying
        let (qa, qb) = (sin * fixed, cos * fixed);
        for j in 0..m {
            // (an i32 converts to float64 in one vector instruction, a usize does not)
            let y = sign * (j as i32 as f64 - self.half[1]);
            let (sa, sb) = match u_fixed {
                true => (pa - sin * y, pb + cos * y),
                false => ((c[0] + cos * y) - qa, (c[1] + sin * y) + qb),
            };
            let (ca, cb) = (
                clamp(sa.floor(), last[0] - 1.0),
                clamp(sb.floor(), last[1] - 1.0),
            );
            let (na, nb) = (
                clamp((sa + 0.5).floor(), last[0]),
                clamp((sb + 0.5).floor(), last[1]),
            );
            let (ta, tb) = ((sa - ca) as f32, (sb - cb) as f32);
            linear[j] = index(ca, cb);
            nearest[j] = index(na, nb);
            w0[j] = (1.0 - ta) * (1.0 - tb);
            w1[j] = (1.0 - ta) * tb;
            w2[j] = ta * (1.0 - tb);
            w3[j] = ta * tb;
        }
    }
}

/// One 2D output row of one channel: out[j] = Σ_c w_c[j] · win[linear[j] + corners[c]].
/// Compiled for AVX2 where the CPU has it: eight positions a vector (the loads assembled
/// into vectors, the products and sums vectorised).
fn plane_row(win: &[f32], out: &mut [f32], row: &Row, corners: [usize; 4]) {
    #[inline(always)]
    fn body(win: &[f32], out: &mut [f32], row: &Row, corners: [usize; 4]) {
        let m = out.len();
        let (linear, [w0, w1, w2, w3]) =
            (&row.linear[..m], row.weights.each_ref().map(|w| &w[..m]));
        for j in 0..m {
            let cell = linear[j] as usize;
            // SAFETY: `apply` checked cell + corners[3] < win.len() for every read of the row
            out[j] = unsafe {
                w0[j] * *win.get_unchecked(cell)
                    + w1[j] * *win.get_unchecked(cell + corners[1])
                    + w2[j] * *win.get_unchecked(cell + corners[2])
                    + w3[j] * *win.get_unchecked(cell + corners[3])
            };
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2(win: &[f32], out: &mut [f32], row: &Row, corners: [usize; 4]) {
            body(win, out, row, corners)
        }
        // SAFETY: the CPU was just checked for AVX2.
        return unsafe { avx2(win, out, row, corners) };
    }
    body(win, out, row, corners)
}

/// One plane row's reads per position j along b: the window index of the bilinear cell's
/// first corner, of the nearest voxel, and the four corner weights.
#[derive(Default)]
pub struct Row {
    linear: Vec<u32>,
    nearest: Vec<u32>,
    /// per corner: (0, 0), (0, 1), (1, 0), (1, 1) in (a, b)
    weights: [Vec<f32>; 4],
}

impl Row {
    fn weights(&self, j: usize) -> [f32; 4] {
        self.weights.each_ref().map(|w| w[j])
    }
}

/// One thread's rotation buffers, kept from sample to sample (fresh multi-megabyte buffers
/// per sample would cost more in page faults than the rotation).
#[derive(Default)]
pub struct Scratch {
    pub row: Row,
    pub windows: Vec<f32>,
    pub labels: Vec<u8>,
    pub turned: Vec<f32>,
    pub turned_labels: Vec<u8>,
}

thread_local! {
    pub static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotated(w: &Window, win: &[f32], labels: &[u8]) -> (Vec<f32>, Vec<u8>) {
        let n = w.patch.iter().product();
        let (mut out, mut lab) = (vec![f32::NAN; n], vec![0u8; n]);
        w.rotate(win, &mut out, Some((labels, &mut lab)), &mut Row::default());
        (out, lab)
    }

    #[test]
    fn zero_degrees_reads_the_patch_itself() {
        let p = [5, 4, 3];
        for plane in [(0, 1), (0, 2), (1, 2), (2, 0)] {
            let w = Window::new([2, -1, 0], p, plane, 0.0);
            // the window is the patch plus a one-voxel margin in the plane
            let win: Vec<f32> = (0..w.len()).map(|i| i as f32).collect();
            let labels: Vec<u8> = (0..w.len()).map(|i| i as u8).collect();
            let (out, lab) = rotated(&w, &win, &labels);
            for x in 0..p[0] {
                for y in 0..p[1] {
                    for z in 0..p[2] {
                        let mut q = [x, y, z];
                        q[plane.0] += 1;
                        q[plane.1] += 1;
                        let src = (q[0] * w.shape[1] + q[1]) * w.shape[2] + q[2];
                        let dst = (x * p[1] + y) * p[2] + z;
                        assert_eq!(out[dst], src as f32);
                        assert_eq!(lab[dst], src as u8);
                    }
                }
            }
        }
    }

    #[test]
    fn every_read_lies_inside_the_window() {
        // no read needs a clamp, and a constant window stays constant
        for degrees in [
            -180.0, -91.0, -45.0, -13.3, 7.0, 30.0, 45.0, 60.0, 89.9, 90.0, 135.0,
        ] {
            for p in [[1, 1, 1], [2, 7, 1], [9, 4, 3], [16, 16, 2], [224, 157, 1]] {
                let w = Window::new([0; 3], p, (0, 1), degrees);
                assert!(w.reads_inside(), "{degrees} {p:?}");
                let (out, lab) = rotated(&w, &vec![1.0; w.len()], &vec![7; w.len()]);
                assert!(
                    out.iter().all(|&v| (v - 1.0).abs() < 1e-5),
                    "{degrees} {p:?}"
                );
                assert!(lab.iter().all(|&v| v == 7), "{degrees} {p:?}");
            }
        }
    }

    /// A direct bilinear sum per voxel (f64) of the window's patch.
    fn naive(w: &Window, win: &[f32]) -> Vec<f32> {
        let (p, (a, b)) = (w.patch, w.plane);
        let t = 3 - a - b;
        let half = [(p[a] as f64 - 1.0) / 2.0, (p[b] as f64 - 1.0) / 2.0];
        let mut out = vec![0f32; p.iter().product()];
        for x in 0..p[0] {
            for y in 0..p[1] {
                for z in 0..p[2] {
                    let o = [x, y, z];
                    let (sa, sb) = w.source(o[a] as f64 - half[0], o[b] as f64 - half[1]);
                    let (fa, fb) = (sa.floor(), sb.floor());
                    let mut acc = 0f64;
                    for (da, db) in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)] {
                        let weight = (1.0 - (sa - fa - da).abs()) * (1.0 - (sb - fb - db).abs());
                        let mut q = [0usize; 3];
                        q[a] = (fa + da) as usize;
                        q[b] = (fb + db) as usize;
                        q[t] = o[t];
                        acc += weight * win[(q[0] * w.shape[1] + q[1]) * w.shape[2] + q[2]] as f64;
                    }
                    out[(x * p[1] + y) * p[2] + z] = acc as f32;
                }
            }
        }
        out
    }

    #[test]
    fn rotation_equals_a_direct_bilinear_sum() {
        // 2D rows (the row-vector path, with a tail shorter than a vector) and 3D patches
        // in every plane (the per-line path)
        let cases = [
            ([13, 29, 1], (0, 1)),
            ([9, 7, 5], (0, 1)),
            ([6, 5, 7], (1, 2)),
        ];
        for (p, plane) in cases.into_iter().chain([([7, 4, 6], (2, 0))]) {
            for degrees in [-150.0, -33.0, 12.5, 71.0] {
                let w = Window::new([0; 3], p, plane, degrees);
                let win: Vec<f32> = (0..w.len()).map(|i| ((i * 7919) % 1009) as f32).collect();
                let mut out = vec![f32::NAN; p.iter().product()];
                w.rotate(&win, &mut out, None, &mut Row::default());
                for (got, want) in out.iter().zip(naive(&w, &win)) {
                    assert!(
                        (got - want).abs() < 1e-2,
                        "{p:?} {plane:?} {degrees}: {got} {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn oriented_equals_rotating_then_turning_and_mirroring() {
        // out[o] = rotated[q(o)], q: a quarter turn k times in the plane, (q_a, q_b) =
        // (o_b, n − 1 − o_a) each, then the mirror of each flipped plane axis; bit for bit
        for (p, plane) in [
            ([7, 7, 3], (0, 1)),
            ([6, 6, 1], (0, 1)),
            ([4, 5, 5], (1, 2)),
        ] {
            let (a, b) = plane;
            let n = p[a];
            let w = Window::new([-1, 2, 0], p, plane, 23.0);
            let win: Vec<f32> = (0..2 * w.len())
                .map(|i| ((i * 7919) % 1009) as f32)
                .collect();
            let labels: Vec<u8> = (0..w.len()).map(|i| (i * 31 % 251) as u8).collect();
            let len: usize = p.iter().product();
            let mut rotated = vec![f32::NAN; 2 * len];
            let mut rotated_labels = vec![0u8; len];
            let mut row = Row::default();
            w.rotate(
                &win,
                &mut rotated,
                Some((&labels, &mut rotated_labels)),
                &mut row,
            );
            for k in 0..4u8 {
                for flip in [[false, false], [true, false], [false, true], [true, true]] {
                    let turned = Window::new([-1, 2, 0], p, plane, 23.0).oriented(k, flip);
                    let mut out = vec![f32::NAN; 2 * len];
                    let mut out_labels = vec![0u8; len];
                    turned.rotate(&win, &mut out, Some((&labels, &mut out_labels)), &mut row);
                    for x in 0..p[0] {
                        for y in 0..p[1] {
                            for z in 0..p[2] {
                                let o = [x, y, z];
                                let mut q = o;
                                for _ in 0..k {
                                    (q[a], q[b]) = (q[b], n - 1 - q[a]);
                                }
                                for (d, f) in [(a, flip[0]), (b, flip[1])] {
                                    if f {
                                        q[d] = p[d] - 1 - q[d];
                                    }
                                }
                                let (dst, src) = (
                                    (x * p[1] + y) * p[2] + z,
                                    (q[0] * p[1] + q[1]) * p[2] + q[2],
                                );
                                for c in 0..2 {
                                    let (got, want) = (out[c * len + dst], rotated[c * len + src]);
                                    assert_eq!(got.to_bits(), want.to_bits(), "{p:?} {k} {flip:?}");
                                }
                                assert_eq!(out_labels[dst], rotated_labels[src]);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_quarter_turn_is_rot90_for_every_channel() {
        let p = [6, 6, 1];
        let w = Window::new([0; 3], p, (0, 1), 90.0);
        let len = w.len();
        // two channels back to back; the second is the first + 1000
        let win: Vec<f32> = (0..2 * len)
            .map(|i| (i % len + i / len * 1000) as f32)
            .collect();
        let mut out = vec![f32::NAN; 72];
        w.rotate(&win, &mut out, None, &mut Row::default());
        // output (i, j) reads centre + (−v, u): window (m + 5 − j, m + i), m = the margin
        let m = (w.shape[0] - 6) / 2;
        for c in 0..2 {
            for i in 0..6 {
                for j in 0..6 {
                    let src = (m + 5 - j) * w.shape[1] + m + i + c * 1000;
                    assert!((out[c * 36 + i * 6 + j] - src as f32).abs() < 1e-3);
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `cargo test --release rotate_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn rotate_speed() {
        let p = [224, 224, 1];
        let w = Window::new([0; 3], p, (0, 1), 17.0);
        let win = vec![0.5f32; 3 * w.len()];
        let labels = vec![1u8; w.len()];
        let (mut out, mut lab) = (vec![0f32; 3 * 224 * 224], vec![0u8; 224 * 224]);
        let mut row = Row::default();
        let mut best = f64::MAX;
        for _ in 0..50 {
            let t = std::time::Instant::now();
            w.rotate(&win, &mut out, Some((&labels, &mut lab)), &mut row);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("224² RGB + label: {:.3} ms", best * 1e3);
    }
}
