//! Training progress as Keras 3 prints it:
//!
//! ```text
//! Epoch 3/10
//! 469/469 ━━━━━━━━━━━━━━━━━━━━ 6s 12ms/step - accuracy: 0.8712 - loss: 0.3621 - val_accuracy: 0.8650 - val_loss: 0.3790
//! ```
//!
//! On a terminal (verbose 1) the step line is redrawn in place as batches finish; when
//! standard output is not a terminal only the finished line of each epoch is printed.
//! Verbose 2 prints one short line per epoch, verbose 0 nothing.

use std::io::{IsTerminal, Write};
use std::time::Instant;

const BAR_WIDTH: usize = 20;

pub struct Progress {
    verbose: u8,
    steps: usize,
    started: Instant,
    interactive: bool,
    last_draw: Option<Instant>,
}

/// Keras's `_format_time`: seconds, milliseconds or microseconds per unit.
fn per_step(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.0}s/step")
    } else if seconds >= 1e-3 {
        format!("{:.0}ms/step", seconds * 1e3)
    } else {
        format!("{:.0}us/step", seconds * 1e6)
    }
}

/// ` - name: 0.1234` for each value, in the order given.
pub fn format_logs(logs: &[(String, f64)]) -> String {
    logs.iter()
        .map(|(k, v)| format!(" - {k}: {v:.4}"))
        .collect()
}

impl Progress {
    /// Starts an epoch of `steps` batches; prints `Epoch e/n` first, as Keras does.
    pub fn epoch(verbose: u8, epoch: usize, epochs: usize, steps: usize) -> Self {
        if verbose > 0 {
            println!("Epoch {}/{}", epoch + 1, epochs);
        }
        Progress {
            verbose,
            steps,
            started: Instant::now(),
            // Without the `progress` feature only finished epoch lines are printed, as
            // when standard output is not a terminal.
            interactive: cfg!(feature = "progress") && std::io::stdout().is_terminal(),
            last_draw: None,
        }
    }

    fn bar(&self, done: usize) -> String {
        let width = self.steps.max(1).to_string().len();
        let filled = BAR_WIDTH * done / self.steps.max(1);
        format!(
            "{done:>width$}/{} {}{}",
            self.steps,
            "━".repeat(filled),
            " ".repeat(BAR_WIDTH - filled)
        )
    }

    /// After batch `done` (1-based): redraws the line on a terminal, at most ~20 times a second.
    pub fn step(&mut self, done: usize, logs: &[(String, f64)]) {
        if self.verbose != 1 || !self.interactive || done >= self.steps {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t).as_millis() < 50)
        {
            return;
        }
        self.last_draw = Some(now);
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let step_time = elapsed / done as f64;
        let eta = step_time * (self.steps - done) as f64;
        print!(
            "\r{} {:.0}s {}{}\x1b[K",
            self.bar(done),
            eta,
            per_step(step_time),
            format_logs(logs)
        );
        let _ = std::io::stdout().flush();
    }

    /// The finished line of the epoch.
    pub fn finish(&self, logs: &[(String, f64)]) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let step_time = elapsed / self.steps.max(1) as f64;
        match self.verbose {
            1 => {
                let prefix = if self.interactive { "\r" } else { "" };
                println!(
                    "{prefix}{} {:.0}s {}{}",
                    self.bar(self.steps),
                    elapsed.floor(),
                    per_step(step_time),
                    format_logs(logs)
                );
            }
            2 => println!(
                "{}/{} - {:.0}s - {}{}",
                self.steps,
                self.steps,
                elapsed.floor(),
                per_step(step_time),
                format_logs(logs)
            ),
            _ => {}
        }
    }
}
