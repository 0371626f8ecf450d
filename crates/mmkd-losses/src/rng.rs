//! A tiny seeded generator for the CRD memory bank (initial values and negative sampling).
//!
//! Why not `rand`: the bank's random state must be saved with a checkpoint and restored so a
//! resumed run draws the same negatives as an uninterrupted one. SplitMix64 keeps its whole
//! state in one `u64`, which makes that trivial and independent of any crate's serialisation
//! format or version; its statistical quality (it passes BigCrush) is far more than uniform
//! index sampling needs. It also keeps this crate's dependency list at `burn` alone.

/// SplitMix64 (Steele, Lea & Flood 2014), the generator Java's `SplittableRandom` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is determined by `seed` alone.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The whole state: `SplitMix64::new(rng.state())` continues the same stream.
    pub(crate) fn state(&self) -> u64 {
        self.state
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` without modulo bias (Lemire 2019, multiply-shift with rejection).
    /// `n` must be positive; callers check that before sampling.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "SplitMix64::below needs a non-empty range");
        let mut product = u128::from(self.next_u64()) * u128::from(n);
        let mut low = product as u64;
        if low < n {
            // Values of `low` below 2^64 mod n would make some outputs one draw more likely.
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                product = u128::from(self.next_u64()) * u128::from(n);
                low = product as u64;
            }
        }
        (product >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 24 random bits (every value exactly representable in f32).
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_stream() {
        // First outputs for seed 1234567 of the reference algorithm (Vigna's splitmix64.c),
        // recomputed independently in Python with 64-bit masking.
        let mut rng = SplitMix64::new(1_234_567);
        let expected: [u64; 3] = [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423];
        for e in expected {
            assert_eq!(rng.next_u64(), e);
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [0usize; 5];
        for _ in 0..5_000 {
            let v = rng.below(5) as usize;
            assert!(v < 5);
            seen[v] += 1;
        }
        // 1000 expected per bucket; 800 is more than 6 standard deviations away.
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut a = SplitMix64::new(99);
        a.next_u64();
        let mut b = SplitMix64::new(a.state());
        assert_eq!(a.next_u64(), b.next_u64());
        let x = a.next_f32();
        assert!((0.0..1.0).contains(&x));
    }
}
