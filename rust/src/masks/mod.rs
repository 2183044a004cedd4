//! The native fast paths of the corruption engine (`qgfast.corrupt`): connected components,
//! shape approximations (convex hull, star polygon), the counter-based RNG, the nearest
//! remap of geometric corruptions and the banded Gaussian filter. Each mirrors a Python
//! reference (bit for bit, the filter to float rounding); none depends on the loader.
pub mod approx;
pub mod blobs;
pub mod components;
pub mod counter_rng;
pub mod counts;
pub mod elastic;
pub mod fill;
pub mod gaussian;
pub mod morph;
pub mod normals;
pub mod remap;
