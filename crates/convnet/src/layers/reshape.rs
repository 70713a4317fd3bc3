//! Layers that move values without arithmetic: Flatten, Reshape, ZeroPadding2D,
//! Cropping2D and UpSampling2D. Their gradients move the values back.

use super::conv::nhwc;
use super::declare::{self, ChannelsLast};
use super::{format_shape, infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::kernels::elementwise::in_rows;
use crate::kernels::resize::{self, Tap};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Flatten: (batch, d1, d2, …) → (batch, d1·d2·…), in row-major (NHWC) order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {
    #[serde(skip)]
    base: LayerBase,
    #[serde(default)]
    data_format: ChannelsLast,
}

impl Default for Flatten {
    fn default() -> Self {
        Self::new()
    }
}

impl Flatten {
    /// A Flatten, like `keras.layers.Flatten()`, usually between the convolutions and
    /// Dense.
    pub fn new() -> Self {
        declare::defaults("flatten", json!({}))
    }
}

impl Layer for Flatten {
    layer_common!("Flatten");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        if shape.is_empty() {
            return Err(self.shape_error("expects an input with a batch axis"));
        }
        let rest: Option<usize> = shape[1..]
            .iter()
            .try_fold(1usize, |acc, d| d.and_then(|d| acc.checked_mul(d)));
        Ok(vec![shape[0], rest])
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        x.clone().reshape(infer(self, &[x])?)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        Ok(vec![dy.clone().reshape(inputs[0].shape().to_vec())?])
    }
}

/// Reshape: each sample to `target_shape` (the batch axis stays); one entry may be -1,
/// inferred from the others.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reshape {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `target_shape`: the per-sample shape, without the batch axis; one entry may
    /// be -1.
    #[serde(deserialize_with = "target_shape")]
    pub target_shape: Vec<i64>,
}

/// `target_shape`: sizes, at most one of them -1 (inferred).
fn target_shape<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<i64>, D::Error> {
    let sizes = Vec::<i64>::deserialize(d)?;
    match invalid_target(&sizes) {
        Some(message) => Err(serde::de::Error::custom(message)),
        None => Ok(sizes),
    }
}

/// Why a target shape cannot work, if it cannot.
fn invalid_target(target_shape: &[i64]) -> Option<String> {
    let unknown = target_shape.iter().filter(|&&d| d == -1).count();
    let large = target_shape
        .iter()
        .any(|&d| d.unsigned_abs() > declare::MAX_SIZE);
    (unknown > 1 || large || target_shape.iter().any(|&d| d == 0 || d < -1)).then(|| {
        format!(
            "{target_shape:?} must hold positive sizes (at most {}) and at most one -1",
            declare::MAX_SIZE
        )
    })
}

impl Reshape {
    /// A Reshape of each sample to `target_shape`, like
    /// `keras.layers.Reshape(target_shape)`.
    pub fn new(target_shape: &[i64]) -> Self {
        Reshape {
            target_shape: target_shape.to_vec(),
            ..declare::defaults("reshape", json!({"target_shape": []}))
        }
    }
}

impl Layer for Reshape {
    layer_common!("Reshape");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        if shape.is_empty() {
            return Err(self.shape_error("expects an input with a batch axis"));
        }
        if let Some(message) = invalid_target(&self.target_shape) {
            return Err(self.shape_error(&format!("target_shape {message}")));
        }
        let unknown = self.target_shape.iter().filter(|&&d| d == -1).count();
        let known = self
            .target_shape
            .iter()
            .filter(|&&d| d > 0)
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
            .ok_or_else(|| {
                self.shape_error(&format!(
                    "target_shape {:?} holds more values than convnet allows",
                    self.target_shape
                ))
            })?;
        let total: Option<usize> = shape[1..]
            .iter()
            .try_fold(1usize, |acc, d| d.map(|d| acc * d));
        let mut out = vec![shape[0]];
        for &d in &self.target_shape {
            out.push(if d > 0 {
                Some(d as usize)
            } else {
                match total {
                    Some(t) if t % known == 0 => Some(t / known),
                    Some(t) => {
                        return Err(self.shape_error(&format!(
                            "cannot reshape {} values per sample into {:?}",
                            t, self.target_shape
                        )))
                    }
                    None => None,
                }
            });
        }
        if let (Some(t), 0) = (total, unknown) {
            if t != known {
                return Err(self.shape_error(&format!(
                    "cannot reshape an input of shape {} ({t} values per sample) into {:?} ({known} values)",
                    format_shape(shape),
                    self.target_shape
                )));
            }
        }
        Ok(out)
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        x.clone().reshape(infer(self, &[x])?)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        Ok(vec![dy.clone().reshape(inputs[0].shape().to_vec())?])
    }
}

/// Copies the image `src` (n, h, w, c) into `dst` (n, H, W, c) at offset (top, left),
/// or the other way round when `extract`: dst is then the window of src at that offset.
fn copy_window(src: &Tensor, dst: &mut Tensor, top: usize, left: usize, extract: bool) {
    let (big, small) = if extract {
        (src.shape(), dst.shape())
    } else {
        (dst.shape(), src.shape())
    };
    let (n, h, w, c) = (small[0], small[1], small[2], small[3]);
    let (bh, bw) = (big[1], big[2]);
    let (src_data, dst_data) = (src.data(), dst.data_mut());
    for b in 0..n {
        for y in 0..h {
            let small_at = ((b * h + y) * w) * c;
            let big_at = ((b * bh + y + top) * bw + left) * c;
            let len = w * c;
            if extract {
                dst_data[small_at..small_at + len].copy_from_slice(&src_data[big_at..big_at + len]);
            } else {
                dst_data[big_at..big_at + len].copy_from_slice(&src_data[small_at..small_at + len]);
            }
        }
    }
}

/// Writes every row of `y` (n, H, W, c): the row of the image `x` (n, h, w, c) placed at
/// offset (top, left), zeros around it. Each value is written once, the rows in
/// parallel chunks when large.
fn pad_rows(x: &Tensor, y: &mut Tensor, top: usize, left: usize) {
    let [_, h, w, c] = x.shape()[..] else {
        unreachable!("ZeroPadding2D checks its input is an image")
    };
    let [_, big_h, big_w, _] = y.shape()[..] else {
        unreachable!("ZeroPadding2D's output is an image")
    };
    let row = big_w * c;
    let (inside, right) = (left * c..(left + w) * c, (left + w) * c);
    in_rows(y.data_mut(), row, |start, chunk| {
        for (r, y_row) in chunk.chunks_exact_mut(row).enumerate() {
            let r = start / row + r;
            let (b, yy) = (r / big_h, r % big_h);
            match yy.checked_sub(top).filter(|&iy| iy < h) {
                Some(iy) => {
                    let from = (b * h + iy) * w * c;
                    y_row[..inside.start].fill(0.0);
                    y_row[inside.clone()].copy_from_slice(&x.data()[from..from + w * c]);
                    y_row[right..].fill(0.0);
                }
                None => y_row.fill(0.0),
            }
        }
    });
}

/// ZeroPadding2D: rows of zeros above and below, columns left and right.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroPadding2D {
    #[serde(skip)]
    base: LayerBase,
    /// ((top, bottom), (left, right)).
    #[serde(
        deserialize_with = "declare::two_sided::deserialize",
        default = "one_each"
    )]
    pub padding: [[usize; 2]; 2],
    #[serde(default)]
    data_format: ChannelsLast,
}

/// ZeroPadding2D's default: one row or column on every side.
fn one_each() -> [[usize; 2]; 2] {
    [[1, 1], [1, 1]]
}

impl ZeroPadding2D {
    /// A ZeroPadding2D adding `padding` zeros ((top, bottom), (left, right)); Keras's
    /// default is 1 on every side.
    pub fn new(padding: [[usize; 2]; 2]) -> Self {
        ZeroPadding2D {
            padding,
            ..declare::defaults("zero_padding2d", json!({}))
        }
    }
}

impl Layer for ZeroPadding2D {
    layer_common!("ZeroPadding2D");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        let [[t, b], [l, r]] = self.padding;
        Ok(vec![n, h.map(|h| h + t + b), w.map(|w| w + l + r), c])
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        let mut y = Tensor::for_overwrite(infer(self, &[x])?);
        pad_rows(x, &mut y, self.padding[0][0], self.padding[1][0]);
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut dx = inputs[0].zeros_like();
        copy_window(dy, &mut dx, self.padding[0][0], self.padding[1][0], true);
        Ok(vec![dx])
    }
}

/// Cropping2D: removes rows from the top and bottom, columns from the left and right.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cropping2D {
    #[serde(skip)]
    base: LayerBase,
    /// ((top, bottom), (left, right)).
    #[serde(deserialize_with = "declare::two_sided::deserialize", default)]
    pub cropping: [[usize; 2]; 2],
    #[serde(default)]
    data_format: ChannelsLast,
}

impl Cropping2D {
    /// A Cropping2D removing `cropping` ((top, bottom), (left, right)); Keras's default is
    /// none.
    pub fn new(cropping: [[usize; 2]; 2]) -> Self {
        Cropping2D {
            cropping,
            ..declare::defaults("cropping2d", json!({}))
        }
    }
}

impl Layer for Cropping2D {
    layer_common!("Cropping2D");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        let crop = |d: Option<usize>, [a, b]: [usize; 2], what: &str| -> Result<Option<usize>> {
            match d {
                Some(d) if a + b >= d => Err(self.shape_error(&format!(
                    "cropping {a} + {b} {what} leaves nothing of an input {what} of {d}"
                ))),
                d => Ok(d.map(|d| d - a - b)),
            }
        };
        Ok(vec![
            n,
            crop(h, self.cropping[0], "rows")?,
            crop(w, self.cropping[1], "columns")?,
            c,
        ])
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        let mut y = Tensor::zeros(infer(self, &[x])?);
        copy_window(x, &mut y, self.cropping[0][0], self.cropping[1][0], true);
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut dx = inputs[0].zeros_like();
        copy_window(dy, &mut dx, self.cropping[0][0], self.cropping[1][0], false);
        Ok(vec![dx])
    }
}

/// UpSampling2D: each pixel repeated `size` times down and across (`nearest`), or the
/// image resized by that factor with bilinear interpolation (`bilinear`, as
/// TensorFlow's `tf.image.resize` does it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpSampling2D {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `size`: how many times each pixel is repeated along (rows, columns); default
    /// (2, 2).
    #[serde(with = "declare::pair", default = "two_by_two")]
    pub size: (usize, usize),
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `interpolation`: `nearest` (default) or `bilinear`.
    #[serde(default)]
    pub interpolation: UpSampling,
}

fn two_by_two() -> (usize, usize) {
    (2, 2)
}

/// UpSampling2D's `interpolation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpSampling {
    /// Each pixel repeated, Keras's default.
    #[default]
    Nearest,
    /// Bilinear interpolation with half-pixel centres.
    Bilinear,
}

impl UpSampling2D {
    /// An UpSampling2D repeating each pixel `size` times (Keras's default (2, 2)),
    /// nearest-neighbour; its `interpolation` field sets bilinear.
    pub fn new(size: (usize, usize)) -> Self {
        UpSampling2D {
            size,
            ..declare::defaults("up_sampling2d", json!({}))
        }
    }

    /// The resize of `bilinear` interpolation for an input of `shape`; None for
    /// `nearest`, which copies pixels instead.
    fn bilinear_taps(&self, shape: &[usize]) -> Option<([usize; 4], Vec<Tap>, Vec<Tap>)> {
        let &[n, h, w, c] = shape else { return None };
        (self.interpolation == UpSampling::Bilinear).then(|| {
            (
                [n, h, w, c],
                resize::bilinear_taps(0, h, h * self.size.0),
                resize::bilinear_taps(0, w, w * self.size.1),
            )
        })
    }

    /// Calls `f(input_index, output_index)` for the first channel of every output pixel.
    fn for_each_pixel(&self, x: &[usize], mut f: impl FnMut(usize, usize)) {
        let (n, h, w, c) = (x[0], x[1], x[2], x[3]);
        let (sh, sw) = self.size;
        for b in 0..n {
            for oy in 0..h * sh {
                for ox in 0..w * sw {
                    f(
                        ((b * h + oy / sh) * w + ox / sw) * c,
                        ((b * h * sh + oy) * w * sw + ox) * c,
                    );
                }
            }
        }
    }
}

impl Layer for UpSampling2D {
    layer_common!("UpSampling2D");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        if self.size.0 == 0 || self.size.1 == 0 {
            return Err(self.shape_error("size must be positive"));
        }
        Ok(vec![
            n,
            h.map(|h| h * self.size.0),
            w.map(|w| w * self.size.1),
            c,
        ])
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        let out_shape = infer(self, &[x])?;
        if let Some((shape, rows, cols)) = self.bilinear_taps(x.shape()) {
            return Tensor::new(out_shape, resize::resize(x.data(), shape, &rows, &cols));
        }
        let mut y = Tensor::zeros(out_shape);
        let c = x.shape()[3];
        let (src, dst) = (x.data(), y.data_mut());
        self.for_each_pixel(x.shape(), |i, o| {
            dst[o..o + c].copy_from_slice(&src[i..i + c])
        });
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = inputs[0];
        if let Some((shape, rows, cols)) = self.bilinear_taps(x.shape()) {
            let dx = resize::resize_backward(dy.data(), shape, &rows, &cols);
            return Ok(vec![Tensor::new(x.shape().to_vec(), dx)?]);
        }
        let mut dx = x.zeros_like();
        let c = x.shape()[3];
        let (src, dst) = (dy.data(), dx.data_mut());
        self.for_each_pixel(x.shape(), |i, o| {
            dst[i..i + c]
                .iter_mut()
                .zip(&src[o..o + c])
                .for_each(|(d, g)| *d += g)
        });
        Ok(vec![dx])
    }
}
