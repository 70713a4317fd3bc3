//! Data: MNIST-style IDX files and the datasets that come as such files.

mod idx;

pub use idx::{
    fashion_mnist, fashion_mnist_locations, fashion_mnist_sample, load_idx_dataset,
    parse_idx_bytes, read_idx, Dataset, FASHION_MNIST_CLASSES,
};
