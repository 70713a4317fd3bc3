//! Matrix products through the `gemm` crate. Its entry point takes raw pointers and
//! strides; this wrapper takes slices, checks that every element the product touches lies
//! inside them, and picks the thread count.
//!
//! Files: `mod.rs` the operands and the choice of route, `portable.rs` the `gemm`
//! crate's product (every CPU), `avx2.rs` our own micro-kernel (AVX2+FMA CPUs),
//! `avx512.rs` our own product from a packed right operand (AVX-512 CPUs).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

/// A read-only matrix inside a slice: element (i, j) is `data[i * row_stride + j * col_stride]`.
/// Transposing is swapping the strides, so no product ever needs a transposed copy.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// The elements, at least up to the last one the matrix addresses.
    pub data: &'a [f32],
    /// Distance in `data` between element (i, j) and (i + 1, j).
    pub row_stride: usize,
    /// Distance in `data` between element (i, j) and (i, j + 1).
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

    /// The transpose, as a view over the same data (the strides swapped, nothing copied).
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
/// On AVX2+FMA CPUs without AVX-512, for the shapes where it is the faster (see
/// `own_product_suits`), the product is our own micro-kernel's (`microkernel`);
/// elsewhere the `gemm` crate's, whose AVX-512 kernels (its `x86-v4` feature, chosen at
/// run time) beat our AVX2 one on every shape where both were timed.
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
    if m == 1 && b.col_stride == 1 && k > 0 {
        a.check(m, k, "left operand");
        b.check(k, n, "right operand");
        one_row(n, k, a, b, &mut dst[..n], start, parallel);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if own_product_suits(m, n, k, a)
        && crate::kernels::simd::has_avx2_fma()
        && !crate::kernels::simd::has_avx512()
    {
        a.check(m, k, "left operand");
        b.check(k, n, "right operand");
        avx2::own_product(m, n, k, a, b, dst, dst_row_stride, start, parallel);
        return;
    }
    portable::product(m, n, k, a, b, dst, dst_row_stride, start, parallel);
}

/// The product for one row of `a` with `b` read along its rows (a Dense layer at batch
/// 1: a vector-matrix product): `b`'s rows scaled by the row of `a` and summed. A
/// general product first packs all of `b` (a classifier's 1280×1000 weights, 5 MB) for a
/// product that reads it once, so this route streams `b` instead, in memory order: the
/// depth is cut into at most eight parts, each part (parallel between threads) sums
/// its rows into its own partial row, and the partial rows are added in order. Reading
/// whole rows one after another keeps the hardware prefetchers streaming, where column
/// chunks read a few cache lines from each row. A row computed alone can differ in the
/// last bits from the same row inside a bigger product.
fn one_row(
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    dst: &mut [f32],
    start: Start,
    parallel: bool,
) {
    /// At most this many parts, so that they share out evenly between 2, 4 or 8
    /// threads; the split depends on `k` alone, so the sums do not depend on the threads.
    const PARTS: usize = 8;
    /// At least this many rows per part.
    const MIN_PART: usize = 64;
    let part_rows = k
        .div_ceil((k / MIN_PART).clamp(1, PARTS))
        .next_multiple_of(4);
    let coefficients: Vec<f32> = (0..k).map(|p| a.data[p * a.col_stride]).collect();
    let mut partial = vec![0f32; k.div_ceil(part_rows) * n];
    let part = |(i, out): (usize, &mut [f32])| {
        let first = i * part_rows;
        let rows = &b.data[first * b.row_stride..];
        let coefficients = &coefficients[first..k.min(first + part_rows)];
        crate::kernels::simd::dispatch!(add_scaled_rows(out, coefficients, rows, b.row_stride));
    };
    if parallel && n * k >= crate::kernels::PARALLEL_THRESHOLD {
        use rayon::prelude::*;
        partial.par_chunks_mut(n).enumerate().for_each(part);
    } else {
        partial.chunks_mut(n).enumerate().for_each(part);
    }
    match start {
        Start::Zeros => dst.fill(0.0),
        Start::Dst => {}
        Start::Bias(bias) => dst.copy_from_slice(bias),
    }
    for sums in partial.chunks(n) {
        dst.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
    }
}

/// `out += Σ_p coefficients[p] · rows[p·stride ..][.. out.len()]`, the rows in order,
/// four at a time so that `out` is loaded and stored once per four rows.
#[inline(always)]
fn add_scaled_rows<const FMA: bool>(
    out: &mut [f32],
    coefficients: &[f32],
    rows: &[f32],
    stride: usize,
) {
    use crate::kernels::simd::madd;
    let n = out.len();
    let row = |p: usize| &rows[p * stride..][..n];
    let mut quads = coefficients.chunks_exact(4);
    let mut p = 0;
    for c in &mut quads {
        let (r0, r1, r2, r3) = (row(p), row(p + 1), row(p + 2), row(p + 3));
        for j in 0..n {
            let mut o = out[j];
            o = madd::<FMA>(c[0], r0[j], o);
            o = madd::<FMA>(c[1], r1[j], o);
            o = madd::<FMA>(c[2], r2[j], o);
            out[j] = madd::<FMA>(c[3], r3[j], o);
        }
        p += 4;
    }
    for &c in quads.remainder() {
        for (o, &v) in out.iter_mut().zip(row(p)) {
            *o = madd::<FMA>(c, v, *o);
        }
        p += 1;
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
    use avx2::MAX_DEPTH;
    (1..=MAX_DEPTH).contains(&k) && n <= 256 && n.is_multiple_of(8) && !few_rows_read_down_columns
}

/// A right operand (`k`×`n`) packed for [`matmul_packed`]: a layer's kernel, packed once
/// and read by every tile of every call (the `gemm` crate packs it again per call).
#[derive(Debug)]
pub struct PackedRight {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedRight {
    /// `b` (`k`×`n`) packed, or None where this CPU's products read their operands as
    /// they are (no AVX-512: `matmul` is the route there) or the product is empty.
    pub fn new(k: usize, n: usize, b: MatRef) -> Option<PackedRight> {
        #[cfg(target_arch = "x86_64")]
        if k > 0 && n > 0 && crate::kernels::simd::has_avx512() {
            b.check(k, n, "right operand");
            let mut data = vec![0.0; avx512::packed_len(k, n)];
            let right = avx2::Strided {
                ptr: b.data.as_ptr(),
                rows: b.row_stride,
                steps: b.col_stride,
            };
            // SAFETY: checked just above: `b` holds k×n elements through its strides.
            unsafe { avx512::pack(k, n, right, &mut data) };
            return Some(PackedRight { data, k, n });
        }
        let _ = b;
        None
    }

    /// Its (steps, columns): the product's depth and output width.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// A packed product's left operand, read along its rows: row i starts at
/// `data[i * row_stride]`, and its step p lies `offsets[p]` past that start, or `p`
/// past it where there is no table. The table lets a convolution read its receptive
/// fields straight from its input (each row an output pixel, each step a tap's channel)
/// instead of copying them into rows first.
#[derive(Clone, Copy, Debug)]
pub struct LeftRows<'a> {
    /// The elements, at least up to the last one a row reads.
    pub data: &'a [f32],
    /// Distance in `data` between one row's start and the next's.
    pub row_stride: usize,
    /// Each step's distance from its row's start, when the steps do not follow each
    /// other.
    pub offsets: Option<&'a [u32]>,
}

/// `dst = epilogue(a · b)` for `a` (`m`×`k`, read along its rows) and a packed `b`, into
/// `dst` (`m`×`n` with rows `dst_row_stride` apart): the bias, the affine map and a
/// ReLU's clamp are applied in registers before each output is stored. Returns the
/// activation still to run over `dst` (`Linear` when none is left: every activation
/// but the ReLUs). `parallel` splits the rows, and where they are few the columns too,
/// between rayon's threads.
#[allow(clippy::too_many_arguments)]
pub fn matmul_packed(
    m: usize,
    a: MatRef,
    b: &PackedRight,
    dst: &mut [f32],
    dst_row_stride: usize,
    epilogue: &crate::kernels::Epilogue,
    parallel: bool,
) -> crate::activations::ActivationFn {
    assert_eq!(
        a.col_stride, 1,
        "gemm: a packed product reads its left operand along rows"
    );
    let a = LeftRows {
        data: a.data,
        row_stride: a.row_stride,
        offsets: None,
    };
    matmul_packed_rows(m, a, b, dst, dst_row_stride, epilogue, parallel)
}

/// [`matmul_packed`] for a left operand whose steps may lie anywhere in its rows.
pub fn matmul_packed_rows(
    m: usize,
    a: LeftRows,
    b: &PackedRight,
    dst: &mut [f32],
    dst_row_stride: usize,
    epilogue: &crate::kernels::Epilogue,
    parallel: bool,
) -> crate::activations::ActivationFn {
    let (k, n) = (b.k, b.n);
    let (clamp, after) = epilogue.clamp_and_after();
    if m == 0 {
        return after;
    }
    let row_len = match a.offsets {
        Some(offsets) => {
            assert_eq!(offsets.len(), k, "gemm: one offset per step");
            offsets.iter().max().map_or(0, |&o| o as usize + 1)
        }
        None => k,
    };
    let last = (m - 1) * a.row_stride + row_len;
    assert!(
        last <= a.data.len(),
        "gemm: left operand of {m} rows reaches index {} of a slice of {}",
        last - 1,
        a.data.len()
    );
    MatRef::row_major(dst, dst_row_stride).check(m, n, "destination");
    for v in [
        epilogue.bias,
        epilogue.affine.map(|f| f.scale),
        epilogue.affine.map(|f| f.shift),
    ] {
        assert!(v.is_none_or(|v| v.len() == n), "gemm: epilogue length");
    }
    let threads = if parallel && m * n * k >= crate::kernels::PARALLEL_THRESHOLD {
        rayon::current_num_threads()
    } else {
        1
    };
    // A PackedRight is made only on AVX-512 CPUs, so elsewhere this is never reached.
    #[cfg(target_arch = "x86_64")]
    avx512::split_product(m, a, b, epilogue, clamp, dst, dst_row_stride, threads);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (clamp, threads, dst);
    after
}
