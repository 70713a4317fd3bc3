//! Layers that move values without arithmetic: Flatten, Reshape, ZeroPadding2D,
//! Cropping2D and UpSampling2D. Their gradients move the values back.

use super::config::ConfigReader;
use super::conv::nhwc;
use super::{format_shape, infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

/// Flatten: (batch, d1, d2, …) → (batch, d1·d2·…), in row-major (NHWC) order.
#[derive(Clone, Debug)]
pub struct Flatten {
    base: LayerBase,
}

impl Default for Flatten {
    fn default() -> Self {
        Self::new()
    }
}

impl Flatten {
    pub fn new() -> Self {
        Flatten {
            base: LayerBase::new("flatten"),
        }
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.channels_last()?;
        Ok(Flatten { base: c.base()? })
    }
}

impl Layer for Flatten {
    layer_common!("Flatten");

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("data_format".into(), json!("channels_last"));
        m
    }

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
#[derive(Clone, Debug)]
pub struct Reshape {
    base: LayerBase,
    pub target_shape: Vec<i64>,
}

impl Reshape {
    pub fn new(target_shape: &[i64]) -> Self {
        Reshape {
            base: LayerBase::new("reshape"),
            target_shape: target_shape.to_vec(),
        }
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        let target_shape = c
            .opt_int_list("target_shape")?
            .ok_or_else(|| c.error("target_shape", "missing"))?;
        let layer = Reshape {
            base: c.base()?,
            target_shape,
        };
        match layer.invalid_target() {
            Some(message) => Err(c.error("target_shape", message)),
            None => Ok(layer),
        }
    }

    fn invalid_target(&self) -> Option<String> {
        let unknown = self.target_shape.iter().filter(|&&d| d == -1).count();
        (unknown > 1 || self.target_shape.iter().any(|&d| d == 0 || d < -1)).then(|| {
            format!(
                "{:?} must hold positive sizes and at most one -1",
                self.target_shape
            )
        })
    }
}

impl Layer for Reshape {
    layer_common!("Reshape");

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("target_shape".into(), json!(self.target_shape));
        m
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        if shape.is_empty() {
            return Err(self.shape_error("expects an input with a batch axis"));
        }
        if let Some(message) = self.invalid_target() {
            return Err(self.shape_error(&format!("target_shape {message}")));
        }
        let unknown = self.target_shape.iter().filter(|&&d| d == -1).count();
        let known: usize = self
            .target_shape
            .iter()
            .filter(|&&d| d > 0)
            .map(|&d| d as usize)
            .product();
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

/// ZeroPadding2D: rows of zeros above and below, columns left and right.
#[derive(Clone, Debug)]
pub struct ZeroPadding2D {
    base: LayerBase,
    /// ((top, bottom), (left, right)).
    pub padding: [[usize; 2]; 2],
}

impl ZeroPadding2D {
    pub fn new(padding: [[usize; 2]; 2]) -> Self {
        ZeroPadding2D {
            base: LayerBase::new("zero_padding2d"),
            padding,
        }
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.channels_last()?;
        Ok(ZeroPadding2D {
            base: c.base()?,
            padding: c.two_sided_pairs("padding", [[1, 1], [1, 1]])?,
        })
    }
}

impl Layer for ZeroPadding2D {
    layer_common!("ZeroPadding2D");

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("padding".into(), json!(self.padding));
        m.insert("data_format".into(), json!("channels_last"));
        m
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        let [[t, b], [l, r]] = self.padding;
        Ok(vec![n, h.map(|h| h + t + b), w.map(|w| w + l + r), c])
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        let mut y = Tensor::zeros(infer(self, &[x])?);
        copy_window(x, &mut y, self.padding[0][0], self.padding[1][0], false);
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
#[derive(Clone, Debug)]
pub struct Cropping2D {
    base: LayerBase,
    /// ((top, bottom), (left, right)).
    pub cropping: [[usize; 2]; 2],
}

impl Cropping2D {
    pub fn new(cropping: [[usize; 2]; 2]) -> Self {
        Cropping2D {
            base: LayerBase::new("cropping2d"),
            cropping,
        }
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.channels_last()?;
        Ok(Cropping2D {
            base: c.base()?,
            cropping: c.two_sided_pairs("cropping", [[0, 0], [0, 0]])?,
        })
    }
}

impl Layer for Cropping2D {
    layer_common!("Cropping2D");

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("cropping".into(), json!(self.cropping));
        m.insert("data_format".into(), json!("channels_last"));
        m
    }

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

/// UpSampling2D with nearest-neighbour interpolation: each pixel repeated `size` times
/// down and across.
#[derive(Clone, Debug)]
pub struct UpSampling2D {
    base: LayerBase,
    pub size: (usize, usize),
}

impl UpSampling2D {
    pub fn new(size: (usize, usize)) -> Self {
        UpSampling2D {
            base: LayerBase::new("up_sampling2d"),
            size,
        }
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.channels_last()?;
        let interpolation = c.string("interpolation", "nearest")?;
        if interpolation != "nearest" {
            return Err(c.error(
                "interpolation",
                format!("'{interpolation}' is not supported by convnet yet; only 'nearest' is"),
            ));
        }
        Ok(UpSampling2D {
            base: c.base()?,
            size: c.pair("size", Some((2, 2)))?,
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

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("size".into(), json!([self.size.0, self.size.1]));
        m.insert("data_format".into(), json!("channels_last"));
        m.insert("interpolation".into(), json!("nearest"));
        m
    }

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
        let mut y = Tensor::zeros(infer(self, &[x])?);
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
