//! Pictures of what convolution does: the classic kernels of the design notes' edge
//! detection section applied to a real image, a model's first-layer kernels as a grid,
//! and the feature maps a model computes for an image. Values are scaled to 0–255 per
//! picture, so that whatever range a feature map has, its structure is visible.

use crate::data::{write_png, write_png_range};
use crate::error::{Error, Result};
use crate::explain::parse_matrix;
use crate::kernels::conv::{output_length, ConvGeometry, Padding};
use crate::kernels::depthwise::depthwise_forward;
use crate::model::Model;
use crate::tensor::Tensor;
use std::path::Path;

/// The classic kernels by name.
pub const NAMED_KERNELS: &[(&str, &str)] = &[
    ("sobel-x", "-1 0 1; -2 0 2; -1 0 1"),
    ("sobel-y", "-1 -2 -1; 0 0 0; 1 2 1"),
    ("prewitt-x", "-1 0 1; -1 0 1; -1 0 1"),
    ("prewitt-y", "-1 -1 -1; 0 0 0; 1 1 1"),
    ("laplacian", "0 1 0; 1 -4 1; 0 1 0"),
    (
        "gaussian",
        "0.0625 0.125 0.0625; 0.125 0.25 0.125; 0.0625 0.125 0.0625",
    ),
    ("sharpen", "0 -1 0; -1 5 -1; 0 -1 0"),
];

/// A kernel by name (`sobel-x`, …) or written out as rows (`"-1 0 1; -1 0 1; -1 0 1"`).
pub fn kernel(spec: &str) -> Result<Vec<Vec<f64>>> {
    let rows = NAMED_KERNELS
        .iter()
        .find(|(name, _)| *name == spec)
        .map_or(spec, |(_, rows)| rows);
    parse_matrix(rows, "--kernel").map_err(|e| {
        let names: Vec<&str> = NAMED_KERNELS.iter().map(|(n, _)| *n).collect();
        Error::invalid(
            "kernel",
            format!("{e} (or name a kernel: {})", names.join(", ")),
        )
    })
}

/// Convolves every channel of an NHWC image batch with one 2-D kernel ('same' padding,
/// stride 1): the feature map each channel gives.
pub fn filter_image(image: &Tensor, kernel: &[Vec<f64>]) -> Result<Tensor> {
    let [n, h, w, c] = *image.shape() else {
        return Err(Error::invalid(
            "image",
            format!(
                "expected an (n, height, width, channels) image, got {:?}",
                image.shape()
            ),
        ));
    };
    let (kh, kw) = (kernel.len(), kernel[0].len());
    let (out_h, pad_top, _) =
        output_length(h, kh, 1, 1, Padding::Same).expect("same padding always fits");
    let (out_w, pad_left, _) =
        output_length(w, kw, 1, 1, Padding::Same).expect("same padding always fits");
    let g = ConvGeometry {
        batch: n,
        in_h: h,
        in_w: w,
        in_c: c,
        out_h,
        out_w,
        out_c: c,
        kernel_h: kh,
        kernel_w: kw,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top,
        pad_left,
        groups: c,
    };
    // Depthwise layout (kh, kw, c, 1): the same kernel for every channel.
    let weights: Vec<f32> = kernel
        .iter()
        .flatten()
        .flat_map(|&v| std::iter::repeat_n(v as f32, c))
        .collect();
    let mut out = Tensor::zeros([n, out_h, out_w, c]);
    depthwise_forward(&g, image.data(), &weights, out.data_mut());
    Ok(out)
}

/// Writes image `index` of an NHWC batch as a PNG (1 or 3 channels).
pub fn save_image(batch: &Tensor, index: usize, path: impl AsRef<Path>) -> Result<()> {
    let [_, h, w, c] = *batch.shape() else {
        return Err(Error::invalid(
            "images",
            format!(
                "expected an (n, height, width, channels) batch, got {:?}",
                batch.shape()
            ),
        ));
    };
    write_png(
        path,
        &batch.data()[index * h * w * c..(index + 1) * h * w * c],
        h,
        w,
        c,
    )
}

/// Tiles `maps` (each `h`x`w`, scaled on its own to 0–1) into a grid with one-pixel
/// gaps, each cell enlarged `zoom` times, and writes it as a PNG.
fn write_grid(path: &Path, maps: &[Vec<f32>], h: usize, w: usize, zoom: usize) -> Result<()> {
    let columns = (maps.len() as f64).sqrt().ceil().max(1.0) as usize;
    let rows = maps.len().div_ceil(columns);
    let (cell_h, cell_w) = (h * zoom + 1, w * zoom + 1);
    let (height, width) = (rows * cell_h + 1, columns * cell_w + 1);
    // Gaps are drawn at 0.5, so kernels read against a mid-grey frame.
    let mut pixels = vec![0.5f32; height * width];
    for (i, map) in maps.iter().enumerate() {
        let (lo, hi) = map
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (top, left) = ((i / columns) * cell_h + 1, (i % columns) * cell_w + 1);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                pixels[(top + y) * width + left + x] = (map[(y / zoom) * w + x / zoom] - lo) / span;
            }
        }
    }
    write_png_range(path, &pixels, height, width, 1, (0.0, 1.0))
}

/// The first convolution layer's kernels as a grid (`kernels.png` in `dir`), each
/// averaged over its input channels; returns the layer's name.
pub fn save_first_kernels(model: &Model, dir: &Path) -> Result<String> {
    let layer = model
        .layers()
        .find(|l| {
            matches!(
                l.class_name(),
                "Conv2D" | "DepthwiseConv2D" | "SeparableConv2D"
            )
        })
        .ok_or_else(|| {
            Error::invalid(
                "model",
                format!("model '{}' has no convolution layer to show", model.name()),
            )
        })?;
    let kernel = &layer.weights()[0].value;
    let [kh, kw, cin, cout] = *kernel.shape() else {
        unreachable!("conv kernels are 4-D")
    };
    let maps: Vec<Vec<f32>> = (0..cout)
        .map(|o| {
            (0..kh * kw)
                .map(|p| {
                    (0..cin)
                        .map(|c| kernel.data()[(p * cin + c) * cout + o])
                        .sum::<f32>()
                        / cin as f32
                })
                .collect()
        })
        .collect();
    write_grid(&dir.join("kernels.png"), &maps, kh, kw, 12)?;
    Ok(layer.name().to_string())
}

/// The feature maps of `layer_name` for the first image of `input`, as a grid
/// (`<layer>.png` in `dir`).
pub fn save_feature_maps(
    model: &Model,
    input: &Tensor,
    layer_name: &str,
    dir: &Path,
) -> Result<std::path::PathBuf> {
    let outputs = model.layer_outputs(&[input])?;
    let map = outputs
        .iter()
        .find(|(n, _)| n == layer_name)
        .map(|(_, t)| t)
        .ok_or_else(|| {
            model.get_layer(layer_name).err().unwrap_or_else(|| {
                Error::invalid("layer", format!("layer '{layer_name}' has no output"))
            })
        })?;
    let [_, h, w, c] = *map.shape() else {
        return Err(Error::invalid(
            "layer",
            format!(
                "layer '{layer_name}' gives {:?}, not feature maps (n, height, width, channels)",
                map.shape()
            ),
        ));
    };
    let maps: Vec<Vec<f32>> = (0..c)
        .map(|ch| (0..h * w).map(|p| map.data()[p * c + ch]).collect())
        .collect();
    let path = dir.join(format!("{layer_name}.png"));
    write_grid(&path, &maps, h, w, (64 / h.max(w)).max(1))?;
    Ok(path)
}
