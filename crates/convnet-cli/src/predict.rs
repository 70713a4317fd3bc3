//! `convnet predict MODEL --input X.npy [--input X2.npy …] --output Y.npy [--output …]`,
//! or `convnet predict MODEL --image FILE… [--top K]`: images loaded and preprocessed as
//! the model expects, and each one's best classes.

use convnet::applications::{self, PreprocessMode};
use convnet::model::Model;
use convnet::{Error, Tensor};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A model file (.keras, .h5, config.json, .onnx), a built-in model name, or a
    /// keras.applications name (`resnet50`, or `"ResNet50(include_top=False)"`).
    model: String,
    /// A weight file to load into the model first: Keras's ImageNet weight files
    /// (`resnet50_weights_tf_dim_ordering_tf_kernels.h5`), `.weights.h5`, `.keras`.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Load --weights by layer name (legacy .h5 files), skipping layers whose weights
    /// do not fit, such as a new head (Keras's `by_name=True, skip_mismatch=True`).
    #[arg(long, requires = "weights")]
    by_name: bool,
    /// One .npy array per model input, samples first (NHWC for images).
    #[arg(
        long = "input",
        required_unless_present = "images",
        conflicts_with = "images"
    )]
    inputs: Vec<PathBuf>,
    /// One .npy file per model output.
    #[arg(long = "output", required_unless_present = "images")]
    outputs: Vec<PathBuf>,
    /// Image files (PNG, JPEG) to classify: resized to the model's input size as
    /// Keras's `load_img` does, preprocessed, and their best classes printed.
    #[arg(long = "image", num_args = 1..)]
    images: Vec<PathBuf>,
    /// With --image: how many classes to print per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// With --image: the preprocessing before the model: Keras's preprocess_input modes,
    /// `unit` (values / 255, as `convnet train` scales image folders) or `none`.
    /// Default: the application's own for an application name, `unit` for a model
    /// trained by convnet on an image folder, none otherwise (a model that rescales
    /// inside, as Keras's examples build them).
    #[arg(long, value_parser = ["caffe", "tf", "torch", "unit", "none"])]
    preprocess: Option<String>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

pub fn run(args: Args) -> Result<(), Error> {
    let mut model = super::models::resolve(&args.model)?;
    if let Some(weights) = &args.weights {
        if args.by_name {
            for skipped in model.load_weights_by_name(weights, true)? {
                eprintln!("warning: {skipped}");
            }
        } else {
            model.load_weights(weights)?;
        }
    }
    if !args.images.is_empty() {
        return classify(&args, &model);
    }
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

/// What `--image` does to an image before the model.
enum Preprocess {
    Keras(PreprocessMode),
    Unit,
    None,
}

/// The preprocessing `--image` applies: `--preprocess`, or the default for the model.
fn preprocessing(args: &Args, model: &Model) -> Result<Preprocess, Error> {
    Ok(match args.preprocess.as_deref() {
        Some("caffe") => Preprocess::Keras(PreprocessMode::Caffe),
        Some("tf") => Preprocess::Keras(PreprocessMode::Tf),
        Some("torch") => Preprocess::Keras(PreprocessMode::Torch),
        Some("unit") => Preprocess::Unit,
        Some(_) => Preprocess::None,
        None => match super::models::application(&args.model)?
            .and_then(|call| applications::preprocess_mode(call.name))
        {
            Some(mode) => Preprocess::Keras(mode),
            None if model.class_names().is_some() => Preprocess::Unit,
            None => Preprocess::None,
        },
    })
}

/// `--image`: each image through the model, and its `--top` classes: ImageNet's for a
/// 1,000-class output, the model's class names when it keeps them, indices otherwise.
fn classify(args: &Args, model: &Model) -> Result<(), Error> {
    let shapes = model.input_shapes();
    let [shape] = shapes.as_slice() else {
        return Err(Error::invalid(
            "--image",
            format!("the model has {} inputs; --image feeds one", shapes.len()),
        ));
    };
    let [_, h, w, Some(channels)] = shape[..] else {
        return Err(Error::invalid(
            "--image",
            format!(
                "the model's input has shape {}, not (batch, height, width, channels)",
                convnet::layers::format_shape(shape)
            ),
        ));
    };
    let size = h.zip(w);
    let preprocess = preprocessing(args, model)?;
    let names: Vec<String> = match model.class_names() {
        Some(names) => names.to_vec(),
        None => applications::imagenet_class_names()
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    for path in &args.images {
        let mut x = convnet::data::load_img(path, size, channels)?;
        match preprocess {
            Preprocess::Keras(mode) => x = applications::preprocess_input(&x, mode)?,
            Preprocess::Unit => x.map_inplace(|v| v / 255.0),
            Preprocess::None => {}
        }
        let scores = model.predict(&[x], 1)?.swap_remove(0);
        let classes = scores.shape().get(1).copied().unwrap_or(0);
        if scores.rank() != 2 {
            return Err(Error::invalid(
                "--image",
                format!(
                    "the model's output has shape {:?}, not (samples, classes)",
                    scores.shape()
                ),
            ));
        }
        let names = if model.class_names().is_some() || classes == applications::IMAGENET_CLASSES {
            &names[..]
        } else {
            &[]
        };
        println!("{}", path.display());
        for (rank, decoded) in applications::top_classes(&scores, args.top, names)?[0]
            .iter()
            .enumerate()
        {
            let name = if decoded.name.is_empty() {
                String::new()
            } else {
                format!(" {:<30}", decoded.name)
            };
            println!(
                "  {}. {:>4}{name} {:.6}",
                rank + 1,
                decoded.class,
                decoded.score
            );
        }
    }
    Ok(())
}
