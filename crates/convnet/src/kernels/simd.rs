//! One binary, fast on every CPU: hot loops are written once, generic over whether the
//! CPU fuses multiply-adds, and compiled three times: for AVX-512F, for AVX2+FMA (each
//! chosen at run time when the CPU has it) and for the baseline. The compiler vectorises
//! each copy for its target: 16 lanes on AVX-512, 8 with fused multiply-adds on AVX2, 4
//! on SSE2 and NEON (NEON always fuses).
//!
//! `dispatch!` does the choosing: the body is an `#[inline(always)]` generic function,
//! inlined into a `#[target_feature]` wrapper so it is compiled with those features.
//!
//! Tests reach the portable copies on AVX2 machines through [`with_portable`], and an
//! AVX2 CPU's routes on AVX-512 machines through [`without_avx512`]: overrides scoped
//! to one closure rather than process-wide switches (which would change the routes
//! under tests running at the same time on other threads).

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// Set on the threads of [`with_portable`]'s pool: the AVX2 copies are not used there
    /// even where they could be.
    static PORTABLE_ONLY: Cell<bool> = const { Cell::new(false) };
    /// Set on the threads of [`without_avx512`]'s pool: the routes of an AVX2 CPU
    /// without AVX-512 (our own micro-kernel for the shallow products).
    static NO_AVX512: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every kernel on its portable route (the one for CPUs without AVX2), so
/// tests on an AVX2 machine can check that route too. Both routes give the same results
/// up to rounding.
///
/// The choice is per thread, so other threads (other tests) keep their routes. Kernels
/// split their work over rayon's threads, so `f` runs inside a pool of its own, as many
/// threads as the current one, each with the override set by its `start_handler`: every
/// rayon task `f` starts runs on those threads, and the work is split as it would be
/// outside (some sums, like kernel gradients, are added per thread). Threads `f` spawns
/// by other means do not inherit the override.
#[doc(hidden)]
pub fn with_portable<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    in_pool_with(&PORTABLE_ONLY, f)
}

/// Runs `f` as on an AVX2 CPU without AVX-512, so tests on an AVX-512 machine check
/// those routes too; scoped to `f`'s own pool as [`with_portable`] is.
#[doc(hidden)]
pub fn without_avx512<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    in_pool_with(&NO_AVX512, f)
}

/// Runs `f` in a pool of its own, as many threads as the current one, each with `flag`
/// set by its `start_handler`.
fn in_pool_with<R: Send>(
    flag: &'static std::thread::LocalKey<Cell<bool>>,
    f: impl FnOnce() -> R + Send,
) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .start_handler(move |_| flag.with(|p| p.set(true)))
        .build()
        .expect("a thread pool for a route override");
    pool.install(f)
}

/// Whether the CPU has AVX-512F (checked once): then the `gemm` crate's AVX-512
/// kernels do every matrix product.
#[inline]
pub fn has_avx512() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    !PORTABLE_ONLY.with(Cell::get)
        && !NO_AVX512.with(Cell::get)
        && *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                is_x86_feature_detected!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                false
            }
        })
}

/// Whether the AVX2+FMA copies can run here (checked once).
#[inline]
pub fn has_avx2_fma() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    !PORTABLE_ONLY.with(Cell::get)
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

/// Calls `$generic::<FMA>($args)` (or `$generic::<FMA, extra…>($args)` for
/// `$generic::<extra…>($args)`) through the fastest copy this CPU runs: an
/// AVX-512F-compiled one, else an AVX2+FMA-compiled one when available, else the
/// baseline one; the call's value is the macro's.
macro_rules! dispatch {
    ($generic:ident $(::<$($extra:tt),+>)? ($($arg:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $crate::kernels::simd::has_avx512() {
                /// # Safety
                /// The CPU has AVX-512F, AVX2 and FMA.
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512<R, F: FnOnce() -> R>(f: F) -> R {
                    f()
                }
                // SAFETY: the CPU has AVX-512F (checked just above), and with it AVX2
                // and FMA. The closure is inlined into the wrapper, or its body would
                // be compiled without the wrapper's features.
                unsafe {
                    avx512(#[inline(always)] || {
                        $generic::<true $($(, $extra)+)?>($($arg),*)
                    })
                }
            } else if $crate::kernels::simd::has_avx2_fma() {
                /// # Safety
                /// The CPU has AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<R, F: FnOnce() -> R>(f: F) -> R {
                    f()
                }
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                unsafe {
                    avx2(#[inline(always)] || {
                        $generic::<true $($(, $extra)+)?>($($arg),*)
                    })
                }
            } else {
                $generic::<{ $crate::kernels::simd::BASELINE_FMA } $($(, $extra)+)?>($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $generic::<{ $crate::kernels::simd::BASELINE_FMA } $($(, $extra)+)?>($($arg),*)
        }
    }};
}
pub(crate) use dispatch;
