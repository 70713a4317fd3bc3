//! Resizing, CenterCrop and RandomCrop, the preprocessing layers that bring images to a
//! model's size, with the numbers of Keras's TensorFlow backend (`tf.image.resize`:
//! half-pixel centres, no antialiasing). `crop_to_aspect_ratio` first takes the largest
//! centred window of the target's aspect ratio; CenterCrop crops, and resizes that way an
//! image smaller than its target, as Keras's does.

use super::conv::nhwc;
use super::declare::{self, AlwaysFalse, ChannelsLast};
use super::dropout::{call_rng, layer_rng};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::initializers::Rng;
use crate::kernels::resize::{self, Tap};
use crate::tensor::Tensor;
use rand::RngExt as _;
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

/// Keras's `RandomCrop(height, width, seed=None)`. In training, one random
/// `height × width` window for the whole batch (Keras draws one offset a call), when
/// the images are at least that big. Otherwise, and in inference, the largest centred
/// window of the target's aspect ratio resized to the target (tf.keras 2's
/// `smart_resize`, which Keras 3's documentation also describes: Keras 3.15 itself
/// returns the images uncropped in inference, unlike its own output shape, so a model
/// that depends on the crop fails in its `predict`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomCrop {
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
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(skip)]
    rng: Option<Rng>,
}

impl RandomCrop {
    /// A RandomCrop to `height × width`.
    pub fn new(height: usize, width: usize) -> Self {
        RandomCrop {
            height,
            width,
            ..declare::defaults("random_crop", json!({"height": 1, "width": 1}))
        }
    }

    /// The taps of the window at `offset` (top, left), or of the centred resize.
    fn plan(&self, (h, w): (usize, usize), offset: Option<(usize, usize)>) -> (Vec<Tap>, Vec<Tap>) {
        match offset {
            Some((top, left)) => (
                resize::nearest_taps(top, self.height, self.height),
                resize::nearest_taps(left, self.width, self.width),
            ),
            None => plan(
                (h, w),
                (self.height, self.width),
                ResizeMethod::Bilinear,
                true,
            ),
        }
    }
}

impl Layer for RandomCrop {
    layer_common!("RandomCrop");

    fn random_generator(&mut self) -> Option<&mut Option<Rng>> {
        Some(&mut self.rng)
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, _, _, c] = nhwc(self, single(self, inputs)?)?;
        Ok(vec![n, Some(self.height), Some(self.width), c])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        self.rng = Some(layer_rng(self.seed, rng));
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        resize_images(self, single(self, inputs)?, |hw| self.plan(hw, None))
    }

    fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
        let x = *single(self, inputs)?;
        let (h, w) = match x.shape() {
            [_, h, w, _] => (*h, *w),
            _ => (0, 0),
        };
        if !training || h < self.height || w < self.width {
            return Ok((self.apply(inputs)?, Saved::none()));
        }
        let rng = call_rng(&mut self.rng, self.seed);
        let offset = (
            rng.random_range(0..=h - self.height),
            rng.random_range(0..=w - self.width),
        );
        let y = resize_images(self, x, |hw| self.plan(hw, Some(offset)))?;
        Ok((y, Saved::new(offset)))
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let offset = saved.get::<(usize, usize)>(self).ok().copied();
        resize_gradient(single(self, inputs)?, dy, |hw| self.plan(hw, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initializers::rng_from_seed;
    use crate::layers::layer_from_config;

    /// RandomCrop's cases of scripts/make_augmentation_goldens.py: Keras 3's crop for its
    /// own draw in training, tf.keras 2's centred resize in inference.
    #[test]
    fn random_crop_crops_as_keras() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/augmentation/cases.json"
        );
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let floats = |v: &Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        let mut checked = 0;
        for case in cases
            .iter()
            .filter(|c| c["layer"]["class_name"] == "RandomCrop")
        {
            let name = case["name"].as_str().unwrap();
            let layer = layer_from_config("RandomCrop", &case["layer"]["config"]).unwrap();
            assert_eq!(
                layer.config(),
                case["layer"]["config"],
                "{name}: config round trip"
            );
            let crop = layer.as_any().downcast_ref::<RandomCrop>().unwrap();
            let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
            let x = Tensor::new(shape.clone(), floats(&case["x"])).unwrap();
            let offset = case["draw"]["crop"][0].as_array().map(|p| {
                (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_u64().unwrap() as usize,
                )
            });
            let y = resize_images(crop, &x, |hw| crop.plan(hw, offset)).unwrap();
            let want_shape: Vec<usize> = serde_json::from_value(case["y_shape"].clone()).unwrap();
            assert_eq!(y.shape(), want_shape.as_slice(), "{name}");
            let worst = y
                .data()
                .iter()
                .zip(floats(&case["y"]))
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{name}: worst difference {worst:e}");
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    #[test]
    fn random_crop_draws_a_window_in_training_and_its_gradient_scatters_back() {
        let mut layer = RandomCrop::new(3, 4);
        layer.seed = Some(9);
        let x = Tensor::new(vec![2, 5, 6, 1], (0..60).map(|v| v as f32).collect()).unwrap();
        layer
            .build(&[super::super::shape_of(&x)], &mut rng_from_seed(1))
            .unwrap();
        let mut windows = std::collections::HashSet::new();
        for _ in 0..40 {
            let (y, saved) = layer.forward(&[&x], true).unwrap();
            assert_eq!(y.shape(), &[2, 3, 4, 1]);
            let (top, left) = *saved.get::<(usize, usize)>(&layer).unwrap();
            assert!(top <= 2 && left <= 2);
            // The window of every image, one offset for the batch.
            assert_eq!(y.data()[0], (top * 6 + left) as f32);
            assert_eq!(y.data()[12], (30 + top * 6 + left) as f32);
            let dx = layer
                .backward_impl(
                    &[&x],
                    &y,
                    &saved,
                    &Tensor::new(vec![2, 3, 4, 1], vec![1.0; 24]).unwrap(),
                    &mut [],
                )
                .unwrap();
            assert_eq!(dx[0].data().iter().sum::<f32>(), 24.0);
            windows.insert((top, left));
        }
        assert_eq!(windows.len(), 9, "every offset is drawn");
    }
}
