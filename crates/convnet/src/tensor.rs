//! The tensor: a contiguous, row-major `Vec<f32>` with a shape. Images are NHWC
//! (batch, height, width, channels), Keras's `channels_last`, so a pixel's channels sit
//! side by side: a 1x1 convolution is then a plain matrix product on the buffer and
//! depthwise kernels vectorise across channels.
//!
//! There are no strides and no views: layers and kernels work on slices, and a reshape
//! is free because the data never needs to be rearranged for it.
//!
//! Clones share their buffer (reference-counted) and a write to a shared buffer copies
//! it first: a model keeps its input for the backward pass without copying it, as
//! PyTorch's autograd keeps a reference, and no clone ever sees another's writes.

use crate::buffers;
use crate::error::{Error, Result};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::path::Path;
use std::sync::Arc;

/// An f32 tensor in row-major order with a shape, images NHWC (Keras's `channels_last`);
/// clones share the buffer until one writes.
#[derive(PartialEq, Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<Vec<f32>>,
}

/// Tensors take their buffers from, and give them back to, `crate::buffers`: the big
/// ones are reused from one training step to the next instead of being mapped afresh.
/// The last tensor sharing a buffer gives it back.
impl Drop for Tensor {
    fn drop(&mut self) {
        if let Some(data) = Arc::get_mut(&mut self.data) {
            buffers::give(std::mem::take(data));
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        write!(
            f,
            "Tensor{:?} {:?}",
            self.shape,
            &self.data[..self.data.len().min(SHOWN)]
        )?;
        if self.data.len() > SHOWN {
            write!(f, " …")?;
        }
        Ok(())
    }
}

/// The most values one tensor may hold (2³¹, 8 GiB of f32): models refuse a layer
/// whose output would be larger before anything is allocated.
pub const MAX_VALUES: usize = 1 << 31;

/// The number of elements of a shape, or an error when it overflows `usize`.
pub fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// A tensor from its shape and its row-major data; the lengths must agree.
    pub fn new(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Self> {
        let shape = shape.into();
        match checked_len(&shape) {
            Some(n) if n == data.len() => Ok(Tensor {
                shape,
                data: Arc::new(data),
            }),
            _ => Err(Error::data(format!(
                "shape {shape:?} needs {} values but {} were given",
                checked_len(&shape).map_or("too many".to_string(), |n| n.to_string()),
                data.len()
            ))),
        }
    }

    /// A tensor of zeros, like `keras.ops.zeros`.
    pub fn zeros(shape: impl Into<Vec<usize>>) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor with every element `value`, like `keras.ops.full`.
    pub fn full(shape: impl Into<Vec<usize>>, value: f32) -> Self {
        let mut t = Self::for_overwrite(shape);
        t.data_mut().fill(value);
        t
    }

    /// A tensor whose values are unspecified, for a kernel that writes every element.
    pub(crate) fn for_overwrite(shape: impl Into<Vec<usize>>) -> Self {
        let shape = shape.into();
        let n = checked_len(&shape).expect("tensor shape overflows usize");
        Tensor {
            shape,
            data: Arc::new(buffers::take(n)),
        }
    }

    /// A zero tensor with the same shape as `self`.
    pub fn zeros_like(&self) -> Self {
        Self::zeros(self.shape.clone())
    }

    /// The dimensions, outermost first (batch first for layer inputs).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of axes (4 for an NHWC image batch).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements, the product of the shape.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor holds no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements in row-major order, to read.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The data to write; a buffer shared with clones is copied first.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.unshared()
    }

    /// The elements in row-major order, taken out of the tensor (copied only if a clone
    /// shares them).
    pub fn into_data(mut self) -> Vec<f32> {
        std::mem::take(self.unshared())
    }

    /// Whether this tensor and `other` share one buffer (one is a clone of the other,
    /// and neither has been written since).
    pub(crate) fn shares_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// The buffer, copied first (into one from the pool) if a clone shares it.
    fn unshared(&mut self) -> &mut Vec<f32> {
        if Arc::get_mut(&mut self.data).is_none() {
            let mut copy = buffers::take(self.data.len());
            copy.copy_from_slice(&self.data);
            self.data = Arc::new(copy);
        }
        Arc::get_mut(&mut self.data).expect("a buffer no clone shares")
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(mut self, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        if checked_len(&shape) != Some(self.data.len()) {
            return Tensor::new(shape, std::mem::take(self.unshared()));
        }
        self.shape = shape;
        Ok(self)
    }

    /// Applies `f` to every element, in place.
    pub fn map_inplace(&mut self, f: impl Fn(f32) -> f32) {
        self.unshared().iter_mut().for_each(|v| *v = f(*v));
    }

    /// `self += other`, elementwise; shapes must match.
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        if self.shape != other.shape {
            return Err(Error::data(format!(
                "cannot add a tensor of shape {:?} to one of shape {:?}",
                other.shape, self.shape
            )));
        }
        let other = other.data();
        self.unshared()
            .iter_mut()
            .zip(other)
            .for_each(|(a, b)| *a += b);
        Ok(())
    }

    /// The number of samples: the size of the first axis.
    pub fn batch_len(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// The tensor with its axes reordered: axis `a` of the result is axis `axes[a]` of
    /// this one (NumPy's `transpose(axes)`); `axes` must be a permutation of the axes.
    pub fn permute_axes(&self, axes: &[usize]) -> Result<Tensor> {
        let shape = self.shape();
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        if sorted != (0..shape.len()).collect::<Vec<_>>() {
            return Err(Error::data(format!(
                "cannot permute the axes of a tensor of shape {shape:?} by {axes:?}"
            )));
        }
        let out_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
        let mut strides = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        let out_strides: Vec<usize> = axes.iter().map(|&a| strides[a]).collect();
        let data = self.data();
        let mut out = Vec::with_capacity(data.len());
        let mut coords = vec![0usize; out_shape.len()];
        let mut source = 0usize;
        for _ in 0..data.len() {
            out.push(data[source]);
            for d in (0..out_shape.len()).rev() {
                coords[d] += 1;
                source += out_strides[d];
                if coords[d] < out_shape[d] {
                    break;
                }
                source -= out_strides[d] * coords[d];
                coords[d] = 0;
            }
        }
        Tensor::new(out_shape, out)
    }

    /// Samples `indices` (along the first axis), in that order, as a new tensor.
    pub fn gather_rows(&self, indices: &[usize]) -> Result<Tensor> {
        if self.shape.is_empty() {
            return Err(Error::data("a scalar has no samples to select"));
        }
        let batch = self.batch_len();
        let row = self.data.len().checked_div(batch).unwrap_or(0);
        if let Some(&i) = indices.iter().find(|&&i| i >= batch) {
            return Err(Error::data(format!(
                "sample {i} is out of range for {batch} samples"
            )));
        }
        let mut shape = self.shape.clone();
        shape[0] = indices.len();
        let mut out = Tensor::for_overwrite(shape);
        for (dst, &i) in out.data_mut().chunks_exact_mut(row.max(1)).zip(indices) {
            dst.copy_from_slice(&self.data[i * row..(i + 1) * row]);
        }
        Ok(out)
    }

    /// Samples `start..end` (along the first axis).
    pub fn slice_rows(&self, start: usize, end: usize) -> Result<Tensor> {
        self.gather_rows(&(start..end).collect::<Vec<_>>())
    }

    /// The tensor as an ndarray array of the same shape, to use with ndarray's own
    /// operations.
    pub fn to_ndarray(&self) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.data.to_vec())
            .expect("tensor length always matches its shape")
    }

    /// Any ndarray array, in any memory order, as a row-major tensor.
    pub fn from_ndarray<D: ndarray::Dimension>(array: ndarray::Array<f32, D>) -> Self {
        let shape = array.shape().to_vec();
        let data = if array.is_standard_layout() {
            array.into_raw_vec_and_offset().0
        } else {
            array.iter().copied().collect()
        };
        Tensor {
            shape,
            data: Arc::new(data),
        }
    }

    /// Reads a `.npy` file of float32 or float64 (converted to f32) values, in C or
    /// Fortran order. The declared shape is checked against the file's size before any
    /// buffer is allocated for it.
    pub fn read_npy(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_npy_bytes(&bytes).map_err(|e| e.in_file(path))
    }

    /// Parses the bytes of a `.npy` file; a format error says what is wrong with them.
    pub fn from_npy_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse_npy(bytes).map_err(Error::format)
    }

    fn parse_npy(bytes: &[u8]) -> std::result::Result<Self, String> {
        let (header, data_start) = parse_npy_header(bytes)?;
        let descriptor = header.type_descriptor.to_string();
        let descriptor = descriptor.trim_matches(|c| c == '\'' || c == '"');
        let element_size = match descriptor {
            "<f4" | "<i4" | "<u4" => 4,
            "<f8" | "<i8" | "<u8" => 8,
            "|u1" | "|i1" | "|b1" => 1,
            other => {
                return Err(format!(
                    "unsupported .npy dtype {other}: convnet reads little-endian float32, \
                     float64 and integer arrays"
                ))
            }
        };
        let count = checked_len(&header.shape)
            .ok_or_else(|| format!("declared shape {:?} is too large", header.shape))?;
        let available = bytes.len() - data_start;
        if count.checked_mul(element_size) != Some(available) {
            return Err(format!(
                "declared shape {:?} of {descriptor} needs {} bytes of data but the file holds {available}",
                header.shape,
                count.saturating_mul(element_size)
            ));
        }
        let reader = bytes;
        let bad = |e: ndarray_npy::ReadNpyError| format!("invalid .npy data: {e}");
        let tensor = match descriptor {
            "<f4" => Self::from_ndarray(ArrayD::<f32>::read_npy(reader).map_err(bad)?),
            "<f8" => Self::from_ndarray(
                ArrayD::<f64>::read_npy(reader)
                    .map_err(bad)?
                    .mapv(|v| v as f32),
            ),
            "<i4" => Self::from_ndarray(
                ArrayD::<i32>::read_npy(reader)
                    .map_err(bad)?
                    .mapv(|v| v as f32),
            ),
            "<i8" => Self::from_ndarray(
                ArrayD::<i64>::read_npy(reader)
                    .map_err(bad)?
                    .mapv(|v| v as f32),
            ),
            "<u4" => Self::from_ndarray(
                ArrayD::<u32>::read_npy(reader)
                    .map_err(bad)?
                    .mapv(|v| v as f32),
            ),
            "<u8" => Self::from_ndarray(
                ArrayD::<u64>::read_npy(reader)
                    .map_err(bad)?
                    .mapv(|v| v as f32),
            ),
            "|u1" => {
                Self::from_ndarray(ArrayD::<u8>::read_npy(reader).map_err(bad)?.mapv(f32::from))
            }
            "|i1" => {
                Self::from_ndarray(ArrayD::<i8>::read_npy(reader).map_err(bad)?.mapv(f32::from))
            }
            _ => Self::from_ndarray(
                ArrayD::<bool>::read_npy(reader)
                    .map_err(bad)?
                    .mapv(|v| v as u8 as f32),
            ),
        };
        Ok(tensor)
    }

    /// Writes the tensor as a float32 `.npy` file.
    pub fn write_npy(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_npy_bytes()).map_err(|e| Error::file(path, e))
    }

    /// The bytes of a float32 `.npy` file holding the tensor.
    pub fn to_npy_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.to_ndarray()
            .write_npy(&mut bytes)
            .expect("writing to memory cannot fail");
        bytes
    }
}

/// Reads the magic string, version and header of a `.npy` file held in memory; returns
/// the header and the offset of the data. The header length is checked against the bytes
/// present before the header parser sees it.
fn parse_npy_header(bytes: &[u8]) -> std::result::Result<(Header, usize), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err("not a .npy file (wrong magic string)".into());
    }
    let (header_len, prefix): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let data_start = prefix
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| format!("header declares {header_len} bytes but the file is truncated"))?;
    let header = Header::from_reader(&mut &bytes[..data_start])
        .map_err(|e| format!("invalid .npy header: {e}"))?;
    Ok((header, data_start))
}
