//! `convnet predict MODEL --input X.npy [--input X2.npy …] --output Y.npy [--output …]`.

use convnet::{Error, Tensor};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A model file (.keras, .h5, config.json) or a built-in model name.
    model: String,
    /// One .npy array per model input, samples first (NHWC for images).
    #[arg(long = "input", required = true)]
    inputs: Vec<PathBuf>,
    /// One .npy file per model output.
    #[arg(long = "output", required = true)]
    outputs: Vec<PathBuf>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

pub fn run(args: Args) -> Result<(), Error> {
    let model = super::models::resolve(&args.model)?;
    let expected_inputs = model.input_shapes().len();
    if args.inputs.len() != expected_inputs {
        return Err(Error::invalid(
            "--input",
            format!(
                "the model has {expected_inputs} inputs but {} --input files were given",
                args.inputs.len()
            ),
        ));
    }
    if args.outputs.len() != model.output_shapes().len() {
        return Err(Error::invalid(
            "--output",
            format!(
                "the model has {} outputs but {} --output files were given",
                model.output_shapes().len(),
                args.outputs.len()
            ),
        ));
    }
    let inputs: Vec<Tensor> = args
        .inputs
        .iter()
        .map(Tensor::read_npy)
        .collect::<Result<_, _>>()?;
    let outputs = model.predict(&inputs, args.batch_size.max(1))?;
    for (y, path) in outputs.iter().zip(&args.outputs) {
        y.write_npy(path)?;
        println!("{}: {:?}", path.display(), y.shape());
    }
    Ok(())
}
