//! `convnet bench`: how fast a whole model trains and runs on this machine, and the
//! workloads W1–W6 of the performance comparison (bench/compare.py runs the same
//! workloads in PyTorch and Keras and writes the ratios to BENCHMARKS.md).

use super::data;
use super::models::resolve;
use convnet::initializers::set_random_seed;
use convnet::kernels::Padding;
use convnet::layers::{Conv2D, DepthwiseConv2D};
use convnet::model::{Call, Input, Model};
use convnet::perf::{peak_f32_flops, peak_memory_bytes};
use convnet::train::{FitOptions, Loss, LossFn, Optimizer};
use convnet::{zoo, Error, Tensor};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// A model file or built-in name to benchmark as a whole (training step, latency at
    /// batch 1, throughput at --batch-size, peak memory).
    #[arg(default_value = "fmnist-cnn")]
    model: String,
    /// Run one of the comparison workloads instead (W1 … W6, or `all`).
    #[arg(long)]
    workload: Option<String>,
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
    flops: Option<f64>,
    /// Images of one run, to report images/s.
    images: Option<usize>,
}

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

/// Training step, inference latency at batch 1 and throughput at `batch`.
fn bench_model(name: &str, model: Model, batch: usize) -> Result<Vec<Measurement>, Error> {
    let x = random_inputs(&model, batch, 1)?;
    let (y, losses) = random_targets(&model, batch);
    let one = random_inputs(&model, 1, 2)?;
    let one_refs: Vec<&Tensor> = one.iter().collect();
    let latency = median_ms(|| model.apply(&one_refs).map(drop))?;
    let throughput = median_ms(|| model.predict(&x, batch).map(drop))?;
    let mut model = model.compile(Optimizer::adam(1e-3), losses, &[])?;
    let step = median_ms(|| model.train_on_batch(&x, &y).map(drop))?;
    Ok(vec![
        Measurement {
            name: format!("{name} training step, batch {batch}"),
            ms: step,
            flops: None,
            images: Some(batch),
        },
        Measurement {
            name: format!("{name} inference, batch 1"),
            ms: latency,
            flops: None,
            images: Some(1),
        },
        Measurement {
            name: format!("{name} inference, batch {batch}"),
            ms: throughput,
            flops: None,
            images: Some(batch),
        },
    ])
}

/// One layer on a fixed input: forward (inference) and forward+backward (input and
/// weight gradients), as W2–W4 define them.
fn bench_layer(name: &str, input: [usize; 4], layer: impl Call) -> Result<Vec<Measurement>, Error> {
    let x0 = Input::new([input[1], input[2], input[3]]);
    let mut model = Model::new(&x0, layer.call(&x0))?;
    let macs = layer_macs(&model, input[0]);
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
            flops: Some(2.0 * macs),
            images: Some(input[0]),
        },
        Measurement {
            name: format!("{name} forward+backward"),
            ms: both,
            flops: Some(6.0 * macs),
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

/// W1: one epoch of the reference CNN on Fashion-MNIST (batch 128, Adam), data loading
/// included, and the process's peak memory.
fn w1() -> Result<Vec<Measurement>, Error> {
    let start = Instant::now();
    set_random_seed(1);
    let model = zoo::fmnist_cnn()?;
    let data = data::load("fashion-mnist", None, &model.input_shapes()[0])?;
    let mut model = model.compile_named(
        Optimizer::adam(1e-3),
        "sparse_categorical_crossentropy",
        &["accuracy"],
    )?;
    let options = FitOptions {
        batch_size: 128,
        epochs: 1,
        verbose: 0,
        ..FitOptions::default()
    };
    let (x, y) = (
        std::slice::from_ref(&data.x_train),
        std::slice::from_ref(&data.y_train),
    );
    model.fit(x, y, options)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    eprintln!("W1 trained on {}", data.description);
    Ok(vec![Measurement {
        name: "W1 fmnist_cnn epoch".into(),
        ms,
        flops: None,
        images: Some(data.x_train.batch_len()),
    }])
}

fn workload(id: &str) -> Result<Vec<Measurement>, Error> {
    match id {
        "W1" => w1(),
        "W2" => bench_layer(
            "W2 conv3x3 64->64 56x56 b8",
            [8, 56, 56, 64],
            Conv2D::new(64, (3, 3)).padding(Padding::Same),
        ),
        "W3" => bench_layer(
            "W3 conv1x1 64->256 56x56 b8",
            [8, 56, 56, 64],
            Conv2D::new(256, (1, 1)),
        ),
        "W4" => bench_layer(
            "W4 depthwise3x3 32ch 112x112 b8",
            [8, 112, 112, 32],
            DepthwiseConv2D::new((3, 3)).padding(Padding::Same),
        ),
        "W5" => {
            let model = zoo::seed_inception(224)?;
            let x = random_inputs(&model, 4, 1)?;
            let ms = median_ms(|| model.apply(&[&x[0]]).map(drop))?;
            // 1x1, 3x3 and 5x5 branches of 64 filters over 3 channels.
            let macs = 4.0 * 224.0 * 224.0 * 64.0 * 3.0 * (1.0 + 9.0 + 25.0);
            Ok(vec![Measurement {
                name: "W5 seed inception 224x224x3 b4 inference".into(),
                ms,
                flops: Some(2.0 * macs),
                images: Some(4),
            }])
        }
        "W6" => {
            let model = zoo::mobilenet_block_sized(224)?;
            let x = random_inputs(&model, 1, 1)?;
            let ms = median_ms(|| model.apply(&[&x[0]]).map(drop))?;
            Ok(vec![Measurement {
                name: "W6 mobilenet block 224x224x3 b1 latency".into(),
                ms,
                flops: None,
                images: Some(1),
            }])
        }
        other => Err(Error::invalid(
            "workload",
            format!("no workload '{other}' (W1 … W6, or all)"),
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
    let peak = peak_f32_flops(threads);
    println!(
        "{threads} threads; peak f32 (FMA loop): {:.1} GFLOP/s; a layer's GFLOP/s counts the \
         direct convolution's multiply-adds (Winograd's 3x3 layers do fewer)",
        peak / 1e9
    );
    let results = match args.workload.as_deref() {
        Some("all") => ["W1", "W2", "W3", "W4", "W5", "W6"]
            .iter()
            .map(|w| workload(w))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect(),
        Some(id) => workload(&id.to_uppercase())?,
        None => bench_model(&args.model, resolve(&args.model)?, args.batch_size.max(1))?,
    };
    let peak_mb = peak_memory_bytes().map(|b| b as f64 / (1 << 20) as f64);
    let mut json = String::new();
    for m in &results {
        let mut line = format!("{:<48} {:>10.2} ms", m.name, m.ms);
        if let Some(images) = m.images {
            line += &format!("  {:>9.1} images/s", images as f64 / m.ms * 1e3);
        }
        if let Some(flops) = m.flops {
            let rate = flops / m.ms * 1e3;
            line += &format!(
                "  {:>7.1} GFLOP/s ({:.0}% of peak)",
                rate / 1e9,
                rate / peak * 100.0
            );
        }
        println!("{line}");
        json += &serde_json::json!({
            "engine": "convnet", "name": m.name, "ms": m.ms, "threads": threads,
            "peak_mb": peak_mb, "peak_gflops": peak / 1e9,
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
