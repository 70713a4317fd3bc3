//! The forward pass without im2col's copies, for convolutions over few input channels
//! (a first layer on RGB or grey images, an Inception block's branches on them): the
//! packed product reads each receptive field straight from the input, through a table
//! of the taps' offsets (`gemm::LeftRows`).
//!
//! im2col copies a kernel row's taps (`kernel_w · in_c` floats) for every output pixel:
//! with three channels that is a copy call per nine or fifteen floats, and the tile of
//! copies is written and read again. Here an output row of the image is one product:
//! its pixels are the rows of the left operand, `stride_w · in_c` floats apart in the
//! input, and a pixel's steps lie at the same offsets from its first tap. Where a
//! window reaches into the padding the input is read from a zero-padded copy, made once
//! per call, so that every tap lies inside.

use super::im2col::for_each_row;
use super::ConvGeometry;
use crate::activations::ActivationFn;
use crate::buffers::Scratch;
use crate::kernels::gemm::{matmul_packed_rows, LeftRows, PackedRight};
use crate::kernels::Epilogue;
use rayon::prelude::*;

/// Longest run of floats a kernel row's taps make (`kernel_w · in_c`) for which this
/// route is taken. Longer runs im2col copies at full speed, and the padded copy of a
/// deeper input costs more than the copies it saves (timed on 3x3 layers of 16 to 256
/// channels, where im2col was as fast or faster; see bench/notes.md).
const MAX_SPAN: usize = 32;

/// Narrowest output for which this route is taken: its products are one output row
/// each, and a row of fewer pixels leaves the register tiles part empty.
const MIN_OUTPUT_WIDTH: usize = 16;

/// How this route reads a geometry's input: the padded input's rows and columns, and
/// each step's offset from its window's first tap.
pub(super) struct Plan {
    height: usize,
    width: usize,
    offsets: Vec<u32>,
}

/// The plan for `g`, where the forward pass takes this route (given a packed kernel,
/// one group). The padded input it may read must be no bigger than the output: so it
/// costs little beside the output's writes, and its size is bounded by one already
/// checked (a huge padding at a huge stride makes a small output from a huge padded
/// input).
pub(super) fn plan(g: &ConvGeometry) -> Option<Plan> {
    if g.groups != 1 || g.kernel_w * g.in_c > MAX_SPAN || g.out_w < MIN_OUTPUT_WIDTH {
        return None;
    }
    let (height, width) = (padded_height(g), padded_width(g));
    let copy = height.checked_mul(width)?.checked_mul(g.in_c)?;
    if copy > g.out_h * g.out_w * g.out_c {
        return None;
    }
    let offsets = offsets(g, width)?;
    Some(Plan {
        height,
        width,
        offsets,
    })
}

/// Columns of the input as this route reads it: as many as the windows reach, or the
/// input's own where they reach no further.
fn padded_width(g: &ConvGeometry) -> usize {
    let reach = (g.out_w - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1;
    reach.max(g.in_w + g.pad_left)
}

/// Rows of the input as this route reads it, likewise.
fn padded_height(g: &ConvGeometry) -> usize {
    let reach = (g.out_h - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 1;
    reach.max(g.in_h + g.pad_top)
}

/// Each step's offset from its window's first tap, in a padded input `width` columns
/// wide: the im2col row's order (kernel rows, then columns, then channels). None where
/// an offset would not fit the table's 32 bits.
fn offsets(g: &ConvGeometry, width: usize) -> Option<Vec<u32>> {
    let c = g.in_c;
    let mut table = Vec::with_capacity(g.kernel_h * g.kernel_w * c);
    for i in 0..g.kernel_h {
        for j in 0..g.kernel_w {
            let tap = (i * g.dilation_h * width + j * g.dilation_w) * c;
            for channel in 0..c {
                table.push(u32::try_from(tap + channel).ok()?);
            }
        }
    }
    Some(table)
}

/// Whether the windows reach past the input, so that this route reads a padded copy.
fn needs_padding(g: &ConvGeometry, height: usize, width: usize) -> bool {
    g.pad_top > 0 || g.pad_left > 0 || height > g.in_h || width > g.in_w
}

/// The input with the padding written out: zeros above and left of it, and below and
/// right as far as the windows reach.
fn padded_input(g: &ConvGeometry, x: &[f32], height: usize, width: usize) -> Scratch {
    let c = g.in_c;
    let mut padded = Scratch::zeroed(g.batch * height * width * c);
    let row = g.in_w * c;
    padded
        .par_chunks_mut(height * width * c)
        .zip(x.par_chunks(g.in_h * row))
        .for_each(|(image, x_image)| {
            for (iy, x_row) in x_image.chunks_exact(row).enumerate() {
                let at = ((iy + g.pad_top) * width + g.pad_left) * c;
                image[at..at + row].copy_from_slice(x_row);
            }
        });
    padded
}

/// `y = epilogue(conv(x, w))` for a geometry `g` and its [`plan`], from the kernel
/// `packed`, into rows `ldy` apart (see `conv2d_forward_prepared`); `y` ends at the last
/// pixel's last channel.
pub(super) fn forward(
    g: &ConvGeometry,
    plan: &Plan,
    x: &[f32],
    packed: &PackedRight,
    epilogue: &Epilogue,
    y: &mut [f32],
    ldy: usize,
) {
    let (height, width) = (plan.height, plan.width);
    let own;
    let input = if needs_padding(g, height, width) {
        own = padded_input(g, x, height, width);
        &own[..]
    } else {
        x
    };
    let c = g.in_c;
    let oc = g.out_c;
    y.par_chunks_mut(g.out_w * ldy)
        .enumerate()
        .for_each(|(row, y_row)| {
            let (n, oy) = (row / g.out_h, row % g.out_h);
            let first = ((n * height + oy * g.stride_h) * width) * c;
            let a = LeftRows {
                data: &input[first..],
                row_stride: g.stride_w * c,
                offsets: Some(&plan.offsets),
            };
            let after = matmul_packed_rows(g.out_w, a, packed, y_row, ldy, epilogue, false);
            if after != ActivationFn::Linear {
                for_each_row(y_row, g.out_w, oc, ldy, |y| after.apply_slice(y, oc));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two `in_hw`x`in_hw` images of `in_c` channels, 16 out, square windows.
    fn geometry(
        in_hw: usize,
        in_c: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> ConvGeometry {
        ConvGeometry::square_windows([2, in_hw, in_hw, in_c], 16, kernel, stride, pad, 1)
    }

    #[test]
    fn only_shallow_inputs_whose_padded_copy_is_small_take_the_route() {
        // A first layer: 3x3 'same' over three channels.
        assert!(plan(&geometry(32, 3, 3, 1, 1)).is_some());
        // Kernel rows of 3·16 floats: im2col's copies.
        assert!(plan(&geometry(32, 16, 3, 1, 1)).is_none());
        // Too narrow an output.
        assert!(plan(&geometry(8, 3, 3, 1, 1)).is_none());
        // A padding of 40000 at stride 5000: a 17x17 output from an 80,000-wide copy.
        assert!(plan(&geometry(32, 3, 3, 5000, 40000)).is_none());
    }
}
