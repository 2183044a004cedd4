//! The native fast paths of the corruption engine (`qgfast.corrupt`): connected components,
//! shape approximations (convex hull, star polygon), the counter-based RNG and the nearest
//! remap of geometric corruptions. Each mirrors a Python reference bit for bit; none
//! depends on the loader.
pub mod approx;
pub mod components;
pub mod counter_rng;
pub mod remap;
