//! NIfTI-1 / NIfTI-2 single-file reader (`.nii` read in one positioned read, `.nii.gz` inflated by
//! libdeflate in one call, or streamed through zlib-rs when the gzip trailer does not
//! match the header), returning the voxels exactly as nibabel's `np.asanyarray(img.dataobj)` holds
//! them: the on-disk type when the header does not scale, float64 `raw * slope + inter`
//! when it does (nibabel's rule: scaling is skipped for a zero or non-finite slope, and for
//! slope 1 / intercept 0).
//!
//! Every size the header claims is checked before memory is committed: the voxel count
//! must not overflow, must fit the caller's byte cap, and an uncompressed file must hold
//! `vox_offset + nbytes` bytes. A `.nii.gz` is inflated in one go only when its gzip
//! trailer agrees with the header's size; otherwise it is streamed and the buffer grows only
//! as data really arrive, so a lying header in a small file cannot make us commit gigabytes.
//!
//! Files: `header` (types, scaling, the parser) and `read` (the voxels).
mod header;
mod read;

pub(crate) use header::with_voxel_type;
pub use header::{apply_scaling, to_native, DType, Header, Voxel};
pub use read::{is_gzip, open_plain, read, read_header, read_using, Volume};
