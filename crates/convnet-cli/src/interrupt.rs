//! Ctrl-C and SIGTERM during `convnet train`. The first one lets the running step
//! finish, then stops training at once (the training state or the model is saved, and
//! the command exits with 130 for SIGINT, 143 for SIGTERM, as a shell reports a signal);
//! a second one exits at once.

use convnet::callbacks::{Callback, Logs, TrainContext};
use convnet::Error;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The signals that arrived, as flags the training loop reads between steps.
#[derive(Clone)]
pub struct Interrupts {
    sigint: Arc<AtomicBool>,
    sigterm: Arc<AtomicBool>,
}

impl Interrupts {
    /// Catches SIGINT and SIGTERM from now on.
    pub fn install() -> Result<Interrupts, Error> {
        let interrupts = Interrupts {
            sigint: Arc::new(AtomicBool::new(false)),
            sigterm: Arc::new(AtomicBool::new(false)),
        };
        for (signal, caught, code) in [
            (SIGINT, &interrupts.sigint, 130),
            (SIGTERM, &interrupts.sigterm, 143),
        ] {
            // The exit comes first: a signal that finds its flag already set (the second
            // Ctrl-C) ends the process before the flag is set again.
            flag::register_conditional_shutdown(signal, code, Arc::clone(caught))
                .and_then(|_| flag::register(signal, Arc::clone(caught)))
                .map_err(|e| Error::unsupported(format!("cannot catch signal {signal}: {e}")))?;
        }
        Ok(interrupts)
    }

    /// The exit status for the signal that arrived: 130 for SIGINT, 143 for SIGTERM.
    pub fn exit_code(&self) -> Option<i32> {
        if self.sigint.load(Ordering::SeqCst) {
            Some(130)
        } else if self.sigterm.load(Ordering::SeqCst) {
            Some(143)
        } else {
            None
        }
    }
}

/// Interrupts training after the step during which a signal arrived.
impl Callback for Interrupts {
    fn on_batch_end(&mut self, _: usize, _: &Logs, ctx: &mut TrainContext) -> convnet::Result<()> {
        if self.exit_code().is_some() {
            ctx.interrupt();
        }
        Ok(())
    }
}
