//! Inference's layer fusion: a convolution or Dense layer followed by a
//! BatchNormalization over channels and an element-wise activation (Keras's
//! Conv → BN → ReLU) runs as one layer whose output pass does all three, block by block
//! while the block is in cache; an element-wise merge takes the activation after it
//! (a residual block's Add → ReLU) the same way. The executor finds the chain at run
//! time, from the graph as it is, so a layer changed after the model was built (weights,
//! activation) is never served stale. Only outputs nobody else reads are fused away: the chain's inner
//! outputs are never made.

use super::graph::Model;
use crate::layers::Fusion;

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
