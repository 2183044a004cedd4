//! Connected-component labelling of binary volumes (face connectivity: 4 in 2D, 6 in 3D),
//! by union–find over one C-order pass: each foreground voxel is joined with its already
//! visited face neighbours (the previous voxel along every axis). A component's label is its
//! largest C-order voxel index + 1 — the same values qgfast's torch labelling (used on GPU)
//! converges to, so both backends give identical labels.
use crate::errors::Error;

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]]; // path halving
        i = parent[i];
    }
    i
}

/// Labels of the foreground (nonzero) voxels of `mask` laid out in C order with `shape`.
pub fn label(mask: &[u8], shape: &[usize]) -> Result<(Vec<i64>, usize), Error> {
    let total: usize = shape.iter().product();
    if total != mask.len() {
        return Err(Error::InvalidArgument(format!(
            "label: shape {shape:?} holds {total} voxels but the mask has {}",
            mask.len()
        )));
    }
    let mut strides = vec![1usize; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * shape[a + 1];
    }
    let mut parent: Vec<usize> = (0..total).collect();
    for i in 0..total {
        if mask[i] == 0 {
            continue;
        }
        for (a, &stride) in strides.iter().enumerate() {
            // the neighbour one step back along axis a, if this voxel is not at its start
            if (i / stride) % shape[a] > 0 && mask[i - stride] != 0 {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, i - stride));
                if ri != rj {
                    parent[ri.max(rj)] = ri.min(rj);
                }
            }
        }
    }
    // the last (largest) index visited per root is the component's largest index
    let mut root_max = vec![0usize; total];
    let mut count = 0usize;
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m != 0) {
        let r = find(&mut parent, i);
        if r == i {
            count += 1;
        }
        root_max[r] = i;
    }
    let mut labels = vec![0i64; total];
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m != 0) {
        let r = find(&mut parent, i);
        labels[i] = root_max[r] as i64 + 1;
    }
    Ok((labels, count))
}

/// What `select` keeps of a sample's components.
pub enum Selection {
    /// Only the largest component (ties: the largest label).
    Largest,
    /// All but the `⌊u·count⌋`-th present label in ascending order (`u` per sample), when
    /// there are at least two components; else everything.
    DropOne(Vec<f64>),
}

/// `components.keep_largest_component` / `drop_random_component` of uint8 masks [B, *S]
/// (`shape`), as 0/1: the labels of `label` (a component's largest voxel index + 1),
/// counted per union–find root rather than per label value.
pub fn select(masks: &[u8], shape: &[usize], selection: &Selection) -> Result<Vec<u8>, Error> {
    let b = *shape.first().unwrap_or(&0);
    let spatial = &shape[1.min(shape.len())..];
    let voxels: usize = spatial.iter().product();
    if !(2..=4).contains(&shape.len()) || b * voxels != masks.len() {
        return Err(Error::InvalidArgument(format!(
            "select components: {} values do not make masks [B, *S] (1 to 3 spatial axes) of \
             shape {shape:?}",
            masks.len()
        )));
    }
    if let Selection::DropOne(u) = selection {
        if u.len() != b {
            return Err(Error::InvalidArgument(format!(
                "select components: {} uniforms for {b} samples",
                u.len()
            )));
        }
    }
    let mut out = vec![0u8; masks.len()];
    let mut parent = Vec::new();
    let (mut size, mut last) = (vec![0usize; voxels], vec![0usize; voxels]);
    for (s, (sample, kept)) in masks
        .chunks_exact(voxels.max(1))
        .zip(out.chunks_exact_mut(voxels.max(1)))
        .enumerate()
    {
        union_faces(sample, spatial, &mut parent);
        // per root: the component's size and largest voxel index (its label − 1)
        let mut roots = Vec::new();
        for i in (0..voxels).filter(|&i| sample[i] != 0) {
            let r = find(&mut parent, i);
            if r == i {
                roots.push(r);
                size[r] = 0;
            }
            size[r] += 1;
            last[r] = i;
        }
        let chosen = match selection {
            Selection::Largest => {
                // the largest size, ties to the largest label
                roots.iter().copied().max_by_key(|&r| (size[r], last[r]))
            }
            Selection::DropOne(u) if roots.len() >= 2 => {
                roots.sort_unstable_by_key(|&r| last[r]); // ascending labels
                let pick = ((u[s] * roots.len() as f64) as usize).min(roots.len() - 1);
                Some(roots[pick])
            }
            Selection::DropOne(_) => None, // fewer than two: nothing dropped
        };
        let keep_chosen = matches!(selection, Selection::Largest);
        for i in (0..voxels).filter(|&i| sample[i] != 0) {
            let is_chosen = Some(find(&mut parent, i)) == chosen;
            kept[i] = u8::from(is_chosen == keep_chosen);
        }
    }
    Ok(out)
}

/// Union–find over the foreground's face neighbours of one C-order volume: `parent` ends
/// as a forest whose roots are each component's smallest voxel index (background voxels
/// are their own roots).
fn union_faces(mask: &[u8], shape: &[usize], parent: &mut Vec<usize>) {
    parent.clear();
    parent.extend(0..mask.len());
    let mut dims = [1usize; 3];
    dims[3 - shape.len().min(3)..].copy_from_slice(&shape[shape.len().saturating_sub(3)..]);
    let [nz, ny, nx] = dims;
    let join = |parent: &mut Vec<usize>, i: usize, j: usize| {
        let (ri, rj) = (find(parent, i), find(parent, j));
        if ri != rj {
            parent[ri.max(rj)] = ri.min(rj);
        }
    };
    for z in 0..nz {
        for y in 0..ny {
            let row = (z * ny + y) * nx;
            for x in 0..nx {
                let i = row + x;
                if mask[i] == 0 {
                    continue;
                }
                if x > 0 && mask[i - 1] != 0 {
                    join(parent, i, i - 1);
                }
                if y > 0 && mask[i - nx] != 0 {
                    join(parent, i, i - nx);
                }
                if z > 0 && mask[i - nx * ny] != 0 {
                    join(parent, i, i - nx * ny);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_squares_and_a_diagonal_neighbour_are_three_components() {
        #[rustfmt::skip]
        let mask = [
            1, 1, 0, 0,
            1, 1, 0, 0,
            0, 0, 1, 0,
            0, 0, 0, 1,
        ];
        let (labels, n) = label(&mask, &[4, 4]).unwrap();
        assert_eq!(n, 3);
        assert_eq!(&labels[..2], &[6, 6]); // largest index of the square is 5
        assert_eq!(labels[4], 6);
        assert_eq!(labels[10], 11);
        assert_eq!(labels[15], 16);
        assert_eq!(labels[2], 0);
    }

    #[test]
    fn a_u_shape_merges_into_one() {
        #[rustfmt::skip]
        let mask = [
            1, 0, 1,
            1, 0, 1,
            1, 1, 1,
        ];
        let (labels, n) = label(&mask, &[3, 3]).unwrap();
        assert_eq!(n, 1);
        assert!(labels
            .iter()
            .zip(mask.iter())
            .all(|(&l, &m)| (l == 9) == (m == 1)));
    }

    #[test]
    fn three_d_faces_only() {
        // two voxels touching by an edge only are separate
        let mut mask = vec![0u8; 8];
        mask[0] = 1; // (0,0,0)
        mask[3] = 1; // (0,1,1)
        let (_, n) = label(&mask, &[2, 2, 2]).unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        assert!(label(&[1, 0, 1], &[2, 2]).is_err());
    }

    #[test]
    fn select_keeps_the_largest_or_drops_the_picked_one() {
        // one 1x7 sample: components {0,1} (label 2), {3} (label 4), {5,6} (label 7)
        let mask = [1, 1, 0, 1, 0, 1, 1];
        let largest = select(&mask, &[1, 1, 7], &Selection::Largest).unwrap();
        assert_eq!(largest, vec![0, 0, 0, 0, 0, 1, 1]); // a tie of two: the larger label
        let drop = select(&mask, &[1, 1, 7], &Selection::DropOne(vec![0.5])).unwrap();
        assert_eq!(drop, vec![1, 1, 0, 0, 0, 1, 1]); // ascending labels 2, 4, 7: the middle
        let single = select(&[0, 1, 1], &[1, 3], &Selection::DropOne(vec![0.9])).unwrap();
        assert_eq!(single, vec![0, 1, 1]);
    }
}
