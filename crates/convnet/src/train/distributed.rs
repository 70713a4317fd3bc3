//! Data-parallel training, as Horovod gives it to Keras and PyTorch: every rank holds
//! the whole model and takes its slice of each global batch; the gradients are summed
//! over the ranks at every step, each scaled by its slice's share of the batch, so every
//! rank takes the step one process would take on the whole batch and the weights stay
//! the same everywhere. [`Communicator`] is all `fit` asks of the transport: MPI's
//! allreduce, broadcast and barrier (`MpiCommunicator` with the `mpi` feature), or
//! nothing at all ([`SingleProcess`]).

use super::compiled::CompiledModel;
use super::state::Trackers;
use crate::error::{Error, Result};
use crate::model::Model;

#[cfg(feature = "mpi")]
pub use crate::collective::MpiCommunicator;
pub use crate::collective::{local_slice, Communicator, SingleProcess};

/// Sets every rank's weights to rank 0's (the start of a data-parallel run).
pub(crate) fn broadcast_weights(model: &mut Model, comm: &dyn Communicator) -> Result<()> {
    let mut flat: Vec<f32> = model
        .weights()
        .flat_map(|w| w.value.data().to_vec())
        .collect();
    comm.broadcast(&mut flat, 0)?;
    let mut at = 0;
    let values = model
        .weights()
        .map(|w| {
            let n = w.value.len();
            at += n;
            crate::tensor::Tensor::new(w.value.shape().to_vec(), flat[at - n..at].to_vec())
        })
        .collect::<Result<Vec<_>>>()?;
    model.set_weights(values)
}

/// Sums the gradients over the ranks, each scaled by `share` (this rank's samples over
/// the global batch's) first: the gradient of the mean loss over the whole batch.
pub(crate) fn allreduce_gradients(
    model: &mut Model,
    comm: &dyn Communicator,
    share: f32,
) -> Result<()> {
    let grads = model.grads_mut();
    let mut flat: Vec<f32> = grads
        .iter()
        .flatten()
        .flat_map(|g| g.data().iter().map(|v| v * share))
        .collect();
    comm.allreduce_sum(&mut flat)?;
    let mut at = 0;
    for g in grads.iter_mut().flatten() {
        let n = g.len();
        g.data_mut().copy_from_slice(&flat[at..at + n]);
        at += n;
    }
    Ok(())
}

/// BatchNormalization's moving statistics averaged over the ranks after a step that
/// normalized each rank's slice by its own statistics: what Keras's MirroredStrategy
/// reads from its per-replica copies.
pub(crate) fn average_moving_statistics(model: &mut Model, comm: &dyn Communicator) -> Result<()> {
    let is_moving = |name: &str| name.contains("moving_mean") || name.contains("moving_variance");
    let mut flat: Vec<f32> = model
        .weights()
        .filter(|w| is_moving(&w.name))
        .flat_map(|w| w.value.data().to_vec())
        .collect();
    if flat.is_empty() {
        return Ok(());
    }
    comm.allreduce_sum(&mut flat)?;
    let ranks = comm.size() as f32;
    let mut at = 0;
    for layer in model.layers.iter_mut() {
        for w in layer.weights_mut() {
            if is_moving(&w.name) {
                let n = w.value.len();
                for (v, s) in w.value.data_mut().iter_mut().zip(&flat[at..at + n]) {
                    *v = s / ranks;
                }
                at += n;
            }
        }
    }
    Ok(())
}

/// Checks that every rank holds the same weights, bit for bit: a checksum of rank 0's
/// against each rank's own, at an epoch's end. A mismatch is an error on every rank.
pub(crate) fn check_same_weights(
    model: &Model,
    comm: &dyn Communicator,
    epoch: usize,
) -> Result<()> {
    // The weights' bits summed two ways (plain, and weighted by position), each sent as
    // four 16-bit pieces, which f32 holds exactly.
    let (mut a, mut b) = (0u64, 0u64);
    for (i, v) in model
        .weights()
        .flat_map(|w| w.value.data().iter())
        .enumerate()
    {
        let bits = u64::from(v.to_bits());
        a = a.wrapping_add(bits);
        b = b.wrapping_add(bits.wrapping_mul(i as u64 | 1));
    }
    let pieces = |x: u64| (0..4).map(move |k| ((x >> (16 * k)) & 0xffff) as f32);
    let mine: Vec<f32> = pieces(a).chain(pieces(b)).collect();
    let mut root = mine.clone();
    comm.broadcast(&mut root, 0)?;
    let mut mismatches = [f32::from(mine != root)];
    comm.allreduce_sum(&mut mismatches)?;
    if mismatches[0] > 0.0 {
        return Err(Error::Model {
            model: model.name().to_string(),
            message: format!(
                "after epoch {}, the weights of {} rank(s) differ from rank 0's: data-parallel training lost its consistency",
                epoch + 1,
                mismatches[0]
            ),
        });
    }
    Ok(())
}

impl CompiledModel {
    /// The running loss and metrics summed over the ranks (their totals and counts),
    /// so every rank logs what one process on all the data would.
    pub(crate) fn reduced_logs(
        &mut self,
        trackers: &Trackers,
        prefix: &str,
        comm: &dyn Communicator,
    ) -> Result<Vec<(String, f64)>> {
        if comm.size() == 1 {
            return Ok(self.collect_logs(trackers, prefix));
        }
        let mut reduced = trackers.clone();
        let mut states: Vec<f64> = Vec::new();
        let running = std::iter::once(&reduced.total)
            .chain(&reduced.outputs)
            .chain(self.compiled.metrics.iter().flatten())
            .map(|m| m.running());
        for (total, count) in running.collect::<Vec<_>>() {
            states.extend([total, count]);
        }
        comm.allreduce_sum_f64(&mut states)?;
        let mut pairs = states.chunks_exact(2).map(|p| (p[0], p[1]));
        let mut next = || pairs.next().expect("one pair per tracker and metric");
        reduced.total.set_running(next());
        for m in &mut reduced.outputs {
            m.set_running(next());
        }
        let local: Vec<(f64, f64)> = self
            .compiled
            .metrics
            .iter()
            .flatten()
            .map(|m| m.running())
            .collect();
        for m in self.compiled.metrics.iter_mut().flatten() {
            m.set_running(next());
        }
        let logs = self.collect_logs(&reduced, prefix);
        for (m, state) in self.compiled.metrics.iter_mut().flatten().zip(local) {
            m.set_running(state);
        }
        Ok(logs)
    }
}
