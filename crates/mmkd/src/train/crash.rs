//! Deterministic crash points for the tests that kill a run (issue 19): with `MMKD_CRASH_AT` set
//! to `step:N`, `saving:N` or `saved:N`, the process aborts after the N-th optimiser step it
//! trains (before anything of that batch is saved), inside the N-th resumable checkpoint it
//! writes (its folder complete, `resume.json` not yet renamed over the old one), or right after
//! the N-th checkpoint is committed. `abort` runs no destructor and flushes nothing, as SIGKILL,
//! so a test chooses the moment instead of sleeping and hoping. Unset (always, outside tests),
//! each point costs one relaxed atomic increment.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a run can be made to crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// After an optimiser step.
    Step,
    /// Inside a checkpoint, before its commit.
    Saving,
    /// After a checkpoint's commit.
    Saved,
}

const POINTS: [(Point, &str); 3] = [(Point::Step, "step"), (Point::Saving, "saving"), (Point::Saved, "saved")];
static COUNTS: [AtomicUsize; 3] = [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)];

fn target() -> Option<(Point, usize)> {
    static TARGET: OnceLock<Option<(Point, usize)>> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let value = std::env::var("MMKD_CRASH_AT").ok()?;
        let (name, n) = value.split_once(':')?;
        let point = POINTS.iter().find(|(_, s)| *s == name)?.0;
        Some((point, n.parse().ok()?))
    })
}

/// Count one passage through `point`; abort the process when it is the chosen one.
pub fn reached(point: Point) {
    let index = POINTS.iter().position(|(p, _)| *p == point).expect("every point is listed");
    let n = COUNTS[index].fetch_add(1, Ordering::Relaxed) + 1;
    if target() == Some((point, n)) {
        eprintln!("MMKD_CRASH_AT: aborting at {}:{n}", POINTS[index].1);
        std::process::abort();
    }
}
