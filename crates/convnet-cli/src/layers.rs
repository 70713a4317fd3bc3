//! `convnet layers`: what convnet can build.

use convnet::activations::ACTIVATION_NAMES;
use convnet::initializers::INITIALIZERS;
use convnet::layers::LAYER_CLASSES;

pub fn run() -> Result<(), convnet::Error> {
    println!("Layers (Keras class names):");
    for class in LAYER_CLASSES {
        println!("  {class}");
    }
    println!("\nActivations: {}", ACTIVATION_NAMES.join(", "));
    let initializers: Vec<&str> = INITIALIZERS.iter().map(|(name, _)| *name).collect();
    println!("\nInitializers: {}", initializers.join(", "));
    Ok(())
}
