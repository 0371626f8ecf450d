//! The ground-truth attention metric of the synthetic data: how much of its attention mass a
//! query row puts on the frames of the true event, against what uniform attention over the
//! same visible keys would put there. Only the generator knows where the event is
//! (`data::synth::Events`), so real data has no such metric.

use std::ops::Range;

/// The frames of a stream of `len` steps that overlap, in time, the video frames
/// `start..start + width` of a clip whose video has `video_len` frames. Stream frame `j` spans
/// video time `[j * video_len / len, (j + 1) * video_len / len)`, so the audio burst, the text
/// marker word and a student's downsampled stream are all found by the same rule.
pub fn event_frames(start: usize, width: usize, video_len: usize, len: usize) -> Range<usize> {
    let video_len = video_len.max(1);
    let first = start * len / video_len;
    let end = ((start + width) * len).div_ceil(video_len);
    first.min(len)..end.clamp(first.min(len), len)
}

/// Sums over the rows of one clip's map: attention mass on the event, and the share uniform
/// attention over the row's visible keys (those its masks let it see) would put there. Divide
/// both by `rows` for the means.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EventMass {
    /// Sum over rows of the mass on the event frames.
    pub share: f64,
    /// Sum over rows of |event frames visible| / |keys visible|.
    pub uniform_share: f64,
    /// Rows summed.
    pub rows: usize,
}

impl EventMass {
    /// Add another clip's sums.
    pub fn add(&mut self, other: EventMass) {
        self.share += other.share;
        self.uniform_share += other.uniform_share;
        self.rows += other.rows;
    }

    /// Mean share per row (0 with no rows).
    pub fn mean_share(&self) -> f64 {
        if self.rows == 0 { 0.0 } else { self.share / self.rows as f64 }
    }

    /// Mean uniform share per row (0 with no rows).
    pub fn mean_uniform_share(&self) -> f64 {
        if self.rows == 0 { 0.0 } else { self.uniform_share / self.rows as f64 }
    }
}

/// The event mass of one clip's map (`rows x cols`, row-major, rows summing to one);
/// `visible(row, col)` says which keys the row's masks let it see. Visibility comes from the
/// masks, not from `p > 0`: a peaked row can underflow to exactly 0 on keys it may see, which
/// would shrink its uniform baseline.
pub fn event_mass(map: &[f32], cols: usize, events: &Range<usize>, visible: impl Fn(usize, usize) -> bool) -> EventMass {
    let mut mass = EventMass::default();
    for (r, row) in map.chunks_exact(cols.max(1)).enumerate() {
        let visible_events = events.clone().filter(|&c| visible(r, c)).count();
        let visible = (0..row.len()).filter(|&c| visible(r, c)).count();
        mass.share += row[events.clone()].iter().map(|&p| p as f64).sum::<f64>();
        mass.uniform_share += if visible == 0 { 0.0 } else { visible_events as f64 / visible as f64 };
        mass.rows += 1;
    }
    mass
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frames_overlap_in_time() {
        // Same length: the video frames themselves.
        assert_eq!(event_frames(3, 2, 20, 20), 3..5);
        // Text of 10 words against 20 video frames: word j spans frames 2j, 2j + 1.
        assert_eq!(event_frames(4, 2, 20, 10), 2..3);
        assert_eq!(event_frames(5, 2, 20, 10), 2..4);
        // Longer stream (an upsampled view) and the clip's end.
        assert_eq!(event_frames(1, 1, 4, 8), 2..4);
        assert_eq!(event_frames(18, 2, 20, 20), 18..20);
        assert_eq!(event_frames(19, 2, 20, 5), 4..5);
    }

    #[test]
    fn all_mass_on_the_event_gives_one_and_uniform_gives_the_uniform_share() {
        let events = 1..3;
        // Two rows of 4 keys, all mass on the event frames.
        let all = |_: usize, _: usize| true;
        let peaked = [0.0, 0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0];
        let m = event_mass(&peaked, 4, &events, all);
        assert_eq!(m.mean_share(), 1.0);
        // The uniform baseline comes from the masks, not from p > 0: the peaked rows see all 4
        // keys, so uniform attention would put 2 of 4 on the event (the old rule said 1 and
        // then 2 of 2 and 1 of 1).
        assert!((m.mean_uniform_share() - 0.5).abs() < 1e-12);
        // Uniform over all 4 keys: 2 of 4 frames are the event.
        let uniform = [0.25f32; 8];
        let m = event_mass(&uniform, 4, &events, all);
        assert!((m.mean_share() - 0.5).abs() < 1e-7);
        assert!((m.mean_uniform_share() - 0.5).abs() < 1e-12);
        // A causal row that sees keys 0..2 only (1 of 2 visible keys is the event), uniform.
        let causal = [0.5, 0.5, 0.0, 0.0];
        let m = event_mass(&causal, 4, &events, |_, c| c < 2);
        assert!((m.mean_share() - 0.5).abs() < 1e-7 && (m.mean_uniform_share() - 0.5).abs() < 1e-12);
        // A row that sees no event frame: uniform share 0, whatever it does.
        let blind = [1.0, 0.0, 0.0, 0.0];
        assert_eq!(event_mass(&blind, 4, &(1..3), |_, c| c < 1).mean_share(), 0.0);
        assert_eq!(event_mass(&blind, 4, &(1..3), |_, c| c < 1).mean_uniform_share(), 0.0);
        let mut total = EventMass::default();
        total.add(event_mass(&peaked, 4, &events, all));
        total.add(event_mass(&uniform, 4, &events, all));
        assert_eq!(total.rows, 4);
        assert!((total.mean_share() - 0.75).abs() < 1e-7);
    }
}
