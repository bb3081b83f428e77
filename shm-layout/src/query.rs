//! Which levels a read returns: the REST API's `limit_count` and `threshold_volume`, with the same
//! semantics, so a local read and an HTTP read of the same book give the same list.
//!
//! 1. `threshold_volume`: walk from the best level keeping a running total of `price × quantity`;
//!    a level is taken while `total + price × quantity <= threshold_volume`, or while the total is
//!    still 0, so the first level is always taken. The walk stops at the first level not taken.
//! 2. `limit_count`: keep at most that many of the levels step 1 took; 0 gives an empty list.
//!
//! Unlike the original, a negative `limit_count` and a NaN `threshold_volume` are errors rather
//! than Python slice or comparison accidents.

use thiserror::Error;

/// The parameters of a read, validated.
///
/// ```
/// use ubdcc_shm::LevelQuery;
/// let top10 = LevelQuery::new(Some(10), None)?;
/// assert!(LevelQuery::new(Some(-1), None).is_err());
/// # Ok::<(), ubdcc_shm::InvalidQuery>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LevelQuery {
    limit_count: Option<usize>,
    threshold_volume: Option<f64>,
}

/// A read's parameters were out of range.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum InvalidQuery {
    /// `limit_count` was negative.
    #[error("limit_count must not be negative, got {0}")]
    NegativeLimit(i64),
    /// `threshold_volume` was NaN.
    #[error("threshold_volume must be a number, got NaN")]
    NanThreshold,
}

impl LevelQuery {
    /// Every level of the side.
    pub const ALL: Self = Self {
        limit_count: None,
        threshold_volume: None,
    };

    /// Validates REST-style parameters; `None` means "not set".
    ///
    /// # Errors
    /// [`InvalidQuery::NegativeLimit`] for a negative `limit_count`, [`InvalidQuery::NanThreshold`]
    /// for a NaN `threshold_volume`.
    pub fn new(
        limit_count: Option<i64>,
        threshold_volume: Option<f64>,
    ) -> Result<Self, InvalidQuery> {
        let limit_count = match limit_count {
            None => None,
            Some(n) if n < 0 => return Err(InvalidQuery::NegativeLimit(n)),
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        if threshold_volume.is_some_and(f64::is_nan) {
            return Err(InvalidQuery::NanThreshold);
        }
        Ok(Self {
            limit_count,
            threshold_volume,
        })
    }

    /// The top `n` levels.
    pub const fn top(n: usize) -> Self {
        Self {
            limit_count: Some(n),
            threshold_volume: None,
        }
    }

    /// The `limit_count`, if set.
    pub const fn limit_count(&self) -> Option<usize> {
        self.limit_count
    }

    /// The `threshold_volume`, if set.
    pub const fn threshold_volume(&self) -> Option<f64> {
        self.threshold_volume
    }

    /// How many of `available` levels the walk may look at.
    #[inline]
    pub(crate) fn max_levels(&self, available: usize) -> usize {
        self.limit_count
            .map_or(available, |limit| limit.min(available))
    }

    /// A fresh threshold walk for one read.
    #[inline]
    pub(crate) fn walk(&self) -> ThresholdWalk {
        ThresholdWalk {
            threshold: self.threshold_volume,
            total: 0.0,
        }
    }
}

/// The running total of step 1 for one read.
pub(crate) struct ThresholdWalk {
    threshold: Option<f64>,
    total: f64,
}

impl ThresholdWalk {
    /// `true` when the level is taken; `false` ends the walk.
    #[inline]
    pub(crate) fn take(&mut self, price: f64, quantity: f64) -> bool {
        let Some(threshold) = self.threshold else {
            return true;
        };
        let notional = price * quantity;
        if self.total == 0.0 || self.total + notional <= threshold {
            self.total += notional;
            return true;
        }
        false
    }
}

/// Applies `query` to an already converted side; the reference the shm read path is tested against.
pub fn select_levels(levels: &[crate::Level], query: &LevelQuery) -> Vec<crate::Level> {
    let mut walk = query.walk();
    levels
        .iter()
        .take(query.max_levels(levels.len()))
        .take_while(|level| walk.take(level.price, level.quantity))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;

    fn levels(pairs: &[(f64, f64)]) -> Vec<Level> {
        pairs
            .iter()
            .map(|&(price, quantity)| Level { price, quantity })
            .collect()
    }

    #[test]
    fn first_level_is_taken_even_when_it_alone_exceeds_the_threshold() {
        let asks = levels(&[(99.9, 3.0), (100.1, 1.0), (100.2, 1.0)]);
        let query = LevelQuery::new(None, Some(350.0)).unwrap();
        assert_eq!(select_levels(&asks, &query), levels(&[(99.9, 3.0)]));
        let query = LevelQuery::new(None, Some(0.0)).unwrap();
        assert_eq!(select_levels(&asks, &query).len(), 1);
        let query = LevelQuery::new(None, Some(1.0)).unwrap();
        assert_eq!(select_levels(&asks, &query).len(), 1);
    }

    #[test]
    fn threshold_takes_levels_while_the_running_total_fits() {
        let asks = levels(&[(10.0, 1.0), (20.0, 1.0), (30.0, 1.0), (1.0, 1.0)]);
        let query = LevelQuery::new(None, Some(30.0)).unwrap();
        assert_eq!(
            select_levels(&asks, &query),
            levels(&[(10.0, 1.0), (20.0, 1.0)])
        );
        // The walk stops at the first level not taken, even if a later one would fit.
        let query = LevelQuery::new(None, Some(59.0)).unwrap();
        assert_eq!(select_levels(&asks, &query).len(), 2);
    }

    #[test]
    fn limit_applies_after_threshold() {
        let asks = levels(&[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]);
        assert_eq!(
            select_levels(&asks, &LevelQuery::new(Some(2), None).unwrap()).len(),
            2
        );
        assert_eq!(
            select_levels(&asks, &LevelQuery::new(Some(10), None).unwrap()).len(),
            3
        );
        assert_eq!(
            select_levels(&asks, &LevelQuery::new(Some(2), Some(1.5)).unwrap()).len(),
            1
        );
        assert_eq!(select_levels(&asks, &LevelQuery::ALL).len(), 3);
    }

    #[test]
    fn limit_zero_is_empty() {
        let asks = levels(&[(1.0, 1.0)]);
        assert!(select_levels(&asks, &LevelQuery::new(Some(0), None).unwrap()).is_empty());
        assert!(select_levels(&asks, &LevelQuery::new(Some(0), Some(100.0)).unwrap()).is_empty());
    }

    #[test]
    fn negative_limit_and_nan_threshold_are_errors() {
        assert_eq!(
            LevelQuery::new(Some(-1), None),
            Err(InvalidQuery::NegativeLimit(-1))
        );
        assert_eq!(
            LevelQuery::new(None, Some(f64::NAN)),
            Err(InvalidQuery::NanThreshold)
        );
    }

    #[test]
    fn empty_side_gives_empty_list() {
        assert!(select_levels(&[], &LevelQuery::new(None, Some(5.0)).unwrap()).is_empty());
    }
}
