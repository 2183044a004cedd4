//! Per-class overlap counts of two uint8 label maps, the statistics of the hard Dice
//! (`qgfast.losses._stats._count_labels`): I = |p = c ∧ t = c|, P = |p = c|, G = |t = c|,
//! one fused pass per class instead of NumPy's three. Integers: equal to the reference.
use crate::errors::Error;

/// Counts [3 (I, P, G)][pred sample][class] of `pred` [B, N] against `target` [B / repeats,
/// N], each target sample scoring `repeats` consecutive predictions.
pub fn label_counts(
    pred: &[u8],
    target: &[u8],
    voxels: usize,
    repeats: usize,
    classes: &[u8],
) -> Result<Vec<i64>, Error> {
    if voxels == 0
        || repeats == 0
        || !pred.len().is_multiple_of(voxels)
        || target.len() * repeats != pred.len()
    {
        return Err(Error::InvalidArgument(format!(
            "label_counts: {} predicted and {} target values do not make [B, {voxels}] and \
             [B / {repeats}, {voxels}]",
            pred.len(),
            target.len()
        )));
    }
    let b = pred.len() / voxels;
    let c = classes.len();
    let mut out = vec![0i64; 3 * b * c];
    for (i, p) in pred.chunks_exact(voxels).enumerate() {
        let t = &target[(i / repeats) * voxels..(i / repeats + 1) * voxels];
        for (j, &class) in classes.iter().enumerate() {
            let (inter, predicted, truth) = count(p, t, class);
            out[i * c + j] = inter;
            out[b * c + i * c + j] = predicted;
            out[2 * b * c + i * c + j] = truth;
        }
    }
    Ok(out)
}

/// (|p = c ∧ t = c|, |p = c|, |t = c|) in blocks of u8 lanes that cannot overflow.
fn count(p: &[u8], t: &[u8], class: u8) -> (i64, i64, i64) {
    #[inline(always)]
    fn body(p: &[u8], t: &[u8], class: u8) -> (i64, i64, i64) {
        let (mut inter, mut predicted, mut truth) = (0i64, 0i64, 0i64);
        for (pb, tb) in p.chunks(255 * 32).zip(t.chunks(255 * 32)) {
            let (mut i, mut q, mut g) = ([0u8; 32], [0u8; 32], [0u8; 32]);
            let mut lanes = pb.chunks_exact(32).zip(tb.chunks_exact(32));
            for (pc, tc) in &mut lanes {
                for l in 0..32 {
                    let (a, b) = (u8::from(pc[l] == class), u8::from(tc[l] == class));
                    q[l] += a;
                    g[l] += b;
                    i[l] += a & b;
                }
            }
            let sum = |v: [u8; 32]| v.iter().map(|&x| i64::from(x)).sum::<i64>();
            inter += sum(i);
            predicted += sum(q);
            truth += sum(g);
            let done = pb.len() / 32 * 32;
            for (&a, &b) in pb[done..].iter().zip(&tb[done..]) {
                let (a, b) = (a == class, b == class);
                predicted += i64::from(a);
                truth += i64::from(b);
                inter += i64::from(a && b);
            }
        }
        (inter, predicted, truth)
    }
    avx2_or_plain!(
        body,
        (p: &[u8], t: &[u8], class: u8) -> (i64, i64, i64),
        (p, t, class)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_a_direct_count_with_repeats() {
        let n = 10_007; // not a multiple of the lanes
        let target: Vec<u8> = (0..2 * n).map(|v| ((v * 7) % 3) as u8).collect();
        let pred: Vec<u8> = (0..6 * n).map(|v| ((v * 5 + v / 3) % 3) as u8).collect();
        let out = label_counts(&pred, &target, n, 3, &[0, 1, 2]).unwrap();
        let (b, c) = (6, 3);
        for i in 0..b {
            let p = &pred[i * n..(i + 1) * n];
            let t = &target[(i / 3) * n..(i / 3 + 1) * n];
            for class in 0..3u8 {
                let j = class as usize;
                let inter = p
                    .iter()
                    .zip(t)
                    .filter(|(&a, &b)| a == class && b == class)
                    .count();
                assert_eq!(out[i * c + j], inter as i64);
                assert_eq!(
                    out[b * c + i * c + j],
                    p.iter().filter(|&&a| a == class).count() as i64
                );
                assert_eq!(
                    out[2 * b * c + i * c + j],
                    t.iter().filter(|&&a| a == class).count() as i64
                );
            }
        }
        assert!(label_counts(&pred, &target, n, 2, &[1]).is_err());
    }
}
