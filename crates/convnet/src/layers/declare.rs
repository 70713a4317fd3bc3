//! Layer declarations: each layer struct *is* its Keras config. Its fields, in Keras's
//! order, derive `Serialize` and `Deserialize`, so reading a config and writing it back
//! both follow from the one declaration. This module holds what every declaration shares:
//! the common fields (`name`, `trainable`, `dtype`), the mapping of serde's errors to
//! [`Error::Config`] (naming the layer, its class and the field), and the field types and
//! `with` modules for Keras's looser forms (`3` for `(3, 3)`, `"SAME"`, `[-1]` for `-1`).
//!
//! Rules kept from Keras's files: a null field means its default, an unknown non-null
//! field is refused (`deny_unknown_fields`), and regularizers and constraints convnet does
//! not implement are accepted only as null ([`NullOnly`]).

use super::{default_name, Layer, LayerBase};
use crate::error::{Error, Result};
use crate::regularizers::Regularizer;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Reads a layer of Keras class `class` from its config object (null: all defaults).
pub(super) fn read_layer<L: Layer + DeserializeOwned>(class: &str, config: &Value) -> Result<L> {
    let map = match config {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(Error::Config {
                layer: "<unnamed>".into(),
                class: class.into(),
                field: "config".into(),
                message: format!("expected an object, found {other}"),
            })
        }
    };
    let name = match map.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => default_name(class),
    };
    let error = |field: &str, message: String| Error::Config {
        layer: name.clone(),
        class: class.into(),
        field: field.into(),
        message,
    };
    let mut base = LayerBase::new(&name);
    let mut fields = Map::new();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "name" if value.is_string() => base.auto_named = false,
            "name" => return Err(error("name", format!("expected a string, found {value}"))),
            "trainable" => {
                base.trainable = value.as_bool().ok_or_else(|| {
                    error(
                        "trainable",
                        format!("expected true or false, found {value}"),
                    )
                })?
            }
            "dtype" => base.dtype = value,
            "activity_regularizer" => {
                base.activity_regularizer = Some(
                    Regularizer::from_config(&value)
                        .map_err(|m| error("activity_regularizer", m))?,
                )
            }
            _ => {
                fields.insert(key, value);
            }
        }
    }
    let mut layer: L = serde_path_to_error::deserialize(Value::Object(fields)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let quoted = |prefix: &str| {
            message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
                .map(str::to_string)
        };
        if let Some(field) = quoted("missing field `") {
            error(&field, "missing".into())
        } else if let Some(field) = quoted("unknown field `") {
            error(&field, format!("unknown field for {class}"))
        } else {
            let field = path.split(['.', '[']).next().unwrap_or(&path);
            error(field, message)
        }
    })?;
    *layer.base_mut() = base;
    Ok(layer)
}

/// A layer with every default its declaration gives, named `name`: what the Rust
/// constructors start from, so each default is written once. `required` holds
/// placeholders for the fields without one, which the constructor then sets.
pub(super) fn defaults<L: Layer + DeserializeOwned>(name: &str, required: Value) -> L {
    let mut layer: L = serde_json::from_value(required)
        .unwrap_or_else(|e| unreachable!("{name}: the declaration's defaults do not read: {e}"));
    *layer.base_mut() = LayerBase::new(name);
    layer
}

/// The config fields after `name`, `trainable` and `dtype`, in declaration order.
pub(super) fn config_fields<L: Serialize>(layer: &L) -> Map<String, Value> {
    match serde_json::to_value(layer) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("a layer declaration serializes to an object"),
    }
}

/// An integer, also when JSON wrote it as a float with no fraction (`3.0`).
pub(super) fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        })
        .filter(|n| n.unsigned_abs() <= MAX_SIZE)
}

/// The largest size, stride, padding or count a config may declare (2³¹): every size
/// arithmetic on sizes this small fits in 64 bits, so no layer's shape computation can
/// overflow; the tensors they describe are bounded separately ([`crate::tensor::MAX_VALUES`]).
pub const MAX_SIZE: u64 = 1 << 31;

/// An integer of at least `min`, with the value in the error.
fn int_at_least<E: serde::de::Error>(v: &Value, min: i64) -> Result<i64, E> {
    let n = as_int(v).ok_or_else(|| {
        if v.as_f64().is_some_and(|f| f.fract() == 0.0) {
            E::custom(format!(
                "must be at most {MAX_SIZE} (convnet's limit on a declared size), found {v}"
            ))
        } else {
            E::custom(format!("expected an integer, found {v}"))
        }
    })?;
    if n < min {
        return Err(E::custom(format!("must be at least {min}, found {n}")));
    }
    Ok(n)
}

/// A positive integer (`filters`, `units`, `groups`, …).
pub(super) fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    Ok(int_at_least(&Value::deserialize(d)?, 1)? as usize)
}

/// A number between 0 and 1 inclusive (Dropout's `rate`).
pub(super) fn unit_interval<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let rate = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(D::Error::custom(format!(
            "must be between 0 and 1, found {rate}"
        )))
    }
}

/// A number ≥ 0 (ReLU's `negative_slope`).
pub(super) fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let x = f64::deserialize(d)?;
    if x >= 0.0 {
        Ok(x)
    } else {
        Err(D::Error::custom(format!("must be ≥ 0, found {x}")))
    }
}

/// An optional number ≥ 0 (ReLU's `max_value`).
pub(super) fn opt_non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    non_negative(d).map(Some)
}

/// One axis, also given as a list of one (`[-1]`), as Keras writes for normalization.
pub(super) fn one_axis<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    let axis = match &v {
        Value::Array(items) if items.len() == 1 => items[0].as_i64(),
        v => v.as_i64(),
    };
    axis.ok_or_else(|| D::Error::custom(format!("expected one integer axis, found {v}")))
}

/// A list of integers, also given as one integer (PReLU's `shared_axes`).
pub(super) fn opt_int_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    let v = Value::deserialize(d)?;
    let items = match &v {
        Value::Array(items) => items.iter().map(as_int).collect::<Option<Vec<_>>>(),
        v => as_int(v).map(|n| vec![n]),
    };
    items
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a list of integers, found {v}")))
}

/// `n` positive integers, given as one integer (used for each) or a list of `n`.
fn positive_list<const N: usize>(v: &Value) -> Option<[usize; N]> {
    let items: Vec<i64> = match v {
        Value::Array(items) => items.iter().map(as_int).collect::<Option<_>>()?,
        other => vec![as_int(other)?; N],
    };
    let items: Vec<usize> = items
        .into_iter()
        .map(|i| usize::try_from(i).ok().filter(|&i| i > 0))
        .collect::<Option<_>>()?;
    items.try_into().ok()
}

/// Two positive integers, given as one integer (used for both) or a list of two, as
/// Keras takes `kernel_size`, `strides`, `pool_size`, …; written as a list of two.
pub(super) mod pair {
    use super::*;

    pub fn serialize<S: Serializer>(p: &(usize, usize), s: S) -> Result<S::Ok, S::Error> {
        [p.0, p.1].serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(usize, usize), D::Error> {
        let v = Value::deserialize(d)?;
        let [a, b] = positive_list::<2>(&v).ok_or_else(|| {
            D::Error::custom(format!(
                "expected a positive integer or a list of two (at most {MAX_SIZE} each), found {v}"
            ))
        })?;
        Ok((a, b))
    }

    /// The same for an optional pair, null when absent.
    pub mod optional {
        use super::*;

        pub fn serialize<S: Serializer>(
            p: &Option<(usize, usize)>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            p.map(|p| [p.0, p.1]).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<(usize, usize)>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// Three positive integers (depth, rows, columns), given as one integer or a list of
/// three, as the 3-D layers take `kernel_size`, `strides`, …; written as a list.
pub(super) mod triple {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[usize; 3], D::Error> {
        let v = Value::deserialize(d)?;
        positive_list::<3>(&v).ok_or_else(|| {
            D::Error::custom(format!(
                "expected a positive integer or a list of three (at most {MAX_SIZE} each), found {v}"
            ))
        })
    }
}

/// `padding` of the convolution and pooling layers: `valid` or `same`, in any case.
pub(super) mod padding {
    use super::*;
    use crate::kernels::Padding;

    pub fn serialize<S: Serializer>(p: &Padding, s: S) -> Result<S::Ok, S::Error> {
        p.keras_name().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Padding, D::Error> {
        let name = String::deserialize(d)?.to_ascii_lowercase();
        match name.as_str() {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            other => Err(D::Error::custom(format!(
                "expected 'valid' or 'same', found '{other}'"
            ))),
        }
    }

    /// Keras's default.
    pub fn valid() -> Padding {
        Padding::Valid
    }
}

/// Amounts of the form Keras takes for ZeroPadding2D and Cropping2D: one integer, a
/// pair (rows, columns) or a pair of pairs ((top, bottom), (left, right)); all ≥ 0.
/// Written as the pair of pairs.
pub(super) mod two_sided {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[[usize; 2]; 2], D::Error> {
        let v = Value::deserialize(d)?;
        let nonneg = |x: &Value| as_int(x).filter(|&i| i >= 0).map(|i| i as usize);
        let side = |x: &Value| -> Option<[usize; 2]> {
            if let Some(n) = nonneg(x) {
                return Some([n, n]);
            }
            match x.as_array()?.as_slice() {
                [a, b] => Some([nonneg(a)?, nonneg(b)?]),
                _ => None,
            }
        };
        let amounts = match (nonneg(&v), v.as_array().map(Vec::as_slice)) {
            (Some(n), _) => Some([[n, n], [n, n]]),
            (None, Some([rows, cols])) => side(rows).zip(side(cols)).map(|(r, c)| [r, c]),
            _ => None,
        };
        amounts.ok_or_else(|| {
            D::Error::custom(format!(
                "expected an integer, a pair or a pair of pairs of non-negative integers (at most {MAX_SIZE} each), found {v}"
            ))
        })
    }
}

/// A shape with the batch axis or other unknown sizes as null: positive sizes or null
/// (InputLayer's `batch_shape`, Dropout's `noise_shape`).
pub(super) mod sizes {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<usize>>, D::Error> {
        let v = Value::deserialize(d)?;
        let items = v
            .as_array()
            .ok_or_else(|| D::Error::custom(format!("expected a list, found {v}")))?;
        items
            .iter()
            .map(|d| match d {
                Value::Null => Ok(None),
                d => d
                    .as_u64()
                    .filter(|&d| d > 0 && d <= MAX_SIZE)
                    .map(|d| Some(d as usize))
                    .ok_or_else(|| {
                        D::Error::custom(format!(
                            "expected positive sizes (at most {MAX_SIZE}) or null, found {d}"
                        ))
                    }),
            })
            .collect()
    }

    /// The same for an optional shape, null when absent.
    pub mod optional {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<Option<usize>>>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// A regularizer or constraint that convnet does not implement yet: accepted only as
/// null (absent), so a model never trains differently from what its file says.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NullOnly;

impl Serialize for NullOnly {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl<'de> Deserialize<'de> for NullOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Err(D::Error::custom(format!(
            "{v} is not supported by convnet yet; only null is accepted"
        )))
    }
}

/// `data_format`: convnet computes in channels_last (NHWC) throughout.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChannelsLast;

impl Serialize for ChannelsLast {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("channels_last")
    }
}

impl<'de> Deserialize<'de> for ChannelsLast {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "channels_last" => Ok(ChannelsLast),
            other => Err(D::Error::custom(format!(
                "'{other}' is not supported: convnet computes in channels_last (NHWC)"
            ))),
        }
    }
}

/// A flag that only `false` may set: what Keras offers and convnet does not implement
/// (BatchNormalization's `renorm`, InputLayer's `sparse`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AlwaysFalse;

impl Serialize for AlwaysFalse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(false)
    }
}

impl<'de> Deserialize<'de> for AlwaysFalse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if bool::deserialize(d)? {
            Err(D::Error::custom("is not supported by convnet"))
        } else {
            Ok(AlwaysFalse)
        }
    }
}

/// `-1`, the default axis of Softmax, Concatenate and BatchNormalization.
pub(super) fn last_axis() -> i64 {
    -1
}

/// `groups` in the tf.keras 2 configs of DepthwiseConv2D, SeparableConv2D and
/// Conv2DTranspose, which Keras 3 dropped: read when it is 1 (what tf.keras wrote),
/// refused otherwise, and not written back.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LegacyGroups;

impl<'de> Deserialize<'de> for LegacyGroups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match int_at_least::<D::Error>(&Value::deserialize(d)?, 1)? {
            1 => Ok(LegacyGroups),
            n => Err(D::Error::custom(format!(
                "groups = {n} is not supported on this layer (tf.keras 2 wrote 1; Keras 3 has no such argument)"
            ))),
        }
    }
}

/// `true`, the default of most Keras flags (`use_bias`, `center`, `scale`).
pub(super) fn yes() -> bool {
    true
}

/// One axis or a list of them, written back in the form it was read: Keras writes `-1`
/// for a layer it has not built and `[-1]` once built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Axes {
    /// One axis, `-1`.
    One(i64),
    /// A list of axes, `[1, 3]`.
    Many(Vec<i64>),
}

impl Axes {
    /// The axes as indices into a shape of `rank` dimensions, sorted, or a message
    /// naming the one out of range (the batch axis 0 is never normalised).
    pub(super) fn resolve(&self, rank: usize) -> std::result::Result<Vec<usize>, String> {
        let listed = match self {
            Axes::One(a) => std::slice::from_ref(a),
            Axes::Many(list) => list.as_slice(),
        };
        let mut axes = Vec::with_capacity(listed.len());
        for &a in listed {
            let index = if a < 0 { rank as i64 + a } else { a };
            if index <= 0 || index >= rank as i64 {
                return Err(format!(
                    "axis {a} is out of range for an input of rank {rank}"
                ));
            }
            if !axes.contains(&(index as usize)) {
                axes.push(index as usize);
            }
        }
        axes.sort_unstable();
        Ok(axes)
    }
}

/// `[-1]`: the default of Normalization, written as Keras writes its tuple.
pub(super) fn last_axis_list() -> Axes {
    Axes::Many(vec![-1])
}
