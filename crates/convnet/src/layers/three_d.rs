//! The 3-D pooling, padding, cropping and upsampling layers (MaxPooling3D,
//! AveragePooling3D, GlobalMax/AveragePooling3D, UpSampling3D, ZeroPadding3D,
//! Cropping3D), each computed by its 2-D twin twice.
//!
//! Each of these acts on the three spatial axes independently: a box's maximum is the
//! maximum over depth of the maxima over each slice's rectangle, and its average (also
//! Keras's `same` average, which leaves padding out) is the average over depth of the
//! averages over the rectangles, since the cells inside a box are a product of
//! intervals. So the twin first runs on the rows and columns of every depth slice,
//! `(batch · depth, rows, columns, channels)`, then along depth with a window of width 1
//! on `(batch, depth, rows · columns, channels)`: both views are the NDHWC buffer as it
//! is. Gradients go back through the two twins in turn. The global poolings need only
//! the second view.
//!
//! The config is the twin's with each spatial triple split in two ([`Spatial`]), as the
//! 1-D layers cut theirs.

use super::declare;
use super::one_d::{twin_config_error, twin_shape_error, with_keras_defaults};
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

/// How a 3-D config field maps to its twins'.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Spatial {
    /// The same value for both twins (`padding`, `data_format`, `keepdims`).
    Same,
    /// `[d, h, w]` (or one integer for all) ⇄ `[h, w]` on the slices, `[d, 1]` along depth.
    Triple,
    /// `[[front, back], [top, bottom], [left, right]]` (or one integer, or one per axis) ⇄
    /// the slices' `[[top, bottom], [left, right]]` and `[[front, back], [0, 0]]`.
    Sides,
}

use Spatial::{Same, Sides, Triple};

/// A 3-D Keras class: its twin and its config's fields in Keras's order. `global` ones
/// have no per-slice pass.
struct Class {
    name: &'static str,
    twin: &'static str,
    fields: &'static [(&'static str, Spatial)],
    global: bool,
}

const POOLING: &[(&str, Spatial)] = &[
    ("pool_size", Triple),
    ("padding", Same),
    ("strides", Triple),
    ("data_format", Same),
];

const GLOBAL: &[(&str, Spatial)] = &[("data_format", Same), ("keepdims", Same)];

const CLASSES: &[Class] = &[
    Class {
        name: "MaxPooling3D",
        twin: "MaxPooling2D",
        fields: POOLING,
        global: false,
    },
    Class {
        name: "AveragePooling3D",
        twin: "AveragePooling2D",
        fields: POOLING,
        global: false,
    },
    Class {
        name: "GlobalMaxPooling3D",
        twin: "GlobalMaxPooling2D",
        fields: GLOBAL,
        global: true,
    },
    Class {
        name: "GlobalAveragePooling3D",
        twin: "GlobalAveragePooling2D",
        fields: GLOBAL,
        global: true,
    },
    Class {
        name: "UpSampling3D",
        twin: "UpSampling2D",
        fields: &[("size", Triple), ("data_format", Same)],
        global: false,
    },
    Class {
        name: "ZeroPadding3D",
        twin: "ZeroPadding2D",
        fields: &[("padding", Sides), ("data_format", Same)],
        global: false,
    },
    Class {
        name: "Cropping3D",
        twin: "Cropping2D",
        fields: &[("cropping", Sides), ("data_format", Same)],
        global: false,
    },
];

/// A 3-D layer: its twin on the slices (none for the global poolings) and its twin along
/// depth. The layer holds the name; the twins carry it too, for their errors.
#[derive(Debug)]
pub struct ThreeD {
    class: &'static Class,
    base: LayerBase,
    plane: Option<Box<dyn Layer>>,
    depth: Box<dyn Layer>,
}

impl Clone for ThreeD {
    fn clone(&self) -> Self {
        ThreeD {
            class: self.class,
            base: self.base.clone(),
            plane: self.plane.as_ref().map(|p| p.clone_layer()),
            depth: self.depth.clone_layer(),
        }
    }
}

impl std::fmt::Debug for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Three values from one (used for each axis) or a list of three.
fn three(value: &Value) -> Option<[Value; 3]> {
    match value {
        Value::Array(items) => items.clone().try_into().ok(),
        one => Some([one.clone(), one.clone(), one.clone()]),
    }
}

/// A (before, after) pair of non-negative integers from one integer or a pair.
fn sides(value: &Value) -> Option<[i64; 2]> {
    let nonneg = |v: &Value| declare::as_int(v).filter(|&n| n >= 0);
    match value {
        Value::Array(items) => match items.as_slice() {
            [a, b] => Some([nonneg(a)?, nonneg(b)?]),
            _ => None,
        },
        one => nonneg(one).map(|n| [n, n]),
    }
}

impl ThreeD {
    /// A 3-D layer from its Keras class and config, as Keras would build it:
    /// `ThreeD::new("MaxPooling3D", json!({"pool_size": 2}))`.
    pub fn new(class: &str, config: Value) -> Result<Self> {
        if !CLASSES.iter().any(|c| c.name == class) {
            let known: Vec<&str> = CLASSES.iter().map(|c| c.name).collect();
            return Err(Error::invalid(
                "class",
                format!("'{class}' is not a 3-D layer class ({})", known.join(", ")),
            ));
        }
        Self::read_three_d(class, &config)
    }

    /// Reads a 3-D class from its Keras config (the registry's reader).
    pub(super) fn read(name: &str, config: &Value) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Self::read_three_d(name, config)?))
    }

    fn read_three_d(name: &str, config: &Value) -> Result<Self> {
        let class = CLASSES
            .iter()
            .find(|c| c.name == name)
            .expect("the registry lists only CLASSES");
        let layer = config
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| super::default_name(name), str::to_string);
        let error = |field: &str, message: String| Error::Config {
            layer: layer.clone(),
            class: name.into(),
            field: field.into(),
            message,
        };
        let (mut plane, mut depth) = (Map::new(), Map::new());
        for (key, value) in &with_keras_defaults(name, config) {
            let spatial = if matches!(key.as_str(), "name" | "trainable" | "dtype") {
                Same
            } else {
                class
                    .fields
                    .iter()
                    .find(|(field, _)| field == key)
                    .map(|(_, s)| *s)
                    .ok_or_else(|| error(key, format!("unknown field for {name}")))?
            };
            let bad = |what: &str| error(key, format!("expected {what}, found {value}"));
            let (p, d) = match spatial {
                _ if value.is_null() => (Value::Null, Value::Null),
                Same => (value.clone(), value.clone()),
                Triple => {
                    let [d, h, w] = three(value).ok_or_else(|| bad("an integer or three"))?;
                    (json!([h, w]), json!([d, 1]))
                }
                Sides => {
                    let [d, h, w] = three(value)
                        .and_then(|t| Some([sides(&t[0])?, sides(&t[1])?, sides(&t[2])?]))
                        .ok_or_else(|| {
                            bad("an integer, three integers or three (before, after) pairs")
                        })?;
                    (json!([h, w]), json!([d, [0, 0]]))
                }
            };
            plane.insert(key.clone(), p);
            depth.insert(key.clone(), d);
        }
        let twin = |config: Map<String, Value>| {
            super::layer_from_config(class.twin, &Value::Object(config))
                .map_err(|e| twin_config_error(e, class.twin, name))
        };
        let mut depth = twin(depth)?;
        let base = depth.base().clone();
        let plane = (!class.global).then(|| twin(plane)).transpose()?;
        depth.base_mut().name = base.name.clone();
        Ok(ThreeD {
            class,
            base,
            plane,
            depth,
        })
    }

    /// The twins' error, as this layer's.
    fn own_error(&self, e: Error) -> Error {
        twin_shape_error(e, self.class.name)
    }

    fn rank_error(&self, shape: &str) -> Error {
        self.shape_error(&format!(
            "expects a 5-D input (batch, depth, height, width, channels), got shape {shape}"
        ))
    }

    /// The two views' shapes and the output shape, for an input shape.
    fn shapes(&self, x: &Shape) -> Result<(Shape, Shape, Shape)> {
        let [n, d, h, w, c] = x[..] else {
            return Err(self.rank_error(&super::format_shape(x)));
        };
        let times = |a: Option<usize>, b: Option<usize>| a.zip(b).map(|(a, b)| a * b);
        let slices = vec![times(n, d), h, w, c];
        let (h, w) = match &self.plane {
            Some(plane) => {
                let out = plane
                    .output_shape(std::slice::from_ref(&slices))
                    .map_err(|e| self.own_error(e))?;
                (out[1], out[2])
            }
            None => (h, w),
        };
        let along_depth = vec![n, d, times(h, w), c];
        let out = self
            .depth
            .output_shape(std::slice::from_ref(&along_depth))
            .map_err(|e| self.own_error(e))?;
        let output = match out[..] {
            [n, d, _, c] if self.plane.is_some() => vec![n, d, h, w, c],
            [n, _, _, c] => vec![n, Some(1), Some(1), Some(1), c],
            _ => out,
        };
        Ok((slices, along_depth, output))
    }

    /// The input seen along depth: the per-slice pass's output, or the input itself.
    fn along_depth(&self, x: &Tensor) -> Result<Tensor> {
        let &[n, d, h, w, c] = x.shape() else {
            return Err(self.rank_error(&format!("{:?}", x.shape())));
        };
        let Some(plane) = &self.plane else {
            return x.clone().reshape([n, d, h * w, c]);
        };
        let slices = x.clone().reshape([n * d, h, w, c])?;
        let m = plane.apply(&[&slices]).map_err(|e| self.own_error(e))?;
        let [_, mh, mw, _] = m.shape()[..] else {
            unreachable!("the 2-D twins keep the rank")
        };
        m.reshape([n, d, mh * mw, c])
    }

    fn concrete(&self, shape: Shape) -> Result<Vec<usize>> {
        super::concrete(self, shape)
    }
}

impl Layer for ThreeD {
    fn class_name(&self) -> &'static str {
        self.class.name
    }

    fn base(&self) -> &LayerBase {
        &self.base
    }

    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }

    fn config_fields(&self) -> Map<String, Value> {
        let depth = self.depth.config_fields();
        let plane = self.plane.as_ref().map(|p| p.config_fields());
        let mut fields = Map::new();
        for (key, spatial) in self.class.fields {
            let Some(d) = depth.get(*key) else { continue };
            let p = plane.as_ref().and_then(|p| p.get(*key));
            let value = match (spatial, p) {
                (Same, _) => d.clone(),
                (_, Some(p)) if !d.is_null() && !p.is_null() => json!([d[0], p[0], p[1]]),
                _ => Value::Null,
            };
            fields.insert(key.to_string(), value);
        }
        fields
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        Ok(self.shapes(single(self, inputs)?)?.2)
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        let out = self.concrete(self.shapes(&super::shape_of(x))?.2)?;
        let m = self.along_depth(x)?;
        let y = self.depth.apply(&[&m]).map_err(|e| self.own_error(e))?;
        y.reshape(out)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        _saved: &Saved,
        dy: &Tensor,
        _dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let (slices, _, _) = self.shapes(&super::shape_of(x))?;
        let m = self.along_depth(x)?;
        let y_shape = self.concrete(self.depth.output_shape(&[super::shape_of(&m)])?)?;
        let y = output.clone().reshape(y_shape.clone())?;
        let dm = self
            .depth
            .backward_impl(
                &[&m],
                &y,
                &Saved::none(),
                &dy.clone().reshape(y_shape)?,
                &mut [],
            )
            .map_err(|e| self.own_error(e))?
            .swap_remove(0);
        let Some(plane) = &self.plane else {
            return Ok(vec![dm.reshape(x.shape())?]);
        };
        let xs = x.clone().reshape(self.concrete(slices)?)?;
        let ms_shape = self.concrete(plane.output_shape(&[super::shape_of(&xs)])?)?;
        let (ms, dms) = (m.reshape(ms_shape.clone())?, dm.reshape(ms_shape)?);
        let dx = plane
            .backward_impl(&[&xs], &ms, &Saved::none(), &dms, &mut [])
            .map_err(|e| self.own_error(e))?
            .swap_remove(0);
        Ok(vec![dx.reshape(x.shape())?])
    }
}
