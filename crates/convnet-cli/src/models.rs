//! `convnet models`: the built-in architectures, and how MODEL arguments are resolved.

use convnet::model::Model;
use convnet::zoo;
use std::path::Path;

pub fn run() -> Result<(), convnet::Error> {
    println!("Built-in models (use the name wherever a MODEL file is accepted):");
    for (name, what) in zoo::MODELS {
        println!("  {name:<22} {what}");
    }
    Ok(())
}

/// A MODEL argument: a model file (.keras, .h5, config.json) or a built-in name.
pub fn resolve(model: &str) -> Result<Model, convnet::Error> {
    let path = Path::new(model);
    if path.exists() {
        Model::load(path)
    } else if zoo::MODELS.iter().any(|(name, _)| *name == model) {
        zoo::by_name(model)
    } else {
        Err(convnet::Error::file(
            path,
            "no such file, and not a built-in model name (see `convnet models`)",
        ))
    }
}
