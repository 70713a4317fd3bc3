//! The ranks of a data-parallel run and what they do together: a [`Communicator`]
//! (MPI's allreduce, broadcast, barrier and abort), over MPI with the `mpi` feature
//! (`MpiCommunicator`) or trivially in one process ([`SingleProcess`]). It sits at the
//! bottom with the tensors, since both the training loop (gradients, metrics) and
//! BatchNormalization (synchronized statistics) use it.

use crate::error::Result;
use std::ops::Range;
use std::sync::Arc;

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "mpi")]
pub use mpi::MpiCommunicator;

/// What data-parallel training needs of the ranks' transport. Every call is collective:
/// each rank makes the same calls in the same order.
pub trait Communicator: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// How many ranks train together.
    fn size(&self) -> usize;
    /// Replaces `values` on every rank by their sum over the ranks.
    fn allreduce_sum(&self, values: &mut [f32]) -> Result<()>;
    /// [`Communicator::allreduce_sum`] of f64 values (the running metrics).
    fn allreduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Replaces `values` on every rank by `root`'s.
    fn broadcast(&self, values: &mut [f32], root: usize) -> Result<()>;
    /// Waits until every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// Ends every rank's process with `code` (MPI_Abort): after an error on one rank,
    /// so that no other rank waits for it forever.
    fn abort(&self, code: i32) -> !;
}

/// The ranks a layer pools over, kept beside its config (never saved): None alone.
#[derive(Clone, Default)]
pub struct Ranks(pub Option<Arc<dyn Communicator>>);

impl std::fmt::Debug for Ranks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(c) => write!(f, "Ranks({} of {})", c.rank(), c.size()),
            None => write!(f, "Ranks(alone)"),
        }
    }
}

/// One process alone: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn allreduce_sum(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn allreduce_sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _: &mut [f32], _: usize) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// The samples of a global batch of `batch` that rank `rank` of `size` takes:
/// contiguous, the first `batch % size` ranks one more than the others.
pub fn local_slice(batch: usize, rank: usize, size: usize) -> Range<usize> {
    let (share, extra) = (batch / size, batch % size);
    let start = rank * share + rank.min(extra);
    start..start + share + usize::from(rank < extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_batch_in_order() {
        for batch in 0..20 {
            for size in 1..5 {
                let slices: Vec<Range<usize>> =
                    (0..size).map(|r| local_slice(batch, r, size)).collect();
                assert_eq!(slices[0].start, 0);
                assert_eq!(slices[size - 1].end, batch);
                for pair in slices.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                    assert!(pair[0].len() >= pair[1].len());
                    assert!(pair[0].len() - pair[1].len() <= 1);
                }
            }
        }
    }
}
