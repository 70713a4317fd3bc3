//! `convnet bench`: how fast a whole model trains and runs on this machine, and the
//! workloads W1–W11 of the performance comparison (bench/compare.py runs the same
//! workloads in PyTorch, ONNX Runtime and Keras and writes the ratios to BENCHMARKS.md).

use super::data;
use super::models::resolve;
use convnet::data::Augmentation;
use convnet::initializers::set_random_seed;
use convnet::kernels::Padding;
use convnet::layers::{Conv2D, DepthwiseConv2D};
use convnet::model::{Call, Input, Model};
use convnet::perf::{peak_f32_flops, peak_memory_bytes};
use convnet::train::{FitOptions, Loss, LossFn, Optimizer};
use convnet::{zoo, Error, Tensor};

/// The comparison workloads, in order.
const WORKLOADS: [&str; 11] = [
    "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11",
];
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// A model file or built-in name to benchmark as a whole (training step, latency at
    /// batch 1, throughput at --batch-size, peak memory).
    #[arg(default_value = "fmnist-cnn")]
    model: String,
    /// Run one of the comparison workloads instead (W1 … W11, or `all`).
    #[arg(long)]
    workload: Option<String>,
    /// Time inference only (batch 1 and --batch-size), not the training step.
    #[arg(long)]
    inference_only: bool,
    /// Batch size of the training step and of the throughput run.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Threads to use (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Append the results as JSON lines to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One measured quantity: a workload's mode and its median time.
struct Measurement {
    name: String,
    ms: f64,
    /// FLOPs of one run, when known, to report GFLOP/s and the share of peak.
    flops: Option<Flops>,
    /// Images of one run, to report images/s.
    images: Option<usize>,
}

/// What a run's FLOP count counts.
#[derive(Clone, Copy)]
enum Flops {
    /// The multiplications and additions the kernels do (Winograd's fewer included).
    Actual(f64),
    /// A direct convolution's count, whatever route the layers take: a Winograd layer
    /// does fewer, so the rate it gives is not the arithmetic's.
    DirectEquivalent(f64),
}

impl Flops {
    fn count(self) -> f64 {
        match self {
            Flops::Actual(f) | Flops::DirectEquivalent(f) => f,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Flops::Actual(_) => "actual",
            Flops::DirectEquivalent(_) => "direct-equivalent",
        }
    }
}

/// Winograd F(2x2, 3x3)'s multiplications over the direct convolution's: 16 per tile of
/// 4 outputs where the direct one needs 36 (the kernel gradient's route).
const WINOGRAD_F2_SHARE: f64 = 16.0 / 36.0;

/// Winograd F(4x4, 3x3)'s: 36 per tile of 16 outputs where the direct one needs 144
/// (the forward pass and the input gradient on outputs of about 24x24 or more).
const WINOGRAD_F4_SHARE: f64 = 36.0 / 144.0;

/// The share of a direct convolution's multiply-adds a layer's kernels do, in its
/// forward pass, its input gradient and its kernel gradient.
struct Arithmetic {
    forward: f64,
    input_gradient: f64,
    kernel_gradient: f64,
}

/// A layer whose every pass does the direct convolution's arithmetic.
const DIRECT: Arithmetic = Arithmetic {
    forward: 1.0,
    input_gradient: 1.0,
    kernel_gradient: 1.0,
};

/// Median wall time of `f` in milliseconds: two warm-up runs, then at least five runs
/// and at least a second of them.
fn median_ms(mut f: impl FnMut() -> Result<(), Error>) -> Result<f64, Error> {
    f()?;
    f()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed() < Duration::from_secs(1) && times.len() < 1000) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// A scrambled but reproducible value in [0, 1): benchmarks need data that is neither
/// constant nor zero, not statistically random data.
fn noise(i: usize, seed: usize) -> f32 {
    ((i.wrapping_add(seed).wrapping_mul(2_654_435_761)) % 1000) as f32 / 1000.0
}

/// A model's inputs filled with noise in [0, 1) at batch `batch`.
fn random_inputs(model: &Model, batch: usize, seed: usize) -> Result<Vec<Tensor>, Error> {
    model
        .input_shapes()
        .iter()
        .map(|shape| {
            let mut dims = vec![batch];
            for d in &shape[1..] {
                dims.push(d.ok_or_else(|| {
                    Error::invalid(
                        "MODEL",
                        "bench needs a model whose input shape is fully known",
                    )
                })?);
            }
            let len = dims.iter().product();
            Tensor::new(dims, (0..len).map(|i| noise(i, seed)).collect())
        })
        .collect()
}

/// Targets that fit the model's outputs: class indices for a softmax-like output of
/// several units, values for one unit.
fn random_targets(model: &Model, batch: usize) -> (Vec<Tensor>, Vec<Box<dyn Loss>>) {
    model
        .output_shapes()
        .iter()
        .map(|shape| {
            let units = shape.last().copied().flatten().unwrap_or(1);
            if units > 1 && shape.len() == 2 {
                let labels = (0..batch)
                    .map(|i| (noise(i, 7) * units as f32).floor())
                    .collect();
                let loss = LossFn::from_name("sparse_categorical_crossentropy")
                    .expect("a Keras loss name");
                (
                    Tensor::new([batch], labels).expect("batch labels"),
                    Box::new(loss) as Box<dyn Loss>,
                )
            } else {
                let dims: Vec<usize> = std::iter::once(batch)
                    .chain(shape[1..].iter().map(|d| d.unwrap_or(1)))
                    .collect();
                let loss = LossFn::from_name("mse").expect("a Keras loss name");
                (Tensor::zeros(dims), Box::new(loss) as Box<dyn Loss>)
            }
        })
        .unzip()
}

/// Inference latency at batch 1 and throughput at `batch`, then (unless
/// `inference_only`) an Adam training step at `batch`.
fn bench_model(
    name: &str,
    model: Model,
    batch: usize,
    inference_only: bool,
) -> Result<Vec<Measurement>, Error> {
    let mut results = vec![inference(name, &model, 1)?];
    if batch > 1 {
        results.push(inference(name, &model, batch)?);
    }
    if !inference_only {
        let step = training_step(
            &format!("{name} training step"),
            model,
            batch,
            Optimizer::adam(1e-3),
        )?;
        results.insert(0, step);
    }
    Ok(results)
}

/// A warm inference call at `batch` on noise: `{name} inference, batch {batch}`, with
/// the direct-equivalent FLOPs of the model's layers.
fn inference(name: &str, model: &Model, batch: usize) -> Result<Measurement, Error> {
    let x = random_inputs(model, batch, batch)?;
    let refs: Vec<&Tensor> = x.iter().collect();
    let ms = median_ms(|| model.apply(&refs).map(drop))?;
    Ok(Measurement {
        name: format!("{name} inference, batch {batch}"),
        ms,
        flops: Some(Flops::DirectEquivalent(
            2.0 * model.forward_macs(batch) as f64,
        )),
        images: Some(batch),
    })
}

/// One `train_on_batch` at `batch` on noise and fitting targets: `{name}, batch {batch}`.
fn training_step(
    name: &str,
    model: Model,
    batch: usize,
    optimizer: Optimizer,
) -> Result<Measurement, Error> {
    let x = random_inputs(&model, batch, 1)?;
    let (y, losses) = random_targets(&model, batch);
    let flops = 6.0 * model.forward_macs(batch) as f64;
    let mut model = model.compile(optimizer, losses, &[])?;
    let ms = median_ms(|| model.train_on_batch(&x, &y).map(drop))?;
    Ok(Measurement {
        name: format!("{name}, batch {batch}"),
        ms,
        flops: Some(Flops::DirectEquivalent(flops)),
        images: Some(batch),
    })
}

/// One layer on a fixed input: forward (inference) and forward+backward (input and
/// weight gradients), as W2–W4 define them.
/// `arithmetic` is the share of the direct convolution's multiply-adds the layer's
/// kernels do in each pass.
fn bench_layer(
    name: &str,
    input: [usize; 4],
    layer: impl Call,
    arithmetic: Arithmetic,
) -> Result<Vec<Measurement>, Error> {
    let x0 = Input::new([input[1], input[2], input[3]]);
    let mut model = Model::new(&x0, layer.call(&x0))?;
    let macs = layer_macs(&model, input[0]);
    let backward_macs = macs * (arithmetic.input_gradient + arithmetic.kernel_gradient);
    let x = random_inputs(&model, input[0], 1)?;
    let refs: Vec<&Tensor> = x.iter().collect();
    let forward = median_ms(|| model.apply(&refs).map(drop))?;
    let dy: Vec<Tensor> = model.apply(&refs)?;
    let both = median_ms(|| {
        model.forward(&refs, true)?;
        model.backward(&dy).map(drop)
    })?;
    Ok(vec![
        Measurement {
            name: format!("{name} forward"),
            ms: forward,
            flops: Some(Flops::Actual(2.0 * macs * arithmetic.forward)),
            images: Some(input[0]),
        },
        Measurement {
            name: format!("{name} forward+backward"),
            ms: both,
            flops: Some(Flops::Actual(
                2.0 * (macs * arithmetic.forward + backward_macs),
            )),
            images: Some(input[0]),
        },
    ])
}

/// Multiply-adds of a one-layer model's forward pass: every kernel weight (bias aside)
/// is used once per output pixel, for full and depthwise kernels alike.
fn layer_macs(model: &Model, batch: usize) -> f64 {
    let layer = model.layers().last().expect("one layer");
    let kernel = layer.weights().first().map_or(0, |w| w.value.len());
    let shape = &model.output_shapes()[0];
    let pixels = shape[1].unwrap_or(0) * shape[2].unwrap_or(0);
    (batch * pixels * kernel) as f64
}

/// W1 and W11: the second of two epochs' training (batch 128, Adam) on Fashion-MNIST
/// already in memory, so that what is timed is the steady state, as in every engine.
fn steady_epoch(name: &str, model: Model, augment: Augmentation) -> Result<Measurement, Error> {
    let data = data::load("fashion-mnist", None, &model.input_shapes()[0])?;
    let mut model = model.compile_named(
        Optimizer::adam(1e-3),
        "sparse_categorical_crossentropy",
        &["accuracy"],
    )?;
    let one_epoch = || FitOptions {
        batch_size: 128,
        epochs: 1,
        verbose: 0,
        augment,
        ..FitOptions::default()
    };
    let (x, y) = (
        std::slice::from_ref(&data.x_train),
        std::slice::from_ref(&data.y_train),
    );
    model.fit(x, y, one_epoch())?;
    let start = Instant::now();
    model.fit(x, y, one_epoch())?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    eprintln!("{name} trained on {}", data.description);
    Ok(Measurement {
        name: name.into(),
        ms,
        flops: None,
        images: Some(data.x_train.batch_len()),
    })
}

/// An application with Keras's defaults (224x224x3, 1000 classes) and fresh weights.
fn application(name: &str) -> Result<Model, Error> {
    convnet::applications::by_name(name, &Default::default())
}

fn workload(id: &str) -> Result<Vec<Measurement>, Error> {
    set_random_seed(1);
    match id {
        "W1" => Ok(vec![steady_epoch(
            "W1 fmnist_cnn epoch",
            zoo::fmnist_cnn()?,
            Augmentation::default(),
        )?]),
        "W2" => bench_layer(
            "W2 conv3x3 64->64 56x56 b8",
            [8, 56, 56, 64],
            Conv2D::new(64, (3, 3)).padding(Padding::Same),
            Arithmetic {
                forward: WINOGRAD_F4_SHARE,
                input_gradient: WINOGRAD_F4_SHARE,
                kernel_gradient: WINOGRAD_F2_SHARE,
            },
        ),
        "W3" => bench_layer(
            "W3 conv1x1 64->256 56x56 b8",
            [8, 56, 56, 64],
            Conv2D::new(256, (1, 1)),
            DIRECT,
        ),
        "W4" => bench_layer(
            "W4 depthwise3x3 32ch 112x112 b8",
            [8, 112, 112, 32],
            DepthwiseConv2D::new((3, 3)).padding(Padding::Same),
            DIRECT,
        ),
        "W5" => {
            let model = zoo::seed_inception(224)?;
            let mut m = inference("W5 seed inception 224x224x3 b4", &model, 4)?;
            // Three channels in: no branch takes the Winograd route.
            m.flops = m.flops.map(|f| Flops::Actual(f.count()));
            Ok(vec![m])
        }
        "W6" => Ok(vec![inference(
            "W6 mobilenet block 224x224x3",
            &zoo::mobilenet_block_sized(224)?,
            1,
        )?]),
        "W7" => {
            let model = application("resnet50")?;
            Ok(vec![
                inference("W7 ResNet50 224x224", &model, 1)?,
                inference("W7 ResNet50 224x224", &model, 16)?,
            ])
        }
        "W8" => Ok(vec![inference(
            "W8 MobileNetV2 224x224",
            &application("mobilenet_v2")?,
            1,
        )?]),
        "W9" => Ok(vec![inference(
            "W9 EfficientNetB0 224x224",
            &application("efficientnet_b0")?,
            1,
        )?]),
        "W10" => Ok(vec![training_step(
            "W10 ResNet50 224x224 SGD training step",
            application("resnet50")?,
            16,
            Optimizer::sgd(0.01),
        )?]),
        "W11" => Ok(vec![steady_epoch(
            "W11 fmnist_deep epoch",
            zoo::fmnist_deep()?,
            Augmentation {
                flip: true,
                translate: 2,
            },
        )?]),
        other => Err(Error::invalid(
            "workload",
            format!("no workload '{other}' (W1 … W11, or all)"),
        )),
    }
}

pub fn run(args: Args) -> Result<(), Error> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .map_err(|e| Error::invalid("--threads", format!("--threads {threads}: {e}")))?;
    }
    let threads = rayon::current_num_threads();
    let results = match args.workload.as_deref() {
        Some("all") => WORKLOADS
            .iter()
            .map(|w| workload(w))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect(),
        Some(id) => workload(&id.to_uppercase())?,
        None => bench_model(
            &args.model,
            resolve(&args.model)?,
            args.batch_size.max(1),
            args.inference_only,
        )?,
    };
    // The FMA loop runs after the workloads: for a while after it the cores run the
    // workloads slower (measured; the clock recovers within a second or so).
    let peak = peak_f32_flops(threads);
    println!(
        "{threads} threads; peak f32 (FMA loop): {:.1} GFLOP/s; `actual` rates count the \
         arithmetic the kernels do, `direct-equivalent` ones a direct convolution's (a \
         Winograd layer does fewer)",
        peak / 1e9
    );
    let peak_mb = peak_memory_bytes().map(|b| b as f64 / (1 << 20) as f64);
    let mut json = String::new();
    for m in &results {
        let mut line = format!("{:<48} {:>10.2} ms", m.name, m.ms);
        if let Some(images) = m.images {
            line += &format!("  {:>9.1} images/s", images as f64 / m.ms * 1e3);
        }
        let rate = m.flops.map(|f| f.count() / m.ms * 1e3);
        if let (Some(flops), Some(rate)) = (m.flops, rate) {
            line += &format!(
                "  {:>7.1} GFLOP/s {} ({:.0}% of peak)",
                rate / 1e9,
                flops.label(),
                rate / peak * 100.0
            );
        }
        println!("{line}");
        json += &serde_json::json!({
            "engine": "convnet", "config": "", "name": m.name, "ms": m.ms, "threads": threads,
            "peak_mb": peak_mb, "peak_gflops": peak / 1e9,
            "gflops": rate.map(|r| r / 1e9), "flops_kind": m.flops.map(Flops::label),
        })
        .to_string();
        json.push('\n');
    }
    if let Some(mb) = peak_mb {
        println!("peak memory: {mb:.0} MiB");
    }
    if let Some(path) = &args.json {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(json.as_bytes()))
            .map_err(|e| Error::file(path, e.to_string()))?;
    }
    Ok(())
}
