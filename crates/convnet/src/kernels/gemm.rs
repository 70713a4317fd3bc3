//! Matrix products through the `gemm` crate. Its entry point takes raw pointers and
//! strides; this wrapper takes slices, checks that every element the product touches lies
//! inside them, and picks the thread count.

use gemm::Parallelism;

/// A read-only matrix inside a slice: element (i, j) is `data[i * row_stride + j * col_stride]`.
/// Transposing is swapping the strides, so no product ever needs a transposed copy.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with `cols` columns (rows are `row_stride` apart).
    pub fn row_major(data: &'a [f32], row_stride: usize) -> Self {
        MatRef {
            data,
            row_stride,
            col_stride: 1,
        }
    }

    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
            assert!(
                last < self.data.len(),
                "gemm: {what} of {rows}x{cols} reaches index {last} of a slice of {}",
                self.data.len()
            );
        }
    }
}

/// `dst = a · b` (or `dst += a · b` when `accumulate`), with `a` m×k, `b` k×n and `dst`
/// m×n row-major with rows `dst_row_stride` apart. `parallel` lets the product use all of
/// rayon's threads; callers that already run in parallel pass false.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let dst_view = MatRef::row_major(dst, dst_row_stride);
    dst_view.check(m, n, "destination");
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                dst[row * dst_row_stride..row * dst_row_stride + n].fill(0.0);
            }
        }
        return;
    }
    a.check(m, k, "left operand");
    b.check(k, n, "right operand");
    let parallelism = if parallel && m * n * k >= super::PARALLEL_THRESHOLD {
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
