//! Recycled float buffers. A training step allocates the same large tensors (layer
//! outputs, gradients, im2col tiles) every time; taken fresh from the system allocator,
//! each is a new mapping that the kernel must fault in and zero page by page, which cost
//! as much as the arithmetic on big layers. Buffers of tensors that are dropped come back
//! here and the next tensor of a similar size reuses one, so steady-state training
//! allocates nothing new.
//!
//! The pool is bounded (count and bytes): memory it keeps is memory the process holds.
//! Beyond it, the first large buffer asks glibc's allocator to do the same for every
//! allocation ([`keep_freed_memory`]).

use std::sync::Mutex;

/// Buffers smaller than this (in floats) go straight to the allocator, which recycles
/// small blocks well on its own.
const MIN_POOLED: usize = 1 << 14;
/// At most this many buffers and this many floats (4 GiB) are kept: room for all the
/// activations of a ResNet50 training step at batch 16, so that its next forward pass
/// takes every buffer from here (with 64 and 1 GiB, the buffers past them came zeroed
/// from the allocator, a memset of each on every step).
const MAX_BUFFERS: usize = 512;
const MAX_FLOATS: usize = 1 << 30;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

fn lock() -> std::sync::MutexGuard<'static, Vec<Vec<f32>>> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asks glibc's allocator, once, to serve large blocks from its heap instead of fresh
/// mappings, and to keep the heap's freed top instead of returning it: by default every
/// block over 32 MiB (a ResNet50 activation at batch 16) is a new mapping, faulted in and
/// zeroed page by page on each training step, a fifth of the step's time. The process
/// then holds its peak heap after a call, as the pool above does within its bounds.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only sets the allocator's parameters; it is safe to call at
        // any time, from any thread.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        });
    }
}

/// A buffer of `len` floats whose contents are unspecified (zeros or the values of an
/// earlier tensor): for outputs a kernel overwrites entirely.
pub(crate) fn take(len: usize) -> Vec<f32> {
    if len >= MIN_POOLED {
        keep_freed_memory();
        let mut pool = lock();
        // The smallest buffer that fits, and not one more than twice too big: a small
        // tensor must not pin a huge buffer. Those already `len` long or longer come
        // first: a shorter one's missing values are filled with zeros here, a pass
        // over memory that a training step paid on every BatchNormalization output.
        let best = pool
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() <= 2 * len)
            .min_by_key(|(_, b)| (b.len() < len, b.capacity()))
            .map(|(i, _)| i);
        if let Some(i) = best {
            let mut buffer = pool.swap_remove(i);
            drop(pool);
            buffer.resize(len, 0.0);
            return buffer;
        }
    }
    vec![0.0; len]
}

/// A buffer of `len` zeros.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut buffer = take(len);
    buffer.fill(0.0);
    buffer
}

/// Hands a buffer back for reuse (or frees it when the pool is full).
pub(crate) fn give(buffer: Vec<f32>) {
    if buffer.capacity() < MIN_POOLED {
        return;
    }
    let mut pool = lock();
    pool.push(buffer);
    // Over the bounds, the oldest buffers go first.
    let mut total: usize = pool.iter().map(Vec::capacity).sum();
    while pool.len() > MAX_BUFFERS || total > MAX_FLOATS {
        total -= pool.remove(0).capacity();
    }
}

/// A scratch buffer (an im2col tile, per-task partial sums) that returns to the pool
/// when dropped.
pub(crate) struct Scratch(Vec<f32>);

impl Scratch {
    /// `len` floats, contents unspecified.
    pub(crate) fn new(len: usize) -> Self {
        Scratch(take(len))
    }

    pub(crate) fn zeroed(len: usize) -> Self {
        Scratch(zeroed(len))
    }

    /// The buffer, kept by the caller instead of going back to the pool.
    pub(crate) fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_returned_buffer_and_sizes_it() {
        let a = take(1 << 16);
        let ptr = a.as_ptr();
        give(a);
        let b = take((1 << 16) - 5);
        // Another test may have taken it in between; then a fresh one is also right.
        assert_eq!(b.len(), (1 << 16) - 5);
        if b.as_ptr() == ptr {
            assert!(b.capacity() >= 1 << 16);
        }
        let z = zeroed(1 << 15);
        assert!(z.iter().all(|&v| v == 0.0));
    }
}
