//! The portable route of [`matmul`](super::matmul): the `gemm` crate's product.

use super::{MatRef, Start};
use gemm::Parallelism;

/// [`matmul`](super::matmul) by the `gemm` crate, once `matmul` has checked the
/// destination (and the bias length).
#[allow(clippy::too_many_arguments)]
pub(super) fn product(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    dst_row_stride: usize,
    start: Start,
    parallel: bool,
) {
    let rows = (0..m).map(|row| row * dst_row_stride..row * dst_row_stride + n);
    let accumulate = match start {
        Start::Zeros => false,
        Start::Dst => true,
        Start::Bias(bias) => {
            rows.clone().for_each(|r| dst[r].copy_from_slice(bias));
            true
        }
    };
    if k == 0 {
        if !accumulate {
            rows.for_each(|r| dst[r].fill(0.0));
        }
        return;
    }
    a.check(m, k, "left operand");
    b.check(k, n, "right operand");
    let parallelism = if parallel && m * n * k >= crate::kernels::PARALLEL_THRESHOLD {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: the checks above prove that every (row, col) the product reads or writes lies
    // inside its slice, and `dst` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
