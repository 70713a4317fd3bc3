//! Resizing and CenterCrop, the preprocessing layers that bring images to a model's
//! size, with the numbers of Keras's TensorFlow backend (`tf.image.resize`: half-pixel
//! centres, no antialiasing). `crop_to_aspect_ratio` first takes the largest centred
//! window of the target's aspect ratio; CenterCrop crops, and resizes that way an image
//! smaller than its target, as Keras's does.

use super::conv::nhwc;
use super::declare::{self, AlwaysFalse, ChannelsLast};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::kernels::resize::{self, Tap};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Resizing's `interpolation`: convnet has `bilinear` (Keras's default) and `nearest`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMethod {
    /// Bilinear.
    Bilinear,
    /// Nearest neighbour.
    Nearest,
}

fn bilinear() -> ResizeMethod {
    ResizeMethod::Bilinear
}

fn constant() -> Value {
    json!("constant")
}

/// Keras's `Resizing(height, width, interpolation="bilinear", crop_to_aspect_ratio=False)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resizing {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `height` of the output.
    #[serde(deserialize_with = "declare::positive")]
    pub height: usize,
    /// Keras's `width` of the output.
    #[serde(deserialize_with = "declare::positive")]
    pub width: usize,
    /// Keras's `interpolation`; default `bilinear`.
    #[serde(default = "bilinear")]
    pub interpolation: ResizeMethod,
    /// Keras's `crop_to_aspect_ratio`: resize the largest centred window of the
    /// output's aspect ratio, not the whole image; default false.
    #[serde(default)]
    pub crop_to_aspect_ratio: bool,
    // Padding to the aspect ratio is not implemented; its fill is kept as read.
    #[serde(default)]
    pad_to_aspect_ratio: AlwaysFalse,
    #[serde(default = "constant")]
    fill_mode: Value,
    #[serde(default)]
    fill_value: f64,
    #[serde(default)]
    antialias: AlwaysFalse,
}

impl Resizing {
    /// A Resizing to `height × width`, bilinear.
    pub fn new(height: usize, width: usize) -> Self {
        Resizing {
            height,
            width,
            ..declare::defaults("resizing", json!({"height": 1, "width": 1}))
        }
    }
}

/// The row and column taps of resizing `(h, w)` to `(height, width)`, from the centred
/// window of the target's aspect ratio when `crop` is set (Keras's arithmetic).
fn plan(
    (h, w): (usize, usize),
    (height, width): (usize, usize),
    method: ResizeMethod,
    crop: bool,
) -> (Vec<Tap>, Vec<Tap>) {
    let (mut top, mut left, mut rows, mut cols) = (0, 0, h, w);
    if crop {
        rows = ((w * height) as f64 / width as f64) as usize;
        rows = rows.min(h).max(1);
        cols = ((h * width) as f64 / height as f64) as usize;
        cols = cols.min(w).max(1);
        top = (h - rows) / 2;
        left = (w - cols) / 2;
    }
    let taps = match method {
        ResizeMethod::Bilinear => resize::bilinear_taps,
        ResizeMethod::Nearest => resize::nearest_taps,
    };
    (taps(top, rows, height), taps(left, cols, width))
}

/// Resizes or crops `x` by the taps `plan` gives for its size; the shared `apply`.
fn resize_images(
    layer: &dyn Layer,
    x: &Tensor,
    plan: impl Fn((usize, usize)) -> (Vec<Tap>, Vec<Tap>),
) -> Result<Tensor> {
    let out_shape = infer(layer, &[x])?;
    let &[n, h, w, c] = x.shape() else {
        unreachable!("checked by output_shape")
    };
    let (rows, cols) = plan((h, w));
    Tensor::new(
        out_shape,
        resize::resize(x.data(), [n, h, w, c], &rows, &cols),
    )
}

/// The gradient of [`resize_images`].
fn resize_gradient(
    x: &Tensor,
    dy: &Tensor,
    plan: impl Fn((usize, usize)) -> (Vec<Tap>, Vec<Tap>),
) -> Result<Vec<Tensor>> {
    let &[n, h, w, c] = x.shape() else {
        unreachable!("checked by output_shape")
    };
    let (rows, cols) = plan((h, w));
    let dx = resize::resize_backward(dy.data(), [n, h, w, c], &rows, &cols);
    Ok(vec![Tensor::new(x.shape().to_vec(), dx)?])
}

impl Layer for Resizing {
    layer_common!("Resizing");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, _, _, c] = nhwc(self, single(self, inputs)?)?;
        Ok(vec![n, Some(self.height), Some(self.width), c])
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let target = (self.height, self.width);
        resize_images(self, single(self, inputs)?, |hw| {
            plan(hw, target, self.interpolation, self.crop_to_aspect_ratio)
        })
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let target = (self.height, self.width);
        resize_gradient(single(self, inputs)?, dy, |hw| {
            plan(hw, target, self.interpolation, self.crop_to_aspect_ratio)
        })
    }
}

/// Keras's `CenterCrop(height, width)`: the centred `height × width` window; an image
/// smaller than that along either axis is cropped to the aspect ratio and resized,
/// bilinear.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterCrop {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `height` of the output.
    #[serde(deserialize_with = "declare::positive")]
    pub height: usize,
    /// Keras's `width` of the output.
    #[serde(deserialize_with = "declare::positive")]
    pub width: usize,
}

impl CenterCrop {
    /// A CenterCrop to `height × width`.
    pub fn new(height: usize, width: usize) -> Self {
        CenterCrop {
            height,
            width,
            ..declare::defaults("center_crop", json!({"height": 1, "width": 1}))
        }
    }

    /// A crop is nearest-neighbour taps over the window (each output reads one input).
    fn plan(&self, (h, w): (usize, usize)) -> (Vec<Tap>, Vec<Tap>) {
        let target = (self.height, self.width);
        if h < self.height || w < self.width {
            return plan((h, w), target, ResizeMethod::Bilinear, true);
        }
        let (top, left) = ((h - self.height) / 2, (w - self.width) / 2);
        (
            resize::nearest_taps(top, self.height, self.height),
            resize::nearest_taps(left, self.width, self.width),
        )
    }
}

impl Layer for CenterCrop {
    layer_common!("CenterCrop");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, _, _, c] = nhwc(self, single(self, inputs)?)?;
        Ok(vec![n, Some(self.height), Some(self.width), c])
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        resize_images(self, single(self, inputs)?, |hw| self.plan(hw))
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        resize_gradient(single(self, inputs)?, dy, |hw| self.plan(hw))
    }
}
