//! Batch normalisation arithmetic on a tensor seen as (outer, channels, inner): the
//! statistics of each channel are taken over the outer and inner axes. For NHWC with the
//! channel axis last, `inner` is 1 and each pixel's channels are contiguous.

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
