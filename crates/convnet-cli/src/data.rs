//! Where `--data` comes from: a named dataset (Fashion-MNIST, its built-in sample,
//! MNIST), a folder of IDX files, a folder of images with one subfolder per class, an
//! .npz file (keras.datasets' x_train/y_train/x_test/y_test, or x/y), or .npy arrays
//! with `--labels`.

use convnet::data::{
    fashion_mnist, fashion_mnist_sample, image_dataset_from_directory, is_image_folder,
    load_idx_dataset, mnist,
};
use convnet::Shape;
use convnet::{Error, Tensor};
use std::path::Path;

/// Training data, and test data when the source has a test split.
pub struct Data {
    pub description: String,
    pub x_train: Tensor,
    pub y_train: Tensor,
    pub test: Option<(Tensor, Tensor)>,
    /// The class folders' names, for an image folder.
    pub class_names: Option<Vec<String>>,
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
        class_names: None,
    }
}

/// An .npz dataset: keras.datasets' four arrays, or `x` and `y`.
fn from_npz(path: &str) -> Result<Data, Error> {
    let arrays: std::collections::HashMap<String, Tensor> =
        convnet::io::read_npz(path)?.into_iter().collect();
    let take = |name: &str| arrays.get(name).cloned();
    match (take("x_train"), take("y_train"), take("x"), take("y")) {
        (Some(x), Some(y), _, _) => Ok(Data {
            description: format!(
                "{path} (x_train/y_train{})",
                if arrays.contains_key("x_test") {
                    ", x_test/y_test"
                } else {
                    ""
                }
            ),
            x_train: x,
            y_train: y,
            test: take("x_test").zip(take("y_test")),
            class_names: None,
        }),
        (_, _, Some(x), Some(y)) => Ok(Data {
            description: format!("{path} (x/y)"),
            x_train: x,
            y_train: y,
            test: None,
            class_names: None,
        }),
        _ => Err(Error::file(
            path,
            format!(
                "needs arrays x_train and y_train (and x_test, y_test) or x and y; it has {}",
                arrays.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Images from class folders, resized to the model's input and scaled to [0, 1].
fn from_images(dir: &str, input: &Shape) -> Result<Data, Error> {
    let (h, w, c) = match input[..] {
        [_, Some(h), Some(w), Some(c)] if c == 1 || c == 3 => (h, w, c),
        _ => {
            return Err(Error::file(
                dir,
                format!(
                    "an image folder needs a model whose input is (height, width, 1 or 3), not {}",
                    convnet::layers::format_shape(input)
                ),
            ))
        }
    };
    let (x, y, classes) = image_dataset_from_directory(dir, (h, w), c)?;
    Ok(Data {
        description: format!(
            "{} images of {} classes ({}) from {dir}, resized to {h}x{w}, scaled to [0, 1]",
            x.batch_len(),
            classes.len(),
            classes.join(", ")
        ),
        x_train: scaled(x),
        y_train: y,
        test: None,
        class_names: Some(classes),
    })
}

pub fn load(data: &str, labels: Option<&Path>, input: &Shape) -> Result<Data, Error> {
    match (data, labels) {
        ("fashion-mnist", None) => match fashion_mnist() {
            Ok(d) => Ok(from_idx(d, "Fashion-MNIST (60,000 training, 10,000 test images)".into())),
            Err(e) => {
                eprintln!("note: {e}\nnote: training on the 3,000-image Fashion-MNIST sample built into convnet instead");
                Ok(from_idx(fashion_mnist_sample()?, "the built-in Fashion-MNIST sample (3,000 training, 1,000 test images)".into()))
            }
        },
        ("fashion-mnist-sample", None) => Ok(from_idx(fashion_mnist_sample()?, "the built-in Fashion-MNIST sample (3,000 training, 1,000 test images)".into())),
        ("mnist", None) => Ok(from_idx(mnist()?, "MNIST (60,000 training, 10,000 test images)".into())),
        (path, None) if Path::new(path).is_dir() && is_image_folder(Path::new(path)) => from_images(path, input),
        (path, None) if Path::new(path).is_dir() => Ok(from_idx(load_idx_dataset(path)?, format!("the IDX dataset in {path}"))),
        (path, None) if path.ends_with(".npz") => from_npz(path),
        (path, Some(labels)) => {
            let x = Tensor::read_npy(path)?;
            let y = Tensor::read_npy(labels)?;
            if x.batch_len() != y.batch_len() {
                return Err(Error::data(format!(
                    "{path} has {} samples but {} has {}",
                    x.batch_len(),
                    labels.display(),
                    y.batch_len()
                )));
            }
            Ok(Data { description: format!("{path} with labels {}", labels.display()), x_train: x, y_train: y, test: None, class_names: None })
        }
        (path, None) if path.ends_with(".npy") => Err(Error::file(path, "an .npy dataset needs its targets: add --labels Y.npy")),
        (other, None) => Err(Error::file(
            other,
            "unknown dataset: give fashion-mnist, fashion-mnist-sample, mnist, a folder of IDX files or of class folders of images, an .npz file, or X.npy with --labels Y.npy",
        )),
    }
}
