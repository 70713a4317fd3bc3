//! `convnet models`: the built-in architectures and keras.applications, and how MODEL
//! arguments are resolved.

use convnet::applications::{self, Options, Pooling};
use convnet::model::Model;
use convnet::train::Compiled;
use convnet::{zoo, Error};
use std::path::Path;

pub fn run() -> Result<(), Error> {
    println!("Built-in models (use the name wherever a MODEL file is accepted):");
    for (name, what) in zoo::MODELS {
        println!("  {name:<22} {what}");
    }
    println!();
    println!("keras.applications, with fresh weights (--weights loads a Keras weight file):");
    for (name, what) in applications::APPLICATIONS {
        println!("  {name:<22} {what}");
    }
    println!();
    println!("Give an application Keras's arguments as Keras's call writes them, e.g.");
    println!("  \"ResNet50(include_top=False, input_shape=(64, 64, 3), pooling='avg')\"");
    Ok(())
}

/// A MODEL argument: a model file (.keras, .h5, config.json, .onnx), a built-in name, or a
/// keras.applications name, alone (`resnet50`) or called as in Keras
/// (`ResNet50(include_top=False, pooling="avg")`).
pub fn resolve(model: &str) -> Result<Model, Error> {
    resolve_with_compile(model).map(|(model, _)| model)
}

/// [`resolve`], with the compile state a model file was saved with, when it has one.
pub fn resolve_with_compile(model: &str) -> Result<(Model, Option<Compiled>), Error> {
    let path = Path::new(model);
    if path.exists() {
        return convnet::io::load_model_parts(path);
    }
    let model = if zoo::MODELS.iter().any(|(name, _)| *name == model) {
        zoo::by_name(model)
    } else if let Some(call) = application(model)? {
        match (call.name, call.alpha) {
            ("mobilenet_v2", Some(alpha)) => applications::mobilenet_v2(&call.options, alpha),
            (name, Some(_)) => Err(Error::invalid(
                "alpha",
                format!("{name} has no width multiplier (alpha is MobileNet's)"),
            )),
            (name, None) => applications::by_name(name, &call.options),
        }
    } else {
        Err(Error::file(
            path,
            "no such file, and not a built-in model or application name (see `convnet models`)",
        ))
    };
    Ok((model?, None))
}

/// Lower case without underscores: `MobileNetV2`, `mobilenet_v2` and `mobilenetv2` meet.
fn folded(name: &str) -> String {
    name.chars()
        .filter(|&c| c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// An application as a MODEL argument calls it.
pub struct ApplicationCall {
    /// Its name in [`applications::APPLICATIONS`]'s spelling.
    pub name: &'static str,
    pub options: Options,
    /// MobileNet's width multiplier, when given.
    pub alpha: Option<f64>,
}

/// The application a MODEL argument names, and its Keras arguments; `None` when it
/// names none.
pub fn application(model: &str) -> Result<Option<ApplicationCall>, Error> {
    let (name, call) = match model.split_once('(') {
        Some((name, rest)) => (name.trim(), Some(rest)),
        None => (model.trim(), None),
    };
    let Some(&(name, _)) = applications::APPLICATIONS
        .iter()
        .find(|(known, _)| folded(known) == folded(name))
    else {
        return Ok(None);
    };
    let mut options = Options::default();
    let mut alpha = None;
    if let Some(call) = call {
        let args = call.trim_end().strip_suffix(')').ok_or_else(|| {
            Error::invalid("MODEL", format!("'{model}': the call has no closing ')'"))
        })?;
        for arg in split_arguments(args) {
            let (key, value) = arg.split_once('=').ok_or_else(|| {
                Error::invalid(
                    "MODEL",
                    format!("'{arg}': expected keyword=value, as in Keras's call"),
                )
            })?;
            let (key, value) = (key.trim(), value.trim());
            if key == "alpha" {
                alpha = Some(value.parse::<f64>().map_err(|_| {
                    Error::invalid("alpha", format!("expected a number, got {value}"))
                })?);
            } else {
                set_option(&mut options, key, value)?;
            }
        }
    }
    Ok(Some(ApplicationCall {
        name,
        options,
        alpha,
    }))
}

/// Splits `a=1, b=(1, 2)` at the commas outside parentheses.
fn split_arguments(args: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in args.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&args[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Sets one Keras argument from its Python spelling.
fn set_option(options: &mut Options, key: &str, value: &str) -> Result<(), Error> {
    let unquoted = value.trim_matches(|c| c == '"' || c == '\'');
    let none = value == "None";
    let bad = |what: &str| Error::invalid(key, format!("{key}: expected {what}, got {value}"));
    match key {
        "include_top" => {
            options.include_top = match value {
                "True" | "true" => true,
                "False" | "false" => false,
                _ => return Err(bad("True or False")),
            }
        }
        "input_shape" if none => options.input_shape = None,
        "input_shape" => {
            let inner = value
                .strip_prefix(['(', '['])
                .and_then(|v| v.strip_suffix([')', ']']))
                .ok_or_else(|| bad("a tuple such as (64, 64, 3)"))?;
            let sizes = inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<usize>().map_err(|_| bad("a tuple of sizes")))
                .collect::<Result<Vec<_>, _>>()?;
            options.input_shape = Some(sizes);
        }
        "pooling" if none => options.pooling = None,
        "pooling" => {
            options.pooling = Some(match unquoted {
                "avg" => Pooling::Avg,
                "max" => Pooling::Max,
                _ => return Err(bad("'avg', 'max' or None")),
            })
        }
        "classes" => options.classes = value.parse().map_err(|_| bad("a number of classes"))?,
        "classifier_activation" if none => {
            options.classifier_activation = convnet::ActivationFn::Linear
        }
        "classifier_activation" => options.classifier_activation = unquoted.parse()?,
        "weights" if none => {}
        "weights" => {
            return Err(Error::invalid(
                "weights",
                "convnet downloads nothing: build with weights=None (the default here) and give the weight file with --weights",
            ))
        }
        other => {
            return Err(Error::invalid(
                other,
                format!("{other}: not an argument convnet takes for applications (include_top, input_shape, pooling, classes, classifier_activation, and alpha for MobileNet)"),
            ))
        }
    }
    Ok(())
}
