//! `convnet summary MODEL` and `convnet convert IN OUT`.

use convnet::train::CompiledModel;
use convnet::Error;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A model file (.keras, .h5, config.json, .onnx) or a built-in model name.
    model: String,
}

/// Keras's summary of the model as loaded: a compiled model file whose optimizer has
/// stepped also lists the optimizer's variables.
pub fn run(args: Args) -> Result<(), Error> {
    match super::models::resolve_with_compile(&args.model)? {
        (model, Some(compiled)) => CompiledModel::from_parts(model, compiled)?.summary(),
        (model, None) => model.summary(),
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The model to convert: .h5, .keras or config.json.
    input: String,
    /// Where to write it: a .keras file.
    output: PathBuf,
}

pub fn convert(args: ConvertArgs) -> Result<(), Error> {
    match args.output.extension().and_then(|e| e.to_str()) {
        Some("keras") => {}
        Some("h5") => return Err(Error::file(&args.output, "writing legacy .h5 files is not supported: write a .keras file (Keras 3's format, which Keras and convnet both read)")),
        _ => return Err(Error::file(&args.output, "the output must be a .keras file")),
    }
    let (model, compiled) = super::models::resolve_with_compile(&args.input)?;
    convnet::io::save_model_parts(&model, compiled.as_ref(), &args.output)?;
    println!(
        "{} -> {} ({} parameters)",
        args.input,
        args.output.display(),
        convnet::model::thousands(model.count_params())
    );
    Ok(())
}
