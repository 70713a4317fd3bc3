//! `convnet layers`: what convnet can build.

use convnet::activations::activation_names;
use convnet::initializers::INITIALIZERS;
use convnet::layers::layer_classes;

pub fn run() -> Result<(), convnet::Error> {
    println!("Layers (Keras class names):");
    for class in layer_classes() {
        println!("  {class}");
    }
    println!(
        "\nActivations: {}",
        activation_names().collect::<Vec<_>>().join(", ")
    );
    let initializers: Vec<&str> = INITIALIZERS.iter().map(|(name, _)| *name).collect();
    println!("\nInitializers: {}", initializers.join(", "));
    Ok(())
}
