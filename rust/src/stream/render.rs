//! One sample rendered from its volume and its draws: cropped (zero outside the volume),
//! flipped and quarter-turned, optionally rotated, then intensity- and colour-augmented.
use super::config::Config;
use super::plan::SampleSpec;
use super::rng::Rng;
use crate::augment::colour::{colour, Source};
use crate::augment::rotate;
use crate::io::buffer::grown;
use crate::volume::{Decoded, Region};

/// The region of the volume `render` reads for `spec` (origin, shape): the patch, or with a
/// rotation its window.
pub fn reads(cfg: &Config, spec: &SampleSpec) -> ([i64; 3], [usize; 3]) {
    if spec.angle != 0.0 {
        let win = rotate::Window::new(spec.origin, cfg.patch, cfg.rotation_plane, spec.angle);
        (win.origin, win.shape)
    } else {
        (spec.origin, cfg.patch)
    }
}

/// Source coordinate (in the un-augmented crop) of output voxel `o`: out = rot90(flip(crop)).
fn source(o: [usize; 3], p: [usize; 3], spec: &SampleSpec, plane: (usize, usize)) -> [usize; 3] {
    let (a, b) = plane;
    let mut q = o;
    let n = p[a]; // rot90 only when the plane is square
    match spec.rot90 {
        1 => (q[a], q[b]) = (o[b], n - 1 - o[a]),
        2 => (q[a], q[b]) = (n - 1 - o[a], n - 1 - o[b]),
        3 => (q[a], q[b]) = (n - 1 - o[b], o[a]),
        _ => {}
    }
    for d in 0..3 {
        if spec.flip[d] {
            q[d] = p[d] - 1 - q[d];
        }
    }
    q
}

/// out = rot90(flip(crop)). `source` is affine in the output coordinate, so the crop index
/// is too: a base and one signed stride per output axis, no per-voxel remapping.
fn permute<T: Copy>(
    crop: &[T],
    out: &mut [T],
    p: [usize; 3],
    spec: &SampleSpec,
    plane: (usize, usize),
) {
    let linear = |q: [usize; 3]| ((q[0] * p[1] + q[1]) * p[2] + q[2]) as isize;
    let base = linear(source([0, 0, 0], p, spec, plane));
    let mut strides = [0isize; 3];
    for (e, stride) in strides.iter_mut().enumerate() {
        if p[e] > 1 {
            let mut unit = [0; 3];
            unit[e] = 1;
            *stride = linear(source(unit, p, spec, plane)) - base;
        }
    }
    if p[2] == 1 {
        // 2D: a tight loop over y instead of a one-iteration z loop per pixel
        for (x, row) in out.chunks_exact_mut(p[1]).enumerate() {
            let start = base + x as isize * strides[0];
            match strides[1] {
                // whole rows, forwards or mirrored (flips): copies the compiler vectorises
                1 => row.copy_from_slice(&crop[start as usize..][..p[1]]),
                -1 => {
                    let src = &crop[start as usize + 1 - p[1]..=start as usize];
                    row.iter_mut()
                        .zip(src.iter().rev())
                        .for_each(|(o, &v)| *o = v);
                }
                step => {
                    for (y, o) in row.iter_mut().enumerate() {
                        *o = crop[(start + y as isize * step) as usize];
                    }
                }
            }
        }
        return;
    }
    let mut idx = 0;
    for x in 0..p[0] as isize {
        for y in 0..p[1] as isize {
            let row = base + x * strides[0] + y * strides[1];
            for z in 0..p[2] as isize {
                out[idx] = crop[(row + z * strides[2]) as usize];
                idx += 1;
            }
        }
    }
}

/// Crop (zero outside the volume), flip/rotate, then intensity-augment one sample.
pub fn render(
    cfg: &Config,
    vol: &Decoded,
    spec: &SampleSpec,
    image: &mut [f32],
    label: Option<&mut [u8]>,
) {
    let p = cfg.patch;
    let n = p[0] * p[1] * p[2];
    let channels = vol.channels.len();
    let plane = cfg.rot90.unwrap_or((0, 1));
    let plain = spec.rot90 == 0 && spec.flip == [false; 3];
    // a stored buffer that is the crop already is copied or rearranged as it is; otherwise
    // crop straight into `out`, flips read mirrored by the crop itself, or, with a quarter
    // turn, into a scratch crop that `permute` then rearranges
    fn place<T: Copy + Default>(
        out: &mut [T],
        spec: &SampleSpec,
        whole: Option<&[T]>,
        crop: impl FnOnce(&mut [T], [bool; 3]),
        rearrange: impl FnOnce(&[T], &mut [T]),
    ) {
        let plain = spec.rot90 == 0 && spec.flip == [false; 3];
        match whole {
            Some(src) if plain => out.copy_from_slice(src),
            Some(src) => rearrange(src, out),
            None if spec.rot90 == 0 => crop(out, spec.flip),
            None => {
                let mut scratch = vec![T::default(); out.len()];
                crop(&mut scratch, [false; 3]);
                rearrange(&scratch, out);
            }
        }
    }
    let region = |flip| Region {
        origin: spec.origin,
        patch: p,
        flip,
    };
    if spec.angle != 0.0 {
        rotated(cfg, vol, spec, (plane, plain), image, label);
    } else {
        // the stored planes when they are the crop already (2D images: the whole image)
        let wholes: Option<Vec<&[f32]>> = (0..channels)
            .map(|c| vol.whole_image(c, spec.origin, p))
            .collect();
        if let Some(out) = label {
            place(
                out,
                spec,
                vol.whole_label(spec.origin, p),
                |buf, flip| vol.crop_label(region(flip), buf),
                |crop, out| permute(crop, out, p, spec, plane),
            );
        }
        let volume_intensity =
            spec.scale != 1.0 || spec.shift != 0.0 || spec.gamma != 1.0 || spec.noise != 0.0;
        let flips_only = p[2] == 1 && spec.rot90 == 0 && !volume_intensity;
        if let Some(planes) = wholes.as_ref().filter(|_| flips_only) {
            // 2D, whole stored image, flips only: colour read from the stored planes and
            // written once, flipped, into the batch (no separate copy pass)
            let source = Source::Planes(planes, [p[0], p[1]], [spec.flip[0], spec.flip[1]]);
            return colour(&spec.jitter(), &cfg.post_norm, source, image);
        }
        for c in 0..channels {
            place(
                &mut image[c * n..(c + 1) * n],
                spec,
                wholes.as_ref().map(|w| w[c]),
                |buf, flip| vol.crop_image(c, region(flip), buf),
                |crop, out| permute(crop, out, p, spec, plane),
            );
        }
    }
    for c in 0..channels {
        let ch = &mut image[c * n..(c + 1) * n];
        if spec.scale != 1.0 || spec.shift != 0.0 {
            for v in ch.iter_mut() {
                *v = *v * spec.scale + spec.shift;
            }
        }
        if spec.gamma != 1.0 {
            // nnU-Net's gamma: on the patch's own [min, max] range, which it keeps
            let (mn, mx) = ch
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let span = mx - mn + 1e-7;
            for v in ch.iter_mut() {
                *v = ((*v - mn) / span).powf(spec.gamma) * span + mn;
            }
        }
        if spec.noise > 0.0 {
            Rng::keyed(&[spec.noise_seed, c as u64]).add_normal(ch, spec.noise);
        }
    }
    colour(
        &spec.jitter(),
        &cfg.post_norm,
        Source::InPlace(channels),
        &mut image[..channels * n],
    );
}

/// The sample's geometry with an in-plane rotation: each channel (and the label) cropped to
/// the rotation's window (zero outside the volume), rotated into a patch (`rotate`), then
/// flipped/rot90'd like an unrotated crop (`plain`: no flip, no rot90): out =
/// rot90(flip(rotate(volume))). Flips and quarter turns within the rotation plane are
/// folded into the rotation's reads (`Window::oriented`, the same values); only a flip
/// along the third axis, or a quarter turn in another plane, takes a rearranging pass.
fn rotated(
    cfg: &Config,
    vol: &Decoded,
    spec: &SampleSpec,
    (plane, plain): ((usize, usize), bool),
    image: &mut [f32],
    label: Option<&mut [u8]>,
) {
    let p = cfg.patch;
    let n = p[0] * p[1] * p[2];
    let (ra, rb) = cfg.rotation_plane;
    let in_plane = !spec.flip[3 - ra - rb] && (spec.rot90 == 0 || plane == (ra, rb));
    let win = rotate::Window::new(spec.origin, p, (ra, rb), spec.angle);
    // (no flip and no quarter turn orient to the identity)
    let (win, plain) = if in_plane {
        let flips = [spec.flip[ra], spec.flip[rb]];
        (win.oriented(spec.rot90, flips), true)
    } else {
        (win, plain)
    };
    rotate::SCRATCH.with(|scratch| {
        let s = &mut *scratch.borrow_mut();
        let len = win.len();
        // every element of these buffers is written before it is read: the crops write
        // whole windows, the rotation every patch voxel
        let windows = grown(&mut s.windows, image.len() / n * len);
        for (c, window) in windows.chunks_exact_mut(len).enumerate() {
            vol.crop_image(c, Region::at(win.origin, win.shape), window);
        }
        let labels = label.as_ref().map(|_| {
            let window = grown(&mut s.labels, len);
            vol.crop_label(Region::at(win.origin, win.shape), window);
            &*window
        });
        if plain {
            win.rotate(windows, image, labels.zip(label), &mut s.row);
            return;
        }
        let turned = grown(&mut s.turned, image.len());
        let turned_labels = grown(&mut s.turned_labels, n);
        let rotated_labels = labels.map(|l| (l, &mut *turned_labels));
        win.rotate(windows, turned, rotated_labels, &mut s.row);
        for (src, out) in turned.chunks_exact(n).zip(image.chunks_exact_mut(n)) {
            permute(src, out, p, spec, plane);
        }
        if let Some(out) = label {
            permute(turned_labels, out, p, spec, plane);
        }
    });
}
