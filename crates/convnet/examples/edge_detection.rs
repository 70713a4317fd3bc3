//! The design notes' first example: a 4x4 input and the edge-detection kernel
//! [[-1,0,1],[-1,0,1],[-1,0,1]] through a Conv2D layer, then the output-size formula for
//! the Inception block's three branches.
//!
//!     cargo run --release --example edge_detection

use convnet::layers::{format_shape, Concatenate, Conv2D, Layer, Shape};
use convnet::ActivationFn;
use convnet::{initializers, Padding, Tensor};

fn main() -> convnet::Result<()> {
    let input = Tensor::new([1, 4, 4, 1], (1..=16).map(|v| v as f32).collect())?;
    let kernel = Tensor::new(
        [3, 3, 1, 1],
        vec![-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0],
    )?;
    let mut conv = Conv2D::new(1, (3, 3)).use_bias(false).named("edges");
    conv.build(
        &[vec![None, Some(4), Some(4), Some(1)]],
        &mut initializers::rng_from_seed(0),
    )?;
    conv.set_weights(vec![kernel])?;
    let output = conv.apply(&[&input])?;

    println!("input I (4x4):");
    for row in input.data().chunks(4) {
        println!("  {row:?}");
    }
    println!("kernel K: [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]");
    println!("output size = (4 - 3 + 2*0) / 1 + 1 = 2");
    println!(
        "S(0,0) = 1*-1 + 2*0 + 3*1 + 5*-1 + 6*0 + 7*1 + 9*-1 + 10*0 + 11*1 = {}",
        output.data()[0]
    );
    println!("S = {:?} (shape {:?})", output.data(), output.shape());

    println!("\nInception block on 224x224x3, 'same' padding, stride 1:");
    let x: Shape = vec![None, Some(224), Some(224), Some(3)];
    let mut branches = Vec::new();
    for k in [1, 3, 5] {
        let shape = Conv2D::new(64, (k, k))
            .padding(Padding::Same)
            .activation(ActivationFn::Relu)
            .output_shape(std::slice::from_ref(&x))?;
        println!(
            "  {k}x{k} conv, padding {}: (224 - {k} + 2*{}) / 1 + 1 = 224 -> {}",
            (k - 1) / 2,
            (k - 1) / 2,
            format_shape(&shape)
        );
        branches.push(shape);
    }
    println!(
        "  concatenated on depth: {}",
        format_shape(&Concatenate::new().output_shape(&branches)?)
    );
    Ok(())
}
