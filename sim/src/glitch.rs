//! Exchange-side glitches: faults that change a market's book or its update ids *without* an
//! event, unlike the delivery faults of `crate::faults`, which never touch the book.
//!
//! Binance's sequence numbers prove only that no event was lost on the wire; a book the exchange
//! changes without saying so (a level altered, levels gone) or an exchange-side reset of the ids
//! is invisible to them. These glitches make those cases testable: the truth (`/sim/truth`,
//! snapshots) follows the glitched book, the stream carries nothing about it, and the events
//! after it continue from the ids as they stand. Only an audit against a snapshot, or an
//! invariant such as "a book is never crossed", can find them.

use serde::Deserialize;

use crate::book::{Book, Side};
use crate::error::SimRequestError;
use crate::generator::Generator;

/// How many ids back `reset_ids` goes when the fault does not say: more than any client keeps of
/// its own past, so a reset can never pass for a duplicate of something already applied.
pub(crate) const DEFAULT_RESET_BEHIND: u64 = 1_000_000;

/// A side of the book, as a glitch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GlitchSide {
    /// The bids.
    Bid,
    /// The asks.
    Ask,
}

impl From<GlitchSide> for Side {
    fn from(side: GlitchSide) -> Side {
        match side {
            GlitchSide::Bid => Side::Bid,
            GlitchSide::Ask => Side::Ask,
        }
    }
}

/// One glitch, applied to a market's book and generator at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Glitch {
    /// The level `level` places from the best of `side` gets one step more quantity; no event
    /// says so and the ids do not move.
    SilentChange {
        /// The side.
        side: GlitchSide,
        /// Best-first index of the level (0 is the best).
        level: usize,
    },
    /// The best `count` levels of `side` vanish; no event says so. The market's next events
    /// trade and quote into the space they left, which crosses a book that still holds them.
    Vanish {
        /// The side.
        side: GlitchSide,
        /// Levels to remove, best first.
        count: usize,
    },
    /// The update ids restart `behind` ids lower (an exchange-side reset); the book stays.
    ResetIds {
        /// How far back.
        behind: u64,
    },
}

/// What a glitch changed, for the fault's reply and the market's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GlitchEffect {
    /// Levels changed (price and new quantity mantissas; 0 removed the level), ids unchanged.
    Levels(Vec<(u64, u64)>),
    /// The ids now continue from this (lower) id.
    Ids(u64),
}

impl Glitch {
    /// Applies the glitch to `book` (the market's live book) and `generator`; `step` is the
    /// market's quantity step, so a changed quantity stays a valid multiple of it.
    ///
    /// # Errors
    /// [`SimRequestError::Invalid`] when the side has no level at `level`, fewer than `count + 2`
    /// levels (a side must keep two: the generator needs a best and a second level), or when
    /// `behind` would take the ids to zero or below.
    pub(crate) fn apply(
        self,
        book: &mut Book,
        generator: &mut Generator,
        step: u64,
    ) -> Result<GlitchEffect, SimRequestError> {
        match self {
            Glitch::SilentChange { side, level } => {
                let Some((price, quantity)) = book.nth_best(side.into(), level) else {
                    return Err(SimRequestError::Invalid(format!(
                        "silent_change: the {side:?} side has no level {level}"
                    )));
                };
                let changed = quantity + step;
                book.set(side.into(), price, changed);
                Ok(GlitchEffect::Levels(vec![(price, changed)]))
            }
            Glitch::Vanish { side, count } => {
                if count == 0 || book.len(side.into()) < count + 2 {
                    return Err(SimRequestError::Invalid(format!(
                        "vanish_levels: count must be 1 to {} levels of the {side:?} side",
                        book.len(side.into()).saturating_sub(2)
                    )));
                }
                let gone = book.top(side.into(), count);
                for &(price, _) in &gone {
                    book.set(side.into(), price, 0);
                }
                Ok(GlitchEffect::Levels(
                    gone.into_iter().map(|(price, _)| (price, 0)).collect(),
                ))
            }
            Glitch::ResetIds { behind } => {
                let last = generator.last_update_id();
                if behind == 0 || behind >= last {
                    return Err(SimRequestError::Invalid(format!(
                        "reset_ids: behind must be 1 to {}, got {behind}",
                        last.saturating_sub(1)
                    )));
                }
                generator.reset_last_update_id(last - behind);
                Ok(GlitchEffect::Ids(last - behind))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::Family;
    use crate::market::MarketSpec;

    fn market() -> (MarketSpec, Generator, Book) {
        let spec = MarketSpec::new(Family::Spot, 0, 1);
        let (generator, book) = Generator::new(&spec, 200, 1);
        (spec, generator, book)
    }

    #[test]
    fn a_silent_change_alters_one_level_by_one_step_and_no_id() {
        let (spec, mut generator, mut book) = market();
        let before = book.clone();
        let id = generator.last_update_id();
        let glitch = Glitch::SilentChange {
            side: GlitchSide::Bid,
            level: 3,
        };
        let effect = glitch.apply(&mut book, &mut generator, spec.step).unwrap();
        let (price, quantity) = before.nth_best(Side::Bid, 3).unwrap();
        assert_eq!(
            effect,
            GlitchEffect::Levels(vec![(price, quantity + spec.step)])
        );
        assert_eq!(
            book.nth_best(Side::Bid, 3),
            Some((price, quantity + spec.step))
        );
        assert_eq!(book.top(Side::Ask, 200), before.top(Side::Ask, 200));
        assert_eq!(generator.last_update_id(), id);
    }

    #[test]
    fn vanished_levels_leave_the_next_events_to_cross_a_stale_copy() {
        let (spec, mut generator, mut book) = market();
        let stale_ask = book.best(Side::Ask).unwrap().0;
        let glitch = Glitch::Vanish {
            side: GlitchSide::Ask,
            count: 3,
        };
        glitch.apply(&mut book, &mut generator, spec.step).unwrap();
        assert!(book.best(Side::Ask).unwrap().0 > stale_ask);
        // Within a few events a bid is quoted at or above the vanished best ask: a book that
        // still holds the vanished asks is crossed.
        let crossed = (0..200).any(|_| {
            generator.next_update(&mut book, 0);
            book.best(Side::Bid).unwrap().0 >= stale_ask
        });
        assert!(crossed, "no event reached the vanished asks' prices");
    }

    #[test]
    fn reset_ids_continue_lower_and_bad_glitches_are_refused() {
        let (spec, mut generator, mut book) = market();
        let id = generator.last_update_id();
        let effect = Glitch::ResetIds { behind: 1000 }
            .apply(&mut book, &mut generator, spec.step)
            .unwrap();
        assert_eq!(effect, GlitchEffect::Ids(id - 1000));
        let update = generator.next_update(&mut book, 0);
        assert_eq!(update.first_update_id, id - 999);
        for bad in [
            Glitch::ResetIds { behind: u64::MAX },
            Glitch::SilentChange {
                side: GlitchSide::Ask,
                level: 10_000,
            },
            Glitch::Vanish {
                side: GlitchSide::Ask,
                count: 10_000,
            },
        ] {
            assert!(
                bad.apply(&mut book, &mut generator, spec.step).is_err(),
                "{bad:?}"
            );
        }
    }
}
