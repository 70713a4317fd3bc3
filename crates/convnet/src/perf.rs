//! Yardsticks for the benchmarks: the machine's peak f32 throughput (so a kernel's speed
//! can be read as a share of what the cores can do) and the process's peak memory.

use std::time::Instant;

/// Independent accumulators per thread: enough to cover the FMA latency (4 cycles) on
/// two FMA ports, so the loop is bound by throughput, not by dependencies.
const CHAINS: usize = 12;

/// Peak f32 FLOP/s of `threads` threads running fused multiply-adds flat out (an FMA
/// counts as two FLOPs), chosen at run time: AVX-512 on x86-64 when the CPU has it (the
/// matrix products use it, through the `gemm` crate), else AVX2+FMA, NEON on aarch64,
/// plain multiply-adds elsewhere.
pub fn peak_f32_flops(threads: usize) -> f64 {
    let threads = threads.max(1);
    let iterations = 200_000_000 / CHAINS;
    // One warm-up round lets the clock settle; the best of the next three is the peak (a
    // round that another process interrupted only runs slower, never faster).
    let mut best: f64 = 0.0;
    for round in 0..4 {
        let start = Instant::now();
        let flops: f64 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || fma_loop(iterations)))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0.0)).sum()
        });
        if round > 0 {
            best = best.max(flops / start.elapsed().as_secs_f64());
        }
    }
    best
}

/// Runs `iterations` rounds of `CHAINS` independent FMAs on the widest vectors the CPU
/// has; returns the FLOPs done.
fn fma_loop(iterations: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the feature the function is compiled for.
        return unsafe { x86::fma_avx512(iterations) };
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { x86::fma_avx2(iterations) };
    }
    #[cfg(target_arch = "aarch64")]
    {
        // NEON is part of the aarch64 baseline.
        return aarch64::fma_neon(iterations);
    }
    #[allow(unreachable_code)]
    scalar_fma(iterations)
}

fn scalar_fma(iterations: usize) -> f64 {
    let mut acc = [1.0f32; CHAINS];
    let (a, b) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iterations {
        for v in &mut acc {
            *v = *v * a + b;
        }
    }
    std::hint::black_box(acc);
    (iterations * CHAINS * 2) as f64
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_avx2(iterations: usize) -> f64 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
        (iterations * CHAINS * 8 * 2) as f64
    }

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_avx512(iterations: usize) -> f64 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
        (iterations * CHAINS * 16 * 2) as f64
    }
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use super::CHAINS;
    use std::arch::aarch64::*;

    pub fn fma_neon(iterations: usize) -> f64 {
        // SAFETY: NEON is always present on aarch64.
        unsafe {
            let a = vdupq_n_f32(std::hint::black_box(0.999_999));
            let b = vdupq_n_f32(std::hint::black_box(1e-7));
            let mut acc = [vdupq_n_f32(1.0); CHAINS];
            for _ in 0..iterations {
                for v in &mut acc {
                    *v = vfmaq_f32(b, *v, a);
                }
            }
            std::hint::black_box(acc);
        }
        (iterations * CHAINS * 4 * 2) as f64
    }
}

/// The most resident memory this process has used so far, in bytes (Linux's VmHWM);
/// `None` where the system does not say.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_positive_and_counts_threads() {
        let one = super::peak_f32_flops(1);
        assert!(
            one > 1e8,
            "one core does at least 0.1 GFLOP/s, measured {one}"
        );
        assert!(super::peak_memory_bytes().unwrap_or(1) > 0);
    }
}
