//! `convnet apply LAYER.json --input X.npy --output Y.npy`: builds a layer from the
//! object Keras writes for it (`{"class_name": …, "config": …}`, e.g.
//! `keras.saving.serialize_keras_object(layer)`), loads its weights from .npy files in
//! Keras's order (or draws them from its initializers with `--seed`), and runs it in
//! inference mode on the input arrays.

use convnet::layers::{layer_from_keras, shape_of, Shape};
use convnet::{Error, Tensor};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The layer's Keras object as JSON: {"class_name": "Conv2D", "config": {...}}.
    layer: PathBuf,
    /// Input array (.npy, NHWC for images); repeat for merge layers.
    #[arg(long = "input", required = true)]
    inputs: Vec<PathBuf>,
    /// Where to write the output array (.npy, float32).
    #[arg(long)]
    output: PathBuf,
    /// The layer's weights, one .npy per weight, in Keras's order (kernel, bias, …).
    #[arg(long = "weights")]
    weights: Vec<PathBuf>,
    /// Seed for weights drawn from the layer's initializers when --weights is absent.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> Result<(), Error> {
    let text = std::fs::read_to_string(&args.layer).map_err(|e| Error::file(&args.layer, e))?;
    let object: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(&args.layer, format!("invalid JSON: {e}")))?;
    let mut layer = layer_from_keras(&object).map_err(|e| Error::file(&args.layer, e))?;
    let inputs: Vec<Tensor> = args
        .inputs
        .iter()
        .map(Tensor::read_npy)
        .collect::<Result<_, _>>()?;
    // The batch size stays open, as in Keras's build shapes.
    let shapes: Vec<Shape> = inputs
        .iter()
        .map(|t| {
            let mut s = shape_of(t);
            if let Some(batch) = s.first_mut() {
                *batch = None;
            }
            s
        })
        .collect();
    layer.build(
        &shapes,
        &mut convnet::initializers::rng_from_seed(args.seed),
    )?;
    if !args.weights.is_empty() {
        let weights = args
            .weights
            .iter()
            .map(Tensor::read_npy)
            .collect::<Result<Vec<_>, _>>()?;
        layer.set_weights(weights)?;
    }
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let output = layer.apply(&refs)?;
    output.write_npy(&args.output)?;
    println!(
        "{} '{}': {} -> {:?}, written to {}",
        layer.class_name(),
        layer.name(),
        inputs
            .iter()
            .map(|t| format!("{:?}", t.shape()))
            .collect::<Vec<_>>()
            .join(" + "),
        output.shape(),
        args.output.display()
    );
    Ok(())
}
