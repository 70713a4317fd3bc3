//! Pictures: a folder of images with one subfolder per class, as Keras's
//! `image_dataset_from_directory` reads it (classes in alphabetical order, images
//! resized bilinearly to one size), and single images in and out as NHWC tensors.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageReader};
use std::path::{Path, PathBuf};

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Reads an image as a (1, height, width, channels) tensor with values 0–255, resized to
/// `size` (height, width) when given; `channels` is 1 (grayscale) or 3 (RGB).
pub fn read_image(
    path: impl AsRef<Path>,
    size: Option<(usize, usize)>,
    channels: usize,
) -> Result<Tensor> {
    let path = path.as_ref();
    let image = ImageReader::open(path)
        .map_err(|e| Error::file(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::file(path, e))?
        .decode()
        .map_err(|e| Error::file(path, format!("not a readable image: {e}")))?;
    let image = match size {
        Some((h, w)) if (image.height() as usize, image.width() as usize) != (h, w) => {
            image.resize_exact(w as u32, h as u32, FilterType::Triangle)
        }
        _ => image,
    };
    let (w, h) = (image.width() as usize, image.height() as usize);
    let data: Vec<f32> = match channels {
        1 => image
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(f32::from)
            .collect(),
        3 => image
            .to_rgb8()
            .into_raw()
            .into_iter()
            .map(f32::from)
            .collect(),
        c => {
            return Err(Error::file(
                path,
                format!("images can be read with 1 or 3 channels, not {c}"),
            ))
        }
    };
    Tensor::new([1, h, w, channels], data)
}

/// Keras's `keras.utils.load_img(path, target_size=(height, width))` followed by
/// `img_to_array`: a (1, height, width, channels) tensor with values 0–255, resized as
/// Keras's default `interpolation="nearest"` resizes (Pillow's nearest: each output
/// pixel takes the input pixel under its centre, `(i + ½) · in / out`, rounded down).
pub fn load_img(
    path: impl AsRef<Path>,
    target_size: Option<(usize, usize)>,
    channels: usize,
) -> Result<Tensor> {
    let path = path.as_ref();
    let image = read_image(path, None, channels)?;
    let &[_, in_h, in_w, c] = image.shape() else {
        unreachable!("read_image gives one NHWC image")
    };
    let Some((h, w)) = target_size.filter(|&size| size != (in_h, in_w)) else {
        return Ok(image);
    };
    if in_h == 0 || in_w == 0 {
        return Err(Error::file(path, "the image has no pixels"));
    }
    // Pillow walks the centres by adding the scale once per pixel (ImagingScaleAffine),
    // and its rounding then picks the pixel before where (i + ½) · in / out is whole.
    let sources = |input: usize, output: usize| -> Vec<usize> {
        let scale = input as f64 / output as f64;
        let mut at = scale * 0.5;
        (0..output)
            .map(|_| {
                let i = (at as usize).min(input - 1);
                at += scale;
                i
            })
            .collect()
    };
    let (rows, columns) = (sources(in_h, h), sources(in_w, w));
    let mut data = Vec::with_capacity(h * w * c);
    for &row in &rows {
        for &column in &columns {
            let at = (row * in_w + column) * c;
            data.extend_from_slice(&image.data()[at..at + c]);
        }
    }
    Tensor::new([1, h, w, c], data)
}

/// Writes a (height, width) or (height, width, 1|3) slice of values as an 8-bit PNG,
/// scaling [min, max] to [0, 255] so that any feature map is visible.
pub fn write_png(
    path: impl AsRef<Path>,
    values: &[f32],
    height: usize,
    width: usize,
    channels: usize,
) -> Result<()> {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    write_png_range(path, values, height, width, channels, (lo, hi))
}

/// Writes values as an 8-bit PNG with `range` (low, high) mapped to 0–255.
pub fn write_png_range(
    path: impl AsRef<Path>,
    values: &[f32],
    height: usize,
    width: usize,
    channels: usize,
    range: (f32, f32),
) -> Result<()> {
    let path = path.as_ref();
    let (lo, hi) = range;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let bytes: Vec<u8> = values
        .iter()
        .map(|&v| (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    let image = match channels {
        1 => DynamicImage::ImageLuma8(
            GrayImage::from_raw(width as u32, height as u32, bytes)
                .ok_or_else(|| Error::file(path, "image size mismatch"))?,
        ),
        3 => DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(width as u32, height as u32, bytes)
                .ok_or_else(|| Error::file(path, "image size mismatch"))?,
        ),
        c => {
            return Err(Error::file(
                path,
                format!("cannot write an image with {c} channels"),
            ))
        }
    };
    image
        .save(path)
        .map_err(|e| Error::file(path, format!("cannot write: {e}")))
}

/// The class folders of `dir` (alphabetical) and their image files (sorted).
fn class_folders(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::file(dir, e))?;
    let mut classes: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::file(dir, e))?.path();
        if !path.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| Error::file(&path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        files.sort();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        classes.push((name, files));
    }
    classes.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(classes)
}

/// Whether `dir` looks like an image dataset: subfolders holding PNG or JPEG files.
pub fn is_image_folder(dir: &Path) -> bool {
    class_folders(dir).is_ok_and(|c| c.iter().any(|(_, files)| !files.is_empty()))
}

/// Keras's `image_dataset_from_directory`: images (n, height, width, channels), values
/// 0–255, labels the index of their class folder in alphabetical order, and the class
/// names.
pub fn image_dataset_from_directory(
    dir: impl AsRef<Path>,
    size: (usize, usize),
    channels: usize,
) -> Result<(Tensor, Tensor, Vec<String>)> {
    let dir = dir.as_ref();
    let classes = class_folders(dir)?;
    let count: usize = classes.iter().map(|(_, f)| f.len()).sum();
    if count == 0 {
        return Err(Error::file(
            dir,
            "no images found: expected one subfolder per class holding .png or .jpg files",
        ));
    }
    let (h, w) = size;
    let mut data = Vec::with_capacity(count * h * w * channels);
    let mut labels = Vec::with_capacity(count);
    for (label, (_, files)) in classes.iter().enumerate() {
        for file in files {
            data.extend_from_slice(read_image(file, Some(size), channels)?.data());
            labels.push(label as f32);
        }
    }
    Ok((
        Tensor::new([count, h, w, channels], data)?,
        Tensor::new([count], labels)?,
        classes.into_iter().map(|(n, _)| n).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_become_labelled_batches() {
        let dir = std::env::temp_dir().join(format!("convnet-images-{}", std::process::id()));
        for (class, shade) in [("cats", 10u8), ("dogs", 200u8)] {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            for i in 0..3 {
                let image = GrayImage::from_pixel(12, 10, image::Luma([shade + i]));
                image
                    .save(dir.join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        std::fs::write(dir.join("cats").join("notes.txt"), "not an image").unwrap();
        assert!(is_image_folder(&dir));
        let (x, y, names) = image_dataset_from_directory(&dir, (5, 6), 1).unwrap();
        assert_eq!(x.shape(), &[6, 5, 6, 1]);
        assert_eq!(y.data(), &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(names, ["cats", "dogs"]);
        assert_eq!(x.data()[0], 10.0);
        assert_eq!(*x.data().last().unwrap(), 202.0);
        let (rgb, _, _) = image_dataset_from_directory(&dir, (5, 6), 3).unwrap();
        assert_eq!(rgb.shape(), &[6, 5, 6, 3]);
        std::fs::write(dir.join("dogs").join("broken.png"), "PNG? no").unwrap();
        let e = image_dataset_from_directory(&dir, (5, 6), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken.png"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
