//! The `convnet` command. Each subcommand lives in its own file; this one parses the
//! command line and turns every error into one line on stderr and a non-zero exit.

mod apply;
mod bench;
mod data;
mod explain;
mod export;
mod interrupt;
mod layers;
mod models;
mod predict;
mod show;
mod summary;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "convnet",
    version,
    about = "Keras-style convolutional neural networks in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (by default the reference CNN on Fashion-MNIST) and save it.
    Train(Box<train::TrainArgs>),
    /// Loss and metrics of a model on a dataset.
    Evaluate(train::EvaluateArgs),
    /// Run a model on .npy inputs and write its outputs as .npy.
    Predict(predict::Args),
    /// Print a model's summary as Keras prints it.
    Summary(summary::Args),
    /// Convert a model file (.h5, .keras, config.json, .onnx) to a .keras file.
    Convert(summary::ConvertArgs),
    /// Write a model as an ONNX file (ONNX Runtime, OpenVINO, TensorRT, …).
    Export(export::Args),
    /// Explain a convolution step by step with your own numbers.
    Explain(explain::Args),
    /// Apply a classic kernel (sobel-x, laplacian, …) to an image and save the result.
    Filter(show::FilterArgs),
    /// Draw a model's first-layer kernels and, for an image, its feature maps.
    Visualize(show::VisualizeArgs),
    /// Time a model (training step, latency, throughput, peak memory) or a workload of
    /// the performance comparison (W1 … W6).
    Bench(bench::Args),
    /// List the built-in architectures.
    Models,
    /// List the Keras layers, activations and initializers convnet implements.
    Layers,
    /// Run one Keras layer, given by its Keras config, on .npy arrays.
    Apply(apply::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train::train(*args),
        Command::Evaluate(args) => train::evaluate(args),
        Command::Predict(args) => predict::run(args),
        Command::Summary(args) => summary::run(args),
        Command::Convert(args) => summary::convert(args),
        Command::Export(args) => export::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Filter(args) => show::filter(args),
        Command::Visualize(args) => show::visualize(args),
        Command::Bench(args) => bench::run(args),
        Command::Models => models::run(),
        Command::Layers => layers::run(),
        Command::Apply(args) => apply::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convnet: {e}");
            ExitCode::FAILURE
        }
    }
}
