//! The volume stream: an epoch of SSL batches built by worker threads.
//!
//! Determinism: which case and which random draws a batch slot gets depend only on
//! (seed, epoch, stream, slot index) — a counter-based RNG, never on thread timing — and
//! batches are handed out in index order, so a seed reproduces an epoch exactly whatever
//! the thread count. Sharding: the epoch's case permutation is shared by every shard and
//! shard k keeps positions k, k + n, ...; no case appears on two shards in an epoch.
//! Prefetch is bounded: a worker waits while `prefetch` batches are ready and unconsumed.
//! Dropping the epoch stops and joins its threads.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::buffer::{Recycler, Spares};
use crate::errors::{catch_panic, Error};
use crate::image2d;
use crate::rotate;
use crate::volume::{decode, Decoded, Norm, Region};

#[derive(Debug, Clone)]
pub struct Case {
    pub images: Vec<PathBuf>,
    pub label: Option<PathBuf>,
}

/// (low, high, probability) of one intensity augmentation.
pub type Range = (f32, f32, f32);

#[derive(Debug, Clone)]
pub struct Config {
    pub patch: [usize; 3],
    pub labeled_batch: usize,
    pub unlabeled_batch: usize,
    pub samples_per_volume: usize,
    pub foreground_prob: f64,
    pub cache_bytes: usize,
    pub flip: [bool; 3],
    pub rot90: Option<(usize, usize)>,
    /// rotation by an angle in degrees drawn from the range (with its probability), in
    /// `rotation_plane`, sampled from the volume (`rotate`)
    pub rotation: Option<Range>,
    pub rotation_plane: (usize, usize),
    pub scale: Option<Range>,
    pub shift: Option<Range>,
    pub gamma: Option<Range>,
    pub noise: Option<(f32, f32)>,
    /// 2D colour jitter in [0, 1] pixel space (torchvision order: brightness, contrast,
    /// per-channel gain), each clamped to [0, 1]
    pub brightness: Option<Range>,
    pub contrast: Option<Range>,
    pub gain: Option<Range>,
    pub norm: Norm,
    /// per-sample normalisation after augmentation (2D: ImageNet or per-image)
    pub post_norm: PostNorm,
    pub seed: u64,
    pub shard: usize,
    pub shards: usize,
    pub threads: usize,
    pub prefetch: usize,
    pub skip_errors: bool,
    pub max_bytes: usize,
    /// which decoder reads JPEG images (`jpeg`)
    pub jpeg: crate::jpeg::Choice,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PostNorm {
    None,
    MeanStd(Vec<f32>, Vec<f32>),
    PerImage,
}

/// SplitMix64: tiny, fast, and good enough for crops and augmentation draws.
pub struct Rng(u64);

impl Rng {
    pub fn keyed(parts: &[u64]) -> Rng {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for &p in parts {
            state = Rng(state ^ p.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64();
        }
        Rng(state)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// uniform in [0, 1)
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
    /// With probability `prob` a uniform draw in [lo, hi], else `identity`.
    pub fn maybe(&mut self, range: Option<Range>, identity: f32) -> f32 {
        match range {
            Some((lo, hi, prob)) if self.uniform() < prob as f64 => {
                lo + (hi - lo) * self.uniform() as f32
            }
            _ => identity,
        }
    }
    /// Add `std` · N(0, 1) to every value: Marsaglia's polar method with both normals of a
    /// pair used (one ln and one sqrt per two values, no trigonometry; Box–Muller with one
    /// cos and one ln per value took 30 % of a cached 3D stream's time).
    pub fn add_normal(&mut self, values: &mut [f32], std: f32) {
        let mut pairs = values.chunks_exact_mut(2);
        for pair in &mut pairs {
            let (a, b) = self.normal_pair();
            pair[0] += std * a;
            pair[1] += std * b;
        }
        if let [last] = pairs.into_remainder() {
            *last += std * self.normal_pair().0;
        }
    }

    /// Two independent standard normals (in f64, rounded to f32).
    fn normal_pair(&mut self) -> (f32, f32) {
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let m = (-2.0 * s.ln() / s).sqrt();
                return ((u * m) as f32, (v * m) as f32);
            }
        }
    }
}

/// A permutation of 0..n from a keyed RNG (Fisher–Yates).
fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.below(i + 1));
    }
    p
}

/// What one batch slot does, drawn before any voxel is touched (and returned to Python).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleSpec {
    pub case: usize,
    pub origin: [i64; 3],
    pub flip: [bool; 3],
    pub rot90: u8,
    pub scale: f32,
    pub shift: f32,
    pub gamma: f32,
    pub noise: f32,
    pub noise_seed: u64,
    pub brightness: f32,
    pub contrast: f32,
    pub gain: [f32; 3],
    /// in-plane rotation in degrees (0: none)
    pub angle: f32,
}

/// Decoded volumes under a byte budget, least recently used evicted first.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<CacheInner>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// samples cropped from a block read for them (volumes opened by their statistics)
    pub block_reads: AtomicU64,
    pub bad: Mutex<Vec<(usize, String)>>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<usize, Arc<Decoded>>,
    order: VecDeque<usize>,
    bytes: usize,
}

impl Cache {
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|c| c.bytes).unwrap_or(0)
    }

    fn get(&self, case: usize) -> Option<Arc<Decoded>> {
        let mut c = self.inner.lock().ok()?;
        let hit = c.map.get(&case).cloned()?;
        c.order.retain(|&k| k != case);
        c.order.push_back(case);
        Some(hit)
    }

    fn put(&self, case: usize, vol: Arc<Decoded>, budget: usize) {
        let size = vol.bytes();
        if size > budget {
            return; // larger than the whole budget: used once, never cached
        }
        let Ok(mut c) = self.inner.lock() else { return };
        if c.map.contains_key(&case) {
            return;
        }
        while c.bytes + size > budget {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(v) = c.map.remove(&old) {
                c.bytes -= v.bytes();
            }
        }
        c.bytes += size;
        c.map.insert(case, vol);
        c.order.push_back(case);
    }
}

/// A stream's recycled batch buffers, shared with the arrays handed to Python (which give
/// theirs back when dropped); they outlive epochs.
pub struct Buffers {
    pub images: Recycler<f32>,
    pub labels: Recycler<u8>,
    /// finished 3D volumes' voxel and compressed-file buffers, for the next decodes
    pub volumes: Spares,
}

impl Buffers {
    pub fn new(cfg: &Config) -> Buffers {
        // a labelled and an unlabelled part per batch; batches ready, being built, and the
        // one the caller holds
        let keep = 2 * (cfg.prefetch.max(1) + cfg.threads.max(1) + 1);
        Buffers {
            images: Recycler::new(keep),
            labels: Recycler::new(keep),
            // a case's files (several modalities, a label) and the compressed bytes being
            // inflated, per thread
            volumes: Spares::new(8 * cfg.threads.max(1)),
        }
    }
}

pub struct Batch {
    pub labeled: Option<Part>,
    pub unlabeled: Option<Part>,
}

pub struct Part {
    pub image: Vec<f32>,
    pub label: Option<Vec<u8>>,
    pub channels: usize,
    pub specs: Vec<SampleSpec>,
}

/// The plan of one epoch on one shard: the case of every slot of every batch.
pub struct Plan {
    pub labeled: Vec<usize>,
    pub unlabeled: Vec<usize>,
    pub n_batches: usize,
}

pub fn plan(
    cfg: &Config,
    labeled: &[usize],
    unlabeled: &[usize],
    epoch: u64,
) -> Result<Plan, Error> {
    let items = |cases: &[usize], stream: u64| -> Vec<usize> {
        let perm = permutation(cases.len(), &mut Rng::keyed(&[cfg.seed, epoch, stream, 0]));
        perm.iter()
            .enumerate()
            .filter(|(pos, _)| pos % cfg.shards == cfg.shard)
            .flat_map(|(_, &i)| std::iter::repeat_n(cases[i], cfg.samples_per_volume))
            .collect()
    };
    let l = items(labeled, 1);
    let u = items(unlabeled, 2);
    let (primary, size, what) = if cfg.labeled_batch > 0 {
        (&l, cfg.labeled_batch, "labelled")
    } else {
        (&u, cfg.unlabeled_batch, "unlabelled")
    };
    let n_batches = primary.len() / size.max(1);
    if n_batches == 0 {
        return Err(Error::InvalidArgument(format!(
            "shard {} of {} has {} {what} samples this epoch, fewer than one batch of {size}",
            cfg.shard,
            cfg.shards,
            primary.len()
        )));
    }
    if cfg.unlabeled_batch > 0 && u.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "shard {} of {} has no unlabelled case",
            cfg.shard, cfg.shards
        )));
    }
    Ok(Plan {
        labeled: l,
        unlabeled: u,
        n_batches,
    })
}

fn draw(cfg: &Config, vol: &Decoded, case: usize, rng: &mut Rng) -> SampleSpec {
    let p = cfg.patch;
    let s = vol.shape;
    let use_fg = !vol.foreground.is_empty() && rng.uniform() < cfg.foreground_prob;
    let centre = if use_fg {
        let at = vol.foreground[rng.below(vol.foreground.len())] as usize;
        Some([at / (s[1] * s[2]), (at / s[2]) % s[1], at % s[2]])
    } else {
        None
    };
    let mut origin = [0i64; 3];
    for d in 0..3 {
        let lo = (s[d] as i64 - p[d] as i64).min(0);
        let hi = (s[d] as i64 - p[d] as i64).max(0);
        origin[d] = match centre {
            Some(c) => (c[d] as i64 - p[d] as i64 / 2).clamp(lo, hi),
            None => lo + rng.below((hi - lo + 1) as usize) as i64,
        };
    }
    let mut flip = [false; 3];
    for (f, &allowed) in flip.iter_mut().zip(&cfg.flip) {
        *f = allowed && rng.uniform() < 0.5;
    }
    let rot90 = match cfg.rot90 {
        Some((a, b)) if p[a] == p[b] => rng.below(4) as u8,
        _ => 0,
    };
    let scale = rng.maybe(cfg.scale, 1.0);
    let shift = rng.maybe(cfg.shift, 0.0);
    let gamma = rng.maybe(cfg.gamma, 1.0);
    let noise = match cfg.noise {
        Some((std, prob)) if rng.uniform() < prob as f64 => std,
        _ => 0.0,
    };
    let noise_seed = rng.next_u64();
    let brightness = rng.maybe(cfg.brightness, 1.0);
    let contrast = rng.maybe(cfg.contrast, 1.0);
    let gain = [
        rng.maybe(cfg.gain, 1.0),
        rng.maybe(cfg.gain, 1.0),
        rng.maybe(cfg.gain, 1.0),
    ];
    // drawn last, so streams without rotation keep their draws
    let angle = rng.maybe(cfg.rotation, 0.0);
    SampleSpec {
        case,
        origin,
        flip,
        rot90,
        scale,
        shift,
        gamma,
        noise,
        noise_seed,
        brightness,
        contrast,
        gain,
        angle,
    }
}

/// The region of the volume `render` reads for `spec` (origin, shape): the patch, or with a
/// rotation its window.
fn reads(cfg: &Config, spec: &SampleSpec) -> ([i64; 3], [usize; 3]) {
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
fn render(
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
            return colour(cfg, spec, source, image);
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
        cfg,
        spec,
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
    use crate::buffer::grown;
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

/// Where `colour` reads: the output itself, or stored 2D planes [H, W] written into the
/// output mirrored per (vertical, horizontal) flag.
enum Source<'a> {
    InPlace(usize),
    Planes(&'a [&'a [f32]], [usize; 2], [bool; 2]),
}

/// torchvision ColorJitter order: brightness, contrast (blend with the mean grey level),
/// then per-channel gain, clamping to [0, 1] after each; then the per-sample normalisation.
/// Fused: one read pass for the grey level (when contrast changes), one per channel for
/// per-image statistics (when asked), and one write pass.
fn colour(cfg: &Config, spec: &SampleSpec, source: Source, out: &mut [f32]) {
    // The same loops compiled for AVX2 + FMA when the CPU has them (8-wide instead of the
    // baseline's 4), chosen at run time.
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(cfg: &Config, spec: &SampleSpec, source: Source, out: &mut [f32]) {
            colour_impl(cfg, spec, source, out)
        }
        // SAFETY: the CPU was just checked for AVX2 and FMA.
        return unsafe { avx2(cfg, spec, source, out) };
    }
    colour_impl(cfg, spec, source, out)
}

/// Σ f over the planes' values in f64: eight f32 lanes (one vector) within blocks of 1024
/// values, the blocks added in f64 (error ~1e-6 of the mean, like a pairwise sum).
#[inline(always)]
fn block_sum<const K: usize>(planes: [&[f32]; K], f: impl Fn([f32; K]) -> f32) -> f64 {
    let n = planes[0].len();
    let mut total = 0f64;
    for start in (0..n).step_by(1024) {
        let block = planes.map(|p| &p[start..(start + 1024).min(n)]);
        let vectors = block.map(|p| p.as_chunks::<8>().0);
        let mut lanes = [0f32; 8];
        for i in 0..vectors[0].len() {
            let v: [&[f32; 8]; K] = vectors.map(|p| &p[i]);
            for (l, lane) in lanes.iter_mut().enumerate() {
                *lane += f(v.map(|p| p[l]));
            }
        }
        let tail: f64 = (vectors[0].len() * 8..block[0].len())
            .map(|i| f(block.map(|p| p[i])) as f64)
            .sum();
        total += lanes.iter().map(|&v| v as f64).sum::<f64>() + tail;
    }
    total
}

/// One value through brightness `b`, contrast `k` (towards `grey`) and `gain`, each clamped
/// to [0, 1]. Branch-free (an identity step computes its input exactly: v·1, 1·v + 0·grey,
/// and values already in [0, 1]), so the loops vectorise.
#[inline(always)]
fn jitter(v: f32, [b, k, grey, gain]: [f32; 4]) -> f32 {
    let v = (v * b).clamp(0.0, 1.0);
    let v = (k * v + (1.0 - k) * grey).clamp(0.0, 1.0);
    (v * gain).clamp(0.0, 1.0)
}

/// The mean grey level (0 when contrast is off) and per channel (mean, 1 / std) of the
/// normalisation, from the planes' values as read.
#[inline(always)]
fn colour_stats(
    cfg: &Config,
    spec: &SampleSpec,
    planes: &[&[f32]],
    gains: &[f32],
) -> (f32, Vec<(f32, f32)>) {
    let (b, k, n) = (spec.brightness, spec.contrast, planes[0].len());
    let bright = |v: f32| jitter(v, [b, 1.0, 0.0, 1.0]);
    let grey = if k == 1.0 {
        0.0
    } else if planes.len() == 3 {
        let grey =
            |[r, g, bl]: [f32; 3]| 0.299 * bright(r) + 0.587 * bright(g) + 0.114 * bright(bl);
        (block_sum([planes[0], planes[1], planes[2]], grey) / n as f64) as f32
    } else {
        let sum: f64 = planes
            .iter()
            .map(|p| block_sum([*p], |[v]| bright(v)))
            .sum();
        (sum / (planes.len() * n) as f64) as f32
    };
    let norm = (0..planes.len())
        .map(|ch| match &cfg.post_norm {
            PostNorm::None => (0.0, 1.0),
            // (v - mean) · (1 / std): a multiply instead of a divide per value, within an ulp
            PostNorm::MeanStd(mean, std) => (mean[ch % mean.len()], 1.0 / std[ch % std.len()]),
            PostNorm::PerImage => {
                let j = [b, k, grey, gains[ch]];
                let mean = (block_sum([planes[ch]], |[v]| jitter(v, j)) / n as f64) as f32;
                let sq = |[v]: [f32; 1]| (jitter(v, j) - mean).powi(2);
                let var = block_sum([planes[ch]], sq) / n as f64;
                (mean, 1.0 / var.sqrt().max(1e-6) as f32)
            }
        })
        .collect();
    (grey, norm)
}

/// `out[i] = f(src[len - 1 - i])`, eight values a step (a fixed reversal the compiler turns
/// into one shuffle; an element-wise reversed loop stays scalar).
#[inline(always)]
fn map_mirrored(out: &mut [f32], src: &[f32], f: impl Fn(f32) -> f32) {
    let mut outs = out.chunks_exact_mut(8);
    let mut srcs = src.rchunks_exact(8);
    for (o, s) in (&mut outs).zip(&mut srcs) {
        for (i, o) in o.iter_mut().enumerate() {
            *o = f(s[7 - i]);
        }
    }
    for (o, &v) in outs
        .into_remainder()
        .iter_mut()
        .zip(srcs.remainder().iter().rev())
    {
        *o = f(v);
    }
}

#[inline(always)]
fn colour_impl(cfg: &Config, spec: &SampleSpec, source: Source, out: &mut [f32]) {
    let (b, k) = (spec.brightness, spec.contrast);
    let c = match source {
        Source::InPlace(c) => c,
        Source::Planes(planes, ..) => planes.len(),
    };
    let n = out.len() / c;
    let gains: Vec<f32> = (0..c)
        .map(|ch| spec.gain.get(ch).copied().unwrap_or(1.0))
        .collect();
    match source {
        Source::InPlace(_) => {
            let identity = b == 1.0 && k == 1.0 && gains.iter().all(|&g| g == 1.0);
            if identity && cfg.post_norm == PostNorm::None {
                return; // nothing to do: spare the write pass
            }
            let planes: Vec<&[f32]> = out.chunks_exact(n).collect();
            let (grey, norm) = colour_stats(cfg, spec, &planes, &gains);
            for (ch, plane) in out.chunks_exact_mut(n).enumerate() {
                let (j, (mean, inv_std)) = ([b, k, grey, gains[ch]], norm[ch]);
                // plain loops, not `for_each`: a generic method would not inline into the
                // AVX2 copy
                for v in plane.iter_mut() {
                    *v = (jitter(*v, j) - mean) * inv_std;
                }
            }
        }
        Source::Planes(planes, [h, w], [vflip, hflip]) => {
            let (grey, norm) = colour_stats(cfg, spec, planes, &gains);
            for (ch, plane) in out.chunks_exact_mut(n).enumerate() {
                let (j, (mean, inv_std)) = ([b, k, grey, gains[ch]], norm[ch]);
                let f = |v: f32| (jitter(v, j) - mean) * inv_std;
                for (y, row) in plane.chunks_exact_mut(w).take(h).enumerate() {
                    let from = if vflip { h - 1 - y } else { y };
                    let src = &planes[ch][from * w..][..w];
                    if hflip {
                        map_mirrored(row, src, f);
                    } else {
                        for (o, &v) in row.iter_mut().zip(src) {
                            *o = f(v);
                        }
                    }
                }
            }
        }
    }
}

/// Shared state of one epoch.
pub struct Epoch {
    pub cfg: Config,
    pub cases: Arc<Vec<Case>>,
    pub cache: Arc<Cache>,
    pub buffers: Arc<Buffers>,
    pub plan: Plan,
    pub epoch: u64,
    next: AtomicUsize,
    stop: AtomicBool,
    ready: Mutex<Ready>,
    changed: Condvar,
}

#[derive(Default)]
struct Ready {
    batches: BTreeMap<usize, Result<Batch, Error>>,
    consumed: usize,
}

impl Epoch {
    fn volume(&self, case: usize) -> Result<Arc<Decoded>, Error> {
        if let Some(v) = self.cache.get(case) {
            self.cache.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        self.cache.misses.fetch_add(1, Ordering::Relaxed);
        let c = &self.cases[case];
        let first = c
            .images
            .first()
            .ok_or_else(|| Error::InvalidArgument(format!("case {case} has no image")))?;
        let vol = if image2d::is_2d(first) {
            let p = self.cfg.patch;
            Arc::new(image2d::decode(
                first,
                c.label.as_ref(),
                [p[0], p[1]],
                self.cfg.jpeg,
            )?)
        } else {
            Arc::new(decode(
                &c.images,
                c.label.as_ref(),
                self.cfg.norm,
                self.cfg.max_bytes,
                Some(&self.buffers.volumes),
            )?)
        };
        self.cache.put(case, vol.clone(), self.cfg.cache_bytes);
        Ok(vol)
    }

    /// The volume for a slot; with skip_errors, a failing case is recorded once and the
    /// slot moves on deterministically to the next case of its stream's list.
    fn volume_for(&self, items: &[usize], slot: usize) -> Result<(usize, Arc<Decoded>), Error> {
        let mut tries = 0;
        loop {
            let case = items[(slot + tries * self.cfg.samples_per_volume) % items.len()];
            match self.volume(case) {
                Ok(v) => return Ok((case, v)),
                Err(e) if self.cfg.skip_errors && tries < items.len() => {
                    if let Ok(mut bad) = self.cache.bad.lock() {
                        if !bad.iter().any(|(c, _)| *c == case) {
                            bad.push((case, e.to_string()));
                        }
                    }
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A volume this thread holds the last reference to (not cached) gives its buffers
    /// to the stream's spares.
    fn recycle(&self, vol: Arc<Decoded>) {
        if let Ok(vol) = Arc::try_unwrap(vol) {
            vol.recycle(&self.buffers.volumes);
        }
    }

    fn part(
        &self,
        items: &[usize],
        size: usize,
        batch: usize,
        stream: u64,
        labels: bool,
    ) -> Result<Part, Error> {
        let n = self.cfg.patch.iter().product::<usize>();
        let mut specs: Vec<SampleSpec> = Vec::with_capacity(size);
        // One decoded volume alive at a time: each sample is rendered as soon as its volume
        // is decoded (holding a whole batch of decodes cost a batch of page faults per batch,
        // and for 3D a batch of volumes of memory).
        let mut current: Option<(usize, Arc<Decoded>)> = None;
        let mut image: Vec<f32> = Vec::new();
        let mut label: Option<Vec<u8>> = None;
        let mut channels = 0;
        for j in 0..size {
            let slot = batch * size + j;
            // consecutive slots of one case (samples_per_volume) share a decode even when
            // the cache is off or too small to hold the volume
            let first_choice = items[slot % items.len()];
            let (case, vol) = match current.take() {
                Some((case, v)) if case == first_choice => (case, v),
                previous => {
                    // done with the previous volume before the next is decoded: its
                    // buffers can take the new voxels, and two are never held at once
                    if let Some((_, v)) = previous {
                        self.recycle(v);
                    }
                    self.volume_for(items, slot)?
                }
            };
            if j == 0 {
                channels = vol.channels.len();
                // every element is written below, so recycled contents never show
                image = self.buffers.images.take(size * channels * n);
                label = labels.then(|| self.buffers.labels.take(size * n));
            } else if vol.channels.len() != channels {
                return Err(Error::InvalidArgument(format!(
                    "cases in one batch have {channels} and {} image channels",
                    vol.channels.len()
                )));
            }
            if labels && vol.label.is_none() {
                return Err(Error::InvalidArgument(format!("case {case} has no label")));
            }
            let mut rng = Rng::keyed(&[self.cfg.seed, self.epoch, stream, 1 + slot as u64]);
            let spec = draw(&self.cfg, &vol, case, &mut rng);
            let lab = label.as_mut().map(|l| &mut l[j * n..(j + 1) * n]);
            let out = &mut image[j * channels * n..(j + 1) * channels * n];
            // a volume opened by its statistics: read just the block the sample covers,
            // and render from it with the origin moved into it
            match vol.read_block(|| reads(&self.cfg, &spec), &self.buffers.volumes)? {
                Some((block, at)) => {
                    self.cache.block_reads.fetch_add(1, Ordering::Relaxed);
                    let mut local = spec.clone();
                    for (o, a) in local.origin.iter_mut().zip(at) {
                        *o -= a;
                    }
                    render(&self.cfg, &block, &local, out, lab);
                    block.recycle(&self.buffers.volumes);
                }
                None => render(&self.cfg, &vol, &spec, out, lab),
            }
            specs.push(spec);
            current = Some((case, vol));
        }
        if let Some((_, v)) = current {
            self.recycle(v);
        }
        Ok(Part {
            image,
            label,
            channels,
            specs,
        })
    }

    fn build(&self, b: usize) -> Result<Batch, Error> {
        let cfg = &self.cfg;
        let labeled = (cfg.labeled_batch > 0)
            .then(|| self.part(&self.plan.labeled, cfg.labeled_batch, b, 1, true))
            .transpose()?;
        let unlabeled = (cfg.unlabeled_batch > 0)
            .then(|| self.part(&self.plan.unlabeled, cfg.unlabeled_batch, b, 2, false))
            .transpose()?;
        Ok(Batch { labeled, unlabeled })
    }

    fn work(&self) {
        loop {
            let b = self.next.fetch_add(1, Ordering::SeqCst);
            if b >= self.plan.n_batches {
                return;
            }
            {
                let Ok(mut ready) = self.ready.lock() else {
                    return;
                };
                while b >= ready.consumed + self.cfg.prefetch.max(1)
                    && !self.stop.load(Ordering::SeqCst)
                {
                    ready = match self.changed.wait(ready) {
                        Ok(r) => r,
                        Err(_) => return,
                    };
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let result = catch_panic(|| self.build(b));
            let failed = result.is_err();
            if let Ok(mut ready) = self.ready.lock() {
                ready.batches.insert(b, result);
            }
            self.changed.notify_all();
            if failed {
                return;
            }
        }
    }

    /// The next batch in order; None at the end of the epoch.
    pub fn next_batch(&self) -> Result<Option<Batch>, Error> {
        let mut ready = self
            .ready
            .lock()
            .map_err(|_| Error::Panic("stream state poisoned".into()))?;
        if ready.consumed >= self.plan.n_batches {
            return Ok(None);
        }
        loop {
            let want = ready.consumed;
            if let Some(result) = ready.batches.remove(&want) {
                ready.consumed += 1;
                if result.is_err() {
                    // an error ends the epoch: later batches may never be built
                    ready.consumed = self.plan.n_batches;
                    self.stop.store(true, Ordering::SeqCst);
                }
                drop(ready);
                self.changed.notify_all();
                return result.map(Some);
            }
            ready = self
                .changed
                .wait(ready)
                .map_err(|_| Error::Panic("stream state poisoned".into()))?;
        }
    }
}

/// An epoch with its worker threads; dropping it stops and joins them.
pub struct Running {
    pub epoch: Arc<Epoch>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn start(
        cfg: Config,
        cases: Arc<Vec<Case>>,
        cache: Arc<Cache>,
        buffers: Arc<Buffers>,
        labeled: &[usize],
        unlabeled: &[usize],
        epoch: u64,
    ) -> Result<Running, Error> {
        let plan = plan(&cfg, labeled, unlabeled, epoch)?;
        let threads = cfg.threads.max(1);
        let state = Arc::new(Epoch {
            cfg,
            cases,
            cache,
            buffers,
            plan,
            epoch,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            ready: Mutex::new(Ready::default()),
            changed: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let s = state.clone();
            let handle = std::thread::Builder::new()
                .name(format!("qgfast-stream-{i}"))
                .spawn(move || s.work())
                .map_err(|e| {
                    Error::InvalidArgument(format!("cannot start a stream thread: {e}"))
                })?;
            handles.push(handle);
        }
        Ok(Running {
            epoch: state,
            threads: handles,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.epoch.stop.store(true, Ordering::SeqCst);
        self.epoch.changed.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn added_noise_is_standard_normal_and_seeded() {
        // odd length: the last value takes half a pair
        let n = 400_001;
        let mut values = vec![1.0f32; n];
        Rng::keyed(&[7, 1]).add_normal(&mut values, 0.5);
        let z: Vec<f64> = values.iter().map(|&v| (v as f64 - 1.0) / 0.5).collect();
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let within = |k: f64| z.iter().filter(|x| x.abs() < k).count() as f64 / n as f64;
        // 5 standard errors: mean ±0.008, var ±0.011, the 1σ/2σ/3σ fractions ±0.004
        assert!(mean.abs() < 0.008, "mean {mean}");
        assert!((var - 1.0).abs() < 0.011, "var {var}");
        for (k, p) in [(1.0, 0.682_689), (2.0, 0.954_500), (3.0, 0.997_300)] {
            assert!(
                (within(k) - p).abs() < 0.004,
                "P(|z| < {k}) = {}",
                within(k)
            );
        }
        // both values of a pair are used and are not the same draw
        assert!(z[..1000].windows(2).all(|w| w[0] != w[1]));
        let mut again = vec![1.0f32; n];
        Rng::keyed(&[7, 1]).add_normal(&mut again, 0.5);
        assert_eq!(values, again);
    }
}
