//! Inference's layer fusion: a convolution or Dense layer followed by a
//! BatchNormalization over channels and an element-wise activation (Keras's
//! Conv → BN → ReLU) runs as one layer whose output pass does all three, block by block
//! while the block is in cache; an element-wise merge takes the activation after it
//! (a residual block's Add → ReLU) the same way. A ZeroPadding2D before a convolution
//! or a `valid` pooling becomes part of that layer's own padding, so the padded copy is
//! never made.
//! The executor finds the chain at run time, from the graph as it is, so a layer changed
//! after the model was built (weights, activation) is never served stale. Only outputs
//! nobody else reads are fused away: the chain's inner outputs are never made.
//!
//! A DepthwiseConv2D runs with the 1x1 Conv2D layers next to it, MobileNet's and
//! EfficientNet's expansion and projection, as one pass ([`depthwise_block`]): the
//! tensors between them are made a few rows at a time, and never whole.

use super::graph::Model;
use crate::layers::{Conv2D, DepthwiseConv2D, Fusion, ZeroPadding2D};

/// The nodes after one node that its output pass can compute.
pub(crate) struct Chain {
    /// What they compute.
    pub(crate) fusion: Fusion,
    /// The fused nodes in order; the last one's output is the chain's.
    pub(crate) members: Vec<usize>,
}

/// For each node, the one node that reads its output, when exactly one does (once) and
/// it is not a model output.
pub(crate) fn sole_readers(model: &Model, readers: &[usize]) -> Vec<Option<usize>> {
    let mut sole = vec![None; model.nodes.len()];
    for (id, node) in model.nodes.iter().enumerate() {
        for &i in &node.inputs {
            sole[i] = Some(id);
        }
    }
    for (s, &count) in sole.iter_mut().zip(readers) {
        if count != 1 {
            *s = None;
        }
    }
    sole
}

/// The chain after `head`: a BatchNormalization over the last axis, then an
/// element-wise activation, either or both, each the sole reader of the node before.
/// None when neither follows, or when a layer on the way has an activity regularizer
/// (its penalty needs the output the chain would skip).
pub(crate) fn chain_after(model: &Model, head: usize, sole: &[Option<usize>]) -> Option<Chain> {
    let layer = |id: usize| model.layers[model.nodes[id].layer].as_ref();
    let unregularized = |id: usize| layer(id).base().activity_regularizer.is_none();
    if !unregularized(head) {
        return None;
    }
    let mut fusion = Fusion::default();
    let mut members = Vec::new();
    let mut next = sole[head].filter(|&n| unregularized(n));
    if let Some(n) = next {
        let rank = model.nodes[n].shape.len();
        if let Some(affine) = layer(n).inference_affine(rank) {
            fusion.affine = Some(affine);
            members.push(n);
            next = sole[n].filter(|&n| unregularized(n));
        }
    }
    if let Some(activation) = next.and_then(|n| layer(n).elementwise_activation()) {
        fusion.activation = activation;
        members.extend(next);
    }
    (!members.is_empty()).then_some(Chain { fusion, members })
}

/// A DepthwiseConv2D's node with the 1x1 Conv2D layers next to it, which may run with
/// it as one pass (`DepthwiseConv2D::apply_with_pointwise`).
pub(crate) struct DepthwiseBlock {
    /// The 1x1 layer before it (the block's first node) and its chain's fusion.
    pub(crate) before: Option<(usize, Fusion)>,
    /// The DepthwiseConv2D's node.
    pub(crate) depthwise: usize,
    /// The depthwise layer's chain and the padding it takes in.
    pub(crate) fusion: Fusion,
    /// The 1x1 layer after it and its chain's fusion.
    pub(crate) after: Option<(usize, Fusion)>,
    /// The nodes the block computes without `after`, the first one first; the last
    /// one's output is the block's.
    pub(crate) members: Vec<usize>,
    /// The nodes `after` and its chain add.
    pub(crate) after_members: Vec<usize>,
}

/// The block that starts at node `head`, given the padding taken in before it:
/// - either a Conv2D (the layer decides at run time whether it is a 1x1 one), its
///   chain, a ZeroPadding2D taken in if any, then a DepthwiseConv2D reading nothing
///   else,
/// - or that DepthwiseConv2D itself, with `padding`;
///
/// then the depthwise layer's chain, then a Conv2D reading nothing else and its chain,
/// if any; each the sole reader of the node before. None when there is no such block,
/// or a layer on the way has an activity regularizer.
pub(crate) fn depthwise_block(
    model: &Model,
    head: usize,
    sole: &[Option<usize>],
    padding: Option<[[usize; 2]; 2]>,
) -> Option<DepthwiseBlock> {
    let layer = |id: usize| model.layers[model.nodes[id].layer].as_any();
    let plain = |id: usize| {
        model.layers[model.nodes[id].layer]
            .base()
            .activity_regularizer
            .is_none()
            && model.nodes[id].inputs.len() == 1
    };
    let is = |id: usize, conv: bool| {
        plain(id)
            && if conv {
                layer(id).is::<Conv2D>()
            } else {
                layer(id).is::<DepthwiseConv2D>()
            }
    };
    let chain = |id: usize| {
        chain_after(model, id, sole).map_or((Fusion::default(), vec![]), |c| (c.fusion, c.members))
    };
    let mut members = vec![head];
    let (before, depthwise, padding) = if is(head, true) && padding.is_none() {
        let (fusion, chained) = chain(head);
        members.extend(chained);
        let mut next = sole[*members.last()?]?;
        let mut padding = None;
        if let Some((reader, taken)) = padding_taken_by(model, next, sole) {
            members.push(next);
            (next, padding) = (reader, Some(taken));
        }
        members.push(next);
        (Some((head, fusion)), next, padding)
    } else {
        (None, head, padding)
    };
    if !is(depthwise, false) {
        return None;
    }
    let (mut fusion, chained) = chain(depthwise);
    fusion.input_padding = padding;
    members.extend(chained);
    let mut after_members = vec![];
    let after = sole[*members.last()?]
        .filter(|&next| is(next, true))
        .map(|next| {
            let (fusion, chained) = chain(next);
            after_members = [vec![next], chained].concat();
            (next, fusion)
        });
    (before.is_some() || after.is_some()).then_some(DepthwiseBlock {
        before,
        depthwise,
        fusion,
        after,
        members,
        after_members,
    })
}

/// The node that takes ZeroPadding2D node `id`'s padding into its own window, and that
/// padding ((top, bottom), (left, right)): the padding's sole reader, reading nothing
/// else, when its layer [`takes_input_padding`](crate::layers::Layer::takes_input_padding).
/// None for any other node, or when either has an activity regularizer.
pub(crate) fn padding_taken_by(
    model: &Model,
    id: usize,
    sole: &[Option<usize>],
) -> Option<(usize, [[usize; 2]; 2])> {
    let layer = |id: usize| model.layers[model.nodes[id].layer].as_ref();
    let unregularized = |id: usize| layer(id).base().activity_regularizer.is_none();
    let padding = layer(id).as_any().downcast_ref::<ZeroPadding2D>()?.padding;
    let reader = sole[id]?;
    let takes = model.nodes[reader].inputs.len() == 1
        && layer(reader).takes_input_padding()
        && unregularized(id)
        && unregularized(reader);
    takes.then_some((reader, padding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Padding;
    use crate::layers::{Conv2D, DepthwiseConv2D, MaxPooling2D};
    use crate::model::{Call, Input};

    #[test]
    fn only_paddings_read_once_by_a_convolution_or_a_valid_pooling_are_taken_in() {
        let x = Input::new([8, 8, 4]);
        let pad = |x| ZeroPadding2D::new([[1, 2], [0, 1]]).call(x);
        let conv = Conv2D::new(4, (3, 3)).call(pad(&x));
        let depthwise = DepthwiseConv2D::new((3, 3)).call(pad(&conv));
        let shared = pad(&depthwise);
        let twice = [
            Conv2D::new(2, (1, 1)).call(&shared),
            Conv2D::new(2, (1, 1)).call(&shared),
        ];
        let pooled = MaxPooling2D::new((2, 2)).call(pad(&depthwise));
        let same = MaxPooling2D::new((2, 2))
            .padding(Padding::Same)
            .call(pad(&depthwise));
        let outputs = [twice[0].clone(), twice[1].clone(), pooled, same, pad(&conv)];
        let model = Model::new(&x, &outputs[..]).unwrap();
        let sole = sole_readers(&model, &model.reader_counts());
        let taken: Vec<Option<&str>> = (0..model.nodes.len())
            .filter(|&id| model.layers[model.nodes[id].layer].class_name() == "ZeroPadding2D")
            .map(|id| {
                padding_taken_by(&model, id, &sole).map(|(reader, padding)| {
                    assert_eq!(padding, [[1, 2], [0, 1]]);
                    model.layers[model.nodes[reader].layer].class_name()
                })
            })
            .collect();
        // In graph order: before the convolution, before the depthwise layer, the one
        // read twice, before the valid and the 'same' pooling, and a model output.
        assert_eq!(
            taken,
            [
                Some("Conv2D"),
                Some("DepthwiseConv2D"),
                None,
                Some("MaxPooling2D"),
                None,
                None
            ]
        );
    }
}
