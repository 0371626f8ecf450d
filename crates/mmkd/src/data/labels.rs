//! MOSEI's continuous sentiment in [-3, 3] and its 7 classes.

pub use crate::input::NUM_CLASSES;

/// Clip to [-3, 3] and round to the nearest integer (half away from zero, as `np.round` does
/// not: numpy rounds half to even, but MOSEI's labels are multiples of 1/3 so no half occurs),
/// then shift to 0..=6.
pub fn class_of(score: f32) -> usize {
    (score.clamp(-3.0, 3.0).round() as i32 + 3) as usize
}

/// The class's score value (-3..=3).
pub fn score_of(class: usize) -> f32 {
    class as f32 - 3.0
}

/// Class histogram.
pub fn histogram(classes: impl IntoIterator<Item = usize>) -> [usize; NUM_CLASSES] {
    let mut h = [0; NUM_CLASSES];
    for c in classes {
        h[c] += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_clip_and_round() {
        assert_eq!(class_of(-3.7), 0);
        assert_eq!(class_of(-0.4), 3);
        assert_eq!(class_of(0.6667), 4);
        assert_eq!(class_of(2.4), 5);
        assert_eq!(class_of(9.0), 6);
        assert_eq!(score_of(class_of(-1.3333)), -1.0);
        assert_eq!(histogram([0, 3, 3, 6]), [1, 0, 0, 2, 0, 0, 1]);
    }
}
