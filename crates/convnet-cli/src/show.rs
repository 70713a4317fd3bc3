//! `convnet filter IMAGE --kernel sobel-x -o OUT.png` and
//! `convnet visualize MODEL [--image IMG] [--layer NAME …] -o DIR`.

use convnet::data::read_image;
use convnet::show::{filter_image, kernel, save_feature_maps, save_first_kernels, save_image};
use convnet::Error;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct FilterArgs {
    /// A PNG or JPEG image.
    image: PathBuf,
    /// sobel-x, sobel-y, prewitt-x, prewitt-y, laplacian, gaussian, sharpen, or rows
    /// such as "-1 0 1; -1 0 1; -1 0 1".
    #[arg(long, allow_hyphen_values = true)]
    kernel: String,
    /// Filter each colour channel instead of the grayscale image.
    #[arg(long)]
    color: bool,
    /// The PNG to write.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn filter(args: FilterArgs) -> Result<(), Error> {
    let k = kernel(&args.kernel)?;
    let image = read_image(&args.image, None, if args.color { 3 } else { 1 })?;
    let filtered = filter_image(&image, &k)?;
    save_image(&filtered, 0, &args.output)?;
    let [_, h, w, _] = *filtered.shape() else {
        unreachable!("an image batch")
    };
    println!(
        "{}: {}x{} {} image filtered with {}x{} kernel '{}' (scaled to 0–255)",
        args.output.display(),
        w,
        h,
        if args.color { "colour" } else { "grayscale" },
        k.len(),
        k[0].len(),
        args.kernel
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct VisualizeArgs {
    /// A model file (.keras, .h5, config.json, .onnx) or a built-in model name.
    model: String,
    /// An image to show the feature maps for (resized to the model's input).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Layers whose feature maps to draw (default: every convolution layer).
    #[arg(long = "layer")]
    layers: Vec<String>,
    /// The folder to write the PNGs into.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn visualize(args: VisualizeArgs) -> Result<(), Error> {
    let model = super::models::resolve(&args.model)?;
    std::fs::create_dir_all(&args.output).map_err(|e| Error::file(&args.output, e))?;
    let first = save_first_kernels(&model, &args.output)?;
    println!(
        "{}: the kernels of '{first}'",
        args.output.join("kernels.png").display()
    );
    let Some(image) = args.image else {
        return Ok(());
    };
    let shape = &model.input_shapes()[0];
    let (h, w, c) = match shape[..] {
        [_, Some(h), Some(w), Some(c)] if c == 1 || c == 3 => (h, w, c),
        _ => {
            return Err(Error::invalid(
                "MODEL",
                format!(
                    "feature maps need an image model, this one takes {}",
                    convnet::layers::format_shape(shape)
                ),
            ))
        }
    };
    let mut input = read_image(&image, Some((h, w)), c)?;
    input.map_inplace(|v| v / 255.0);
    let layers: Vec<String> = if args.layers.is_empty() {
        model
            .layers()
            .filter(|l| l.class_name().contains("Conv"))
            .map(|l| l.name().to_string())
            .collect()
    } else {
        args.layers
    };
    for layer in layers {
        let path = save_feature_maps(&model, &input, &layer, &args.output)?;
        println!("{}: the feature maps of '{layer}'", path.display());
    }
    Ok(())
}
