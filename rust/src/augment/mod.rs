//! Per-sample augmentation kernels the stream applies after a crop: rotation by any angle
//! sampled from the volume (`rotate`) and 2D colour jitter with the per-sample
//! normalisation (`colour`). They know nothing of files or epochs: parameters in, voxels
//! out.
pub mod colour;
pub mod rotate;
