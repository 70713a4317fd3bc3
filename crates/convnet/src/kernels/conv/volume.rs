//! 3-D convolution on NDHWC data with a DHWIO kernel (Keras's Conv3D layout: kernel_d,
//! kernel_h, kernel_w, in_channels / groups, out_channels), as a 2-D convolution.
//!
//! A 3-D window is `kernel_d` 2-D windows on neighbouring depth slices, summed. So each
//! output slice gathers the `kernel_d` input slices under it side by side on the channel
//! axis ("depth im2col": `(batch · out_d, H, W, kernel_d · in_c)`), and the kernel,
//! reordered once to `(kernel_h, kernel_w, kernel_d · in_c / groups, out_c)`, convolves
//! that in 2-D: the tiled im2col and Winograd routes, the fused bias and activation and
//! the parallel tiles of `conv2d_*` all serve unchanged. Gathered channels are ordered
//! (group, depth tap, channel) so that each group's columns stay contiguous, as grouped
//! 2-D convolution reads them. The gradients are the 2-D ones, scattered back through the
//! same gather. When the depth window is one slice at stride 1 without padding the input
//! already is the gathered tensor and nothing is copied.

use super::{conv2d_backward_input, conv2d_backward_kernel, conv2d_forward_with, ConvGeometry};
use crate::kernels::Epilogue;
use rayon::prelude::*;

/// The shapes of a 3-D convolution: its depth axis, and the 2-D convolution of one depth
/// slice (`plane.batch` is the batch, `plane.in_c`, `out_c` and `groups` the layer's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeGeometry {
    /// Input depth slices.
    pub in_d: usize,
    /// Output depth slices.
    pub out_d: usize,
    /// Kernel extent along the depth axis.
    pub kernel_d: usize,
    /// Step between neighbouring windows along the depth axis.
    pub stride_d: usize,
    /// Spacing between kernel taps along the depth axis (1: adjacent).
    pub dilation_d: usize,
    /// Zero slices padded in front of the input (those behind follow from `out_d`).
    pub pad_front: usize,
    /// The 2-D convolution of one depth slice: batch, height, width, channels and groups.
    pub plane: ConvGeometry,
}

impl VolumeGeometry {
    /// Elements of the NDHWC input: `in_d` times those of one 2-D slice.
    pub fn input_len(&self) -> usize {
        self.plane.input_len() * self.in_d
    }

    /// Elements of the NDHWC output: `out_d` times those of one 2-D slice.
    pub fn output_len(&self) -> usize {
        self.plane.output_len() * self.out_d
    }

    /// Elements of the DHWIO kernel: `kernel_d` times those of the 2-D kernel.
    pub fn kernel_len(&self) -> usize {
        self.plane.kernel_len() * self.kernel_d
    }

    /// Multiply-adds of one forward pass.
    pub fn macs(&self) -> usize {
        self.gathered().macs()
    }

    /// The 2-D convolution over the gathered depth taps.
    fn gathered(&self) -> ConvGeometry {
        ConvGeometry {
            batch: self.plane.batch * self.out_d,
            in_c: self.plane.in_c * self.kernel_d,
            ..self.plane
        }
    }

    /// The input already is the gathered tensor: one tap per output slice, in order.
    fn needs_no_gather(&self) -> bool {
        self.kernel_d == 1 && self.stride_d == 1 && self.pad_front == 0 && self.in_d == self.out_d
    }

    /// The input slice under depth tap `k` of output slice `od`, if inside the input.
    fn input_slice(&self, od: usize, k: usize) -> Option<usize> {
        let id = (od * self.stride_d + k * self.dilation_d).wrapping_sub(self.pad_front);
        (id < self.in_d).then_some(id)
    }

    /// Calls `f(gathered_slice, input_slice, tap)` for every depth tap inside the input;
    /// slices are counted over the batch (`n · out_d + od`, `n · in_d + id`).
    fn taps(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (0..self.plane.batch * self.out_d).flat_map(move |slice| {
            let (n, od) = (slice / self.out_d, slice % self.out_d);
            (0..self.kernel_d).filter_map(move |k| {
                self.input_slice(od, k)
                    .map(|id| (slice, n * self.in_d + id, k))
            })
        })
    }

    fn check(&self, x: usize, w: usize, y: usize) {
        assert_eq!(x, self.input_len(), "conv3d input length");
        assert_eq!(w, self.kernel_len(), "conv3d kernel length");
        assert_eq!(y, self.output_len(), "conv3d output length");
    }

    /// (pixels per slice, channels per group, channels) of the input.
    fn channel_blocks(&self) -> (usize, usize, usize) {
        let p = &self.plane;
        (p.in_h * p.in_w, p.in_c / p.groups, p.in_c)
    }

    /// The depth-im2col tensor of `x` (zeros where a tap falls in the padding).
    fn gather(&self, x: &[f32]) -> Vec<f32> {
        let (pixels, cg, c) = self.channel_blocks();
        let (kd, groups) = (self.kernel_d, self.plane.groups);
        let wide = kd * c;
        let mut gathered = vec![0f32; self.plane.batch * self.out_d * pixels * wide];
        gathered
            .par_chunks_mut(pixels * wide)
            .enumerate()
            .for_each(|(slice, out)| {
                let (n, od) = (slice / self.out_d, slice % self.out_d);
                for k in 0..kd {
                    let Some(id) = self.input_slice(od, k) else {
                        continue;
                    };
                    let src = &x[(n * self.in_d + id) * pixels * c..][..pixels * c];
                    for (dst, src) in out.chunks_mut(wide).zip(src.chunks(c)) {
                        for g in 0..groups {
                            dst[g * kd * cg + k * cg..][..cg].copy_from_slice(&src[g * cg..][..cg]);
                        }
                    }
                }
            });
        gathered
    }

    /// Adds a gradient with respect to the gathered tensor back onto `dx`.
    fn scatter_add(&self, gathered: &[f32], dx: &mut [f32]) {
        let (pixels, cg, c) = self.channel_blocks();
        let (kd, groups) = (self.kernel_d, self.plane.groups);
        let wide = kd * c;
        for (slice, input, k) in self.taps() {
            let src = &gathered[slice * pixels * wide..][..pixels * wide];
            let dst = &mut dx[input * pixels * c..][..pixels * c];
            for (dst, src) in dst.chunks_mut(c).zip(src.chunks(wide)) {
                for g in 0..groups {
                    let from = &src[g * kd * cg + k * cg..][..cg];
                    dst[g * cg..][..cg]
                        .iter_mut()
                        .zip(from)
                        .for_each(|(d, s)| *d += s);
                }
            }
        }
    }

    /// Index in the DHWIO kernel of the gathered kernel's (row, column, in, out) entry.
    fn volume_index(&self, plane_index: usize) -> usize {
        let p = &self.plane;
        let (cg, oc) = (p.in_c / p.groups, p.out_c);
        let o = plane_index % oc;
        let rest = plane_index / oc;
        let (tap_c, ij) = (rest % (self.kernel_d * cg), rest / (self.kernel_d * cg));
        let (k, ci) = (tap_c / cg, tap_c % cg);
        ((k * p.kernel_h * p.kernel_w + ij) * cg + ci) * oc + o
    }

    /// The kernel as the gathered 2-D convolution takes it.
    fn plane_kernel(&self, w: &[f32]) -> Vec<f32> {
        (0..w.len()).map(|i| w[self.volume_index(i)]).collect()
    }
}

/// `y = activation(conv3d(x, w) + bias)`; `y` is overwritten.
pub fn conv3d_forward_with(
    g: &VolumeGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y: &mut [f32],
) {
    g.check(x.len(), w.len(), y.len());
    let w2 = g.plane_kernel(w);
    if g.needs_no_gather() {
        conv2d_forward_with(&g.gathered(), x, &w2, epilogue, y);
    } else {
        conv2d_forward_with(&g.gathered(), &g.gather(x), &w2, epilogue, y);
    }
}

/// `dx = dL/dx` from `dy = dL/dy`; `dx` is overwritten.
pub fn conv3d_backward_input(g: &VolumeGeometry, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    g.check(dx.len(), w.len(), dy.len());
    let w2 = g.plane_kernel(w);
    if g.needs_no_gather() {
        conv2d_backward_input(&g.gathered(), dy, &w2, dx);
        return;
    }
    let mut dgathered = vec![0f32; g.gathered().input_len()];
    conv2d_backward_input(&g.gathered(), dy, &w2, &mut dgathered);
    dx.fill(0.0);
    g.scatter_add(&dgathered, dx);
}

/// `dw += dL/dW` from the input `x` and `dy = dL/dy`.
pub fn conv3d_backward_kernel(g: &VolumeGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    g.check(x.len(), dw.len(), dy.len());
    let mut dw2 = vec![0f32; dw.len()];
    if g.needs_no_gather() {
        conv2d_backward_kernel(&g.gathered(), x, dy, &mut dw2);
    } else {
        conv2d_backward_kernel(&g.gathered(), &g.gather(x), dy, &mut dw2);
    }
    for (i, d) in dw2.iter().enumerate() {
        dw[g.volume_index(i)] += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 3-D sum written out, for comparison.
    fn direct(g: &VolumeGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let p = &g.plane;
        let (cg, og) = (p.in_c / p.groups, p.out_c / p.groups);
        let mut y = vec![0f32; g.output_len()];
        for n in 0..p.batch {
            for od in 0..g.out_d {
                for oy in 0..p.out_h {
                    for ox in 0..p.out_w {
                        for o in 0..p.out_c {
                            let grp = o / og;
                            let mut s = 0f32;
                            for k in 0..g.kernel_d {
                                let Some(id) = g.input_slice(od, k) else {
                                    continue;
                                };
                                for i in 0..p.kernel_h {
                                    let iy = (oy * p.stride_h + i * p.dilation_h)
                                        .wrapping_sub(p.pad_top);
                                    for j in 0..p.kernel_w {
                                        let ix = (ox * p.stride_w + j * p.dilation_w)
                                            .wrapping_sub(p.pad_left);
                                        if iy >= p.in_h || ix >= p.in_w {
                                            continue;
                                        }
                                        for c in 0..cg {
                                            let xi = (((n * g.in_d + id) * p.in_h + iy) * p.in_w
                                                + ix)
                                                * p.in_c
                                                + grp * cg
                                                + c;
                                            let wi = (((k * p.kernel_h + i) * p.kernel_w + j) * cg
                                                + c)
                                                * p.out_c
                                                + o;
                                            s += x[xi] * w[wi];
                                        }
                                    }
                                }
                            }
                            y[(((n * g.out_d + od) * p.out_h + oy) * p.out_w + ox) * p.out_c + o] =
                                s;
                        }
                    }
                }
            }
        }
        y
    }

    fn geometry(
        groups: usize,
        kernel_d: usize,
        stride_d: usize,
        pad_front: usize,
    ) -> VolumeGeometry {
        let in_d = 5;
        let out_d = (in_d + 2 * pad_front - kernel_d) / stride_d + 1;
        VolumeGeometry {
            in_d,
            out_d,
            kernel_d,
            stride_d,
            dilation_d: 1,
            pad_front,
            plane: ConvGeometry {
                batch: 2,
                in_h: 4,
                in_w: 5,
                in_c: 4,
                out_h: 4,
                out_w: 3,
                out_c: 6,
                kernel_h: 3,
                kernel_w: 3,
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                pad_top: 1,
                pad_left: 0,
                groups,
            },
        }
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7 + seed * 13) % 23) as f32 - 11.0) / 11.0)
            .collect()
    }

    #[test]
    fn gathered_convolution_is_the_three_dimensional_sum() {
        for (groups, kd, sd, pad) in [(1, 3, 1, 1), (2, 3, 2, 0), (1, 1, 1, 0), (1, 2, 2, 1)] {
            let g = geometry(groups, kd, sd, pad);
            let x = values(g.input_len(), 1);
            let w = values(g.kernel_len(), 2);
            let mut y = vec![0f32; g.output_len()];
            conv3d_forward_with(&g, &x, &w, Epilogue::default(), &mut y);
            let want = direct(&g, &x, &w);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{groups} {kd} {sd} {pad}: {a} vs {b}");
            }
        }
    }

    /// <dy, conv(x)> = <conv_backward_input(dy), x> = <conv_backward_kernel(x, dy), w>.
    #[test]
    fn gradients_are_the_adjoints_of_the_forward_pass() {
        for (groups, kd, sd, pad) in [(1, 3, 1, 1), (2, 3, 2, 0), (1, 1, 1, 0)] {
            let g = geometry(groups, kd, sd, pad);
            let x = values(g.input_len(), 3);
            let w = values(g.kernel_len(), 4);
            let dy = values(g.output_len(), 5);
            let y = direct(&g, &x, &w);
            let forward: f64 = y.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum();
            let mut dx = vec![1f32; x.len()];
            conv3d_backward_input(&g, &dy, &w, &mut dx);
            let through_input: f64 = dx.iter().zip(&x).map(|(a, b)| (a * b) as f64).sum();
            let mut dw = vec![0f32; w.len()];
            conv3d_backward_kernel(&g, &x, &dy, &mut dw);
            let through_kernel: f64 = dw.iter().zip(&w).map(|(a, b)| (a * b) as f64).sum();
            assert!((forward - through_input).abs() < 1e-3 * forward.abs().max(1.0));
            assert!((forward - through_kernel).abs() < 1e-3 * forward.abs().max(1.0));
        }
    }
}
