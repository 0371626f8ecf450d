//! Where the synthetic generator put each clip's event: `DIR/events.json` beside a synthetic
//! dataset. Real data has no such file; the metrics that need it are then absent.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// File name inside a dataset directory.
pub const EVENTS_FILE: &str = "events.json";

/// The event of every clip, by split: its first video frame, `burst_frames` long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Events {
    /// Frames per event burst.
    pub burst_frames: usize,
    /// Video length the frames index into.
    pub video_len: usize,
    /// First event frame of each training clip.
    pub train: Vec<usize>,
    /// First event frame of each validation clip.
    pub valid: Vec<usize>,
    /// First event frame of each test clip.
    pub test: Vec<usize>,
}

impl Events {
    /// The first event frames of a split by name (`train`, `valid`, `test`).
    pub fn split(&self, name: &str) -> Option<&[usize]> {
        match name {
            "train" => Some(&self.train),
            "valid" => Some(&self.valid),
            "test" => Some(&self.test),
            _ => None,
        }
    }

    /// Write `DIR/events.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::durable::write_atomic(&dir.join(EVENTS_FILE), serde_json::to_string(self)?.as_bytes())
    }

    /// Read `DIR/events.json`; `None` when the dataset has none (real data).
    pub fn load(dir: &Path) -> Result<Option<Events>> {
        let path = dir.join(EVENTS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        let events: Events = serde_json::from_str(&text).map_err(|e| crate::error::input_error(format!("{}: {e}", path.display())))?;
        for (name, frames) in [("train", &events.train), ("valid", &events.valid), ("test", &events.test)] {
            if let Some(&f) = frames.iter().find(|&&f| f + events.burst_frames > events.video_len) {
                crate::bail_input!("{}: field '{name}': event at frame {f} + {} frames runs past the video's {} frames", path.display(), events.burst_frames, events.video_len);
            }
        }
        Ok(Some(events))
    }
}
