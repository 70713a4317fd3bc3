//! Named datasets fetched from where keras.datasets fetches them, into
//! `~/.convnet/datasets/<name>` (Keras's `~/.keras/datasets`), when they are not installed.
//!
//! Downloads go to a `.part` file that is renamed once complete and checked, so an
//! interrupted download never leaves a file that looks whole; each file is capped in size,
//! so a wrong or hostile server cannot fill the disk. `$CONVNET_DATASETS_URL` replaces the
//! published location (a mirror, or a test server).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where keras.datasets downloads Fashion-MNIST and MNIST from.
pub const KERAS_DATASETS_URL: &str = "https://storage.googleapis.com/tensorflow/tf-keras-datasets";

/// Fashion-MNIST's four gzipped IDX files, as published.
pub const FASHION_MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// MNIST as keras.datasets publishes it: one .npz with x_train, y_train, x_test, y_test.
pub const MNIST_FILE: &str = "mnist.npz";

/// No dataset file convnet downloads is larger than this (Fashion-MNIST's biggest is
/// 26 MB, mnist.npz 11 MB).
#[cfg(feature = "download")]
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The base address datasets are downloaded from.
pub fn datasets_url() -> String {
    std::env::var("CONVNET_DATASETS_URL").unwrap_or_else(|_| KERAS_DATASETS_URL.to_string())
}

/// `~/.convnet/datasets/<name>`, where downloaded datasets are kept.
pub fn cache_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".convnet/datasets").join(name))
}

/// Downloads Fashion-MNIST's four files (those not already there) into its cache folder
/// and returns the folder.
pub fn download_fashion_mnist() -> Result<PathBuf> {
    let dir = cache_dir("fashion-mnist").ok_or_else(|| {
        Error::unsupported("no home folder ($HOME) to download Fashion-MNIST into")
    })?;
    for file in FASHION_MNIST_FILES {
        fetch(&format!("{}/{file}", datasets_url()), &dir.join(file))?;
    }
    Ok(dir)
}

/// Downloads keras.datasets' `mnist.npz` (unless already there) and returns its path.
pub fn download_mnist() -> Result<PathBuf> {
    let dir = cache_dir("mnist")
        .ok_or_else(|| Error::unsupported("no home folder ($HOME) to download MNIST into"))?;
    let path = dir.join(MNIST_FILE);
    fetch(&format!("{}/{MNIST_FILE}", datasets_url()), &path)?;
    Ok(path)
}

/// Saves `url` as `dest` unless `dest` exists.
fn fetch(url: &str, dest: &Path) -> Result<()> {
    if dest.is_file() {
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    }
    eprintln!("Downloading {url}");
    let part = dest.with_extension("part");
    let result = get(url, &part)
        .and_then(|()| std::fs::rename(&part, dest).map_err(|e| Error::file(dest, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

#[cfg(feature = "download")]
fn get(url: &str, dest: &Path) -> Result<()> {
    use std::io::Read;
    use std::time::Duration;
    let failed = |e: &dyn std::fmt::Display| Error::Download {
        url: url.to_string(),
        message: e.to_string(),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| failed(&e))?;
    let mut reader = response
        .into_body()
        .into_with_config()
        .limit(MAX_FILE_BYTES)
        .reader();
    let mut file = std::fs::File::create(dest).map_err(|e| Error::file(dest, e))?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buffer).map_err(|e| failed(&e))?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut file, &buffer[..n]).map_err(|e| Error::file(dest, e))?;
    }
    file.sync_all().map_err(|e| Error::file(dest, e))
}

#[cfg(not(feature = "download"))]
fn get(url: &str, _dest: &Path) -> Result<()> {
    Err(Error::unsupported(format!(
        "cannot download {url}: convnet was built without its `download` feature"
    )))
}
