//! A study's progress: a line when a run starts failing or finishes (n of total, its wall time,
//! the runs in flight, an ETA from the finished runs), on the terminal and in `OUT/study.log`,
//! so that a study of days can be followed from a batch job's log or another terminal.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;

/// The file progress lines are appended to.
pub const STUDY_LOG: &str = "study.log";

/// Progress of one invocation of a study (runs already finished before it are not counted).
pub struct StudyLog {
    file: Mutex<std::fs::File>,
    total: usize,
    jobs: usize,
    in_flight: Mutex<Vec<String>>,
    /// Wall times of the training runs finished so far, seconds.
    finished: Mutex<Vec<f64>>,
    /// Data steps finished (counted, not timed).
    untimed: Mutex<usize>,
}

/// `HH:MM:SS` UTC of now, for log lines.
fn clock() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

/// A duration for people: `41 s`, `12 min`, `3.4 h`.
pub fn human(secs: f64) -> String {
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 5400.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// The ETA of `remaining` runs, `jobs` at a time, at the mean wall time of `finished`.
pub fn eta_secs(finished: &[f64], remaining: usize, jobs: usize) -> Option<f64> {
    if finished.is_empty() {
        return None;
    }
    let mean = finished.iter().sum::<f64>() / finished.len() as f64;
    Some(mean * remaining.div_ceil(jobs.max(1)) as f64)
}

impl StudyLog {
    /// Append to `out/study.log`; `total` runs are to be done, `jobs` at a time.
    pub fn open(out: &Path, total: usize, jobs: usize) -> Result<StudyLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(out.join(STUDY_LOG))?;
        Ok(StudyLog { file: Mutex::new(file), total, jobs, in_flight: Mutex::new(Vec::new()), finished: Mutex::new(Vec::new()), untimed: Mutex::new(0) })
    }

    /// Print `msg` with the time, and append it to the log file.
    pub fn line(&self, msg: &str) {
        let line = format!("[{}] {msg}", clock());
        eprintln!("{line}");
        // A full disk must not stop the study; the terminal still has the line.
        let _ = writeln!(self.file.lock().expect("log lock"), "{line}");
    }

    /// A run starts: it is in flight until `finish`.
    pub fn start(&self, name: &str) -> Instant {
        self.in_flight.lock().expect("in-flight lock").push(name.to_string());
        Instant::now()
    }

    /// A run ended (with `error` when it failed): one line with n of total, its wall time, the
    /// runs still in flight and the ETA of the rest. A data step (`PlannedRun::phase` 0) is
    /// counted but not timed for the ETA: it is unlike the training runs that follow.
    pub fn finish(&self, name: &str, started: Instant, error: Option<String>) {
        self.finish_run(name, started, error, true);
    }

    /// `finish` for the data step: counted, not part of the mean the ETA uses.
    pub fn finish_data_step(&self, name: &str, started: Instant, error: Option<String>) {
        self.finish_run(name, started, error, false);
    }

    fn finish_run(&self, name: &str, started: Instant, error: Option<String>, timed: bool) {
        let secs = started.elapsed().as_secs_f64();
        let in_flight = {
            let mut v = self.in_flight.lock().expect("in-flight lock");
            v.retain(|n| n != name);
            v.clone()
        };
        let (done, eta) = {
            let mut f = self.finished.lock().expect("finished lock");
            let mut untimed = self.untimed.lock().expect("untimed lock");
            if timed {
                f.push(secs)
            } else {
                *untimed += 1
            }
            let done = f.len() + *untimed;
            (done, eta_secs(&f, self.total.saturating_sub(done), self.jobs))
        };
        let flight = if in_flight.is_empty() { "none".to_string() } else { in_flight.join(", ") };
        let outcome = match error {
            Some(e) => format!("FAILED {name} after {}: {e}", human(secs)),
            None => format!("{name} in {}", human(secs)),
        };
        let eta = eta.map_or(String::new(), |e| if done < self.total { format!("; ETA {}", human(e)) } else { String::new() });
        self.line(&format!("{done}/{} done: {outcome}; in flight: {flight}{eta}", self.total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_the_mean_run_time_per_round_of_jobs() {
        assert_eq!(eta_secs(&[], 3, 2), None);
        // Mean 20 s; 3 runs left two at a time are two rounds.
        assert_eq!(eta_secs(&[10.0, 30.0], 3, 2), Some(40.0));
        assert_eq!(human(41.2), "41 s");
        assert_eq!(human(720.0), "12 min");
        assert_eq!(human(3.0 * 3600.0), "3.0 h");
    }

    #[test]
    fn every_finished_run_is_a_line_in_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = StudyLog::open(dir.path(), 3, 1).unwrap();
        let data = log.start("data");
        log.finish_data_step("data", data, None);
        let a = log.start("teacher-complete-s1");
        let _b = log.start("student-c5-nokd-s1");
        log.finish("teacher-complete-s1", a, None);
        let text = std::fs::read_to_string(dir.path().join(STUDY_LOG)).unwrap();
        assert!(text.contains("1/3 done: data in ") && text.contains("1/3 done: data in 0 s; in flight: none\n"), "the data step gives no ETA: {text}");
        assert!(text.contains("2/3 done: teacher-complete-s1 in ") && text.contains("in flight: student-c5-nokd-s1; ETA "), "{text}");
    }
}
