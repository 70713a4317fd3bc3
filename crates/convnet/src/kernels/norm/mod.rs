//! Batch normalisation arithmetic on a tensor seen as (outer, channels, inner): the
//! statistics of each channel are taken over the outer and inner axes. For NHWC with the
//! channel axis last, `inner` is 1 and each pixel's channels are contiguous.
//!
//! Plain loops, no AVX2 route (the statistics are summed in f64). [`layer`] holds the
//! per-sample statistics of LayerNormalization, over any set of axes.

pub mod layer;

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
#[allow(clippy::too_many_arguments)]
pub fn normalize(
    x: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    inner: usize,
    y: &mut [f32],
    mut x_hat: Option<&mut [f32]>,
) {
    let channels = mean.len();
    // Runs of `inner` values share a channel; with channels last (inner = 1) a run
    // is a pixel's channels instead, so the inner loop is always a long one.
    let run = if inner == 1 { channels } else { inner };
    if run == 0 || x.is_empty() {
        return;
    }
    let runs = y.chunks_exact_mut(run).zip(x.chunks_exact(run));
    for (r, (y_run, x_run)) in runs.enumerate() {
        let channel_of = |k: usize| if inner == 1 { k } else { r % channels };
        if let Some(xh) = x_hat.as_deref_mut() {
            let xh_run = &mut xh[r * run..][..run];
            for (k, (y, (&x, h))) in y_run.iter_mut().zip(x_run.iter().zip(xh_run)).enumerate() {
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
