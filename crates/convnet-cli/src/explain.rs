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
    /// A model file (.keras, .h5, config.json, .onnx) or a built-in model name.
    model: Option<String>,
    /// With a model: also print the memory a call on a batch of N needs (each layer's
    /// output, inference's and training's peaks) against the budget.
    #[arg(long, value_name = "N")]
    batch: Option<usize>,
}

#[derive(clap::Subcommand)]
enum What {
    /// Work a convolution out step by step.
    Conv(ConvArgs),
    /// A Conv2D beside its depthwise separable equivalents: shapes, parameters,
    /// multiply-adds and measured time.
    Separable(SeparableArgs),
    /// The design notes' Inception block counted: padding, shapes, parameters, cost.
    Inception(InceptionArgs),
}

#[derive(clap::Args)]
struct SeparableArgs {
    /// The input image's size, H,W,C.
    #[arg(long, value_name = "H,W,C")]
    input: String,
    #[arg(long)]
    filters: usize,
    /// The kernel's side K (a KxK kernel).
    #[arg(long)]
    kernel: usize,
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// same or valid.
    #[arg(long, default_value = "same")]
    padding: String,
    /// Print only the arithmetic, without timing the models.
    #[arg(long)]
    no_timing: bool,
}

#[derive(clap::Args)]
struct InceptionArgs {
    /// The input's size, H,W,C.
    #[arg(long, value_name = "H,W,C", default_value = "224,224,3")]
    input: String,
    /// Filters of each branch.
    #[arg(long, default_value = "64,64,64")]
    filters: String,
    /// Kernel side of each branch.
    #[arg(long, default_value = "1,3,5")]
    kernels: String,
    /// Also draw the block's branches with their shapes as a PNG.
    #[arg(long, value_name = "OUT.png")]
    plot: Option<std::path::PathBuf>,
}

/// `224,224,3` as numbers.
fn numbers(text: &str, what: &str) -> Result<Vec<usize>, Error> {
    text.split(',')
        .map(|v| {
            v.trim().parse::<usize>().map_err(|_| {
                Error::invalid(
                    what,
                    format!("{what}: '{v}' is not a whole number (write e.g. {what} 224,224,3)"),
                )
            })
        })
        .collect()
}

fn hwc(text: &str) -> Result<[usize; 3], Error> {
    match numbers(text, "--input")?[..] {
        [h, w, c] => Ok([h, w, c]),
        _ => Err(Error::invalid(
            "--input",
            format!("--input takes H,W,C (three numbers), not '{text}'"),
        )),
    }
}

fn padding_mode(text: &str) -> Result<convnet::Padding, Error> {
    match text {
        "same" => Ok(convnet::Padding::Same),
        "valid" => Ok(convnet::Padding::Valid),
        other => Err(Error::invalid(
            "--padding",
            format!("--padding must be same or valid, not '{other}'"),
        )),
    }
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
        (Some(What::Separable(a)), _) => {
            print!(
                "{}",
                convnet::explain::explain_separable(
                    hwc(&a.input)?,
                    a.filters,
                    a.kernel,
                    a.stride,
                    padding_mode(&a.padding)?,
                    (!a.no_timing).then(|| std::time::Duration::from_millis(500)),
                )?
            );
            return Ok(());
        }
        (Some(What::Inception(a)), _) => {
            let block = convnet::explain::InceptionBlock {
                input: hwc(&a.input)?,
                filters: numbers(&a.filters, "--filters")?,
                kernels: numbers(&a.kernels, "--kernels")?,
            };
            print!("{}", block.explain()?);
            if let Some(path) = a.plot {
                block.plot(&path)?;
                println!("\nwrote {}", path.display());
            }
            return Ok(());
        }
        (None, Some(model)) => {
            let model = super::models::resolve(&model)?;
            print!("{}", convnet::explain::explain_model(&model));
            if let Some(batch) = args.batch {
                print!("{}", memory_plan(&model, batch)?);
            }
            return Ok(());
        }
        (None, None) => return Err(Error::invalid(
            "explain",
            "explain what? `convnet explain conv --input … --kernel …` or `convnet explain MODEL`",
        )),
    };
    let padding: ExplainPadding = a.padding.parse()?;
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

/// `explain MODEL --batch N`: the memory plan of a call on N samples (open sizes as 1).
fn memory_plan(model: &convnet::Model, batch: usize) -> Result<String, Error> {
    use convnet::model::readable_size;
    use std::fmt::Write;
    let shapes: Vec<Vec<usize>> = model
        .input_shapes()
        .iter()
        .map(|s| {
            std::iter::once(batch)
                .chain(s[1..].iter().map(|d| d.unwrap_or(1)))
                .collect()
        })
        .collect();
    let plan = model.memory_plan(&shapes)?;
    let (limit, source) = convnet::model::memory_limit()?;
    let mut out = format!("\nMemory at batch {batch} (f32 activations):\n");
    for a in &plan.activations {
        let _ = writeln!(
            out,
            "  {:<32} {:<24} {:>12}",
            a.layer,
            format!("{:?}", a.shape),
            readable_size(a.bytes)
        );
    }
    let _ = writeln!(
        out,
        "  largest output: '{}' {:?}, {}",
        plan.largest.layer,
        plan.largest.shape,
        readable_size(plan.largest.bytes)
    );
    let _ = writeln!(
        out,
        "  inference peak: {} (at '{}'); training peak: {}",
        readable_size(plan.inference_peak),
        plan.peak_layer,
        readable_size(plan.training_peak)
    );
    let _ = writeln!(out, "  budget: {} ({source})", readable_size(limit));
    Ok(out)
}
