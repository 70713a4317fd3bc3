//! The form Keras writes a regularizer, constraint or initializer in: a string
//! identifier (`"l2"`), or an object `{"module", "class_name", "config",
//! "registered_name"}` (tf.keras 2 writes only `class_name` and `config`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The class named by `value` (one of `classes`, found by its class name or its
/// snake_case alias) and its config object (empty for a string identifier).
pub(crate) fn read(
    value: &Value,
    kind: &str,
    classes: &[(&str, &'static str)],
) -> Result<(&'static str, Map<String, Value>), String> {
    let (name, config) = match value {
        Value::String(name) => (name.as_str(), Map::new()),
        Value::Object(object) => {
            let name = object
                .get("class_name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{kind} object without a 'class_name'"))?;
            let config = match object.get("config") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(config)) => config.clone(),
                Some(other) => return Err(format!("{kind} 'config' is not an object: {other}")),
            };
            (name, config)
        }
        other => return Err(format!("expected a {kind} name or object, found {other}")),
    };
    let class = classes
        .iter()
        .find(|(alias, class)| *alias == name || *class == name)
        .map(|(_, class)| *class)
        .ok_or_else(|| {
            let known: Vec<&str> = classes.iter().map(|(_, class)| *class).collect();
            format!(
                "unknown {kind} '{name}' (convnet knows {})",
                known.join(", ")
            )
        })?;
    Ok((class, config))
}

/// A class's typed config, from the object [`read`] returned: unknown keys are refused
/// and missing ones take Keras's defaults.
pub(crate) fn config<T: DeserializeOwned>(
    class: &str,
    config: Map<String, Value>,
) -> Result<T, String> {
    serde_json::from_value(Value::Object(config)).map_err(|e| format!("{class}: {e}"))
}

/// The object Keras's `serialize` writes for a class of `module`.
pub(crate) fn write(module: &str, class: &str, config: &impl Serialize) -> Value {
    json!({
        "module": module,
        "class_name": class,
        "config": serde_json::to_value(config).unwrap_or(Value::Null),
        "registered_name": null,
    })
}

/// A number written back as it was read (`2` stays `2`, `0.01` stays `0.01`), checked
/// to be finite and not negative.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(try_from = "serde_json::Number")]
pub struct Amount(serde_json::Number);

impl Amount {
    /// The number as f64.
    pub fn get(&self) -> f64 {
        self.0.as_f64().unwrap_or(0.0)
    }

    pub(crate) fn of(value: f64) -> Self {
        Amount(serde_json::Number::from_f64(value).unwrap_or_else(|| 0.into()))
    }
}

impl TryFrom<serde_json::Number> for Amount {
    type Error = String;
    fn try_from(n: serde_json::Number) -> Result<Self, String> {
        match n.as_f64() {
            Some(v) if v.is_finite() && v >= 0.0 => Ok(Amount(n)),
            _ => Err(format!("{n} must be a finite number, at least 0")),
        }
    }
}
