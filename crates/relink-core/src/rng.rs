//! The core's only source of randomness: a seeded SplitMix64 generator.
//!
//! Written here rather than taken from `rand` because the core must produce the
//! same numbers on every target from a seed the driver supplies (the golden
//! vectors depend on it), must not reach for OS entropy (`getrandom`), and
//! needs only a handful of lines. SplitMix64 (Steele, Lea, Flood 2014; the
//! generator `java.util.SplittableRandom` uses) passes BigCrush, has a full
//! 2^64 period, and any seed, including 0, is fine.

/// A deterministic 64-bit PRNG (SplitMix64). Not for cryptography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator that yields the same sequence for the same `seed` on every target.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `[lo, hi]` (inclusive; `lo` when `hi <= lo`).
    ///
    /// Uses Lemire's multiply-shift reduction without the rejection step: the
    /// bias is below 2^-64 relative per value, far beneath anything a backoff
    /// delay can show, and the result stays a pure function of the state.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u128 + 1;
        let r = ((self.next_u64() as u128 * span) >> 64) as u64;
        lo + r
    }

    /// A uniform `f64` in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // First outputs of the reference C implementation for seed 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        assert_eq!(r.next_u64(), 9817491932198370423);
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut r = SplitMix64::new(7);
        for _ in 0..10_000 {
            let v = r.range_inclusive(10, 20);
            assert!((10..=20).contains(&v));
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        assert_eq!(r.range_inclusive(5, 5), 5);
        assert_eq!(r.range_inclusive(9, 3), 9);
        // The full span must not overflow.
        let _ = r.range_inclusive(0, u64::MAX);
    }
}
