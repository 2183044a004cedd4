//! The native CPU fast paths of the corruption engine (`qgfast.corrupt`): connected
//! components, shape approximations and fills, blobs, cube morphology, the counter-based
//! RNG (uniforms, Bernoulli draws, normals), nearest remaps, the banded Gaussian filter and
//! smoothing, the one-call elastic deformation, and label overlap counts. Each mirrors a
//! Python reference bit for bit, except the filter and the normals (and what uses them),
//! which agree to float32 rounding; none depends on the loader.
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
