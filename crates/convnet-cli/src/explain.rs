//! `convnet explain conv --input "1 2 3 4; …" --kernel "-1 0 1; …"`: a convolution
//! worked out with your numbers (or .npy matrices).

use convnet::explain::{conv_animation, explain_conv, parse_matrix, work_conv, ExplainPadding};
use convnet::{Error, Tensor};

/// `explain conv …` works a convolution out; `explain MODEL` goes through a model's
/// layers.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    what: Option<What>,
    /// A model file (.keras, .h5, config.json) or a built-in model name.
    model: Option<String>,
}

#[derive(clap::Subcommand)]
enum What {
    /// Work a convolution out step by step.
    Conv(ConvArgs),
}

#[derive(clap::Args)]
struct ConvArgs {
    /// The input: rows separated by ';' ("1 2 3 4; 5 6 7 8; …"), a 2-D .npy file or an
    /// image (grayscale).
    #[arg(long, allow_hyphen_values = true)]
    input: String,
    /// The kernel, in the same forms.
    #[arg(long, allow_hyphen_values = true)]
    kernel: String,
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// valid, same, or a number of zeros added on every side.
    #[arg(long, default_value = "valid")]
    padding: String,
    #[arg(long, default_value_t = 1)]
    dilation: usize,
    /// True convolution: rotate the kernel 180° first.
    #[arg(long)]
    flip: bool,
    /// Also write the sliding kernel as an animated GIF: one frame per output position
    /// (sampled for large inputs), then the whole output.
    #[arg(long, value_name = "OUT.gif")]
    animate: Option<std::path::PathBuf>,
}

/// A matrix from text, a 2-D .npy file, or an image (grayscale, 0–255).
fn matrix(text: &str, what: &str) -> Result<Vec<Vec<f64>>, Error> {
    let lower = text.to_ascii_lowercase();
    if [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e)) {
        let image = convnet::data::read_image(text, None, 1)?;
        let w = image.shape()[2];
        return Ok(image
            .data()
            .chunks(w)
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect());
    }
    if text.ends_with(".npy") {
        let t = Tensor::read_npy(text)?;
        match *t.shape() {
            [_, w] => Ok(t
                .data()
                .chunks(w)
                .map(|r| r.iter().map(|&v| v as f64).collect())
                .collect()),
            _ => Err(Error::file(
                text,
                format!(
                    "{what} must be a 2-D array, this one has shape {:?}",
                    t.shape()
                ),
            )),
        }
    } else {
        parse_matrix(text, what)
    }
}

pub fn run(args: Args) -> Result<(), Error> {
    let a = match (args.what, args.model) {
        (Some(What::Conv(a)), _) => a,
        (None, Some(model)) => {
            print!(
                "{}",
                convnet::explain::explain_model(&super::models::resolve(&model)?)
            );
            return Ok(());
        }
        (None, None) => return Err(Error::Tensor(
            "explain what? `convnet explain conv --input … --kernel …` or `convnet explain MODEL`"
                .into(),
        )),
    };
    let padding: ExplainPadding = a.padding.parse().map_err(Error::Tensor)?;
    let (input, kernel) = (matrix(&a.input, "--input")?, matrix(&a.kernel, "--kernel")?);
    let (text, _) = explain_conv(&input, &kernel, a.stride, padding, a.dilation, a.flip)?;
    print!("{text}");
    if let Some(path) = a.animate {
        let working = work_conv(&input, &kernel, a.stride, padding, a.dilation, a.flip)?;
        let animation = conv_animation(working)?;
        animation.save_gif(&path)?;
        println!(
            "\nwrote {} ({} frames, {}x{})",
            path.display(),
            animation.frames.len(),
            animation.layout.width,
            animation.layout.height
        );
    }
    Ok(())
}
