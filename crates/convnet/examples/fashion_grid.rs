//! Writes a picture to try the filters on: the first 16 test images of the built-in
//! Fashion-MNIST sample tiled 4x4 (112x112 pixels), and the first image alone.
//!
//!     cargo run --release --example fashion_grid -- docs/images

use convnet::data::{fashion_mnist_sample, write_png_range};

fn main() -> convnet::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir).map_err(|e| convnet::Error::file(&dir, e))?;
    let images = fashion_mnist_sample()?.x_test;
    let mut grid = vec![0.0f32; 112 * 112];
    for i in 0..16 {
        let (top, left) = ((i / 4) * 28, (i % 4) * 28);
        for y in 0..28 {
            for x in 0..28 {
                grid[(top + y) * 112 + left + x] = images.data()[i * 784 + y * 28 + x];
            }
        }
    }
    write_png_range(dir.join("fashion.png"), &grid, 112, 112, 1, (0.0, 255.0))?;
    write_png_range(
        dir.join("ankle-boot.png"),
        &images.data()[..784],
        28,
        28,
        1,
        (0.0, 255.0),
    )?;
    println!(
        "wrote {} and {}",
        dir.join("fashion.png").display(),
        dir.join("ankle-boot.png").display()
    );
    Ok(())
}
