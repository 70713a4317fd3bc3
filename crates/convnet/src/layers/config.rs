//! Reading a layer's Keras config object. Every accessor names the layer and the field in
//! its error, and [`ConfigReader::finish`] rejects fields nobody read, so a config that
//! asks for something convnet would silently ignore is an error instead.

use super::LayerBase;
use crate::activations::ActivationFn;
use crate::error::{Error, Result};
use crate::initializers::Initializer;
use crate::kernels::Padding;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::BTreeSet;

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

pub struct ConfigReader<'a> {
    class: String,
    layer: String,
    map: &'a Map<String, Value>,
    read: RefCell<BTreeSet<String>>,
}

impl<'a> ConfigReader<'a> {
    /// A reader over `config`, which must be an object (or null, for all defaults).
    pub fn new(class: &str, config: &'a Value) -> Result<Self> {
        let map = match config {
            Value::Object(map) => map,
            Value::Null => &EMPTY,
            other => {
                return Err(Error::Config {
                    layer: "<unnamed>".into(),
                    class: class.into(),
                    field: "config".into(),
                    message: format!("expected an object, found {other}"),
                })
            }
        };
        let layer = match map.get("name") {
            Some(Value::String(name)) => name.clone(),
            _ => super::default_name(class),
        };
        Ok(ConfigReader {
            class: class.to_string(),
            layer,
            map,
            read: RefCell::new(BTreeSet::new()),
        })
    }

    pub fn layer_name(&self) -> &str {
        &self.layer
    }

    pub fn error(&self, field: &str, message: impl Into<String>) -> Error {
        Error::Config {
            layer: self.layer.clone(),
            class: self.class.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The field's value, `None` when absent or null. Marks the field as read.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.read.borrow_mut().insert(field.to_string());
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// `name`, `trainable` and `dtype`, the fields every layer has.
    pub fn base(&self) -> Result<LayerBase> {
        let mut base = LayerBase::new(&self.layer);
        base.auto_named = self.get("name").is_none();
        base.trainable = self.bool("trainable", true)?;
        if let Some(dtype) = self.get("dtype") {
            base.dtype = dtype.clone();
        }
        Ok(base)
    }

    pub fn bool(&self, field: &str, default: bool) -> Result<bool> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.error(field, format!("expected true or false, found {v}"))),
        }
    }

    pub fn f64(&self, field: &str, default: f64) -> Result<f64> {
        self.opt_f64(field).map(|v| v.unwrap_or(default))
    }

    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.error(field, format!("expected a finite number, found {v}"))),
        }
    }

    /// An integer ≥ `min`.
    pub fn int_at_least(&self, field: &str, default: Option<i64>, min: i64) -> Result<i64> {
        let value = match self.get(field) {
            None => default.ok_or_else(|| self.error(field, "missing"))?,
            Some(v) => as_int(v)
                .ok_or_else(|| self.error(field, format!("expected an integer, found {v}")))?,
        };
        if value < min {
            return Err(self.error(field, format!("must be at least {min}, found {value}")));
        }
        Ok(value)
    }

    /// A positive integer.
    pub fn positive(&self, field: &str, default: Option<usize>) -> Result<usize> {
        Ok(self.int_at_least(field, default.map(|d| d as i64), 1)? as usize)
    }

    /// A list of integers (or null).
    pub fn opt_int_list(&self, field: &str) -> Result<Option<Vec<i64>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    as_int(v).ok_or_else(|| {
                        self.error(field, format!("expected a list of integers, found {v}"))
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => Err(self.error(field, format!("expected a list of integers, found {v}"))),
        }
    }

    /// Two positive integers, given as one integer (used for both) or a list of two, as
    /// Keras accepts for `kernel_size`, `strides`, `pool_size`, …
    pub fn pair(&self, field: &str, default: Option<(usize, usize)>) -> Result<(usize, usize)> {
        let bad = |v: &Value| {
            self.error(
                field,
                format!("expected a positive integer or a list of two, found {v}"),
            )
        };
        match self.get(field) {
            None => default.ok_or_else(|| self.error(field, "missing")),
            Some(v) => {
                let items: Vec<i64> = match v {
                    Value::Array(items) => items
                        .iter()
                        .map(as_int)
                        .collect::<Option<_>>()
                        .ok_or_else(|| bad(v))?,
                    _ => vec![as_int(v).ok_or_else(|| bad(v))?; 2],
                };
                match items[..] {
                    [a, b] if a > 0 && b > 0 => Ok((a as usize, b as usize)),
                    _ => Err(bad(v)),
                }
            }
        }
    }

    /// Amounts of the form Keras takes for ZeroPadding2D and Cropping2D: one integer,
    /// a pair (rows, columns) or a pair of pairs ((top, bottom), (left, right)); all ≥ 0.
    pub fn two_sided_pairs(
        &self,
        field: &str,
        default: [[usize; 2]; 2],
    ) -> Result<[[usize; 2]; 2]> {
        let bad = |v: &Value| {
            self.error(
                field,
                format!("expected an integer, a pair or a pair of pairs of non-negative integers, found {v}"),
            )
        };
        let Some(v) = self.get(field) else {
            return Ok(default);
        };
        let nonneg = |x: &Value| as_int(x).filter(|&i| i >= 0).map(|i| i as usize);
        if let Some(n) = nonneg(v) {
            return Ok([[n, n], [n, n]]);
        }
        let items = v
            .as_array()
            .filter(|a| a.len() == 2)
            .ok_or_else(|| bad(v))?;
        let side = |x: &Value| -> Option<[usize; 2]> {
            if let Some(n) = nonneg(x) {
                return Some([n, n]);
            }
            match x.as_array()?.as_slice() {
                [a, b] => Some([nonneg(a)?, nonneg(b)?]),
                _ => None,
            }
        };
        Ok([
            side(&items[0]).ok_or_else(|| bad(v))?,
            side(&items[1]).ok_or_else(|| bad(v))?,
        ])
    }

    pub fn string(&self, field: &str, default: &str) -> Result<String> {
        match self.get(field) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.error(field, format!("expected a string, found {v}"))),
        }
    }

    pub fn padding(&self, field: &str) -> Result<Padding> {
        match self.string(field, "valid")?.to_ascii_lowercase().as_str() {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            other => Err(self.error(
                field,
                format!("expected 'valid' or 'same', found '{other}'"),
            )),
        }
    }

    pub fn activation(&self, field: &str) -> Result<ActivationFn> {
        let name = self.string(field, "linear")?;
        ActivationFn::from_name(&name).ok_or_else(|| {
            self.error(
                field,
                format!(
                    "unknown activation '{name}' (known: {})",
                    crate::activations::activation_names()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    pub fn initializer(&self, field: &str, default: Initializer) -> Result<Initializer> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => Initializer::from_config(v).map_err(|e| self.error(field, e)),
        }
    }

    /// Fields convnet does not implement yet (regularizers, constraints): accepted only
    /// when null, so that a model never trains differently from what its file says.
    pub fn unsupported_unless_null(&self, fields: &[&str]) -> Result<()> {
        for field in fields {
            if let Some(v) = self.get(field) {
                return Err(self.error(
                    field,
                    format!("{v} is not supported by convnet yet; only null is accepted"),
                ));
            }
        }
        Ok(())
    }

    /// `data_format`: convnet is channels_last (NHWC) throughout.
    pub fn channels_last(&self) -> Result<()> {
        match self.string("data_format", "channels_last")?.as_str() {
            "channels_last" => Ok(()),
            other => Err(self.error(
                "data_format",
                format!("'{other}' is not supported: convnet computes in channels_last (NHWC)"),
            )),
        }
    }

    /// Fails on any field that no accessor read and that is not null.
    pub fn finish(&self) -> Result<()> {
        let read = self.read.borrow();
        match self
            .map
            .iter()
            .find(|(k, v)| !read.contains(k.as_str()) && !v.is_null())
        {
            None => Ok(()),
            Some((field, _)) => Err(self.error(field, format!("unknown field for {}", self.class))),
        }
    }
}

/// An integer, also when JSON wrote it as a float with no fraction (`3.0`).
fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}
