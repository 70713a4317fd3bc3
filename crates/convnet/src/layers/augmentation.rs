//! Keras's random image augmentation layers (RandomFlip, RandomRotation,
//! RandomTranslation, RandomZoom, RandomContrast, RandomBrightness), as they sit at the
//! front of keras.io's image models. In inference, where `predict` and `evaluate` run
//! them, each is the identity, as in Keras. Their random transforms in training are not
//! implemented yet, so a training-mode call is refused with an error naming the layer
//! rather than run as the identity, which would silently train differently from Keras.

use super::declare::{self, ChannelsLast};
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

/// A range of a random transform: one number `f` (meaning `[-f, f]`, or `[0, f]` where
/// Keras says so) or a `[low, high]` pair, written back as read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Factor(Value);

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let finite = |v: &Value| v.as_f64().is_some_and(f64::is_finite);
        let ok = match &v {
            Value::Array(pair) => pair.len() == 2 && pair.iter().all(finite),
            one => finite(one),
        };
        if ok {
            Ok(Factor(v))
        } else {
            Err(D::Error::custom(format!(
                "expected a number or a [low, high] pair, found {v}"
            )))
        }
    }
}

/// How a geometric transform fills what it uncovers, and how it samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillMode {
    /// Mirror about the edge (`d c b a | a b c d`), Keras's default.
    Reflect,
    /// Wrap around.
    Wrap,
    /// Repeat the edge pixel.
    Nearest,
    /// `fill_value`.
    Constant,
}

/// Keras's sampling of geometric transforms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Bilinear, Keras's default.
    Bilinear,
    /// Nearest neighbour.
    Nearest,
}

/// RandomFlip's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum FlipMode {
    /// Left-right.
    #[serde(rename = "horizontal")]
    Horizontal,
    /// Up-down.
    #[serde(rename = "vertical")]
    Vertical,
    /// Either or both, Keras's default.
    #[serde(rename = "horizontal_and_vertical")]
    HorizontalAndVertical,
}

fn reflect() -> FillMode {
    FillMode::Reflect
}
fn bilinear() -> Interpolation {
    Interpolation::Bilinear
}
fn both() -> FlipMode {
    FlipMode::HorizontalAndVertical
}
fn pixel_range() -> Value {
    json!([0, 255])
}

/// Keras's `RandomFlip(mode)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFlip {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Keras's `mode`; default `horizontal_and_vertical`.
    #[serde(default = "both")]
    pub mode: FlipMode,
}

/// Keras's `RandomRotation(factor)`: a fraction of a full turn.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomRotation {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `factor`.
    pub factor: Factor,
    /// Keras's `fill_mode`; default `reflect`.
    #[serde(default = "reflect")]
    pub fill_mode: FillMode,
    /// Keras's `fill_value`, for `constant`; default 0.
    #[serde(default)]
    pub fill_value: f64,
    /// Keras's `interpolation`; default `bilinear`.
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// Keras's `RandomTranslation(height_factor, width_factor)`: fractions of the size.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomTranslation {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `height_factor`.
    pub height_factor: Factor,
    /// Keras's `width_factor`.
    pub width_factor: Factor,
    /// Keras's `fill_mode`; default `reflect`.
    #[serde(default = "reflect")]
    pub fill_mode: FillMode,
    /// Keras's `interpolation`; default `bilinear`.
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Keras's `fill_value`, for `constant`; default 0.
    #[serde(default)]
    pub fill_value: f64,
}

/// Keras's `RandomZoom(height_factor, width_factor=None)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomZoom {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `height_factor`.
    pub height_factor: Factor,
    /// Keras's `width_factor`; None keeps the aspect ratio.
    #[serde(default)]
    pub width_factor: Option<Factor>,
    /// Keras's `fill_mode`; default `reflect`.
    #[serde(default = "reflect")]
    pub fill_mode: FillMode,
    /// Keras's `interpolation`; default `bilinear`.
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Keras's `fill_value`, for `constant`; default 0.
    #[serde(default)]
    pub fill_value: f64,
}

/// Keras's `RandomContrast(factor)` and `RandomBrightness(factor)`, which share their
/// config: a factor and the pixels' `value_range`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomIntensity {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `factor`.
    pub factor: Factor,
    /// Keras's `value_range`; default `[0, 255]`.
    #[serde(default = "pixel_range")]
    pub value_range: Value,
    /// Keras's `seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Which of the two classes.
    #[serde(skip)]
    brightness: bool,
}

impl RandomIntensity {
    pub(super) fn brightness(mut self, brightness: bool) -> Self {
        self.brightness = brightness;
        self
    }
}

/// The Layer impl of an augmentation: identity in inference, refused in training.
macro_rules! augmentation {
    ($layer:ty, $class:expr) => {
        impl Layer for $layer {
            fn class_name(&self) -> &'static str {
                let class: fn(&Self) -> &'static str = $class;
                class(self)
            }

            layer_base!();

            fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
                let shape = single(self, inputs)?;
                if shape.len() != 4 {
                    return Err(self.shape_error(&format!(
                        "expects images (batch, height, width, channels), got {}",
                        super::format_shape(shape)
                    )));
                }
                Ok(shape.clone())
            }

            fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
                let x = *single(self, inputs)?;
                self.output_shape(&[super::shape_of(x)])?;
                Ok(x.clone())
            }

            fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
                if training {
                    return Err(self.shape_error(
                        "random augmentation in training is not supported yet (in inference, \
                         predict and evaluate, it is the identity, as in Keras)",
                    ));
                }
                Ok((self.apply(inputs)?, Saved::none()))
            }

            fn backward_impl(
                &self,
                _: &[&Tensor],
                _: &Tensor,
                _: &Saved,
                dy: &Tensor,
                _: &mut [Tensor],
            ) -> Result<Vec<Tensor>> {
                Ok(vec![dy.clone()])
            }
        }
    };
}

augmentation!(RandomFlip, |_| "RandomFlip");
augmentation!(RandomRotation, |_| "RandomRotation");
augmentation!(RandomTranslation, |_| "RandomTranslation");
augmentation!(RandomZoom, |_| "RandomZoom");
augmentation!(RandomIntensity, |l| if l.brightness {
    "RandomBrightness"
} else {
    "RandomContrast"
});

impl RandomFlip {
    /// A RandomFlip, like `keras.layers.RandomFlip(mode)`.
    pub fn new(mode: FlipMode) -> Self {
        RandomFlip {
            mode,
            ..declare::defaults("random_flip", json!({}))
        }
    }
}
