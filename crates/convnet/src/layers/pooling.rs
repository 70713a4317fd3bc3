//! Pooling: MaxPooling2D and AveragePooling2D slide a window like a convolution with no
//! weights; the global poolings reduce each channel's whole feature map to one value.
//! `MaxPooling2D::new(…)` and friends build the shared [`Pooling2D`] /
//! [`GlobalPooling2D`] types with the right kind, so Keras's class names read as in Keras.

use super::conv::{nhwc, padded_shapes, Window};
use super::declare::{self, ChannelsLast};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::kernels::conv::Padding;
use crate::kernels::pool::{
    global_pool_forward, pool_backward, pool_forward, PoolGeometry, PoolKind,
};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A windowed pooling layer, max or average.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pooling2D {
    #[serde(skip)]
    base: LayerBase,
    /// Max or average; also the Keras class, `MaxPooling2D` or `AveragePooling2D`.
    #[serde(skip, default = "max")]
    pub kind: PoolKind,
    /// Keras's `pool_size`: the window's (rows, columns); default (2, 2).
    #[serde(with = "declare::pair", default = "two_by_two")]
    pub pool_size: (usize, usize),
    /// Keras's `padding`: `valid` (no padding) or `same` (output size = input size /
    /// stride); default `valid`.
    #[serde(with = "declare::padding", default = "declare::padding::valid")]
    pub padding: Padding,
    /// `None` (null in the config): the pool size, as in Keras.
    #[serde(with = "declare::pair::optional", default)]
    pub strides: Option<(usize, usize)>,
    #[serde(default)]
    data_format: ChannelsLast,
}

/// What a pooling layer read from a config starts as, before the registry sets its kind.
fn max() -> PoolKind {
    PoolKind::Max
}

fn two_by_two() -> (usize, usize) {
    (2, 2)
}

/// Keras's default layer name for a pooling kind.
fn pool_name(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Max => "max_pooling2d",
        PoolKind::Average => "average_pooling2d",
    }
}

/// Keras's `MaxPooling2D(pool_size=(2, 2), strides=None, padding="valid")`.
pub struct MaxPooling2D;
/// Keras's `AveragePooling2D(pool_size=(2, 2), strides=None, padding="valid")`.
pub struct AveragePooling2D;

impl MaxPooling2D {
    /// A MaxPooling2D with a `pool_size` window, strides equal to it and `valid` padding,
    /// as in Keras.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(pool_size: (usize, usize)) -> Pooling2D {
        Pooling2D::new(PoolKind::Max, pool_size)
    }
}

impl AveragePooling2D {
    /// An AveragePooling2D with a `pool_size` window, strides equal to it and `valid`
    /// padding, as in Keras.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(pool_size: (usize, usize)) -> Pooling2D {
        Pooling2D::new(PoolKind::Average, pool_size)
    }
}

impl Pooling2D {
    /// A windowed pooling of `kind` with a `pool_size` window, strides equal to it and
    /// `valid` padding, as in Keras.
    pub fn new(kind: PoolKind, pool_size: (usize, usize)) -> Self {
        Pooling2D {
            pool_size,
            strides: Some(pool_size),
            ..declare::defaults(pool_name(kind), json!({}))
        }
        .kind(kind)
    }

    /// Sets max or average (the registry reads both classes alike).
    pub(super) fn kind(mut self, kind: PoolKind) -> Self {
        self.kind = kind;
        self
    }

    /// The sliding window as the kernels take it.
    fn window(&self) -> Window {
        Window {
            size: self.pool_size,
            strides: self.strides.unwrap_or(self.pool_size),
            padding: self.padding,
            dilation: (1, 1),
        }
    }

    /// Sets `strides`, the step of the window (Keras's default None: the pool size).
    pub fn strides(mut self, strides: (usize, usize)) -> Self {
        self.strides = Some(strides);
        self
    }

    /// Sets `padding` (Keras's default `valid`).
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    fn geometry(&self, x: &[usize], y: &[usize]) -> Result<PoolGeometry> {
        let window = self.window();
        Ok(PoolGeometry {
            batch: x[0],
            in_h: x[1],
            in_w: x[2],
            channels: x[3],
            out_h: y[1],
            out_w: y[2],
            pool_h: window.size.0,
            pool_w: window.size.1,
            stride_h: window.strides.0,
            stride_w: window.strides.1,
            pad_top: window.axis(self, 0, x[1])?.1,
            pad_left: window.axis(self, 1, x[2])?.1,
            zero_padded: false,
        })
    }

    /// The pooling of `x` zero-padded by `padding` ((top, bottom), (left, right)) first,
    /// without the padded copy: the padding's zeros take part in the windows.
    fn apply_padded(&self, x: &Tensor, padding: [[usize; 2]; 2]) -> Result<Tensor> {
        let [[top, _], [left, _]] = padding;
        let (padded, out_shape) = padded_shapes(self, x.shape(), padding)?;
        let mut y = Tensor::for_overwrite(out_shape);
        let g = PoolGeometry {
            in_h: x.shape()[1],
            in_w: x.shape()[2],
            pad_top: top,
            pad_left: left,
            zero_padded: true,
            ..self.geometry(&padded, y.shape())?
        };
        pool_forward(&g, self.kind, x.data(), y.data_mut());
        Ok(y)
    }
}

impl Layer for Pooling2D {
    fn class_name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "MaxPooling2D",
            PoolKind::Average => "AveragePooling2D",
        }
    }

    layer_base!();

    fn commutes_with_relu(&self) -> bool {
        self.kind == PoolKind::Max
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        self.window().validate(self, "pool_size")?;
        let (oh, ow) = self.window().output_hw(self, h, w)?;
        Ok(vec![n, oh, ow, c])
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        let mut y = Tensor::for_overwrite(infer(self, &[x])?);
        pool_forward(
            &self.geometry(x.shape(), y.shape())?,
            self.kind,
            x.data(),
            y.data_mut(),
        );
        Ok(y)
    }

    /// A `valid` pooling takes a ZeroPadding2D before it into its windows.
    fn takes_input_padding(&self) -> bool {
        self.padding == Padding::Valid
    }

    fn apply_fused(
        &self,
        inputs: &[&Tensor],
        fusion: &crate::layers::Fusion,
    ) -> Option<Result<Tensor>> {
        if fusion.takes_layers_after() {
            return None;
        }
        Some(
            single(self, inputs).and_then(|x| match fusion.input_padding {
                Some(padding) => self.apply_padded(x, padding),
                None => self.apply(&[x]),
            }),
        )
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let mut dx = Tensor::for_overwrite(x.shape());
        pool_backward(
            &self.geometry(x.shape(), output.shape())?,
            self.kind,
            x.data(),
            output.data(),
            dy.data(),
            dx.data_mut(),
        );
        Ok(vec![dx])
    }
}

/// A pooling over the whole feature map: (batch, h, w, c) → (batch, c), or
/// (batch, 1, 1, c) with `keepdims`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalPooling2D {
    #[serde(skip)]
    base: LayerBase,
    /// Max or average; also the Keras class, `GlobalMaxPooling2D` or
    /// `GlobalAveragePooling2D`.
    #[serde(skip, default = "max")]
    pub kind: PoolKind,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `keepdims`: whether the output keeps the spatial axes as size 1, (batch, 1,
    /// 1, c); default false.
    #[serde(default)]
    pub keepdims: bool,
}

/// Keras's `GlobalAveragePooling2D(keepdims=False)`.
pub struct GlobalAveragePooling2D;
/// Keras's `GlobalMaxPooling2D(keepdims=False)`.
pub struct GlobalMaxPooling2D;

impl GlobalAveragePooling2D {
    /// A GlobalAveragePooling2D: each channel's mean over the feature map, (batch, h, w, c)
    /// → (batch, c).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> GlobalPooling2D {
        GlobalPooling2D::new(PoolKind::Average)
    }
}

impl GlobalMaxPooling2D {
    /// A GlobalMaxPooling2D: each channel's maximum over the feature map, (batch, h, w, c)
    /// → (batch, c).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> GlobalPooling2D {
        GlobalPooling2D::new(PoolKind::Max)
    }
}

impl GlobalPooling2D {
    /// A global pooling of `kind` without `keepdims`, as in Keras.
    pub fn new(kind: PoolKind) -> Self {
        let name = match kind {
            PoolKind::Max => "global_max_pooling2d",
            PoolKind::Average => "global_average_pooling2d",
        };
        declare::defaults::<Self>(name, json!({})).kind(kind)
    }

    /// Sets max or average (the registry reads both classes alike).
    pub(super) fn kind(mut self, kind: PoolKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets `keepdims` (Keras's default false).
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.keepdims = keepdims;
        self
    }

    /// The global pool is a window pool whose window is the whole map.
    fn geometry(x: &[usize]) -> PoolGeometry {
        PoolGeometry {
            batch: x[0],
            in_h: x[1],
            in_w: x[2],
            channels: x[3],
            out_h: 1,
            out_w: 1,
            pool_h: x[1],
            pool_w: x[2],
            stride_h: 1,
            stride_w: 1,
            pad_top: 0,
            pad_left: 0,
            zero_padded: false,
        }
    }
}

impl Layer for GlobalPooling2D {
    fn class_name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "GlobalMaxPooling2D",
            PoolKind::Average => "GlobalAveragePooling2D",
        }
    }

    layer_base!();

    fn commutes_with_relu(&self) -> bool {
        self.kind == PoolKind::Max
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, _, _, c] = nhwc(self, single(self, inputs)?)?;
        Ok(if self.keepdims {
            vec![n, Some(1), Some(1), c]
        } else {
            vec![n, c]
        })
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        let mut y = Tensor::for_overwrite(infer(self, &[x])?);
        let g = Self::geometry(x.shape());
        let pixels = g.in_h * g.in_w;
        global_pool_forward(
            g.batch,
            pixels,
            g.channels,
            self.kind,
            x.data(),
            y.data_mut(),
        );
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let mut dx = Tensor::for_overwrite(x.shape());
        pool_backward(
            &Self::geometry(x.shape()),
            self.kind,
            x.data(),
            output.data(),
            dy.data(),
            dx.data_mut(),
        );
        Ok(vec![dx])
    }
}
