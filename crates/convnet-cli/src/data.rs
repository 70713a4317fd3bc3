//! Where `--data` comes from: a named dataset (Fashion-MNIST, its built-in sample,
//! MNIST), a folder of IDX files, or .npy arrays with `--labels`.

use convnet::data::{fashion_mnist, fashion_mnist_sample, load_idx_dataset};
use convnet::{Error, Tensor};
use std::path::{Path, PathBuf};

/// Training data, and test data when the source has a test split.
pub struct Data {
    pub description: String,
    pub x_train: Tensor,
    pub y_train: Tensor,
    pub test: Option<(Tensor, Tensor)>,
}

fn scaled(mut t: Tensor) -> Tensor {
    t.map_inplace(|v| v / 255.0);
    t
}

fn from_idx(dataset: convnet::data::Dataset, description: String) -> Data {
    Data {
        description,
        x_train: scaled(dataset.x_train),
        y_train: dataset.y_train,
        test: Some((scaled(dataset.x_test), dataset.y_test)),
    }
}

/// Looks for MNIST where Fashion-MNIST is looked for.
fn mnist() -> Result<convnet::data::Dataset, Error> {
    let mut places: Vec<PathBuf> = convnet::data::fashion_mnist_locations()
        .iter()
        .filter_map(|p| p.parent().map(|d| d.join("mnist")))
        .collect();
    places.dedup();
    for dir in &places {
        if let Ok(d) = load_idx_dataset(dir) {
            return Ok(d);
        }
    }
    Err(Error::Tensor(format!(
        "MNIST not found (looked in {}): put its four IDX files in $CONVNET_DATA/mnist",
        places
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

pub fn load(data: &str, labels: Option<&Path>) -> Result<Data, Error> {
    match (data, labels) {
        ("fashion-mnist", None) => match fashion_mnist() {
            Ok(d) => Ok(from_idx(d, "Fashion-MNIST (60,000 training, 10,000 test images)".into())),
            Err(e) => {
                eprintln!("note: {e}\nnote: training on the 3,000-image Fashion-MNIST sample built into convnet instead");
                Ok(from_idx(fashion_mnist_sample()?, "the built-in Fashion-MNIST sample (3,000 training, 1,000 test images)".into()))
            }
        },
        ("fashion-mnist-sample", None) => Ok(from_idx(fashion_mnist_sample()?, "the built-in Fashion-MNIST sample (3,000 training, 1,000 test images)".into())),
        ("mnist", None) => Ok(from_idx(mnist()?, "MNIST".into())),
        (path, None) if Path::new(path).is_dir() => Ok(from_idx(load_idx_dataset(path)?, format!("the IDX dataset in {path}"))),
        (path, Some(labels)) => {
            let x = Tensor::read_npy(path)?;
            let y = Tensor::read_npy(labels)?;
            if x.batch_len() != y.batch_len() {
                return Err(Error::Tensor(format!(
                    "{path} has {} samples but {} has {}",
                    x.batch_len(),
                    labels.display(),
                    y.batch_len()
                )));
            }
            Ok(Data { description: format!("{path} with labels {}", labels.display()), x_train: x, y_train: y, test: None })
        }
        (path, None) if path.ends_with(".npy") => Err(Error::file(path, "an .npy dataset needs its targets: add --labels Y.npy")),
        (other, None) => Err(Error::file(
            other,
            "unknown dataset: give fashion-mnist, fashion-mnist-sample, mnist, a folder of IDX files, or X.npy with --labels Y.npy",
        )),
    }
}
