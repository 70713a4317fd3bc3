//! Inference's concatenation in place: a layer whose output only a Concatenate on the
//! channel axis reads writes that output straight into its columns of the
//! Concatenate's output, rather than into a tensor of its own that the Concatenate then
//! copies (an Inception block's branches: the copy was a third of the block's time).
//! Layers that cannot write in place ([`Layer::apply_fused_into`]) and inputs read by
//! anyone else are copied in when the Concatenate runs, as before.

use super::graph::Model;
use crate::error::Result;
use crate::kernels::elementwise::copy_into_columns;
use crate::layers::{check_output_size, format_shape, shape_of, Concatenate, Layer, OutputColumns};
use crate::tensor::Tensor;
use std::borrow::Cow;

/// Where one node's output goes in its Concatenate's output.
#[derive(Clone, Copy)]
struct Slot {
    /// The Concatenate's node.
    concat: usize,
    /// The first of the node's columns.
    first: usize,
}

/// The run's concatenations in place: which outputs have a slot, the Concatenates'
/// outputs made so far, and which outputs were written into them.
pub(crate) struct Placement {
    slots: Vec<Option<Slot>>,
    outputs: Vec<Option<Tensor>>,
    written: Vec<bool>,
}

impl Placement {
    /// The slots of the outputs whose sole reader (`sole`, see
    /// `fusion::sole_readers`) is a Concatenate on the last axis whose output shape is
    /// known but for the batch.
    pub(crate) fn plan(model: &Model, sole: &[Option<usize>]) -> Placement {
        let nodes = &model.nodes;
        let joins_channels = |id: usize| {
            let node = &nodes[id];
            let layer = model.layers[node.layer]
                .as_any()
                .downcast_ref::<Concatenate>();
            let last = node.shape.len() as i64 - 1;
            layer.is_some_and(|c| c.axis == -1 || c.axis == last)
                && node.shape.len() >= 2
                && node.shape[1..].iter().all(Option::is_some)
                && node
                    .inputs
                    .iter()
                    .all(|&i| nodes[i].shape.last() != Some(&None))
        };
        let unregularized = |id: usize| {
            let layer = model.layers[nodes[id].layer].as_ref();
            layer.base().activity_regularizer.is_none()
        };
        let slots = (0..nodes.len())
            .map(|id| {
                // An activity penalty needs the output as a tensor of its own.
                if !unregularized(id) {
                    return None;
                }
                let concat = sole[id].filter(|&c| joins_channels(c))?;
                let before = nodes[concat].inputs.iter().take_while(|&&i| i != id);
                let first = before
                    .map(|&i| nodes[i].shape.last().copied().flatten())
                    .sum::<Option<usize>>()?;
                Some(Slot { concat, first })
            })
            .collect();
        Placement {
            slots,
            outputs: vec![None; nodes.len()],
            written: vec![false; nodes.len()],
        }
    }

    /// Has `layer`, given `args` and `fusion`, write the output of node `node` (the
    /// layer's own node, or the last of the layers fused after it) into its slot, the
    /// Concatenate's output made at the first such write. False when `node` has no slot
    /// or the layer does not write in place; the executor then runs it as usual.
    pub(crate) fn write(
        &mut self,
        model: &Model,
        node: usize,
        layer: &dyn Layer,
        args: &[&Tensor],
        fusion: &crate::layers::Fusion,
    ) -> bool {
        let Some(Slot { concat, first }) = self.slots[node] else {
            return false;
        };
        let Some(batch) = args.first().and_then(|x| x.shape().first().copied()) else {
            return false;
        };
        let static_shape = &model.nodes[concat].shape;
        let mut shape = static_shape.clone();
        shape[0] = Some(batch);
        let concat_layer = model.layers[model.nodes[concat].layer].as_ref();
        if check_output_size(concat_layer, &shape).is_err() {
            return false;
        }
        let shape: Vec<usize> = shape.into_iter().flatten().collect();
        let row_len = shape[shape.len() - 1];
        let mut own_shape = shape.clone();
        *own_shape.last_mut().expect("rank 2 or more") = width(model, node);
        let output = self.outputs[concat].get_or_insert_with(|| Tensor::for_overwrite(&shape[..]));
        if output.shape() != shape {
            // Inputs of another batch than the first's: the Concatenate reports it.
            return false;
        }
        let mut columns = OutputColumns {
            data: &mut output.data_mut()[first..],
            row_len,
            shape: own_shape,
        };
        let written = layer.apply_fused_into(args, fusion, &mut columns);
        self.written[node] |= written;
        written
    }

    /// Concatenate node `concat`'s output, when some of its inputs were written into
    /// it: the others' values (`values`, by node) copied into their columns.
    pub(crate) fn finish(
        &mut self,
        model: &Model,
        concat: usize,
        values: &[Option<Cow<Tensor>>],
    ) -> Option<Result<Tensor>> {
        let mut output = self.outputs[concat].take()?;
        let shape = output.shape().to_vec();
        let (rows, row_len) = (&shape[..shape.len() - 1], shape[shape.len() - 1]);
        let mut copies = Vec::new();
        let mut first = 0;
        for &i in &model.nodes[concat].inputs {
            let width = width(model, i);
            if !self.written[i] {
                let x = values[i].as_deref().expect("inputs run first");
                if x.shape() != [rows, &[width]].concat() {
                    let layer = model.layers[model.nodes[concat].layer].as_ref();
                    return Some(Err(layer.shape_error(&format!(
                        "inputs must match on every axis but the last: got {} beside an output of {}",
                        format_shape(&shape_of(x)),
                        format_shape(&shape_of(&output)),
                    ))));
                }
                copies.push((first, width, x.data()));
            }
            first += width;
        }
        copy_into_columns(output.data_mut(), row_len, &copies);
        Some(Ok(output))
    }
}

/// The last axis of node `id`'s output, which a slot's plan has found known.
fn width(model: &Model, id: usize) -> usize {
    let width = model.nodes[id].shape.last().copied().flatten();
    width.expect("a Concatenate's inputs in place have known widths")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Conv2D, Dense};
    use crate::model::{Call, Input};

    #[test]
    fn only_outputs_read_once_by_a_channel_concatenate_have_slots() {
        let x = Input::new([6, 6, 3]);
        let a = Conv2D::new(4, (1, 1)).call(&x);
        let b = Conv2D::new(5, (1, 1)).call(&x);
        let shared = Conv2D::new(2, (1, 1)).call(&x);
        let joined = Concatenate::new().call(&[a, x.clone(), b, shared.clone()]);
        let rows = Concatenate::new().axis(1).call(&[
            Conv2D::new(2, (1, 1)).call(&x),
            Conv2D::new(2, (1, 1)).call(&x),
        ]);
        let flat = Input::new([7]);
        let dense =
            Concatenate::new().call(&[Dense::new(3).call(&flat), Dense::new(2).call(&flat)]);
        let outputs = [joined, shared, rows, dense];
        let model = Model::new(&[x, flat][..], &outputs[..]).unwrap();
        let sole = crate::model::fusion::sole_readers(&model, &model.reader_counts());
        let plan = Placement::plan(&model, &sole);
        let slots: Vec<(usize, &str, usize)> = (0..model.nodes.len())
            .filter_map(|id| {
                let slot = plan.slots[id]?;
                let concat = model.layers[model.nodes[slot.concat].layer].name();
                let width = width(&model, id);
                Some((width, concat, slot.first))
            })
            .collect();
        // The first Concatenate's two convolutions after their columns (the input's 3
        // between them), and the Dense layers' (a Concatenate of rank 2); not the
        // convolution also read as an output, nor the Concatenate of rows.
        let joined = model.layers[model.nodes[model.outputs[0]].layer].name();
        let dense = model.layers[model.nodes[model.outputs[3]].layer].name();
        assert_eq!(
            slots,
            [(4, joined, 0), (5, joined, 7), (3, dense, 0), (2, dense, 3)]
        );
    }
}
