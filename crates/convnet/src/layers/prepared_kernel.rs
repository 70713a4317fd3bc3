//! A layer's kernel in the form a forward route reads (Winograd's transformed kernel,
//! or the panels of the im2col route's packed product), kept between inference calls.
//! Making it reads the whole kernel and writes it again (16/9 of it for Winograd); at
//! batch 1 on a small image that costs as much as the products themselves.
//!
//! The cache keeps a clone of the kernel tensor it was made from. A clone shares the
//! kernel's buffer, so anything that writes the kernel afterwards (an optimizer step,
//! `set_weights`, a load) either replaces the buffer or, through copy-on-write, copies it
//! first: the kernel then no longer shares the clone's buffer, and the next call prepares
//! the kernel again. A stale form can never be used. Whether a route reads a form
//! depends on the call's geometry, but the form itself depends on the kernel alone, and
//! a route given none makes its own: the kernel is the whole key, and a kept form is
//! never wrong, at worst unused.

use crate::kernels::conv::KernelForm;
use crate::tensor::Tensor;
use std::sync::{Arc, Mutex};

/// The prepared form of one kernel, or that its route needs none.
#[derive(Default)]
pub(crate) struct PreparedKernel(Mutex<Option<Entry>>);

struct Entry {
    /// A clone of the kernel the form was made from.
    source: Tensor,
    /// The prepared form, or None where the route reads the kernel as it is.
    form: Option<Arc<KernelForm>>,
}

impl PreparedKernel {
    /// The prepared form of `kernel` (None where its route reads it as it is), made by
    /// `prepare` unless kept from an earlier call on this very kernel.
    pub(crate) fn get(
        &self,
        kernel: &Tensor,
        prepare: impl FnOnce(&[f32]) -> Option<KernelForm>,
    ) -> Option<Arc<KernelForm>> {
        let kept = self.lock();
        if let Some(entry) = kept.as_ref().filter(|e| e.source.shares_buffer(kernel)) {
            return entry.form.clone();
        }
        drop(kept);
        // Prepared outside the lock: callers on other threads wait for nothing.
        let form = prepare(kernel.data()).map(Arc::new);
        *self.lock() = Some(Entry {
            source: kernel.clone(),
            form: form.clone(),
        });
        form
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A copy of a layer starts with nothing kept.
impl Clone for PreparedKernel {
    fn clone(&self) -> Self {
        PreparedKernel::default()
    }
}

impl std::fmt::Debug for PreparedKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedKernel")
    }
}
