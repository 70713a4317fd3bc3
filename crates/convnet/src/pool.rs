//! Where a whole pass runs: on rayon's pool. A parallel loop started on a thread outside
//! the pool hands its work to the pool and sleeps until the pool is done: a handoff,
//! a wake-up and two context switches per loop, and a network runs hundreds of loops per
//! pass (at batch 1 they are most of the work's time). Started on one of the pool's
//! threads, the same loop runs on the calling thread while the others join in. So an
//! inference call or a training step moves onto the pool once, and its loops start there.

/// `f()`, run on one of rayon's threads (where it is already on one, right there).
///
/// Only for work that waits for no other thread: a pool thread blocked on another
/// thread that needs the pool could wait forever. (MPI's calls also stay on the thread
/// that initialized it.)
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}
