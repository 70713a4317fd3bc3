//! Data: MNIST-style IDX files and the datasets that come as such files (found where
//! they are installed, or downloaded), and folders of images.

mod augment;
pub mod download;
mod idx;
#[cfg(feature = "images")]
mod images;

pub use augment::Augmentation;
pub use idx::{
    fashion_mnist, fashion_mnist_locations, fashion_mnist_sample, load_idx_dataset, mnist,
    parse_idx_bytes, read_idx, Dataset, FASHION_MNIST_CLASSES,
};
#[cfg(feature = "images")]
pub use images::{
    image_dataset_from_directory, is_image_folder, load_img, read_image, write_png, write_png_range,
};
