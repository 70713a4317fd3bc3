//! 2-D convolution on NHWC data with an HWIO kernel (Keras's layout: kernel_h, kernel_w,
//! in_channels / groups, out_channels), as deep-learning libraries define it: a
//! cross-correlation, the kernel slid over the input without flipping.
//!
//! The algorithm is im2col in tiles: a block of output pixels gathers its receptive
//! fields into a small row-major buffer (one row per output pixel, `kh·kw·cin` columns in
//! the kernel's own order), and one matrix product with the kernel gives the block's
//! outputs. Tiles bound the scratch memory (no whole-batch im2col buffer) and are the unit
//! of parallel work. A 1x1 convolution with stride 1 and no padding needs no gathering at
//! all: the NHWC buffer already is the (pixels × channels) matrix. On AVX-512 CPUs the
//! forward product reads the kernel packed ([`KernelForm::Packed`], kept between
//! inference calls by the layer) and applies the epilogue as it stores each output.
//!
//! Gradients use the same tiles: dL/dx is (dL/dy · Wᵀ) scattered back through the tile's
//! receptive fields (col2im), dL/dW is (tileᵀ · dL/dy) summed over tiles.
//!
//! 3x3 layers at stride 1 with enough channels take Winograd's F(2x2, 3x3) instead
//! (`winograd`): 16 multiplications per 2x2 outputs where im2col needs 36, forward, for
//! dL/dx and, on outputs of 14x14 or more, for dL/dW. Layers over few input channels
//! (a first layer) skip im2col's copies in the forward pass where the product reads a
//! packed kernel (`gathered`): the product reads each receptive field from the input
//! through a table of its taps' offsets.
//!
//! Files: `mod.rs` the shapes ([`ConvGeometry`], [`Padding`]), `im2col.rs` the tiled
//! route, `gathered.rs` the route without copies, `winograd.rs` the 3x3 route; all run
//! on the matrix products of `gemm`.
//! `volume.rs` is 3-D convolution, as a 2-D one over gathered depth taps.

mod gathered;
mod im2col;
mod volume;
mod winograd;

pub use im2col::{
    conv2d_backward_input, conv2d_backward_kernel, conv2d_forward, conv2d_forward_prepared,
    conv2d_forward_with, prepared_kernel, KernelForm,
};
pub use volume::{
    conv3d_backward_input, conv3d_backward_kernel, conv3d_forward_with, VolumeGeometry,
};
pub use winograd::TransformedKernel;

/// Keras's padding modes. `Same` follows TensorFlow's rule: the output has
/// ceil(input / stride) positions and, when the total padding is odd, the extra row or
/// column goes at the bottom or right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding: only windows that lie wholly inside the input give outputs.
    Valid,
    /// Zero padding so that the output has ceil(input / stride) positions per axis.
    Same,
}

impl Padding {
    /// The name Keras uses for this mode in layer configs: `"valid"` or `"same"`.
    pub fn keras_name(self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        }
    }
}

/// Output length along one axis and the padding before and after the input, or `None`
/// when a `valid` window does not fit in the input.
///
/// `out = (input − k_eff + pad_before + pad_after) / stride + 1`, with
/// `k_eff = (kernel − 1)·dilation + 1` the dilated kernel's extent.
pub fn output_length(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> Option<(usize, usize, usize)> {
    let extent = (kernel - 1) * dilation + 1;
    match padding {
        Padding::Valid => (input >= extent).then(|| ((input - extent) / stride + 1, 0, 0)),
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out.max(1) - 1) * stride + extent).saturating_sub(input);
            Some((out, total / 2, total - total / 2))
        }
    }
}

/// Everything a convolution kernel needs to know about its shapes. `in_c` and `out_c`
/// are the full channel counts; each of the `groups` groups maps `in_c / groups` input
/// channels to `out_c / groups` output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input rows.
    pub in_h: usize,
    /// Input columns.
    pub in_w: usize,
    /// Input channels, all groups together.
    pub in_c: usize,
    /// Output rows.
    pub out_h: usize,
    /// Output columns.
    pub out_w: usize,
    /// Output channels (filters), all groups together.
    pub out_c: usize,
    /// Kernel rows.
    pub kernel_h: usize,
    /// Kernel columns.
    pub kernel_w: usize,
    /// Step between neighbouring windows along the rows.
    pub stride_h: usize,
    /// Step between neighbouring windows along the columns.
    pub stride_w: usize,
    /// Spacing between kernel taps along the rows (1: adjacent).
    pub dilation_h: usize,
    /// Spacing between kernel taps along the columns (1: adjacent).
    pub dilation_w: usize,
    /// Zero rows padded above the input (those below follow from the output size).
    pub pad_top: usize,
    /// Zero columns padded left of the input (those on the right follow from the output size).
    pub pad_left: usize,
    /// Channel groups; 1 is an ordinary convolution.
    pub groups: usize,
}

impl ConvGeometry {
    /// Elements of the NHWC input: `batch · in_h · in_w · in_c`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }

    /// Elements of the NHWC output: `batch · out_h · out_w · out_c`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }

    /// Elements of the HWIO kernel: `kernel_h · kernel_w · (in_c / groups) · out_c`.
    pub fn kernel_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.group_in() * self.out_c
    }

    fn group_in(&self) -> usize {
        self.in_c / self.groups
    }

    fn group_out(&self) -> usize {
        self.out_c / self.groups
    }

    /// Columns of one group's im2col row: the receptive field of one output pixel.
    fn patch_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.group_in()
    }

    /// For unit tests: `k`x`k` windows at `stride` over `input` (NHWC), no dilation,
    /// `pad` zeros above and left and as many below and right as the output size
    /// `(in + 2·pad − k) / stride + 1` takes.
    #[cfg(test)]
    pub(crate) fn square_windows(
        input: [usize; 4],
        out_c: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> ConvGeometry {
        let [batch, in_h, in_w, in_c] = input;
        ConvGeometry {
            batch,
            in_h,
            in_w,
            in_c,
            out_h: (in_h + 2 * pad - k) / stride + 1,
            out_w: (in_w + 2 * pad - k) / stride + 1,
            out_c,
            kernel_h: k,
            kernel_w: k,
            stride_h: stride,
            stride_w: stride,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: pad,
            pad_left: pad,
            groups,
        }
    }

    /// Multiply-adds of one forward pass (the same count for each gradient).
    pub fn macs(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c * self.patch_len()
    }

    /// A 1x1 kernel, stride 1, no padding: the input buffer is already the im2col matrix.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }

    fn check(&self, x: usize, w: usize, y: usize) {
        assert!(
            self.groups > 0
                && self.in_c.is_multiple_of(self.groups)
                && self.out_c.is_multiple_of(self.groups)
        );
        assert_eq!(x, self.input_len(), "conv input length");
        assert_eq!(w, self.kernel_len(), "conv kernel length");
        assert_eq!(y, self.output_len(), "conv output length");
    }

    /// (image, row, column) of output pixel `pixel` (flat over batch, rows, columns).
    #[inline]
    pub(crate) fn coords(&self, pixel: usize) -> (usize, usize, usize) {
        let per_image = self.out_h * self.out_w;
        let (n, rem) = (pixel / per_image, pixel % per_image);
        (n, rem / self.out_w, rem % self.out_w)
    }

    /// The output pixels `first..first + count` as (image, row, column), counted up
    /// without a division per pixel.
    pub(crate) fn pixels(
        &self,
        first: usize,
        count: usize,
    ) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let mut at = self.coords(first);
        (0..count).map(move |_| {
            let here = at;
            at.2 += 1;
            if at.2 == self.out_w {
                at.2 = 0;
                at.1 += 1;
                if at.1 == self.out_h {
                    at.1 = 0;
                    at.0 += 1;
                }
            }
            here
        })
    }

    /// Calls `f(kernel_offset, input_offset)` for every kernel tap of the output pixel at
    /// (image, row, column) that falls inside the input; `kernel_offset` is the tap's
    /// first column in an im2col row, `input_offset` the first channel of the input pixel
    /// under it.
    #[inline]
    pub(crate) fn for_each_tap_at(
        &self,
        (n, oy, ox): (usize, usize, usize),
        mut f: impl FnMut(usize, usize),
    ) {
        let cg = self.group_in();
        for i in 0..self.kernel_h {
            let iy = (oy * self.stride_h + i * self.dilation_h).wrapping_sub(self.pad_top);
            if iy >= self.in_h {
                continue;
            }
            let input_row = (n * self.in_h + iy) * self.in_w;
            for j in 0..self.kernel_w {
                let ix = (ox * self.stride_w + j * self.dilation_w).wrapping_sub(self.pad_left);
                if ix >= self.in_w {
                    continue;
                }
                f((i * self.kernel_w + j) * cg, (input_row + ix) * self.in_c);
            }
        }
    }
}
