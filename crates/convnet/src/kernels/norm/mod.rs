//! Batch normalisation arithmetic on a tensor seen as (outer, channels, inner): the
//! statistics of each channel are taken over the outer and inner axes. For NHWC with the
//! channel axis last, `inner` is 1 and each pixel's channels are contiguous.
//!
//! Plain loops, no AVX2 route (the statistics are summed in f64). [`layer`] holds the
//! per-sample statistics of LayerNormalization, over any set of axes.

pub mod layer;

use rayon::prelude::*;

/// Per-channel mean and (biased) variance.
pub fn moments(x: &[f32], channels: usize, inner: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (x.len() / channels.max(1)).max(1) as f64;
    let mut sum = vec![0.0f64; channels];
    let mut sum_sq = vec![0.0f64; channels];
    for_each_channel(x, channels, inner, |ch, v| {
        sum[ch] += v as f64;
    });
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    for_each_channel(x, channels, inner, |ch, v| {
        let d = v as f64 - mean[ch];
        sum_sq[ch] += d * d;
    });
    (
        mean.iter().map(|&m| m as f32).collect(),
        sum_sq.iter().map(|s| (s / count) as f32).collect(),
    )
}

/// Calls `f(channel, value)` for every element, in memory order.
pub fn for_each_channel(x: &[f32], channels: usize, inner: usize, mut f: impl FnMut(usize, f32)) {
    for (i, &v) in x.iter().enumerate() {
        f((i / inner) % channels, v);
    }
}

/// Per-channel sums of `dy` and of `dy · x̂`, the two reductions of the backward pass.
pub fn grad_sums(dy: &[f32], x_hat: &[f32], channels: usize, inner: usize) -> (Vec<f32>, Vec<f32>) {
    let mut sum_dy = vec![0.0f64; channels];
    let mut sum_dy_xhat = vec![0.0f64; channels];
    for (i, (&g, &xh)) in dy.iter().zip(x_hat).enumerate() {
        let ch = (i / inner) % channels;
        sum_dy[ch] += g as f64;
        sum_dy_xhat[ch] += (g * xh) as f64;
    }
    (
        sum_dy.iter().map(|&v| v as f32).collect(),
        sum_dy_xhat.iter().map(|&v| v as f32).collect(),
    )
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

/// `y = γ · (x − mean) · inv_std + β` per channel (`mean.len()` channels), and x̂ =
/// `(x − mean) · inv_std` into `x_hat` when given; `y` and `x_hat` are overwritten.
/// Large tensors go to rayon's threads in blocks of whole runs (a run: values that
/// share a channel, or one pixel's channels when they are last), each value computed
/// as it would be alone.
#[allow(clippy::too_many_arguments)]
pub fn normalize(
    x: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    inner: usize,
    y: &mut [f32],
    x_hat: Option<&mut [f32]>,
) {
    let channels = mean.len();
    // Runs of `inner` values share a channel; with channels last (inner = 1) a run
    // is a pixel's channels instead, so the inner loop is always a long one.
    let run = if inner == 1 { channels } else { inner };
    if run == 0 || x.is_empty() {
        return;
    }
    let params = Params {
        mean,
        inv_std,
        gamma,
        beta,
        inner,
    };
    // Blocks of about 16K values, whole runs each.
    let block = run * (PARALLEL_BLOCK / run).max(1);
    if x.len() < 4 * PARALLEL_BLOCK {
        return params.normalize_runs(0, x, y, x_hat);
    }
    let runs_per_block = block / run;
    match x_hat {
        Some(xh) => y
            .par_chunks_mut(block)
            .zip(x.par_chunks(block).zip(xh.par_chunks_mut(block)))
            .enumerate()
            .for_each(|(b, (y, (x, xh)))| {
                params.normalize_runs(b * runs_per_block, x, y, Some(xh))
            }),
        None => y
            .par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .enumerate()
            .for_each(|(b, (y, x))| params.normalize_runs(b * runs_per_block, x, y, None)),
    }
}

/// Values per block of a parallel normalization.
const PARALLEL_BLOCK: usize = 1 << 14;

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
    fn normalize_runs(
        &self,
        first_run: usize,
        x: &[f32],
        y: &mut [f32],
        mut x_hat: Option<&mut [f32]>,
    ) {
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
            let r = first_run + r;
            let channel_of = |k: usize| if inner == 1 { k } else { r % channels };
            if let Some(xh) = x_hat.as_deref_mut() {
                let xh_run = &mut xh[(r - first_run) * run..][..run];
                for (k, (y, (&x, h))) in y_run.iter_mut().zip(x_run.iter().zip(xh_run)).enumerate()
                {
                    let ch = channel_of(k);
                    *h = (x - mean[ch]) * inv_std[ch];
                    *y = gamma[ch] * *h + beta[ch];
                }
            } else if inner == 1 {
                let params = mean.iter().zip(inv_std).zip(gamma.iter().zip(beta.iter()));
                for ((y, &x), ((m, s), (g, b))) in y_run.iter_mut().zip(x_run).zip(params) {
                    *y = g * ((x - m) * s) + b;
                }
            } else {
                let ch = r % channels;
                for (y, &x) in y_run.iter_mut().zip(x_run) {
                    *y = gamma[ch] * ((x - mean[ch]) * inv_std[ch]) + beta[ch];
                }
            }
        }
    }
}

/// dL/dx of batch normalisation from `dy`, the saved x̂ and the backward sums
/// `(Σ dy, Σ dy·x̂)` per channel (see [`grad_sums`]): with the batch's statistics
/// (`training`) `γ·inv_std·(dy − Σdy/N − x̂·Σdy·x̂/N)`, with fixed ones `γ·inv_std·dy`.
/// `dx` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    dy: &[f32],
    x_hat: &[f32],
    gamma: &[f32],
    inv_std: &[f32],
    (sum_dy, sum_dy_xhat): (&[f32], &[f32]),
    inner: usize,
    training: bool,
    dx: &mut [f32],
) {
    let channels = gamma.len();
    let count = (dy.len() / channels) as f32;
    for (i, (d, &g)) in dx.iter_mut().zip(dy).enumerate() {
        let ch = (i / inner) % channels;
        let scale = gamma[ch] * inv_std[ch];
        *d = if training {
            scale * (g - sum_dy[ch] / count - x_hat[i] * sum_dy_xhat[ch] / count)
        } else {
            scale * g
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parallel blocks compute each value as one serial pass does, in both layouts,
    /// with and without x̂.
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
            let (mut serial, mut serial_hat) = (vec![0.0; n], vec![0.0; n]);
            params.normalize_runs(0, &x, &mut serial, Some(&mut serial_hat));
            let (mut y, mut hat) = (vec![0.0; n], vec![0.0; n]);
            normalize(
                &x,
                &mean,
                &inv_std,
                &gamma,
                &beta,
                inner,
                &mut y,
                Some(&mut hat),
            );
            assert_eq!(y, serial);
            assert_eq!(hat, serial_hat);
            let mut y = vec![0.0; n];
            normalize(&x, &mean, &inv_std, &gamma, &beta, inner, &mut y, None);
            assert_eq!(y, serial);
        }
    }
}
