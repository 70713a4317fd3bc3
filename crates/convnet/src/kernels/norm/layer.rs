//! Per-sample normalisation over a set of axes (LayerNormalization, and Normalization's
//! per-position statistics): a tensor's elements fall into *groups* (one per index along
//! the other axes) whose statistics are taken together, and each element has a *slot*
//! (its index along the chosen axes) that picks its scale and offset.

/// For every element of a row-major tensor of `shape`, in order, its flat index along
/// `axes` alone (row-major over those axes).
pub fn subset_indices(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    let mut strides = vec![0usize; shape.len()];
    let mut stride = 1;
    for &a in axes.iter().rev() {
        strides[a] = stride;
        stride *= shape[a];
    }
    // Axis by axis, each index so far followed by its steps along the next axis: whole
    // runs at a time rather than a counter stepped per element.
    let mut out = vec![0usize];
    for (&n, &s) in shape.iter().zip(&strides) {
        if n != 1 {
            out = out
                .iter()
                .flat_map(|&base| (0..n).map(move |c| base + c * s))
                .collect();
        }
    }
    out
}

/// How a tensor splits into groups and slots.
pub struct Groups {
    /// Each element's group.
    pub group: Vec<usize>,
    /// Each element's slot along the normalised axes.
    pub slot: Vec<usize>,
    /// The number of groups.
    pub count: usize,
    /// The number of elements in each group.
    pub size: usize,
}

impl Groups {
    /// The split of `shape` with statistics over `axes` (sorted, distinct).
    pub fn new(shape: &[usize], axes: &[usize]) -> Self {
        let others: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
        let size = axes.iter().map(|&a| shape[a]).product();
        Groups {
            group: subset_indices(shape, &others),
            slot: subset_indices(shape, axes),
            count: others.iter().map(|&a| shape[a]).product(),
            size,
        }
    }

    /// Each group's mean and 1/√(variance + eps) (the biased variance, in f64).
    pub fn moments(&self, x: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
        let n = self.size.max(1) as f64;
        let mut sum = vec![0.0f64; self.count];
        for (&v, &g) in x.iter().zip(&self.group) {
            sum[g] += f64::from(v);
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut squares = vec![0.0f64; self.count];
        for (&v, &g) in x.iter().zip(&self.group) {
            let d = f64::from(v) - mean[g];
            squares[g] += d * d;
        }
        let inv_std = squares.iter().map(|s| (1.0 / (s / n + eps).sqrt()) as f32);
        (mean.iter().map(|&m| m as f32).collect(), inv_std.collect())
    }

    /// Σ over each group of `f(element)`, in f64.
    pub fn sums(&self, f: impl Fn(usize) -> f32) -> Vec<f64> {
        let mut sums = vec![0.0f64; self.count];
        for (i, &g) in self.group.iter().enumerate() {
            sums[g] += f64::from(f(i));
        }
        sums
    }
}

impl Groups {
    /// GroupNormalization's split of a channels-last `shape`: per sample, the channels
    /// fall into `groups` runs of equal length, each taken with every position; the
    /// slot is the channel.
    pub fn channel_groups(shape: &[usize], groups: usize) -> Self {
        let channels = shape.last().copied().unwrap_or(1);
        let per_group = channels / groups.max(1);
        let per_sample: usize = shape[1..].iter().product();
        let len: usize = shape.iter().product();
        Groups {
            group: (0..len)
                .map(|i| (i / per_sample) * groups + (i % channels) / per_group.max(1))
                .collect(),
            slot: (0..len).map(|i| i % channels).collect(),
            count: shape[0] * groups,
            size: per_sample / groups.max(1),
        }
    }
}

/// `(x − mean)·inv_std·γ + β` for every element, with its group's statistics and its
/// slot's γ and β.
pub fn normalize(
    groups: &Groups,
    x: &[f32],
    (mean, inv_std): (&[f32], &[f32]),
    gamma: &[f32],
    beta: &[f32],
) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let (g, s) = (groups.group[i], groups.slot[i]);
            (v - mean[g]) * inv_std[g] * gamma[s] + beta[s]
        })
        .collect()
}

/// The input gradient of [`normalize`], `inv_std·(g − mean(g) − x̂·mean(g·x̂))` per group
/// with `g = dy·γ`; adds dL/dγ and dL/dβ (by slot) into the buffers given.
pub fn normalize_backward(
    groups: &Groups,
    x: &[f32],
    dy: &[f32],
    (mean, inv_std): (&[f32], &[f32]),
    gamma: &[f32],
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
) -> Vec<f32> {
    let (g_of, s_of) = (&groups.group, &groups.slot);
    let x_hat = |i: usize| (x[i] - mean[g_of[i]]) * inv_std[g_of[i]];
    let grad = |i: usize| dy[i] * gamma[s_of[i]];
    if let Some(dgamma) = dgamma {
        (0..x.len()).for_each(|i| dgamma[s_of[i]] += dy[i] * x_hat(i));
    }
    if let Some(dbeta) = dbeta {
        (0..x.len()).for_each(|i| dbeta[s_of[i]] += dy[i]);
    }
    let n = groups.size as f64;
    let sum_g = groups.sums(grad);
    let sum_gx = groups.sums(|i| grad(i) * x_hat(i));
    (0..x.len())
        .map(|i| {
            let g = g_of[i];
            let inner = f64::from(grad(i)) - sum_g[g] / n - f64::from(x_hat(i)) * sum_gx[g] / n;
            (f64::from(inv_std[g]) * inner) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::subset_indices;

    /// Each element's coordinates along `axes`, flattened row-major, the slow way.
    fn by_coordinates(shape: &[usize], axes: &[usize]) -> Vec<usize> {
        let len: usize = shape.iter().product();
        (0..len)
            .map(|mut i| {
                let mut coords = vec![0; shape.len()];
                for d in (0..shape.len()).rev() {
                    coords[d] = i % shape[d];
                    i /= shape[d];
                }
                axes.iter()
                    .fold(0, |index, &a| index * shape[a] + coords[a])
            })
            .collect()
    }

    #[test]
    fn indices_follow_the_coordinates_along_the_axes() {
        for (shape, axes) in [
            (vec![2, 3, 4, 5], vec![3]),
            (vec![2, 3, 4, 5], vec![1, 3]),
            (vec![2, 1, 4, 5], vec![0, 2]),
            (vec![3, 4], vec![]),
            (vec![2, 0, 3], vec![2]),
            (vec![], vec![]),
        ] {
            assert_eq!(
                subset_indices(&shape, &axes),
                by_coordinates(&shape, &axes),
                "{shape:?} {axes:?}"
            );
        }
    }
}
