//! A model's architecture as Keras writes it in `config.json`: Sequential (a list of
//! layer objects) or Functional (layer objects with their `inbound_nodes`, whose
//! `__keras_tensor__` arguments name the producing layer, call and output), plus the
//! `compile_config`. Reading rebuilds the model through the functional API, so a file
//! gets exactly the checks, order and names a model built in Rust gets.

use crate::error::{Error, Result};
use crate::layers::{layer_from_keras, layer_to_keras, Layer, Shape};
use crate::model::{Model, Sequential, SequentialItem, SharedLayer, SymbolicTensor};
use crate::train::{Compiled, Loss, LossFn, Optimizer};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;

fn bad(origin: &Path, message: impl std::fmt::Display) -> Error {
    Error::file(origin, message)
}

/// Builds the model a Keras config object describes (`{"class_name": "Sequential" |
/// "Functional", "config": …}`), with fresh weights.
pub fn model_from_config(value: &Value, origin: &Path) -> Result<Model> {
    let class = value
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(origin, "the model config has no class_name"))?;
    let config = value
        .get("config")
        .ok_or_else(|| bad(origin, "the model config has no config"))?;
    let name = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(if class == "Sequential" {
            "sequential"
        } else {
            "functional"
        });
    let layers = config
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(origin, "the model config has no 'layers' list"))?;
    let model = match class {
        "Sequential" => sequential_from_config(value, config, layers, origin)?,
        "Functional" | "Model" => functional_from_config(config, layers, origin)?,
        other => {
            return Err(bad(
                origin,
                format!("model class '{other}' is not supported (Sequential and Functional are)"),
            ))
        }
    };
    Ok(model.named(name))
}

/// The layer an object describes: a Keras layer, or a model used as a layer.
fn layer(object: &Value, origin: &Path) -> Result<Box<dyn Layer>> {
    let class = object
        .get("class_name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    if matches!(class, "Sequential" | "Functional" | "Model") {
        let mut nested = crate::model::NestedModel::new(model_from_config(object, origin)?);
        if let Some(trainable) = object["config"].get("trainable") {
            let trainable = trainable.as_bool().ok_or_else(|| {
                bad(
                    origin,
                    format!(
                        "model '{}': 'trainable' is {trainable}, not true or false",
                        nested.name()
                    ),
                )
            })?;
            nested.base_mut().trainable = trainable;
            // Keras's setter freezes everything inside a frozen model, as its saved
            // configs show; a file that says otherwise inside is read the same way.
            if !trainable {
                crate::model::set_trainable(&mut nested, false);
            }
        }
        return Ok(Box::new(nested));
    }
    layer_from_keras(object).map_err(|e| bad(origin, e))
}

fn shape_from(value: &Value) -> Option<Vec<usize>> {
    let dims = value.as_array()?;
    dims.iter()
        .skip(1)
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect()
}

fn sequential_from_config(
    top: &Value,
    config: &Value,
    layers: &[Value],
    origin: &Path,
) -> Result<Model> {
    let mut items = Vec::new();
    for object in layers {
        let layer = layer(object, origin)?;
        items.push(if layer.class_name() == "InputLayer" {
            SequentialItem::Input(layer)
        } else {
            SequentialItem::Layer(layer)
        });
    }
    let has_input = matches!(items.first(), Some(SequentialItem::Input(_)));
    let mut model = Sequential::new(items).map_err(|e| bad(origin, e))?;
    if !has_input {
        let shape = config
            .get("build_input_shape")
            .or_else(|| top.pointer("/build_config/input_shape"))
            .and_then(shape_from);
        if let Some(shape) = shape {
            model.build(&shape).map_err(|e| bad(origin, e))?;
        }
    }
    Ok(model)
}

/// `(layer name, call index, output index)`: which tensor a config refers to.
type TensorRef = (String, usize, usize);

/// `[name, node, tensor]` of a `keras_history` or an input/output reference (tf.keras 2
/// adds the call's keyword arguments as a fourth item).
fn history(value: &Value) -> Option<(String, usize, usize)> {
    match value.as_array()?.as_slice() {
        [name, node, tensor] | [name, node, tensor, _] => Some((
            name.as_str()?.to_string(),
            node.as_u64()? as usize,
            tensor.as_u64()? as usize,
        )),
        _ => None,
    }
}

/// The tensor references in a node's arguments: a `__keras_tensor__` object or a list.
fn tensor_refs(value: &Value, out: &mut Vec<(String, usize, usize)>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| tensor_refs(v, out)),
        Value::Object(o)
            if o.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__") =>
        {
            if let Some(h) = o
                .get("config")
                .and_then(|c| c.get("keras_history"))
                .and_then(history)
            {
                out.push(h);
            }
        }
        _ => {}
    }
}

/// References in `input_layers` / `output_layers`: one `[name, 0, 0]` or a list of them.
fn endpoint_refs(value: Option<&Value>) -> Vec<(String, usize, usize)> {
    match value {
        Some(v) => history(v).map(|h| vec![h]).unwrap_or_else(|| {
            v.as_array()
                .map(|a| a.iter().filter_map(history).collect())
                .unwrap_or_default()
        }),
        None => vec![],
    }
}

fn functional_from_config(config: &Value, layers: &[Value], origin: &Path) -> Result<Model> {
    // Every layer object, then its calls in the order given; a call whose inputs are not
    // made yet waits for a later pass (Keras's own loader does the same).
    let mut shared: Vec<(String, SharedLayer, Vec<Vec<TensorRef>>)> = Vec::new();
    for object in layers {
        let layer = layer(object, origin)?;
        let name = layer.name().to_string();
        let nodes = object
            .get("inbound_nodes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let calls = nodes
            .iter()
            .map(|node| {
                let mut refs = Vec::new();
                match node {
                    // tf.keras 2: the call's inputs as a list of [layer, node, tensor, kwargs].
                    Value::Array(inputs) => refs.extend(inputs.iter().filter_map(history)),
                    _ => tensor_refs(node.get("args").unwrap_or(&Value::Null), &mut refs),
                }
                refs
            })
            .collect();
        if shared.iter().any(|(n, _, _)| *n == name) {
            return Err(bad(origin, format!("two layers are named '{name}'")));
        }
        shared.push((name, SharedLayer::from_box(layer), calls));
    }
    let mut made: HashMap<(String, usize), SymbolicTensor> = HashMap::new();
    let mut next_call = vec![0usize; shared.len()];
    loop {
        let mut progress = false;
        for (i, (name, layer, calls)) in shared.iter().enumerate() {
            if calls.is_empty() && next_call[i] == 0 && layer.lock().class_name() == "InputLayer" {
                made.insert((name.clone(), 0), layer.call(Vec::new()));
                next_call[i] = 1;
                progress = true;
                continue;
            }
            while next_call[i] < calls.len() {
                let refs = &calls[next_call[i]];
                let inputs: Option<Vec<SymbolicTensor>> = refs
                    .iter()
                    .map(|(n, k, _)| made.get(&(n.clone(), *k)).cloned())
                    .collect();
                let Some(inputs) = inputs else { break };
                made.insert((name.clone(), next_call[i]), layer.call(inputs));
                next_call[i] += 1;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    for ((name, _, calls), &done) in shared.iter().zip(&next_call) {
        if done < calls.len() {
            let missing: Vec<String> = calls[done]
                .iter()
                .filter(|(n, k, _)| !made.contains_key(&(n.clone(), *k)))
                .map(|(n, k, _)| format!("'{n}'[{k}]"))
                .collect();
            return Err(bad(
                origin,
                format!(
                    "layer '{name}' takes the output of {}, which no layer in the config makes",
                    missing.join(", ")
                ),
            ));
        }
    }
    let resolve = |refs: Vec<(String, usize, usize)>, what: &str| -> Result<Vec<SymbolicTensor>> {
        if refs.is_empty() {
            return Err(bad(origin, format!("the model config lists no {what}")));
        }
        refs.into_iter()
            .map(|(n, k, _)| {
                made.get(&(n.clone(), k)).cloned().ok_or_else(|| {
                    bad(
                        origin,
                        format!("{what} refer to layer '{n}'[{k}], which the config does not make"),
                    )
                })
            })
            .collect()
    };
    let inputs = resolve(endpoint_refs(config.get("input_layers")), "input_layers")?;
    let outputs = resolve(endpoint_refs(config.get("output_layers")), "output_layers")?;
    Model::new(inputs, outputs).map_err(|e| bad(origin, e))
}

fn shape_json(shape: &Shape) -> Value {
    json!(shape)
}

fn keras_tensor(model: &Model, node: usize) -> Value {
    let (name, call_index, shape) = model.node_summary(node);
    json!({"class_name": "__keras_tensor__", "config": {"shape": shape_json(&shape), "dtype": "float32", "keras_history": [name, call_index, 0]}})
}

/// The object Keras writes for a layer; a model used as a layer nests its own config.
fn layer_object(layer: &dyn Layer) -> Value {
    let mut object = layer_to_keras(layer);
    if let Some(inner) = crate::model::nested_model(layer) {
        object["config"] = model_to_config(inner)["config"].take();
        object["config"]["trainable"] = json!(layer.base().trainable);
    }
    object
}

/// The config object Keras writes for `model` (without compile_config).
pub fn model_to_config(model: &Model) -> Value {
    if model.is_sequential() {
        let mut layers: Vec<Value> = Vec::new();
        for (i, layer) in model.all_layers().enumerate() {
            let mut object = layer_object(layer);
            if i > 0 || layer.class_name() != "InputLayer" {
                if let Some(shapes) = model.first_input_shapes(i) {
                    object["build_config"] = json!({"input_shape": shapes_json(&shapes)});
                }
            }
            layers.push(object);
        }
        let input_shape = model
            .input_shapes()
            .first()
            .map(shape_json)
            .unwrap_or(Value::Null);
        let mut config = Map::new();
        config.insert("name".into(), json!(model.name()));
        config.insert("trainable".into(), json!(true));
        config.insert("dtype".into(), json!({"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}));
        config.insert("layers".into(), json!(layers));
        config.insert("build_input_shape".into(), input_shape.clone());
        return json!({"module": "keras", "class_name": "Sequential", "config": config, "registered_name": null, "build_config": {"input_shape": input_shape}});
    }
    let layers: Vec<Value> = model
        .all_layers()
        .enumerate()
        .map(|(i, layer)| {
            let mut object = layer_object(layer);
            if let Some(shapes) = model
                .first_input_shapes(i)
                .filter(|_| !layer.is_operation())
            {
                object["build_config"] = json!({"input_shape": shapes_json(&shapes)});
            }
            // Keras writes a nested model's compile config: `{}`, as a model inside a
            // model is never compiled.
            if crate::model::nested_model(layer).is_some() {
                object["compile_config"] = json!({});
            }
            object["name"] = json!(layer.name());
            let nodes: Vec<Value> = model
                .calls_of(i)
                .iter()
                .map(|inputs| {
                    let tensors: Vec<Value> =
                        inputs.iter().map(|&n| keras_tensor(model, n)).collect();
                    json!({"args": layer.call_args(tensors), "kwargs": {}})
                })
                .collect();
            object["inbound_nodes"] = json!(nodes);
            object
        })
        .collect();
    let endpoints = |nodes: Vec<usize>| -> Value {
        let refs: Vec<Value> = nodes
            .iter()
            .map(|&n| {
                let (name, call_index, _) = model.node_summary(n);
                json!([name, call_index, 0])
            })
            .collect();
        if refs.len() == 1 {
            refs[0].clone()
        } else {
            json!(refs)
        }
    };
    json!({
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {
            "name": model.name(),
            "trainable": true,
            "layers": layers,
            "input_layers": endpoints(model.input_nodes()),
            "output_layers": endpoints(model.output_nodes()),
        },
        "registered_name": "Functional",
        "build_config": {"input_shape": null},
    })
}

fn shapes_json(shapes: &[Shape]) -> Value {
    if shapes.len() == 1 {
        shape_json(&shapes[0])
    } else {
        json!(shapes)
    }
}

/// The `compile_config` Keras writes for a compiled model.
pub fn compile_config(compiled: &Compiled) -> Value {
    let losses: Vec<Value> = compiled.losses.iter().map(|l| l.config()).collect();
    let loss = if losses.iter().all(|l| *l == losses[0]) {
        losses[0].clone()
    } else {
        json!(losses)
    };
    let metrics: Vec<&str> = compiled
        .metrics
        .first()
        .map(|m| m.iter().map(|m| m.name.as_str()).collect())
        .unwrap_or_default();
    json!({
        "optimizer": compiled.optimizer.to_config(),
        "loss": loss,
        "loss_weights": null,
        "metrics": metrics,
        "weighted_metrics": null,
        "run_eagerly": false,
        "steps_per_execution": 1,
        "jit_compile": false,
    })
}

/// The compile state a `compile_config` describes, for `model`.
pub fn compiled_from_config(model: &Model, config: &Value, origin: &Path) -> Result<Compiled> {
    let optimizer = Optimizer::from_config(config.get("optimizer").unwrap_or(&json!("rmsprop")))
        .map_err(|e| bad(origin, e))?;
    let losses: Vec<Box<dyn Loss>> = match config.get("loss") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|l| LossFn::from_config(l).map(|l| Box::new(l) as Box<dyn Loss>))
            .collect::<Result<_>>(),
        Some(Value::Null) | None => return Err(bad(origin, "compile_config has no loss")),
        Some(l) => LossFn::from_config(l).map(|l| vec![Box::new(l) as Box<dyn Loss>]),
    }
    .map_err(|e| bad(origin, e))?;
    let mut metrics: Vec<String> = Vec::new();
    if let Some(Value::Array(list)) = config.get("metrics") {
        for m in list {
            match m {
                Value::String(s) => metrics.push(s.clone()),
                Value::Array(inner) => {
                    metrics.extend(inner.iter().filter_map(|v| v.as_str().map(String::from)))
                }
                Value::Null => {}
                other => {
                    return Err(bad(
                        origin,
                        format!("metric {other} is not supported (metrics by name are)"),
                    ))
                }
            }
        }
    }
    let metrics: Vec<&str> = metrics.iter().map(String::as_str).collect();
    Compiled::new(model, optimizer, losses, &metrics).map_err(|e| bad(origin, e))
}
