//! The IDX format of MNIST and Fashion-MNIST: a magic number giving the element type and
//! the number of dimensions, the dimensions as big-endian u32, then the values. Files
//! may be gzip-compressed. The declared size is checked against the data that actually
//! arrives, and nothing is allocated ahead of it, so a file that lies about its size
//! gives an error, not a huge allocation.

use super::download;
use crate::error::{Error, Result};
use crate::tensor::{checked_len, Tensor};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads an IDX file (gzip or not) into a tensor of its shape, values as f32.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let gzip = std::io::BufRead::fill_buf(&mut reader)
        .map_err(|e| Error::file(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    let mut source: Box<dyn Read> = if gzip {
        Box::new(GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    parse(&mut source).map_err(|message| Error::file(path, message))
}

/// Parses the bytes of an IDX file (gzip or not), for callers that hold them already.
pub fn parse_idx_bytes(bytes: &[u8]) -> std::result::Result<Tensor, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        parse(&mut GzDecoder::new(bytes))
    } else {
        parse(&mut &bytes[..])
    }
}

fn parse(source: &mut dyn Read) -> std::result::Result<Tensor, String> {
    let mut magic = [0u8; 4];
    source
        .read_exact(&mut magic)
        .map_err(|e| format!("not an IDX file (no magic number: {e})"))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(format!("not an IDX file (magic {magic:02x?})"));
    }
    let (size, convert): (usize, fn(&[u8]) -> f32) = match magic[2] {
        0x08 => (1, |b| b[0] as f32),
        0x09 => (1, |b| b[0] as i8 as f32),
        0x0B => (2, |b| i16::from_be_bytes([b[0], b[1]]) as f32),
        0x0C => (4, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f32),
        0x0D => (4, |b| f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        0x0E => (8, |b| {
            f64::from_be_bytes(b.try_into().expect("8 bytes")) as f32
        }),
        t => return Err(format!("unknown IDX element type 0x{t:02x}")),
    };
    let ndims = magic[3] as usize;
    let mut dims = Vec::with_capacity(ndims);
    for _ in 0..ndims {
        let mut d = [0u8; 4];
        source
            .read_exact(&mut d)
            .map_err(|_| "truncated IDX header".to_string())?;
        dims.push(u32::from_be_bytes(d) as usize);
    }
    let count =
        checked_len(&dims).ok_or_else(|| format!("declared shape {dims:?} is too large"))?;
    let bytes_expected = count
        .checked_mul(size)
        .ok_or_else(|| format!("declared shape {dims:?} is too large"))?;
    // Read what is really there (at most what was declared) before trusting the size.
    let mut bytes = Vec::new();
    source
        .take(bytes_expected as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading data: {e}"))?;
    if bytes.len() != bytes_expected {
        return Err(format!(
            "declared shape {dims:?} needs {bytes_expected} bytes of data but the file holds {}",
            bytes.len()
        ));
    }
    let data = bytes.chunks_exact(size).map(convert).collect();
    Tensor::new(dims, data).map_err(|e| e.to_string())
}

/// A classification dataset split into training and test samples. Images are NHWC
/// (n, 28, 28, 1) with the file's values (0–255); labels are class indices.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Training images, (n, 28, 28, 1), like Keras's `x_train` from `load_data()`.
    pub x_train: Tensor,
    /// Training labels, one class index per image (`y_train`).
    pub y_train: Tensor,
    /// Test images, (n, 28, 28, 1) (`x_test`).
    pub x_test: Tensor,
    /// Test labels, one class index per image (`y_test`).
    pub y_test: Tensor,
}

/// Fashion-MNIST's class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The first of `names` (with or without `.gz`) present in `dir`.
fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .flat_map(|n| [dir.join(n), dir.join(format!("{n}.gz"))])
        .find(|p| p.is_file())
}

/// Loads the four IDX files of an MNIST-style dataset from `dir`
/// (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-…`).
pub fn load_idx_dataset(dir: impl AsRef<Path>) -> Result<Dataset> {
    let dir = dir.as_ref();
    let part = |names: &[&str]| -> Result<Tensor> {
        let path = find(dir, names)
            .ok_or_else(|| Error::file(dir, format!("no {} (or .gz) here", names[0])))?;
        read_idx(path)
    };
    let images = |t: Tensor| -> Result<Tensor> {
        let shape = t.shape().to_vec();
        match shape[..] {
            [n, h, w] => t.reshape([n, h, w, 1]),
            _ => Err(Error::data(format!(
                "IDX images should be (n, height, width), got {shape:?}"
            ))),
        }
    };
    let dataset = Dataset {
        x_train: images(part(&[
            "train-images-idx3-ubyte",
            "train-images.idx3-ubyte",
        ])?)?,
        y_train: part(&["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"])?,
        x_test: images(part(&["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"])?)?,
        y_test: part(&["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"])?,
    };
    for (x, y, what) in [
        (&dataset.x_train, &dataset.y_train, "training"),
        (&dataset.x_test, &dataset.y_test, "test"),
    ] {
        if x.batch_len() != y.batch_len() {
            return Err(Error::file(
                dir,
                format!(
                    "{} {what} images but {} labels",
                    x.batch_len(),
                    y.batch_len()
                ),
            ));
        }
    }
    Ok(dataset)
}

/// The sample of Fashion-MNIST built into convnet (the first 3,000 training and 1,000
/// test images, from `crates/convnet/data/fashion-mnist-sample`), for runs with no
/// dataset installed and no network.
pub fn fashion_mnist_sample() -> Result<Dataset> {
    const FILES: [&[u8]; 4] = [
        include_bytes!("../../data/fashion-mnist-sample/train-images-idx3-ubyte.gz"),
        include_bytes!("../../data/fashion-mnist-sample/train-labels-idx1-ubyte.gz"),
        include_bytes!("../../data/fashion-mnist-sample/t10k-images-idx3-ubyte.gz"),
        include_bytes!("../../data/fashion-mnist-sample/t10k-labels-idx1-ubyte.gz"),
    ];
    let parse = |bytes: &[u8]| {
        parse_idx_bytes(bytes)
            .map_err(|m| Error::format(format!("built-in Fashion-MNIST sample: {m}")))
    };
    let images = |bytes: &[u8]| -> Result<Tensor> {
        let t = parse(bytes)?;
        let shape = t.shape().to_vec();
        t.reshape([shape[0], shape[1], shape[2], 1])
    };
    Ok(Dataset {
        x_train: images(FILES[0])?,
        y_train: parse(FILES[1])?,
        x_test: images(FILES[2])?,
        y_test: parse(FILES[3])?,
    })
}

/// Where Fashion-MNIST is looked for, in order.
pub fn fashion_mnist_locations() -> Vec<PathBuf> {
    let mut places = Vec::new();
    if let Some(dir) = std::env::var_os("CONVNET_DATA") {
        places.push(PathBuf::from(&dir).join("fashion-mnist"));
        places.push(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HOME") {
        places.push(PathBuf::from(home).join(".convnet/datasets/fashion-mnist"));
    }
    places.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
    places
}

/// Fashion-MNIST: 60,000 training and 10,000 test images of 28x28 clothing, 10 classes.
/// Looked for in [`fashion_mnist_locations`]; when absent, downloaded from where
/// keras.datasets gets it (see [`super::download`]).
pub fn fashion_mnist() -> Result<Dataset> {
    let places = fashion_mnist_locations();
    for dir in &places {
        if find(dir, &["train-images-idx3-ubyte"]).is_some() {
            return load_idx_dataset(dir);
        }
    }
    let downloaded = download::download_fashion_mnist().and_then(|dir| {
        load_idx_dataset(&dir).inspect_err(|_| {
            // Not what was expected (a proxy's error page, say): try again next time.
            for file in download::FASHION_MNIST_FILES {
                let _ = std::fs::remove_file(dir.join(file));
            }
        })
    });
    downloaded.map_err(|e| {
        Error::data(format!(
            "Fashion-MNIST not found (looked in {}) and not downloaded ({e}). Install Debian's \
             package: `apt-get install dataset-fashion-mnist`, or put the four IDX files from {}/ \
             in $CONVNET_DATA/fashion-mnist",
            places
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            download::datasets_url()
        ))
    })
}

/// MNIST: 60,000 training and 10,000 test images of handwritten digits. Looked for as
/// IDX files in `mnist` folders beside Fashion-MNIST's places, or as keras.datasets'
/// `mnist.npz` in `~/.convnet/datasets/mnist`; when absent, that file is downloaded.
pub fn mnist() -> Result<Dataset> {
    let mut places: Vec<PathBuf> = fashion_mnist_locations()
        .iter()
        .filter_map(|p| p.parent().map(|d| d.join("mnist")))
        .collect();
    places.dedup();
    for dir in &places {
        if find(dir, &["train-images-idx3-ubyte"]).is_some() {
            return load_idx_dataset(dir);
        }
    }
    let npz = download::download_mnist().map_err(|e| {
        Error::data(format!(
            "MNIST not found (looked in {}) and not downloaded ({e}): put its four IDX files \
             in $CONVNET_DATA/mnist, or {}/{} in ~/.convnet/datasets/mnist",
            places
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            download::datasets_url(),
            download::MNIST_FILE
        ))
    })?;
    let arrays: std::collections::HashMap<String, Tensor> =
        crate::zipped::read_npz(&npz)?.into_iter().collect();
    let take = |name: &str| {
        arrays
            .get(name)
            .cloned()
            .ok_or_else(|| Error::file(&npz, format!("has no array '{name}'")))
    };
    let images = |t: Tensor| -> Result<Tensor> {
        match *t.shape() {
            [n, h, w] => t.reshape([n, h, w, 1]),
            _ => Err(Error::file(
                &npz,
                format!("images should be (n, height, width), got {:?}", t.shape()),
            )),
        }
    };
    Ok(Dataset {
        x_train: images(take("x_train")?)?,
        y_train: take("y_train")?,
        x_test: images(take("x_test")?)?,
        y_test: take("y_test")?,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn idx(header: &[u8], data: &[u8]) -> Vec<u8> {
        [header, data].concat()
    }

    #[test]
    fn reads_bytes_and_checks_sizes() {
        let file = idx(&[0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3], &[1, 2, 3, 4, 5, 255]);
        let t = parse(&mut &file[..]).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.data(), &[1.0, 2.0, 3.0, 4.0, 5.0, 255.0]);
        let short = idx(&[0, 0, 8, 1, 0, 0, 0, 9], &[1, 2]);
        assert!(parse(&mut &short[..])
            .unwrap_err()
            .contains("needs 9 bytes"));
        // A header declaring 2^32 x 2^32 values over two bytes: refused, nothing allocated.
        let huge = idx(
            &[0, 0, 8, 2, 255, 255, 255, 255, 255, 255, 255, 255],
            &[1, 2],
        );
        assert!(parse(&mut &huge[..]).is_err());
        assert!(parse(&mut &b"PK\x03\x04"[..])
            .unwrap_err()
            .contains("not an IDX file"));
        let floats = idx(&[0, 0, 0x0D, 1, 0, 0, 0, 1], &1.5f32.to_be_bytes());
        assert_eq!(parse(&mut &floats[..]).unwrap().data(), &[1.5]);
    }
}
