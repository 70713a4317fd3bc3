//! The convolution, depthwise and pooling kernels (and the activation layers' passes)
//! against plain nested loops in f64, on shapes large enough that the kernels split the
//! work into several tiles and threads (the golden and gradient-check cases all fit in
//! one tile).

use convnet::initializers::rng_from_seed;
use convnet::kernels::conv::{
    conv2d_backward_input, conv2d_backward_kernel, conv2d_forward, conv2d_forward_prepared,
    output_length, prepared_kernel,
};
use convnet::kernels::depthwise::{
    depthwise_backward_input, depthwise_backward_kernel, depthwise_forward,
};
use convnet::kernels::{ConvGeometry, Epilogue, Padding};
use rand::RngExt;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rng_from_seed(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

#[allow(clippy::too_many_arguments)]
fn geometry(
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
    out_c: usize,
    k: (usize, usize),
    stride: usize,
    dilation: usize,
    padding: Padding,
    groups: usize,
) -> ConvGeometry {
    let (out_h, pad_top, _) = output_length(h, k.0, stride, dilation, padding).unwrap();
    let (out_w, pad_left, _) = output_length(w, k.1, stride, dilation, padding).unwrap();
    ConvGeometry {
        batch,
        in_h: h,
        in_w: w,
        in_c: c,
        out_h,
        out_w,
        out_c,
        kernel_h: k.0,
        kernel_w: k.1,
        stride_h: stride,
        stride_w: stride,
        dilation_h: dilation,
        dilation_w: dilation,
        pad_top,
        pad_left,
        groups,
    }
}

/// y, dL/dx and dL/dW of a grouped convolution by the definition, for L = Σ y·dy.
fn reference(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (cg, og) = (g.in_c / g.groups, g.out_c / g.groups);
    let mut y = vec![0.0f64; g.output_len()];
    let mut dx = vec![0.0f64; g.input_len()];
    let mut dw = vec![0.0f64; g.kernel_len()];
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for oc in 0..g.out_c {
                    let out = ((n * g.out_h + oy) * g.out_w + ox) * g.out_c + oc;
                    let group = oc / og;
                    for i in 0..g.kernel_h {
                        for j in 0..g.kernel_w {
                            let iy =
                                (oy * g.stride_h + i * g.dilation_h) as isize - g.pad_top as isize;
                            let ix =
                                (ox * g.stride_w + j * g.dilation_w) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.in_h as isize || ix >= g.in_w as isize {
                                continue;
                            }
                            for c in 0..cg {
                                let xi = ((n * g.in_h + iy as usize) * g.in_w + ix as usize)
                                    * g.in_c
                                    + group * cg
                                    + c;
                                let wi = ((i * g.kernel_w + j) * cg + c) * g.out_c + oc;
                                y[out] += x[xi] as f64 * w[wi] as f64;
                                dx[xi] += dy[out] as f64 * w[wi] as f64;
                                dw[wi] += dy[out] as f64 * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (y, dx, dw)
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let diff: f64 = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt().max(1e-12);
    assert!(
        diff / norm < 1e-5,
        "{what}: relative error {:.3e}",
        diff / norm
    );
}

fn check_conv(g: ConvGeometry, depthwise: bool) {
    let x = random(g.input_len(), 1);
    let w = random(g.kernel_len(), 2);
    let dy = random(g.output_len(), 3);
    let (y_ref, dx_ref, dw_ref) = reference(&g, &x, &w, &dy);
    let mut y = vec![f32::NAN; g.output_len()];
    let mut dx = vec![f32::NAN; g.input_len()];
    let mut dw = vec![0.5f32; g.kernel_len()];
    if depthwise {
        depthwise_forward(&g, &x, &w, &mut y);
        depthwise_backward_input(&g, &dy, &w, &mut dx);
        // The bias gradient comes out of the same pass: the sum of dy over pixels, added
        // onto what the buffer held.
        let mut db = vec![0.25f32; g.out_c];
        depthwise_backward_kernel(&g, &x, &dy, &mut dw, Some(&mut db));
        let db_ref: Vec<f64> = (0..g.out_c)
            .map(|o| {
                0.25 + dy
                    .iter()
                    .skip(o)
                    .step_by(g.out_c)
                    .map(|&v| v as f64)
                    .sum::<f64>()
            })
            .collect();
        assert_close(&format!("bias gradient {g:?}"), &db, &db_ref);
    } else {
        conv2d_forward(&g, &x, &w, &mut y);
        conv2d_backward_input(&g, &dy, &w, &mut dx);
        conv2d_backward_kernel(&g, &x, &dy, &mut dw);
    }
    // The kernel gradient accumulates onto what the buffer held.
    let dw_ref: Vec<f64> = dw_ref.iter().map(|v| v + 0.5).collect();
    assert_close(&format!("forward {g:?}"), &y, &y_ref);
    assert_close(&format!("input gradient {g:?}"), &dx, &dx_ref);
    assert_close(&format!("kernel gradient {g:?}"), &dw, &dw_ref);
}

#[test]
fn conv_3x3_over_several_tiles() {
    // 3·20·20 = 1200 output pixels, 144 columns per patch: 3 tiles of 455 rows.
    check_conv(
        geometry(3, 20, 20, 16, 8, (3, 3), 1, 1, Padding::Same, 1),
        false,
    );
}

#[test]
fn conv_3x3_stride_1_by_winograd() {
    // F(2x2, 3x3) tiles on outputs under about 24x24, F(4x4, 3x3) on larger ones: odd
    // output sizes (tiles cut short on the right and at the bottom), both paddings,
    // bands of tile rows over several images, more input channels than the
    // micro-kernel's depth (the products on the gemm crate), and more channels than the
    // transforms take at a time (64) on both sides. The kernel gradient takes F(2x2) on
    // outputs of 14x14 or more and im2col on the others.
    for (batch, h, w, c, out_c, padding) in [
        (2, 19, 23, 16, 24, Padding::Same),
        (3, 10, 9, 32, 16, Padding::Valid),
        (2, 64, 40, 16, 16, Padding::Same),
        (1, 6, 7, 272, 16, Padding::Same),
        (1, 24, 26, 136, 80, Padding::Same),
        (2, 30, 27, 16, 20, Padding::Valid),
    ] {
        check_conv(
            geometry(batch, h, w, c, out_c, (3, 3), 1, 1, padding, 1),
            false,
        );
    }
}

#[test]
fn winograd_ignores_a_kernel_prepared_for_the_other_tile_size() {
    // A layer's kept form is made for the geometry of its first call; a later call on
    // an image large enough for F(4x4) tiles makes its own rather than read F(2x2)'s.
    let small = geometry(1, 8, 8, 16, 16, (3, 3), 1, 1, Padding::Same, 1);
    let large = geometry(1, 32, 32, 16, 16, (3, 3), 1, 1, Padding::Same, 1);
    let (x, w) = (random(large.input_len(), 1), random(large.kernel_len(), 2));
    let kept = prepared_kernel(&small, &w);
    assert!(kept.is_some(), "the 3x3 route keeps a transformed kernel");
    let mut y = vec![f32::NAN; large.output_len()];
    let epilogue = Epilogue::default();
    conv2d_forward_prepared(&large, &x, &w, kept.as_ref(), epilogue, &mut y, large.out_c);
    let (y_ref, _, _) = reference(&large, &x, &w, &random(large.output_len(), 3));
    assert_close("forward with another tile size's kernel", &y, &y_ref);
}

#[test]
fn conv_strided_dilated_grouped_over_several_tiles() {
    check_conv(
        geometry(2, 33, 29, 12, 9, (5, 3), 2, 1, Padding::Same, 3),
        false,
    );
    check_conv(
        geometry(2, 30, 30, 8, 6, (3, 3), 1, 2, Padding::Valid, 2),
        false,
    );
}

#[test]
fn pointwise_conv_uses_the_buffer_directly_over_several_tiles() {
    // 2·48·48 = 4608 pixels > 4096 rows per tile.
    check_conv(
        geometry(2, 48, 48, 16, 24, (1, 1), 1, 1, Padding::Valid, 1),
        false,
    );
    check_conv(
        geometry(2, 48, 48, 16, 24, (1, 1), 1, 1, Padding::Same, 4),
        false,
    );
}

#[test]
fn few_channel_convs_read_their_windows_in_place() {
    // Where the product reads a packed kernel (AVX-512), convolutions over few input
    // channels with outputs 16 or more wide read each window from the input through a
    // table of offsets: 5x5 'same' with a second, partial panel of output channels; a
    // 7x7 stride-2 stem; a dilated valid one-channel layer (read from the input itself,
    // no padded copy); a 9x3 layer whose 189 steps span two blocks of the depth.
    let geometries = [
        geometry(2, 40, 37, 3, 70, (5, 5), 1, 1, Padding::Same, 1),
        geometry(1, 45, 50, 3, 24, (7, 7), 2, 1, Padding::Same, 1),
        geometry(2, 38, 36, 1, 8, (3, 3), 1, 2, Padding::Valid, 1),
        geometry(1, 40, 20, 7, 16, (9, 3), 1, 1, Padding::Valid, 1),
    ];
    for g in geometries {
        check_conv(g, false);
        // Into columns 3.. of rows wider than the output, the other columns untouched.
        let (x, w) = (random(g.input_len(), 1), random(g.kernel_len(), 2));
        let (y_ref, _, _) = reference(&g, &x, &w, &random(g.output_len(), 3));
        let row = g.out_c + 5;
        let mut wide = vec![7.0f32; g.output_len() / g.out_c * row];
        let epilogue = Epilogue::default();
        conv2d_forward_prepared(&g, &x, &w, None, epilogue, &mut wide[3..], row);
        let (inside, outside): (Vec<_>, Vec<_>) = wide
            .chunks_exact(row)
            .flat_map(|r| r.iter().enumerate())
            .partition(|(c, _)| (3..3 + g.out_c).contains(c));
        let inside: Vec<f32> = inside.into_iter().map(|(_, &v)| v).collect();
        assert_close(&format!("columns of a wider output {g:?}"), &inside, &y_ref);
        assert!(
            outside.iter().all(|(_, &v)| v == 7.0),
            "{g:?}: columns outside written"
        );
    }
}

#[test]
fn strided_1x1_conv_gathers() {
    check_conv(
        geometry(2, 17, 17, 8, 4, (1, 1), 2, 1, Padding::Same, 1),
        false,
    );
}

#[test]
fn depthwise_matches_grouped_convolution_by_definition() {
    for (dm, stride, padding) in [
        (1, 1, Padding::Same),
        (3, 2, Padding::Same),
        (2, 1, Padding::Valid),
    ] {
        let c = 6;
        check_conv(
            geometry(3, 26, 21, c, c * dm, (3, 3), stride, 1, padding, c),
            true,
        );
    }
}

#[test]
fn avx2_routes_match_by_definition_on_any_cpu() {
    // An AVX2 CPU without AVX-512 takes our own micro-kernel for shallow products (on
    // an AVX-512 machine the gemm crate's kernels take them instead), and the AVX2
    // copies of the loops that AVX-512 machines run compiled for AVX-512.
    convnet::kernels::simd::without_avx512(|| {
        matmul_matches_by_definition();
        depthwise_fast_paths_match_by_definition();
        conv_3x3_over_several_tiles();
    });
}

#[test]
fn portable_kernels_match_by_definition() {
    // The routes taken on CPUs without AVX2, checked here on whatever CPU runs the tests.
    convnet::kernels::simd::with_portable(|| {
        depthwise_fast_paths_match_by_definition();
        conv_3x3_over_several_tiles();
        matmul_matches_by_definition();
    });
}

#[test]
fn depthwise_fast_paths_match_by_definition() {
    // Channels in whole blocks of 8 or 16 (the register-blocked 3x3 and 5x5 paths, in
    // AVX2 or, for 16 and 32 channels on AVX-512 CPUs, AVX-512 vectors; at stride 1 the
    // input gradient as a flipped-kernel convolution) next to a 3x2 kernel and 20
    // channels, which take the general loops for all or part of their work.
    for (c, kernel, stride, dilation, padding) in [
        (16, (3, 3), 1, 1, Padding::Same),
        (16, (3, 3), 2, 1, Padding::Same),
        (8, (3, 3), 1, 2, Padding::Valid),
        (8, (3, 3), 1, 2, Padding::Same),
        (16, (3, 3), 1, 2, Padding::Valid),
        (20, (3, 3), 1, 1, Padding::Same),
        (16, (5, 5), 1, 1, Padding::Same),
        (16, (5, 5), 2, 1, Padding::Same),
        (8, (5, 5), 1, 2, Padding::Same),
        (8, (5, 5), 1, 1, Padding::Valid),
        (32, (5, 5), 1, 2, Padding::Same),
        (20, (5, 5), 1, 1, Padding::Same),
        (16, (3, 2), 1, 1, Padding::Same),
    ] {
        check_conv(
            geometry(2, 19, 23, c, c, kernel, stride, dilation, padding, c),
            true,
        );
    }
    // The stride-1 strips (8 columns forward, 4 for the 3x3 kernel gradient) ending
    // exactly at the right border or short of it, with and without padding; the last
    // case is big enough (17 MB in and out) for the rows to prefetch ahead.
    for (h, w, c, k, padding) in [
        (13, 24, 8, 3, Padding::Same),
        (13, 20, 8, 3, Padding::Same),
        (11, 26, 16, 3, Padding::Valid),
        (13, 24, 8, 5, Padding::Same),
        (11, 28, 16, 5, Padding::Valid),
        (130, 128, 64, 3, Padding::Same),
    ] {
        check_conv(geometry(2, h, w, c, c, (k, k), 1, 1, padding, c), true);
    }
}

#[test]
fn same_padding_puts_the_odd_row_at_the_bottom() {
    // TensorFlow's rule: 4 rows, kernel 2, stride 1 → total padding 1, all after.
    assert_eq!(output_length(4, 2, 1, 1, Padding::Same), Some((4, 0, 1)));
    // 7 rows, kernel 4, stride 2 → 4 outputs, padding 3 = 1 before + 2 after.
    assert_eq!(output_length(7, 4, 2, 1, Padding::Same), Some((4, 1, 2)));
    // valid: (input − kernel) / stride + 1, and nothing when the kernel does not fit.
    assert_eq!(output_length(9, 3, 2, 1, Padding::Valid), Some((4, 0, 0)));
    assert_eq!(output_length(3, 5, 1, 1, Padding::Valid), None);
    // dilation 2 turns a 3-tap kernel into an extent of 5.
    assert_eq!(output_length(5, 3, 1, 2, Padding::Valid), Some((1, 0, 0)));
}

#[test]
fn matmul_matches_by_definition() {
    // Every route of the product (without AVX-512, see the test above): our
    // micro-kernel's register tiles cut short (m not a
    // multiple of 6, a last 8-column block), its full depth (256), several row chunks,
    // transposed operands (packed), each starting value, and the row split between
    // threads; the gemm crate's for deeper products, n not a multiple of 8, a few rows
    // read down their columns and, when forced as on CPUs without AVX2, everything; and
    // one row with the right operand read along its rows (a vector-matrix product, in
    // column chunks split between threads).
    use convnet::kernels::gemm::{matmul, MatRef, Start};
    for (m, n, k) in [
        (1, 8, 1),
        (1, 600, 300),
        (7, 24, 17),
        (40, 40, 256),
        (13, 40, 300),
        (64, 256, 64),
        (200, 16, 9),
        (5, 10, 33),
    ] {
        for (transpose_a, transpose_b, parallel) in [
            (false, false, false),
            (true, false, true),
            (false, true, false),
            (true, true, true),
        ] {
            let (a, b, bias) = (random(m * k, 4), random(k * n, 5), random(n, 6));
            let a_ref = if transpose_a {
                MatRef::row_major(&a, m).t()
            } else {
                MatRef::row_major(&a, k)
            };
            let b_ref = if transpose_b {
                MatRef::row_major(&b, k).t()
            } else {
                MatRef::row_major(&b, n)
            };
            let at = |i: usize, p: usize| a[i * a_ref.row_stride + p * a_ref.col_stride] as f64;
            let bt = |p: usize, j: usize| b[p * b_ref.row_stride + j * b_ref.col_stride] as f64;
            let product: Vec<f64> = (0..m * n)
                .map(|e| (0..k).map(|p| at(e / n, p) * bt(p, e % n)).sum())
                .collect();
            // The destination has rows 3 floats longer than n: the gaps must stay as they were.
            let ldd = n + 3;
            let before = random(m * ldd, 7);
            for start in [Start::Zeros, Start::Dst, Start::Bias(&bias)] {
                let mut dst = before.clone();
                matmul(m, n, k, a_ref, b_ref, &mut dst, ldd, start, parallel);
                let want: Vec<f64> = (0..m * ldd)
                    .map(|e| {
                        let (i, j) = (e / ldd, e % ldd);
                        if j >= n {
                            return before[e] as f64;
                        }
                        product[i * n + j]
                            + match start {
                                Start::Zeros => 0.0,
                                Start::Dst => before[e] as f64,
                                Start::Bias(bias) => bias[j] as f64,
                            }
                    })
                    .collect();
                let from = match start {
                    Start::Zeros => "zeros",
                    Start::Dst => "dst",
                    Start::Bias(_) => "bias",
                };
                let case = format!(
                    "matmul {m}x{n}x{k} from {from}, transposed a {transpose_a} b {transpose_b}"
                );
                assert_close(&case, &dst, &want);
            }
        }
    }
}

#[test]
fn packed_matmul_matches_by_definition() {
    // The product from a packed right operand (AVX-512 CPUs; elsewhere nothing is
    // packed and `matmul` is the only route): register tiles cut short in rows (m not a
    // multiple of 6) and columns (a last panel of 6 or 24 columns, through masks),
    // depth in several blocks (300, 960), rows split between threads and, where they
    // are few, columns too; a left operand with rows longer than its depth; and each
    // epilogue the store applies (bias, affine map, ReLU and ReLU6 clamps), with any
    // other activation handed back to the caller.
    use convnet::activations::ActivationFn;
    use convnet::kernels::gemm::{matmul_packed, MatRef, PackedRight};
    use convnet::kernels::{Affine, Epilogue};
    let avx512 = convnet::kernels::simd::has_avx512();
    for (m, n, k) in [
        (1, 1, 1),
        (7, 24, 17),
        (13, 70, 300),
        (200, 16, 9),
        (49, 280, 960),
        (300, 64, 40),
    ] {
        let lda = k + 5;
        let (a, b) = (random(m * lda, 4), random(k * n, 5));
        let (bias, scale, shift) = (random(n, 6), random(n, 7), random(n, 8));
        let packed = PackedRight::new(k, n, MatRef::row_major(&b, n));
        assert_eq!(packed.is_some(), avx512, "packed exactly on AVX-512 CPUs");
        let Some(packed) = packed else { continue };
        assert_eq!(packed.shape(), (k, n));
        let product: Vec<f64> = (0..m * n)
            .map(|e| {
                (0..k)
                    .map(|p| a[e / n * lda + p] as f64 * b[p * n + e % n] as f64)
                    .sum()
            })
            .collect();
        let affine = Affine {
            scale: &scale,
            shift: &shift,
        };
        let epilogues = [
            ("nothing", Epilogue::default(), ActivationFn::Linear),
            (
                "bias, ReLU",
                Epilogue::of(ActivationFn::Relu).with_bias(Some(&bias)),
                ActivationFn::Linear,
            ),
            (
                "bias, affine, ReLU6",
                Epilogue {
                    bias: Some(&bias),
                    affine: Some(affine),
                    activation: ActivationFn::Relu6,
                },
                ActivationFn::Linear,
            ),
            (
                "affine, SiLU",
                Epilogue {
                    bias: None,
                    affine: Some(affine),
                    activation: ActivationFn::Silu,
                },
                ActivationFn::Silu,
            ),
        ];
        for (what, epilogue, left_over) in epilogues {
            for parallel in [false, true] {
                let ldd = n + 3;
                let before = random(m * ldd, 9);
                let mut dst = before.clone();
                let a_ref = MatRef::row_major(&a, lda);
                let after = matmul_packed(m, a_ref, &packed, &mut dst, ldd, &epilogue, parallel);
                let case = format!("packed {m}x{n}x{k}, {what}, parallel {parallel}");
                assert_eq!(after, left_over, "{case}: activation handed back");
                let want: Vec<f64> = (0..m * ldd)
                    .map(|e| {
                        let (i, j) = (e / ldd, e % ldd);
                        if j >= n {
                            return before[e] as f64;
                        }
                        let mut v = product[i * n + j] + epilogue.bias.map_or(0.0, |b| b[j] as f64);
                        if let Some(f) = epilogue.affine {
                            v = v * f.scale[j] as f64 + f.shift[j] as f64;
                        }
                        match epilogue.activation {
                            ActivationFn::Relu => v.max(0.0),
                            ActivationFn::Relu6 => v.clamp(0.0, 6.0),
                            _ => v,
                        }
                    })
                    .collect();
                assert_close(&case, &dst, &want);
            }
        }
    }
}

/// Activation layers write their outputs and input gradients in parallel chunks on big
/// tensors (the golden and gradient-check cases are small enough for one pass): the same
/// values as plain loops, with softmax rows never cut between two chunks.
#[test]
fn activation_layers_over_several_chunks_match_plain_loops() {
    use convnet::layers::{Activation, Layer};
    use convnet::{ActivationFn, Tensor};
    // 7,001 rows of 10: above the size split into chunks, rows not a divisor of one.
    let (rows, len) = (7001, 10);
    let shape = vec![rows, len];
    let x = random(rows * len, 11);
    let dy = random(rows * len, 12);
    let softmax_row = |r: &[f32]| -> Vec<f64> {
        let max = r.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
        let e: Vec<f64> = r.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    };
    for f in [ActivationFn::Relu, ActivationFn::Elu, ActivationFn::Softmax] {
        let (mut want_y, mut want_dx) = (Vec::new(), Vec::new());
        for (xr, gr) in x.chunks(len).zip(dy.chunks(len)) {
            match f {
                ActivationFn::Softmax => {
                    let y = softmax_row(xr);
                    let dot: f64 = y.iter().zip(gr).map(|(y, &g)| y * g as f64).sum();
                    want_dx.extend(y.iter().zip(gr).map(|(y, &g)| y * (g as f64 - dot)));
                    want_y.extend(y);
                }
                ActivationFn::Relu => {
                    want_y.extend(xr.iter().map(|&v| v.max(0.0) as f64));
                    want_dx.extend(
                        xr.iter()
                            .zip(gr)
                            .map(|(&v, &g)| if v > 0.0 { g as f64 } else { 0.0 }),
                    );
                }
                _ => {
                    let elu = |v: f64| if v > 0.0 { v } else { v.exp_m1() };
                    let slope = |v: f64| if v > 0.0 { 1.0 } else { v.exp() };
                    want_y.extend(xr.iter().map(|&v| elu(v as f64)));
                    want_dx.extend(xr.iter().zip(gr).map(|(&v, &g)| g as f64 * slope(v as f64)));
                }
            }
        }
        let mut layer = Activation::new(f);
        let x = Tensor::new(shape.clone(), x.clone()).unwrap();
        let dy = Tensor::new(shape.clone(), dy.clone()).unwrap();
        let (y, saved) = layer.forward(&[&x], true).unwrap();
        assert_close(&format!("{f:?} output"), y.data(), &want_y);
        let dx = layer.backward(&[&x], &y, &saved, &dy, &mut []).unwrap();
        assert_close(&format!("{f:?} input gradient"), dx[0].data(), &want_dx);
    }
}
