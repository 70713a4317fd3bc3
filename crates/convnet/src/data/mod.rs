//! Data: MNIST-style IDX files and the datasets that come as such files.

mod idx;

pub use idx::{
    fashion_mnist, load_idx_dataset, parse_idx_bytes, read_idx, Dataset, FASHION_MNIST_CLASSES,
};
