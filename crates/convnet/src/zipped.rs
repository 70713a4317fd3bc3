//! Reading members of zip files (`.keras`, `.npz`) without trusting their declared
//! sizes: a member is read only up to its declared size, which itself is bounded, and a
//! member that claims to inflate far beyond its compressed size is refused.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::io::Read;
use std::path::Path;

/// The largest member convnet reads: 4 GiB.
const MAX_MEMBER: u64 = 4 << 30;
/// A member whose declared size is more than this many times its compressed size is a
/// decompression bomb, not data.
const MAX_RATIO: u64 = 1000;

pub(crate) type Zip<'a> = zip::ZipArchive<std::io::Cursor<&'a [u8]>>;

pub(crate) fn open_zip<'a>(bytes: &'a [u8], origin: &Path) -> Result<Zip<'a>> {
    zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::file(origin, format!("not a readable zip file: {e}")))
}

/// One member of a zip file, read only up to its declared (and bounded) size.
pub(crate) fn read_member(zip: &mut Zip, origin: &Path, name: &str) -> Result<Vec<u8>> {
    let member = zip
        .by_name(name)
        .map_err(|_| Error::file(origin, format!("has no '{name}'")))?;
    let (declared, compressed) = (member.size(), member.compressed_size());
    if declared > MAX_MEMBER
        || (declared > 1 << 20 && declared > compressed.saturating_mul(MAX_RATIO))
    {
        return Err(Error::file(origin, format!("'{name}' declares {declared} bytes from {compressed} compressed: refusing to inflate it")));
    }
    let mut bytes = Vec::new();
    member
        .take(declared + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file(origin, format!("'{name}': {e}")))?;
    if bytes.len() as u64 != declared {
        return Err(Error::file(
            origin,
            format!(
                "'{name}' declares {declared} bytes but holds {}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Every array of a `.npz` file (NumPy's zip of `.npy` files), by name without `.npy`.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
    let mut zip = open_zip(&bytes, path)?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    names
        .into_iter()
        .map(|name| {
            let data = read_member(&mut zip, path, &name)?;
            let tensor = Tensor::from_npy_bytes(&data)
                .map_err(|e| Error::file(path, format!("'{name}': {e}")))?;
            Ok((name.trim_end_matches(".npy").to_string(), tensor))
        })
        .collect()
}

/// Writes arrays as an `.npz` file (NumPy's `np.savez`: a zip of `<name>.npy` files).
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(&str, &Tensor)]) -> Result<()> {
    use std::io::Write;
    let path = path.as_ref();
    let write = || -> std::io::Result<()> {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path)?);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, tensor) in arrays {
            zip.start_file(format!("{name}.npy"), options)?;
            zip.write_all(&tensor.to_npy_bytes())?;
        }
        zip.finish()?;
        Ok(())
    };
    write().map_err(|e| Error::file(path, format!("cannot write: {e}")))
}
