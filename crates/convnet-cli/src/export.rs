//! `convnet export`: a model as an ONNX file, for ONNX Runtime, OpenVINO, TensorRT and
//! the other runtimes that read ONNX.

use convnet::io::onnx::{save_onnx, OnnxOptions};
use convnet::Error;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A model file (.keras, .h5, config.json, .onnx) or a built-in model name.
    model: String,
    /// Where to write it: an .onnx file.
    output: PathBuf,
    /// The ONNX opset, 17 to 21.
    #[arg(long, default_value_t = 17)]
    opset: i64,
    /// A fixed batch size for the inputs and outputs, or `dynamic` for an open one.
    #[arg(long, default_value = "dynamic")]
    batch: String,
}

pub fn run(args: Args) -> Result<(), Error> {
    if args.output.extension().and_then(|e| e.to_str()) != Some("onnx") {
        return Err(Error::file(
            &args.output,
            "the output must be an .onnx file",
        ));
    }
    let batch = match args.batch.as_str() {
        "dynamic" => None,
        n => Some(n.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            Error::invalid(
                "--batch",
                format!("--batch: '{n}' is neither a positive number nor 'dynamic'"),
            )
        })?),
    };
    let model = super::models::resolve(&args.model)?;
    let options = OnnxOptions {
        opset: args.opset,
        batch,
    };
    save_onnx(&model, &args.output, &options)?;
    println!(
        "{} -> {} (ONNX opset {}, NHWC input like the Keras model)",
        args.model,
        args.output.display(),
        args.opset
    );
    Ok(())
}
