//! The simulator's own pseudo-random generator (SplitMix64), so that a seed gives the same markets
//! and the same event sequence forever, whatever version of a random-number crate is around.

/// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state word, full period, and good enough
/// statistics for generating order-book noise. Not for anything security related.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    /// The generator state; advanced by the golden-ratio increment on every draw.
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for one stream of a family of streams (e.g. one market of one family),
    /// independent of how many other streams exist: the parts are mixed, not added, so
    /// `(seed, 1, 0)` and `(seed, 0, 1)` give unrelated sequences.
    pub(crate) fn derive(seed: u64, parts: &[u64]) -> Self {
        let mut mixer = Self::new(seed);
        let mut state = mixer.next_u64();
        for &part in parts {
            mixer = Self::new(state ^ part.wrapping_mul(0xA24B_AED4_963E_E407));
            state = mixer.next_u64();
        }
        Self::new(state)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`0` when `bound` is 0). Uses the multiply-shift reduction: its
    /// bias is below 2^-32 for the bounds used here, which is irrelevant for market noise.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A number in `low..=high`.
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// `true` with probability `per_mille / 1000`.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn the_sequence_is_pinned_to_the_reference_splitmix64() {
        // First outputs of the reference implementation for seed 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn derived_streams_differ_by_part_order() {
        let a = SplitMix64::derive(1, &[0, 1]).next_u64();
        let b = SplitMix64::derive(1, &[1, 0]).next_u64();
        assert_ne!(a, b);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64::new(7);
        for bound in [1, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(rng.below(bound) < bound);
            }
        }
        assert_eq!(rng.below(0), 0);
    }
}
