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

/// What a product's output starts from before `a · b` is added.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// `dst = a · b`: the destination is only written.
    Zeros,
    /// `dst += a · b`.
    Dst,
    /// `dst[i][j] = bias[j] + (a · b)[i][j]`: a layer's bias, added where the product
    /// is computed rather than in a pass of its own.
    Bias(&'a [f32]),
}

/// `dst = start + a · b`, with `a` m×k, `b` k×n and `dst` m×n row-major with rows
/// `dst_row_stride` apart. `parallel` lets the product use all of rayon's threads;
/// callers that already run in parallel pass false.
///
/// On AVX2+FMA CPUs, for the shapes where it is the faster (see `own_product_suits`),
/// the product is our own micro-kernel's (`microkernel`); elsewhere the `gemm` crate's.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
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
    if m == 0 || n == 0 {
        return;
    }
    let dst_view = MatRef::row_major(dst, dst_row_stride);
    dst_view.check(m, n, "destination");
    if let Start::Bias(bias) = start {
        assert_eq!(bias.len(), n, "gemm: bias length");
    }
    #[cfg(target_arch = "x86_64")]
    if own_product_suits(m, n, k, a) && super::simd::has_avx2_fma() {
        a.check(m, k, "left operand");
        b.check(k, n, "right operand");
        own_product(m, n, k, a, b, dst, dst_row_stride, start, parallel);
        return;
    }
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

/// Whether our micro-kernel is the faster route for this shape (measured on the
/// benchmark layers): a shallow product with at most 256 columns (a multiple of 8), whose
/// output is the big side (a 1x1 layer's forward and input gradient: the crate's packing
/// and its pass over an output it adds onto were a fifth of the time). For deep products
/// (a 3x3 layer's im2col tiles, 9·cin deep, and kernel gradients summed over pixels)
/// the crate's fully packed kernel is a little faster, and for a handful of rows read
/// down their columns much faster. The choice never depends on the row count alone, so
/// a row of a product comes out the same whatever the batch it was computed in.
#[cfg(target_arch = "x86_64")]
fn own_product_suits(m: usize, n: usize, k: usize, a: MatRef) -> bool {
    let few_rows_read_down_columns = m < 16 && a.col_stride != 1;
    use super::microkernel::MAX_DEPTH;
    (1..=MAX_DEPTH).contains(&k) && n <= 256 && n.is_multiple_of(8) && !few_rows_read_down_columns
}

/// [`matmul`] by our own micro-kernel (see `microkernel`), for `n` a multiple of 8 on
/// AVX2+FMA CPUs; `parallel` splits the output rows between threads.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn own_product(
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
    use super::microkernel::{self, product, Strided};
    // Rows per parallel task: whole register tiles, at least 4 tasks per thread.
    let threads = if parallel && m * n * k >= super::PARALLEL_THRESHOLD {
        rayon::current_num_threads()
    } else {
        1
    };
    let rows_per_task = if threads > 1 {
        m.div_ceil(4 * threads).next_multiple_of(6)
    } else {
        m
    };
    let run = |(t, dst_rows): (usize, &mut [f32])| {
        let first = t * rows_per_task;
        let rows = rows_per_task.min(m - first);
        let start = match start {
            Start::Zeros => microkernel::Start::Zeros,
            Start::Dst => microkernel::Start::Dst,
            Start::Bias(bias) => microkernel::Start::Bias(bias.as_ptr()),
        };
        let right = Strided {
            ptr: b.data.as_ptr(),
            rows: b.row_stride,
            steps: b.col_stride,
        };
        let left = Strided {
            ptr: a.data[first * a.row_stride..].as_ptr(),
            rows: a.row_stride,
            steps: a.col_stride,
        };
        // SAFETY: `matmul` checked that a (m×k), b (k×n) and dst (m×n) lie inside their
        // slices; this task's rows of dst are
        // its own chunk, and dst is borrowed mutably so it overlaps neither operand. The
        // caller checked for AVX2 and FMA.
        unsafe {
            product(
                rows,
                n,
                k,
                left,
                right,
                dst_rows.as_mut_ptr(),
                dst_row_stride,
                start,
            )
        }
    };
    if threads > 1 {
        use rayon::prelude::*;
        dst.par_chunks_mut(rows_per_task * dst_row_stride)
            .take(m.div_ceil(rows_per_task))
            .enumerate()
            .for_each(run);
    } else {
        run((0, dst));
    }
}
