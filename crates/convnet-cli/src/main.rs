//! The `convnet` command. Each subcommand lives in its own file; this one parses the
//! command line and turns every error into one line on stderr and a non-zero exit.

mod apply;
mod layers;

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
    /// List the Keras layers, activations and initializers convnet implements.
    Layers,
    /// Run one Keras layer, given by its Keras config, on .npy arrays.
    Apply(apply::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
