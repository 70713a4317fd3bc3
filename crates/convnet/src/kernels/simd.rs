//! One binary, fast on every CPU: hot loops are written once, generic over whether the
//! CPU fuses multiply-adds, and compiled twice: for AVX2+FMA (chosen at run time when the
//! CPU has them) and for the baseline. The compiler vectorises each copy for its target:
//! 8 lanes with fused multiply-adds on AVX2, 4 on SSE2 and NEON (NEON always fuses).
//!
//! `dispatch!` does the choosing: the body is an `#[inline(always)]` generic function,
//! inlined into a `#[target_feature]` wrapper so it is compiled with those features.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Set by [`force_portable`]: the AVX2 copies are not used even where they could be.
static PORTABLE_ONLY: AtomicBool = AtomicBool::new(false);

/// Makes every kernel take its portable route (the one for CPUs without AVX2), so tests
/// on an AVX2 machine can check that route too. Both routes give the same results up to
/// rounding.
#[doc(hidden)]
pub fn force_portable(on: bool) {
    PORTABLE_ONLY.store(on, Ordering::Relaxed);
}

/// Whether the AVX2+FMA copies can run here (checked once).
#[inline]
pub fn has_avx2_fma() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    !PORTABLE_ONLY.load(Ordering::Relaxed)
        && *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                false
            }
        })
}

/// Whether the baseline copy may fuse multiply-adds: always on aarch64, where `fmla` is
/// part of NEON; elsewhere a fused multiply-add would be a slow library call.
pub const BASELINE_FMA: bool = cfg!(target_arch = "aarch64");

/// `a·b + c`, in one rounding when `FMA`.
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Calls `$generic::<FMA>($args)` through the fastest copy this CPU runs: an
/// AVX2+FMA-compiled one when available, else the baseline one.
macro_rules! dispatch {
    ($generic:ident($($arg:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $crate::kernels::simd::has_avx2_fma() {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<F: FnOnce()>(f: F) {
                    f()
                }
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                unsafe { avx2(|| $generic::<true>($($arg),*)) }
            } else {
                $generic::<{ $crate::kernels::simd::BASELINE_FMA }>($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $generic::<{ $crate::kernels::simd::BASELINE_FMA }>($($arg),*)
        }
    }};
}
pub(crate) use dispatch;
