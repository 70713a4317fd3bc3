//! `cargo bench -p convnet`: the convolution kernels and the layers built on them, on the
//! shapes of the performance comparison (W2 3x3, W3 1x1, W4 depthwise), forward and
//! forward+backward. Throughput is given in FLOPs (a multiply-add counts two), so
//! criterion's "elem/s" reads as FLOP/s; the machine's peak (an FMA loop) is printed
//! first, to read each result as a share of it. The count is the direct convolution's:
//! 3x3 layers at stride 1 run Winograd's F(2x2, 3x3), which does fewer, so their rate
//! can pass the peak.

use convnet::kernels::conv::{
    conv2d_backward_input, conv2d_backward_kernel, conv2d_forward, output_length,
};
use convnet::kernels::depthwise::{
    depthwise_backward_input, depthwise_backward_kernel, depthwise_forward,
};
use convnet::kernels::gemm::{matmul, MatRef, Start};
use convnet::kernels::pool::{pool_backward, pool_forward, PoolKind};
use convnet::kernels::{ConvGeometry, Padding, PoolGeometry};
use convnet::layers::{Conv2D, DepthwiseConv2D};
use convnet::model::{Call, Input, Model};
use convnet::Tensor;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

/// Deterministic, non-constant data.
fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// A stride-1 geometry with Keras's 'same' padding on NHWC input `[n, h, w, c]`.
fn same(input: [usize; 4], kernel: usize, out_c: usize, groups: usize) -> ConvGeometry {
    let [n, h, w, c] = input;
    let (out_h, pad_top, _) = output_length(h, kernel, 1, 1, Padding::Same).expect("fits");
    let (out_w, pad_left, _) = output_length(w, kernel, 1, 1, Padding::Same).expect("fits");
    ConvGeometry {
        batch: n,
        in_h: h,
        in_w: w,
        in_c: c,
        out_h,
        out_w,
        out_c,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top,
        pad_left,
        groups,
    }
}

fn print_peak() {
    let threads = rayon::current_num_threads();
    let peak = convnet::perf::peak_f32_flops(threads);
    eprintln!(
        "peak f32 on {threads} threads (FMA loop): {:.1} GFLOP/s; read elem/s as FLOP/s",
        peak / 1e9
    );
}

fn convolution_kernels(c: &mut Criterion) {
    print_peak();
    let cases = [
        (
            "W2 conv3x3 64->64 56x56 b8",
            same([8, 56, 56, 64], 3, 64, 1),
            false,
        ),
        (
            "W3 conv1x1 64->256 56x56 b8",
            same([8, 56, 56, 64], 1, 256, 1),
            false,
        ),
        (
            "W4 depthwise3x3 32 112x112 b8",
            same([8, 112, 112, 32], 3, 32, 32),
            true,
        ),
    ];
    let mut group = c.benchmark_group("kernels");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (name, g, depthwise) in cases {
        let (x, w, dy) = (
            data(g.input_len()),
            data(g.kernel_len()),
            data(g.output_len()),
        );
        let (mut y, mut dx, mut dw) = (
            vec![0.0; g.output_len()],
            vec![0.0; g.input_len()],
            vec![0.0; g.kernel_len()],
        );
        let flops = 2 * g.macs() as u64;
        group.throughput(Throughput::Elements(flops));
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| {
                if depthwise {
                    depthwise_forward(&g, &x, &w, &mut y)
                } else {
                    conv2d_forward(&g, &x, &w, &mut y)
                }
            })
        });
        group.bench_function(BenchmarkId::new("input gradient", name), |b| {
            b.iter(|| {
                if depthwise {
                    depthwise_backward_input(&g, &dy, &w, &mut dx)
                } else {
                    conv2d_backward_input(&g, &dy, &w, &mut dx)
                }
            })
        });
        group.bench_function(BenchmarkId::new("kernel gradient", name), |b| {
            b.iter(|| {
                if depthwise {
                    depthwise_backward_kernel(&g, &x, &dy, &mut dw, None)
                } else {
                    conv2d_backward_kernel(&g, &x, &dy, &mut dw)
                }
            })
        });
    }
    group.finish();
}

fn matmul_and_pooling(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernels");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    let n = 512;
    let (a, b, mut out) = (data(n * n), data(n * n), vec![0.0; n * n]);
    group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    group.bench_function("matmul 512x512x512", |bench| {
        bench.iter(|| {
            matmul(
                n,
                n,
                n,
                MatRef::row_major(&a, n),
                MatRef::row_major(&b, n),
                &mut out,
                n,
                Start::Zeros,
                true,
            )
        })
    });
    let g = PoolGeometry {
        batch: 128,
        in_h: 26,
        in_w: 26,
        channels: 32,
        out_h: 13,
        out_w: 13,
        pool_h: 2,
        pool_w: 2,
        stride_h: 2,
        stride_w: 2,
        pad_top: 0,
        pad_left: 0,
        zero_padded: false,
    };
    let (x, dy) = (data(g.input_len()), data(g.output_len()));
    let (mut y, mut dx) = (vec![0.0; g.output_len()], vec![0.0; g.input_len()]);
    group.throughput(Throughput::Elements(g.input_len() as u64));
    group.bench_function("max pool 2x2 forward (fmnist_cnn's first)", |b| {
        b.iter(|| pool_forward(&g, PoolKind::Max, &x, &mut y))
    });
    pool_forward(&g, PoolKind::Max, &x, &mut y);
    group.bench_function("max pool 2x2 backward (fmnist_cnn's first)", |b| {
        b.iter(|| pool_backward(&g, PoolKind::Max, &x, &y, &dy, &mut dx))
    });
    group.finish();
}

/// Whole layers through a one-layer model: what a user's model pays, allocation, bias
/// and bookkeeping included.
fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("layers");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    type MakeLayer = Box<dyn Fn(&convnet::SymbolicTensor) -> convnet::SymbolicTensor>;
    let cases: Vec<(&str, [usize; 4], MakeLayer, u64)> = vec![
        (
            "Conv2D 3x3 64->64 56x56 b8",
            [8, 56, 56, 64],
            Box::new(|x| Conv2D::new(64, (3, 3)).padding(Padding::Same).call(x)),
            8 * 56 * 56 * 64 * 64 * 9,
        ),
        (
            "Conv2D 1x1 64->256 56x56 b8",
            [8, 56, 56, 64],
            Box::new(|x| Conv2D::new(256, (1, 1)).call(x)),
            8 * 56 * 56 * 64 * 256,
        ),
        (
            "DepthwiseConv2D 3x3 32 112x112 b8",
            [8, 112, 112, 32],
            Box::new(|x| DepthwiseConv2D::new((3, 3)).padding(Padding::Same).call(x)),
            8 * 112 * 112 * 32 * 9,
        ),
    ];
    for (name, [n, h, w, ch], layer, macs) in cases {
        let input = Input::new([h, w, ch]);
        let mut model = Model::new(&input, layer(&input)).expect("a valid model");
        let x = Tensor::new([n, h, w, ch], data(n * h * w * ch)).expect("shape");
        group.throughput(Throughput::Elements(2 * macs));
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| model.apply(&[&x]).expect("runs"))
        });
        let dy = model.apply(&[&x]).expect("runs");
        group.throughput(Throughput::Elements(6 * macs));
        group.bench_function(BenchmarkId::new("forward+backward", name), |b| {
            b.iter(|| {
                model.forward(&[&x], true).expect("runs");
                model.backward(&dy).expect("runs")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, convolution_kernels, matmul_and_pooling, layers);
criterion_main!(benches);
