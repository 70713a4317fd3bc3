//! Saves every built-in architecture as a `.keras` file, with an input batch and
//! convnet's predictions for it, so that Keras itself can check what convnet writes:
//!
//!     cargo run --release --example export_models -- OUT_DIR
//!     scripts/keras_check_exports.sh OUT_DIR      # loads each file in Keras 3
//!
//! The models get seeded random weights and (for those with BatchNormalization) a few
//! training steps, so the moving statistics and the optimizer state are not trivial.

use convnet::initializers::{rng_from_seed, set_random_seed};
use convnet::train::{FitOptions, Optimizer};
use convnet::{zoo, Tensor};
use rand::RngExt;

fn random(shape: &[usize], seed: u64) -> convnet::Result<Tensor> {
    let mut rng = rng_from_seed(seed);
    Tensor::new(
        shape.to_vec(),
        (0..shape.iter().product())
            .map(|_| rng.random::<f32>())
            .collect(),
    )
}

fn main() -> convnet::Result<()> {
    let out =
        std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "exported".into()));
    std::fs::create_dir_all(&out).map_err(|e| convnet::Error::file(&out, e))?;
    set_random_seed(2026);
    for (i, (name, _)) in zoo::MODELS.iter().enumerate() {
        let model = if *name == "seed-inception" {
            zoo::seed_inception(32)?
        } else {
            zoo::by_name(name)?
        };
        let mut shape: Vec<usize> = model.input_shapes()[0]
            .iter()
            .map(|d| d.unwrap_or(4))
            .collect();
        shape[0] = 4;
        let x = random(&shape, i as u64)?;
        // A few steps of training against random targets, so BatchNormalization's moving
        // statistics and the optimizer's slots hold real values.
        let y = model.apply(&[&x])?.remove(0);
        let mut model = model.compile_named(Optimizer::adam(1e-3), "mse", &[])?;
        model.fit(
            std::slice::from_ref(&x),
            &[y],
            FitOptions {
                batch_size: 2,
                epochs: 1,
                verbose: 0,
                ..FitOptions::default()
            },
        )?;
        let prediction = model.apply(&[&x])?.remove(0);
        let stem = name.replace('-', "_");
        model.save(out.join(format!("{stem}.keras")))?;
        x.write_npy(out.join(format!("{stem}.input.npy")))?;
        prediction.write_npy(out.join(format!("{stem}.convnet.npy")))?;
        println!("{stem}: saved ({} parameters)", model.count_params());
    }
    Ok(())
}
