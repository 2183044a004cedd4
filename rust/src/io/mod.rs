//! Bytes in, voxels out: NIfTI headers and voxels (`nifti`), 2D images decoded and resized
//! to a stream's size (`image2d`, with `jpeg` and `resize`), and the buffers they fill
//! (`buffer`: reused allocations and positioned reads). Nothing here knows about crops,
//! normalisation or augmentation.
pub mod buffer;
pub mod image2d;
pub mod jpeg;
pub mod nifti;
pub mod resize;
