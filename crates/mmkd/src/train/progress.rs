//! Progress of a training run: a bar on a terminal, and a line every minute where stderr is a
//! log file (a batch job), where the bar draws nothing.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar of one epoch's `len` batches.
pub(super) fn progress(len: usize, prefix: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:28}] {pos}/{len} {msg} ETA {eta}").expect("valid template").progress_chars("=> "));
    bar.set_prefix(prefix);
    bar
}

/// Seconds between progress lines when stderr is not a terminal (a batch job's log): the bar
/// draws nothing there, and an epoch at the paper's scale takes hours.
pub(super) const PROGRESS_LINE_SECS: u64 = 60;

/// Prints `epoch e/E batch b/B loss clips/s ETA` lines at most every `every` seconds, and only
/// when stderr is not a terminal (where the progress bar already shows the same).
pub(super) struct ProgressLog {
    enabled: bool,
    every: std::time::Duration,
    start: Instant,
    last: Instant,
    /// Batches and clips already done when this log started (a run resumed inside an epoch):
    /// rates and the ETA count only what this process trained.
    batches_before: usize,
    clips_before: usize,
}

impl ProgressLog {
    pub(super) fn new(every_secs: u64, batches_before: usize, clips_before: usize) -> Self {
        use std::io::IsTerminal;
        let now = Instant::now();
        ProgressLog { enabled: !std::io::stderr().is_terminal(), every: std::time::Duration::from_secs(every_secs), start: now, last: now, batches_before, clips_before }
    }

    pub(super) fn tick(&mut self, epoch: usize, epochs: usize, batch: usize, batches: usize, loss: f64, clips: usize) {
        if !self.enabled || self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64();
        let done_here = batch.saturating_sub(self.batches_before).max(1);
        let eta = secs / done_here as f64 * (batches - batch) as f64;
        eprintln!("epoch {}/{epochs}  batch {batch}/{batches}  loss {loss:.4}  {:.1} clips/s  epoch ETA {:.0} s", epoch + 1, clips.saturating_sub(self.clips_before) as f64 / secs.max(1e-9), eta);
    }
}
