//! The native CPU fast paths of the corruption engine (`qgfast.corrupt`): connected
//! components, shape approximations and fills, blobs, cube morphology, the counter-based
//! RNG (uniforms, Bernoulli draws, normals), nearest remaps, the banded Gaussian filter and
//! smoothing, the one-call elastic deformation, and label overlap counts. Each mirrors a
//! Python reference bit for bit, except the filter and the normals (and what uses them),
//! which agree to float32 rounding; none depends on the loader.

/// `avx2_or_plain!(body, (arg: Type, …) -> Ret, (value, …))`: `body(value, …)` compiled for
/// AVX2 where the CPU has it (a copy of `body`, `#[inline(always)]`, inside a
/// `#[target_feature]` function: its loops become eight-lane vector code), else as plain
/// code. The result is the call's value.
macro_rules! avx2_or_plain {
    ($body:path, ($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty, ($($value:expr),* $(,)?)) => {
        'dispatch: {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                // SAFETY: the CPU was just checked for AVX2.
                break 'dispatch unsafe { avx2($($value),*) };
            }
            $body($($value),*)
        }
    };
}

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
