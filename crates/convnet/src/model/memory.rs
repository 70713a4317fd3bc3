//! How much memory a call needs, known from shape inference before anything runs, and
//! the budget calls are held to. Inference keeps a layer's output until its last reader
//! has run, so its peak is the largest sum of outputs alive at once; training keeps
//! every output for the backward pass, and the largest layer's gradients in and out.
//! Kernels' scratch tiles are small next to these and not counted.
//!
//! The budget is `CONVNET_MEMORY_LIMIT` (bytes, or with a K, M or G suffix), else what
//! [`set_memory_limit`] set, else the memory the system reports available.

use super::graph::Model;
use super::summary::readable_size;
use crate::error::{Error, Result};
use crate::layers::Shape;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One layer call's output in a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// The layer's name.
    pub layer: String,
    /// The output's shape, the batch included.
    pub shape: Vec<usize>,
    /// Its size in bytes (f32 values).
    pub bytes: usize,
}

/// What one call on given input shapes needs ([`Model::memory_plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Every layer call's output, in execution order.
    pub activations: Vec<Activation>,
    /// The largest of them.
    pub largest: Activation,
    /// Inference's peak: the most bytes of outputs alive at once (the inputs included).
    pub inference_peak: usize,
    /// The layer whose output reaches that peak.
    pub peak_layer: String,
    /// Training's: every output kept for backward, and the largest layer's gradients
    /// in and out (twice its output).
    pub training_peak: usize,
}

/// 0: not set.
static LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Sets the memory budget of every call (None: back to the default), unless
/// `CONVNET_MEMORY_LIMIT` is set, which wins.
pub fn set_memory_limit(bytes: Option<usize>) {
    LIMIT.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// `2G`, `512M`, `64K` or plain bytes.
fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim();
    let (number, scale) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 1usize << 10),
        'M' | 'm' => (&text[..text.len() - 1], 1 << 20),
        'G' | 'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number.trim().parse::<usize>().ok()?.checked_mul(scale)
}

/// The memory the system reports available (Linux's `MemAvailable`), if it reports it.
fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The budget in bytes, and where it comes from; an unreadable `CONVNET_MEMORY_LIMIT`
/// is an error naming it.
pub fn memory_limit() -> Result<(usize, &'static str)> {
    if let Ok(text) = std::env::var("CONVNET_MEMORY_LIMIT") {
        return parse_bytes(&text)
            .map(|b| (b, "CONVNET_MEMORY_LIMIT"))
            .ok_or_else(|| {
                Error::invalid(
                    "CONVNET_MEMORY_LIMIT",
                    format!(
                        "CONVNET_MEMORY_LIMIT={text:?} is not a size (bytes, or with K, M or G)"
                    ),
                )
            });
    }
    match LIMIT.load(Ordering::Relaxed) {
        0 => Ok(
            available_memory().map_or((usize::MAX, "no limit known"), |b| {
                (b, "the memory available")
            }),
        ),
        set => Ok((set, "convnet::model::set_memory_limit")),
    }
}

fn bytes_of(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(4usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX)
}

impl Model {
    /// The memory one call needs on inputs of `input_shapes` (the batch included), from
    /// shape inference alone; an error names a layer whose output cannot be inferred.
    pub fn memory_plan(&self, input_shapes: &[Vec<usize>]) -> Result<MemoryPlan> {
        if self.nodes.is_empty() {
            return Err(Error::Model {
                model: self.name.clone(),
                message: "is not built yet: give it an Input or call build() with the input shape"
                    .into(),
            });
        }
        if input_shapes.len() != self.inputs.len() {
            return Err(Error::invalid(
                "input_shapes",
                format!(
                    "model '{}' takes {} inputs, {} shapes were given",
                    self.name,
                    self.inputs.len(),
                    input_shapes.len()
                ),
            ));
        }
        let mut shapes: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        let mut readers = self.reader_counts();
        let mut activations = Vec::new();
        let (mut alive, mut peak, mut peak_layer, mut all) =
            (0usize, 0usize, String::new(), 0usize);
        for (id, node) in self.nodes.iter().enumerate() {
            let layer = self.layers[node.layer].as_ref();
            let shape = match self.inputs.iter().position(|&i| i == id) {
                Some(k) => {
                    // The InputLayer checks the shape, as a call does.
                    let given: Shape = input_shapes[k].iter().map(|&d| Some(d)).collect();
                    layer.output_shape(&[given])?;
                    input_shapes[k].clone()
                }
                None => {
                    let args: Vec<Shape> = node
                        .inputs
                        .iter()
                        .map(|&i| shapes[i].iter().map(|&d| Some(d)).collect())
                        .collect();
                    let out = layer.output_shape(&args)?;
                    crate::layers::check_output_size(layer, &out)?;
                    out.iter().map(|d| d.unwrap_or(1)).collect()
                }
            };
            let bytes = bytes_of(&shape);
            alive = alive.saturating_add(bytes);
            all = all.saturating_add(bytes);
            if alive > peak {
                peak = alive;
                peak_layer = layer.name().to_string();
            }
            for &i in &node.inputs {
                readers[i] -= 1;
                if readers[i] == 0 {
                    alive -= bytes_of(&shapes[i]);
                }
            }
            if !node.inputs.is_empty() {
                activations.push(Activation {
                    layer: layer.name().to_string(),
                    shape: shape.clone(),
                    bytes,
                });
            }
            shapes[id] = shape;
        }
        let largest = activations
            .iter()
            .max_by_key(|a| a.bytes)
            .cloned()
            .unwrap_or(Activation {
                layer: self.name.clone(),
                shape: Vec::new(),
                bytes: 0,
            });
        Ok(MemoryPlan {
            training_peak: all.saturating_add(largest.bytes.saturating_mul(2)),
            activations,
            largest,
            inference_peak: peak,
            peak_layer,
        })
    }

    /// Refuses, in one line naming the layer and the sizes, a call of `copies`
    /// simultaneous batches of `input_shapes` whose plan exceeds the budget
    /// ([`memory_limit`]); `training` holds the training peak to it.
    pub(crate) fn check_memory(
        &self,
        input_shapes: &[Vec<usize>],
        copies: usize,
        training: bool,
    ) -> Result<()> {
        let plan = self.memory_plan(input_shapes)?;
        let (limit, source) = memory_limit()?;
        let need = if training {
            plan.training_peak
        } else {
            plan.inference_peak
        }
        .saturating_mul(copies.max(1));
        if need <= limit {
            return Ok(());
        }
        let batch = input_shapes
            .first()
            .and_then(|s| s.first())
            .copied()
            .unwrap_or(0);
        Err(Error::Model {
            model: self.name.clone(),
            message: format!(
                "{} at batch {batch}{} needs {} of activations (peak at layer '{}'; the largest, \
                 layer '{}''s output {:?}, is {}), over the limit of {} ({source}); use a \
                 smaller batch",
                if training { "training" } else { "inference" },
                if copies > 1 {
                    format!(" on {copies} threads")
                } else {
                    String::new()
                },
                readable_size(need),
                plan.peak_layer,
                plan.largest.layer,
                plan.largest.shape,
                readable_size(plan.largest.bytes),
                readable_size(limit),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_suffixes() {
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("lots"), None);
    }
}
