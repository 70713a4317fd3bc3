//! [`Communicator`] over MPI (the `mpi` feature, on the `mpi` crate): the processes
//! `mpirun` / `mpiexec` started, one rank each. MPI is called from the training loop's
//! thread only (rayon's threads never call it), which is what MPI's "funneled" threading
//! level allows.

use super::Communicator;
use crate::error::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::environment::{Threading, Universe};
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};

/// The world of ranks `mpirun` started. MPI is initialized once per process and
/// finalized when this is dropped.
pub struct MpiCommunicator {
    world: SimpleCommunicator,
    _universe: Universe,
}

impl MpiCommunicator {
    /// Initializes MPI; an error when it is already initialized in this process.
    pub fn init() -> Result<MpiCommunicator> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::invalid("mpi", "MPI is already initialized in this process"))?;
        if threading < Threading::Funneled {
            return Err(Error::invalid(
                "mpi",
                format!(
                    "this MPI library gives threading level {threading:?}; convnet needs Funneled"
                ),
            ));
        }
        Ok(MpiCommunicator {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`,
    /// Slurm's `srun`), from the variables they set.
    pub fn launched() -> bool {
        ["PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
    }
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn allreduce_sum(&self, values: &mut [f32]) -> Result<()> {
        let send = values.to_vec();
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn allreduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn broadcast(&self, values: &mut [f32], root: usize) -> Result<()> {
        self.world
            .process_at_rank(root as i32)
            .broadcast_into(values);
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
