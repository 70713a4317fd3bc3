//! Batch normalisation arithmetic on a tensor seen as (outer, channels, inner): the
//! statistics of each channel are taken over the outer and inner axes. For NHWC with the
//! channel axis last, `inner` is 1 and each pixel's channels are contiguous.
//!
//! Plain loops, no AVX2 route (the statistics are summed in f64). [`layer`] holds the
//! per-sample statistics of LayerNormalization, over any set of axes.

pub mod layer;

use rayon::prelude::*;

/// Per-channel mean and (biased) variance: the mean first, then the squared deviations
/// from it, both summed in f64.
pub fn moments(x: &[f32], channels: usize, inner: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (x.len() / channels.max(1)).max(1) as f64;
    let [sum] = channel_sums(x, x, channels, inner, |_, v, _| [f64::from(v)]);
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let [sum_sq] = channel_sums(x, x, channels, inner, |ch, v, _| {
        let d = f64::from(v) - mean[ch];
        [d * d]
    });
    (
        mean.iter().map(|&m| m as f32).collect(),
        sum_sq.iter().map(|s| (s / count) as f32).collect(),
    )
}

/// Per-channel sums of `x` and of `x²` in f64, the statistics data-parallel training
/// pools over its ranks.
pub fn sums_and_squares(x: &[f32], channels: usize, inner: usize) -> [Vec<f64>; 2] {
    channel_sums(x, x, channels, inner, |_, v, _| {
        let v = f64::from(v);
        [v, v * v]
    })
}

/// Per-channel sums of `dy` and of `dy · x̂`, the two reductions of the backward pass.
pub fn grad_sums(dy: &[f32], x_hat: &[f32], channels: usize, inner: usize) -> (Vec<f32>, Vec<f32>) {
    let [sum_dy, sum_dy_xhat] = channel_sums(dy, x_hat, channels, inner, |_, g, xh| {
        [f64::from(g), f64::from(g * xh)]
    });
    (
        sum_dy.iter().map(|&v| v as f32).collect(),
        sum_dy_xhat.iter().map(|&v| v as f32).collect(),
    )
}

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

/// Per-channel sums, in f64, of the `K` terms `term(channel, a, b)` gives for each pair
/// of elements of `a` and `b` (a tensor and one of its shape). The tensor is cut into
/// blocks of whole runs, fixed by its shape alone; each block's sums are made on some
/// thread and then added in block order, so the result is the same on any number of
/// threads.
fn channel_sums<const K: usize>(
    a: &[f32],
    b: &[f32],
    channels: usize,
    inner: usize,
    term: impl Fn(usize, f32, f32) -> [f64; K] + Sync,
) -> [Vec<f64>; K] {
    let mut total: [Vec<f64>; K] = std::array::from_fn(|_| vec![0.0; channels]);
    let Some(runs) = Runs::new(channels, inner).filter(|_| !a.is_empty()) else {
        return total;
    };
    let block_sums = |(k, (a, b)): (usize, (&[f32], &[f32]))| {
        let mut sums: [Vec<f64>; K] = std::array::from_fn(|_| vec![0.0; channels]);
        let pairs = a.chunks_exact(runs.len).zip(b.chunks_exact(runs.len));
        for (r, (a_run, b_run)) in pairs.enumerate() {
            if runs.inner == 1 {
                // A pixel's channels.
                for (ch, (&va, &vb)) in a_run.iter().zip(b_run).enumerate() {
                    let t = term(ch, va, vb);
                    for (s, t) in sums.iter_mut().zip(t) {
                        s[ch] += t;
                    }
                }
            } else {
                // One channel's run.
                let ch = runs.channel(k, r);
                let mut run_sum = [0.0f64; K];
                for (&va, &vb) in a_run.iter().zip(b_run) {
                    let t = term(ch, va, vb);
                    for (s, t) in run_sum.iter_mut().zip(t) {
                        *s += t;
                    }
                }
                for (s, t) in sums.iter_mut().zip(run_sum) {
                    s[ch] += t;
                }
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
        return params.normalize_runs(0, x, y, x_hat);
    }
    let (block, runs_per_block) = (runs.block(), runs.per_block);
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
    let Some(runs) = Runs::new(channels, inner).filter(|_| !dy.is_empty()) else {
        return;
    };
    let count = (dy.len() / channels) as f32;
    let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
    // Without the batch's statistics their terms are zero: dx = scale · dy.
    let mean = |sums: &[f32]| -> Vec<f32> {
        if training {
            sums.iter().map(|s| s / count).collect()
        } else {
            vec![0.0; channels]
        }
    };
    let (mean_dy, mean_dy_xhat) = (mean(sum_dy), mean(sum_dy_xhat));
    let pass = |k: usize, dx: &mut [f32], dy: &[f32], xh: &[f32]| {
        let len = runs.len;
        let triples = dx
            .chunks_exact_mut(len)
            .zip(dy.chunks_exact(len).zip(xh.chunks_exact(len)));
        for (r, (d_run, (g_run, h_run))) in triples.enumerate() {
            let values = d_run.iter_mut().zip(g_run.iter().zip(h_run));
            if runs.inner == 1 {
                // A pixel's channels, each with its own constants.
                let constants = scale.iter().zip(mean_dy.iter().zip(&mean_dy_xhat));
                for ((d, (&g, &xh)), (s, (m, mx))) in values.zip(constants) {
                    *d = s * (g - m - xh * mx);
                }
            } else {
                let ch = runs.channel(k, r);
                let (s, m, mx) = (scale[ch], mean_dy[ch], mean_dy_xhat[ch]);
                for (d, (&g, &xh)) in values {
                    *d = s * (g - m - xh * mx);
                }
            }
        }
    };
    if !Runs::parallel(dy.len()) {
        pass(0, dx, dy, x_hat);
    } else {
        let block = runs.block();
        dx.par_chunks_mut(block)
            .zip(dy.par_chunks(block).zip(x_hat.par_chunks(block)))
            .enumerate()
            .for_each(|(k, (dx, (dy, xh)))| pass(k, dx, dy, xh));
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
                g_sum[channel(i)] += dy[i] as f64;
                gx_sum[channel(i)] += (dy[i] * x[i]) as f64;
            }
            for i in 0..n {
                let d = x[i] as f64 - sum[channel(i)] / count;
                sum_sq[channel(i)] += d * d;
            }
            let (mean, var) = moments(&x, channels, inner);
            let (sum_dy, sum_dy_xhat) = grad_sums(&dy, &x, channels, inner);
            for c in 0..channels {
                assert!((mean[c] as f64 - sum[c] / count).abs() < 1e-6);
                assert!((var[c] as f64 - sum_sq[c] / count).abs() < 1e-6);
                assert!((sum_dy[c] as f64 - g_sum[c]).abs() < 1e-3);
                assert!((sum_dy_xhat[c] as f64 - gx_sum[c]).abs() < 1e-3);
            }
            let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + c as f32 / 10.0).collect();
            let inv_std: Vec<f32> = (0..channels).map(|c| 1.5 - c as f32 / 30.0).collect();
            for training in [true, false] {
                let mut dx = vec![0.0; n];
                let sums = (&sum_dy[..], &sum_dy_xhat[..]);
                backward_input(&dy, &x, &gamma, &inv_std, sums, inner, training, &mut dx);
                for i in (0..n).step_by(97) {
                    let c = channel(i);
                    let scale = gamma[c] * inv_std[c];
                    let want = if training {
                        let count = count as f32;
                        scale * (dy[i] - sum_dy[c] / count - x[i] * sum_dy_xhat[c] / count)
                    } else {
                        scale * dy[i]
                    };
                    let err = (dx[i] - want).abs();
                    assert!(
                        err <= 1e-6 * want.abs().max(1.0),
                        "element {i}, inner {inner}"
                    );
                }
            }
        }
    }

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
