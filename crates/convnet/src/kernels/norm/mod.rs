//! Batch normalisation arithmetic on a tensor seen as (outer, channels, inner): the
//! statistics of each channel are taken over the outer and inner axes. For NHWC with the
//! channel axis last, `inner` is 1 and each pixel's channels are contiguous.
//!
//! Plain loops; the statistics are summed in f64 (channels-last sums in f32 over a few
//! pixels first, compiled for AVX-512 where the CPU has it). Training keeps the batch's
//! mean and 1/σ, not the normalised tensor: the backward pass normalises again as it
//! reads. [`layer`] holds the per-sample statistics of LayerNormalization, over any set
//! of axes.

pub mod layer;

use crate::kernels::simd::dispatch;
use rayon::prelude::*;

/// Per-channel mean and (biased) variance: the mean first, then the squared deviations
/// from it, each summed in f64.
pub fn moments(x: &[f32], channels: usize, inner: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (x.len() / channels.max(1)).max(1) as f64;
    let zeros = vec![0.0; channels];
    let [sum] = channel_sums(x, x, &zeros, inner, |v, _, _| [v]);
    let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let [sum_sq] = channel_sums(x, x, &mean, inner, |v, _, mean| {
        let d = v - mean;
        [d * d]
    });
    (mean, sum_sq.iter().map(|s| (s / count) as f32).collect())
}

/// Per-channel sums of `x` and of `x²` in f64, the statistics data-parallel training
/// pools over its ranks.
pub fn sums_and_squares(x: &[f32], channels: usize, inner: usize) -> [Vec<f64>; 2] {
    channel_sums(x, x, &vec![0.0; channels], inner, |v, _, _| [v, v * v])
}

/// Per-channel sums of `dy` and of `dy · x̂`, the two reductions of the backward pass,
/// with x̂ = `(x − mean) · inv_std` computed on the way rather than kept from the
/// forward pass.
pub fn grad_sums(
    dy: &[f32],
    x: &[f32],
    (mean, inv_std): (&[f32], &[f32]),
    inner: usize,
) -> (Vec<f32>, Vec<f32>) {
    let [sum_dy, sum_dy_x] = channel_sums(dy, x, mean, inner, |g, x, mean| [g, g * (x - mean)]);
    (
        sum_dy.iter().map(|&v| v as f32).collect(),
        sum_dy_x
            .iter()
            .zip(inv_std)
            .map(|(&v, s)| v as f32 * s)
            .collect(),
    )
}

/// Pixels whose terms [`channel_sums`] adds in f32 before it adds them into its f64
/// sums.
const GROUP: usize = 8;

/// Values per block of the parallel sums and passes.
const PARALLEL_BLOCK: usize = 1 << 14;

/// How the passes cut a tensor: into runs, each a channel's `inner` values or, with the
/// channels last (`inner` = 1), one pixel's channels, so the inner loop is always a long
/// one; and the runs into blocks of about [`PARALLEL_BLOCK`] values, fixed by the shape
/// alone, that go to rayon's threads when the tensor is big enough.
#[derive(Clone, Copy)]
struct Runs {
    channels: usize,
    inner: usize,
    /// Values per run.
    len: usize,
    /// Runs per block.
    per_block: usize,
}

impl Runs {
    /// None when a run would be empty (no channels, or no values per channel).
    fn new(channels: usize, inner: usize) -> Option<Runs> {
        let len = if inner == 1 { channels } else { inner };
        (len > 0).then(|| Runs {
            channels,
            inner,
            len,
            per_block: (PARALLEL_BLOCK / len).max(1),
        })
    }

    /// Values per block.
    fn block(&self) -> usize {
        self.len * self.per_block
    }

    /// Whether a tensor of `values` values is worth splitting over threads.
    fn parallel(values: usize) -> bool {
        values >= 4 * PARALLEL_BLOCK
    }

    /// The channel of run `r` of block `k`, when a run is one channel's (`inner` > 1).
    fn channel(&self, k: usize, r: usize) -> usize {
        (k * self.per_block + r) % self.channels
    }
}

/// Per-channel sums, in f64, of the `K` terms `term(a, b, c)` gives for each pair of
/// elements of `a` and `b` (a tensor and one of its shape), `c` being their channel's
/// entry of `constants` (a mean, say). The tensor is cut into blocks of whole runs,
/// fixed by its shape alone; each block's sums are made on some thread and then added
/// in block order, so the result is the same on any number of threads.
fn channel_sums<const K: usize>(
    a: &[f32],
    b: &[f32],
    constants: &[f32],
    inner: usize,
    term: impl Fn(f32, f32, f32) -> [f32; K] + Sync,
) -> [Vec<f64>; K] {
    let channels = constants.len();
    let zeros = || std::array::from_fn(|_| vec![0.0; channels]);
    let mut total: [Vec<f64>; K] = zeros();
    let Some(runs) = Runs::new(channels, inner).filter(|_| !a.is_empty()) else {
        return total;
    };
    let block_sums = |(k, (a, b)): (usize, (&[f32], &[f32]))| {
        if runs.inner == 1 {
            return dispatch!(pixel_sums::<K>(a, b, constants, &term));
        }
        // Each run one channel's values.
        let mut sums: [Vec<f64>; K] = zeros();
        let pairs = a.chunks_exact(runs.len).zip(b.chunks_exact(runs.len));
        for (r, (a_run, b_run)) in pairs.enumerate() {
            let ch = runs.channel(k, r);
            let c = constants[ch];
            let mut run_sum = [0.0f64; K];
            for (&va, &vb) in a_run.iter().zip(b_run) {
                let t = term(va, vb, c);
                for j in 0..K {
                    run_sum[j] += f64::from(t[j]);
                }
            }
            for (s, t) in sums.iter_mut().zip(run_sum) {
                s[ch] += t;
            }
        }
        sums
    };
    let block = runs.block();
    let partials: Vec<[Vec<f64>; K]> = if Runs::parallel(a.len()) {
        let blocks = a.par_chunks(block).zip(b.par_chunks(block)).enumerate();
        blocks.map(block_sums).collect()
    } else {
        let blocks = a.chunks(block).zip(b.chunks(block)).enumerate();
        blocks.map(block_sums).collect()
    };
    for partial in partials {
        for (t, p) in total.iter_mut().zip(partial) {
            t.iter_mut().zip(p).for_each(|(t, p)| *t += p);
        }
    }
    total
}

/// [`channel_sums`] of one block whose pixels' channels are contiguous (`inner` = 1):
/// the terms are summed in f32 over a group of a few pixels, then the group's sums added
/// into the f64 ones, so that the work per value is a few f32 vector operations,
/// compiled for the widest vectors the CPU has (through `dispatch!`; no multiply-add is
/// fused, so every copy gives the same sums).
#[inline(always)]
fn pixel_sums<const FMA: bool, const K: usize>(
    a: &[f32],
    b: &[f32],
    constants: &[f32],
    term: &impl Fn(f32, f32, f32) -> [f32; K],
) -> [Vec<f64>; K] {
    let channels = constants.len();
    // One vector per term, so that each term's loops vectorise.
    let mut sums: [Vec<f64>; K] = std::array::from_fn(|_| vec![0.0; channels]);
    let mut group: [Vec<f32>; K] = std::array::from_fn(|_| vec![0.0; channels]);
    let pixels = GROUP * channels;
    for (a_group, b_group) in a.chunks(pixels).zip(b.chunks(pixels)) {
        let pairs = a_group
            .chunks_exact(channels)
            .zip(b_group.chunks_exact(channels));
        for (a_px, b_px) in pairs {
            // Indexed loops over slices of one length: the compiler drops the bounds
            // checks and vectorises the whole row (zipped iterators left the last
            // vector's worth to a scalar loop).
            let (a_px, b_px, c) = (&a_px[..channels], &b_px[..channels], &constants[..channels]);
            match group.as_mut_slice() {
                [first] => {
                    let g0 = &mut first[..channels];
                    for ch in 0..channels {
                        g0[ch] += term(a_px[ch], b_px[ch], c[ch])[0];
                    }
                }
                [first, second] => {
                    let (g0, g1) = (&mut first[..channels], &mut second[..channels]);
                    for ch in 0..channels {
                        let t = term(a_px[ch], b_px[ch], c[ch]);
                        g0[ch] += t[0];
                        g1[ch] += t[1];
                    }
                }
                _ => unreachable!("channel sums of one or two terms"),
            }
        }
        for (s, g) in sums.iter_mut().zip(group.iter_mut()) {
            for (s, g) in s.iter_mut().zip(g.iter_mut()) {
                *s += f64::from(*g);
                *g = 0.0;
            }
        }
    }
    sums
}

/// `1 / √(var + ε)` per channel.
pub fn inv_std(var: &[f32], eps: f32) -> Vec<f32> {
    var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect()
}

/// `moving = moving · momentum + batch · (1 − momentum)`, per channel.
pub fn update_moving(moving: &mut [f32], batch: &[f32], momentum: f32) {
    moving
        .iter_mut()
        .zip(batch)
        .for_each(|(mv, b)| *mv = *mv * momentum + b * (1.0 - momentum));
}

/// `dst += src`, elementwise (a parameter's gradient from its per-channel sum).
pub fn accumulate(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// `y = γ · (x − mean) · inv_std + β` per channel (`mean.len()` channels); `y` is
/// overwritten. Large tensors go to rayon's threads in blocks of whole runs (a run:
/// values that share a channel, or one pixel's channels when they are last), each value
/// computed as it would be alone.
pub fn normalize(
    x: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    inner: usize,
    y: &mut [f32],
) {
    let Some(runs) = Runs::new(mean.len(), inner).filter(|_| !x.is_empty()) else {
        return;
    };
    let params = Params {
        mean,
        inv_std,
        gamma,
        beta,
        inner,
    };
    if !Runs::parallel(x.len()) {
        return params.normalize_runs(0, x, y);
    }
    let (block, runs_per_block) = (runs.block(), runs.per_block);
    y.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .enumerate()
        .for_each(|(b, (y, x))| params.normalize_runs(b * runs_per_block, x, y));
}

/// Batch normalisation's per-channel parameters and layout.
struct Params<'a> {
    mean: &'a [f32],
    inv_std: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    inner: usize,
}

impl Params<'_> {
    /// [`normalize`] of whole runs, the first of them run number `first_run`.
    fn normalize_runs(&self, first_run: usize, x: &[f32], y: &mut [f32]) {
        let Params {
            mean,
            inv_std,
            gamma,
            beta,
            inner,
        } = *self;
        let channels = mean.len();
        let run = if inner == 1 { channels } else { inner };
        let runs = y.chunks_exact_mut(run).zip(x.chunks_exact(run));
        for (r, (y_run, x_run)) in runs.enumerate() {
            if inner == 1 {
                let params = mean.iter().zip(inv_std).zip(gamma.iter().zip(beta.iter()));
                for ((y, &x), ((m, s), (g, b))) in y_run.iter_mut().zip(x_run).zip(params) {
                    *y = g * ((x - m) * s) + b;
                }
            } else {
                let ch = (first_run + r) % channels;
                for (y, &x) in y_run.iter_mut().zip(x_run) {
                    *y = gamma[ch] * ((x - mean[ch]) * inv_std[ch]) + beta[ch];
                }
            }
        }
    }
}

/// dL/dx of batch normalisation from `dy`, the input `x`, the statistics it was
/// normalised with (`mean`, `inv_std`) and the backward sums `(Σ dy, Σ dy·x̂)` per
/// channel (see [`grad_sums`]): with the batch's statistics (`training`)
/// `γ·inv_std·(dy − Σdy/N − x̂·Σdy·x̂/N)`, with fixed ones `γ·inv_std·dy`.
/// `dx` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    dy: &[f32],
    x: &[f32],
    (mean, inv_std): (&[f32], &[f32]),
    gamma: &[f32],
    (sum_dy, sum_dy_xhat): (&[f32], &[f32]),
    inner: usize,
    training: bool,
    dx: &mut [f32],
) {
    let channels = gamma.len();
    let Some(runs) = Runs::new(channels, inner).filter(|_| !dy.is_empty()) else {
        return;
    };
    let count = (dy.len() / channels) as f32;
    let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
    // Without the batch's statistics their terms are zero: dx = scale · dy.
    let average = |sums: &[f32]| -> Vec<f32> {
        if training {
            sums.iter().map(|s| s / count).collect()
        } else {
            vec![0.0; channels]
        }
    };
    let mean_dy = average(sum_dy);
    // x̂ · Σdy·x̂/N as (x − mean) times this, per channel.
    let x_factor: Vec<f32> = average(sum_dy_xhat)
        .iter()
        .zip(inv_std)
        .map(|(m, s)| m * s)
        .collect();
    let pass = |k: usize, dx: &mut [f32], dy: &[f32], x: &[f32]| {
        let len = runs.len;
        let triples = dx
            .chunks_exact_mut(len)
            .zip(dy.chunks_exact(len).zip(x.chunks_exact(len)));
        for (r, (d_run, (g_run, x_run))) in triples.enumerate() {
            let values = d_run.iter_mut().zip(g_run.iter().zip(x_run));
            if runs.inner == 1 {
                // A pixel's channels, each with its own constants.
                let statistics = mean.iter().zip(&x_factor);
                let constants = scale.iter().zip(mean_dy.iter().zip(statistics));
                for ((d, (&g, &x)), (s, (m, (mu, f)))) in values.zip(constants) {
                    *d = s * (g - m - (x - mu) * f);
                }
            } else {
                let ch = runs.channel(k, r);
                let (s, m, mu, f) = (scale[ch], mean_dy[ch], mean[ch], x_factor[ch]);
                for (d, (&g, &x)) in values {
                    *d = s * (g - m - (x - mu) * f);
                }
            }
        }
    };
    if !Runs::parallel(dy.len()) {
        pass(0, dx, dy, x);
    } else {
        let block = runs.block();
        dx.par_chunks_mut(block)
            .zip(dy.par_chunks(block).zip(x.par_chunks(block)))
            .enumerate()
            .for_each(|(k, (dx, (dy, x)))| pass(k, dx, dy, x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block-parallel sums and the input gradient against plain per-element loops,
    /// in both layouts, on tensors big enough to take the parallel route.
    #[test]
    fn block_sums_and_input_gradient_match_plain_loops() {
        let channels = 24;
        let n = 4 * PARALLEL_BLOCK * 3 + channels * 5;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 1.0)
            .collect();
        let dy: Vec<f32> = (0..n)
            .map(|i| ((i * 104_729) % 997) as f32 / 500.0 - 1.0)
            .collect();
        for inner in [1, n / channels] {
            let channel = |i: usize| (i / inner) % channels;
            let count = (n / channels) as f64;
            let (mut sum, mut sum_sq, mut g_sum, mut gx_sum) = (
                vec![0f64; channels],
                vec![0f64; channels],
                vec![0f64; channels],
                vec![0f64; channels],
            );
            for i in 0..n {
                sum[channel(i)] += x[i] as f64;
            }
            let (mean, var) = moments(&x, channels, inner);
            let inv_std = inv_std(&var, 1e-3);
            let x_hat =
                |i: usize| (x[i] as f64 - sum[channel(i)] / count) * inv_std[channel(i)] as f64;
            for i in 0..n {
                let d = x[i] as f64 - sum[channel(i)] / count;
                sum_sq[channel(i)] += d * d;
                g_sum[channel(i)] += dy[i] as f64;
                gx_sum[channel(i)] += dy[i] as f64 * x_hat(i);
            }
            let (sum_dy, sum_dy_xhat) = grad_sums(&dy, &x, (&mean, &inv_std), inner);
            for c in 0..channels {
                assert!((mean[c] as f64 - sum[c] / count).abs() < 1e-6);
                assert!((var[c] as f64 - sum_sq[c] / count).abs() < 1e-6);
                assert!((sum_dy[c] as f64 - g_sum[c]).abs() < 1e-3);
                assert!((sum_dy_xhat[c] as f64 - gx_sum[c]).abs() < 1e-3);
            }
            let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + c as f32 / 10.0).collect();
            for training in [true, false] {
                let mut dx = vec![0.0; n];
                let sums = (&sum_dy[..], &sum_dy_xhat[..]);
                let statistics = (&mean[..], &inv_std[..]);
                backward_input(&dy, &x, statistics, &gamma, sums, inner, training, &mut dx);
                for i in (0..n).step_by(97) {
                    let c = channel(i);
                    let scale = gamma[c] * inv_std[c];
                    let want = if training {
                        let count = count as f32;
                        let x_hat = x_hat(i) as f32;
                        scale * (dy[i] - sum_dy[c] / count - x_hat * sum_dy_xhat[c] / count)
                    } else {
                        scale * dy[i]
                    };
                    let err = (dx[i] - want).abs();
                    assert!(
                        err <= 1e-5 * want.abs().max(1.0),
                        "element {i}, inner {inner}"
                    );
                }
            }
        }
    }

    /// The parallel blocks compute each value as one serial pass does, in both layouts.
    #[test]
    fn parallel_blocks_equal_one_pass() {
        let channels = 24;
        let n = 4 * PARALLEL_BLOCK * 3 + channels * 5;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        let per = |k: usize, base: f32| {
            (0..channels)
                .map(|c| base + (c * k) as f32 / 100.0)
                .collect::<Vec<f32>>()
        };
        let (mean, inv_std, gamma, beta) = (per(1, -0.3), per(2, 0.5), per(3, 0.9), per(4, 0.1));
        for inner in [1, n / channels] {
            let params = Params {
                mean: &mean,
                inv_std: &inv_std,
                gamma: &gamma,
                beta: &beta,
                inner,
            };
            let mut serial = vec![0.0; n];
            params.normalize_runs(0, &x, &mut serial);
            let mut y = vec![0.0; n];
            normalize(&x, &mean, &inv_std, &gamma, &beta, inner, &mut y);
            assert_eq!(y, serial);
        }
    }
}
