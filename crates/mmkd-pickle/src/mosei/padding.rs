//! Where the all-zero frames of each clip sit. MulT's files carry no lengths: every clip is padded
//! with zero frames to the common length, and nothing in the file says at which end. A frame is
//! "zero" when every feature is exactly 0.0 after the reader's repairs (NaN and ±inf become 0).

use std::io;

use serde::Serialize;

/// The all-zero frames at either end of one clip of `frames` frames. A clip whose every frame is
/// zero has `leading == trailing == frames`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroFrames {
    /// Zero frames before the first frame with a non-zero feature.
    pub leading: usize,
    /// Zero frames after the last frame with a non-zero feature.
    pub trailing: usize,
    /// The clip's padded length `L`.
    pub frames: usize,
}

/// Where a clip's zero frames are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipPadding {
    /// No zero frame at either end.
    None,
    /// Zero frames at the start only.
    Start,
    /// Zero frames at the end only.
    End,
    /// Zero frames at both ends.
    Both,
    /// Every frame is zero.
    Empty,
}

/// The end of the clips a modality is padded at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    /// Zero frames first, real frames last.
    Start,
    /// Real frames first, zero frames last (what MulT's code assumes).
    End,
}

impl std::fmt::Display for PaddingSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PaddingSide::Start => "start",
            PaddingSide::End => "end",
        })
    }
}

impl ZeroFrames {
    /// Where this clip's zero frames are.
    pub fn class(&self) -> ClipPadding {
        match (self.leading, self.trailing) {
            _ if self.leading == self.frames => ClipPadding::Empty,
            (0, 0) => ClipPadding::None,
            (_, 0) => ClipPadding::Start,
            (0, _) => ClipPadding::End,
            _ => ClipPadding::Both,
        }
    }

    /// The real frames when the modality is padded at `side`: zero frames at the other end (and
    /// zero frames inside the clip) are real. An empty clip has none.
    pub fn real_frames(&self, side: PaddingSide) -> usize {
        let padding = match side {
            PaddingSide::Start => self.leading,
            PaddingSide::End => self.trailing,
        };
        self.frames - padding
    }
}

/// How many clips have their zero frames where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PaddingCounts {
    /// Clips with zero frames at the start only.
    pub start: usize,
    /// Clips with zero frames at the end only.
    pub end: usize,
    /// Clips with zero frames at both ends.
    pub both: usize,
    /// Clips without zero frames at either end.
    pub none: usize,
    /// Clips whose every frame is zero.
    pub empty: usize,
}

impl PaddingCounts {
    /// The counts of `clips`.
    pub fn of(clips: &[ZeroFrames]) -> PaddingCounts {
        let mut counts = PaddingCounts::default();
        for clip in clips {
            let slot = match clip.class() {
                ClipPadding::None => &mut counts.none,
                ClipPadding::Start => &mut counts.start,
                ClipPadding::End => &mut counts.end,
                ClipPadding::Both => &mut counts.both,
                ClipPadding::Empty => &mut counts.empty,
            };
            *slot += 1;
        }
        counts
    }

    /// Both counts together (e.g. over the splits of a file).
    pub fn plus(self, other: PaddingCounts) -> PaddingCounts {
        PaddingCounts { start: self.start + other.start, end: self.end + other.end, both: self.both + other.both, none: self.none + other.none, empty: self.empty + other.empty }
    }

    /// `Start` when start-only clips outnumber end-only clips; otherwise `End`, MulT's assumption,
    /// which also breaks ties (a file without any padding keeps today's reading).
    pub fn side(&self) -> PaddingSide {
        if self.start > self.end { PaddingSide::Start } else { PaddingSide::End }
    }
}

/// A sink for an `(N, L, D)` array as little-endian `f32` in C order (what
/// [`crate::ArrayView::write_f32_le`] writes), or as `f32` values ([`ZeroFrameScan::push`]), that
/// finds each clip's [`ZeroFrames`] without keeping the data: a multi-gigabyte array can be scanned
/// as it streams by.
#[derive(Debug, Clone)]
pub struct ZeroFrameScan {
    shape: [usize; 3],
    /// The first bytes of an element split between two writes.
    carry: Vec<u8>,
    /// Elements of the current frame seen so far.
    in_frame: usize,
    /// Whether the current frame has a non-zero element so far.
    frame_real: bool,
    /// Frames of the current clip seen so far.
    in_clip: usize,
    /// The zero frames before the current clip's first real frame, once it has one.
    leading: Option<usize>,
    /// Zero frames since the current clip's last real frame (or its start).
    run: usize,
    clips: Vec<ZeroFrames>,
}

impl ZeroFrameScan {
    /// A scan of an array of shape `(N, L, D)`.
    pub fn new(shape: [usize; 3]) -> ZeroFrameScan {
        ZeroFrameScan { shape, carry: Vec::with_capacity(4), in_frame: 0, frame_real: false, in_clip: 0, leading: None, run: 0, clips: Vec::with_capacity(shape[0]) }
    }

    /// Feeds the next elements, in C order.
    pub fn push(&mut self, values: &[f32]) {
        for &x in values {
            self.element(x);
        }
    }

    /// The clips' zero frames, in order (as many as were completely fed).
    pub fn finish(self) -> Vec<ZeroFrames> {
        let [n, l, d] = self.shape;
        if l * d == 0 {
            // No element arrives, and a frame without features has no non-zero one: all empty.
            return vec![ZeroFrames { leading: l, trailing: l, frames: l }; n];
        }
        self.clips
    }

    fn element(&mut self, x: f32) {
        self.frame_real |= x != 0.0;
        self.in_frame += 1;
        if self.in_frame == self.shape[2] {
            self.end_frame();
        }
    }

    fn end_frame(&mut self) {
        if self.frame_real {
            self.leading.get_or_insert(self.in_clip);
            self.run = 0;
        } else {
            self.run += 1;
        }
        self.in_frame = 0;
        self.frame_real = false;
        self.in_clip += 1;
        if self.in_clip == self.shape[1] {
            let frames = self.shape[1];
            self.clips.push(ZeroFrames { leading: self.leading.unwrap_or(frames), trailing: self.run, frames });
            self.in_clip = 0;
            self.leading = None;
            self.run = 0;
        }
    }
}

impl io::Write for ZeroFrameScan {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        // Element by element up to a frame boundary, then whole frames at once (the hot path).
        while !rest.is_empty() && (!self.carry.is_empty() || self.in_frame != 0) {
            let take = (4 - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if let Ok(bytes) = <[u8; 4]>::try_from(self.carry.as_slice()) {
                self.element(f32::from_le_bytes(bytes));
                self.carry.clear();
            }
        }
        let frame_bytes = 4 * self.shape[2];
        if frame_bytes == 0 {
            return Ok(buf.len());
        }
        let mut frames = rest.chunks_exact(frame_bytes);
        for frame in &mut frames {
            // Exactly 0.0 (either sign) is the only value whose bits without the sign are all zero.
            self.frame_real = frame.chunks_exact(4).any(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff != 0);
            self.end_frame();
        }
        let mut elements = frames.remainder().chunks_exact(4);
        for bytes in &mut elements {
            self.element(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        }
        self.carry.extend_from_slice(elements.remainder());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Clips of 4 frames, 2 features, given as which frames are non-zero.
    fn array(clips: &[[bool; 4]]) -> Vec<f32> {
        clips.iter().flat_map(|c| c.iter().flat_map(|&real| if real { [0.0, 1.5] } else { [-0.0, 0.0] })).collect()
    }

    #[test]
    fn classes_and_real_frames() {
        let clips = [[true, true, true, true], [false, true, true, false], [false, false, true, true], [true, false, true, false], [false, false, false, false]];
        let mut scan = ZeroFrameScan::new([clips.len(), 4, 2]);
        scan.push(&array(&clips));
        let found = scan.finish();
        let classes: Vec<ClipPadding> = found.iter().map(ZeroFrames::class).collect();
        use ClipPadding::*;
        assert_eq!(classes, [None, Both, Start, End, Empty]);
        let ends: Vec<usize> = found.iter().map(|z| z.real_frames(PaddingSide::End)).collect();
        let starts: Vec<usize> = found.iter().map(|z| z.real_frames(PaddingSide::Start)).collect();
        // The interior zero frame of clip 3 is real either way.
        assert_eq!(ends, [4, 3, 4, 3, 0]);
        assert_eq!(starts, [4, 3, 2, 4, 0]);
        let counts = PaddingCounts::of(&found);
        assert_eq!(counts, PaddingCounts { start: 1, end: 1, both: 1, none: 1, empty: 1 });
        assert_eq!(counts.side(), PaddingSide::End, "a tie keeps MulT's end padding");
        let more_start = counts.plus(PaddingCounts { start: 1, ..PaddingCounts::default() });
        assert_eq!(more_start.side(), PaddingSide::Start);
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_clips() {
        let clips = [[false, true, false, true], [true, true, false, false], [false; 4]];
        let values = array(&clips);
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut whole = ZeroFrameScan::new([3, 4, 2]);
        whole.push(&values);
        let want = whole.finish();
        for piece in [1, 3, 5, 7, 13] {
            let mut scan = ZeroFrameScan::new([3, 4, 2]);
            for chunk in bytes.chunks(piece) {
                scan.write_all(chunk).expect("the scan never fails");
            }
            assert_eq!(scan.finish(), want, "pieces of {piece} bytes");
        }
        assert_eq!(want[0], ZeroFrames { leading: 1, trailing: 0, frames: 4 });
        assert_eq!(want[1], ZeroFrames { leading: 0, trailing: 2, frames: 4 });
        assert_eq!(want[2], ZeroFrames { leading: 4, trailing: 4, frames: 4 });
    }

    #[test]
    fn featureless_frames_are_empty_clips() {
        let scan = ZeroFrameScan::new([2, 3, 0]);
        assert_eq!(scan.finish(), vec![ZeroFrames { leading: 3, trailing: 3, frames: 3 }; 2]);
    }
}
