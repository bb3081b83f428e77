//! Publishing books into the DCN's shared-memory segment.
//!
//! A book is published as the edits since its last publish whenever the slot holds exactly the
//! version the book's journal starts from ([`OrderBook::changes`]): the cost is O(levels
//! changed), an insert or removal at best index `k` moving `min(k, n - k)` levels of the slot's
//! ring (see `ubdcc_shm`'s `ring`). Otherwise — a new or reloaded book, widened exponents, a
//! journal that overflowed, or edits that would cost more than a copy — the whole book is
//! published. Measured (README "Performance", same session, loaded 2-core machine): a 20-level
//! message 4.25 µs → 2.50 µs (`engine/benches/engine_message.rs`), a 2-level one 2.81 µs → 0.82 µs, and a
//! DCN with 1000 books at 10 events/s each 15.5–16.0% → 7.4–7.7% of a core (`dcn_load.py`).

use ubdcc_shm::{
    BookEdits, BookHandle, BookMeta, BookSides, LevelEdit, RawLevel, SegmentWriter, Side, TopHash,
    WriteError,
};

use crate::book::{BookVersion, OrderBook};

/// What a slot holds: the book version last published into it.
#[derive(Debug, Clone, Copy)]
struct Published {
    handle: BookHandle,
    version: BookVersion,
}

/// The DCN's segment writer plus reusable buffers, so a publish allocates nothing.
#[derive(Debug)]
pub struct Publisher {
    writer: SegmentWriter,
    bids: Vec<RawLevel>,
    asks: Vec<RawLevel>,
    bid_edits: Vec<LevelEdit>,
    ask_edits: Vec<LevelEdit>,
    /// Per slot index, the version published into it (with the handle, so a slot's new book
    /// never inherits its predecessor's).
    published: Vec<Option<Published>>,
}

impl Publisher {
    /// Publishes into `writer`'s segment.
    pub fn new(writer: SegmentWriter) -> Self {
        let capacity = writer.levels_per_side() as usize;
        let slots = writer.capacity() as usize;
        Self {
            writer,
            bids: Vec::with_capacity(capacity),
            asks: Vec::with_capacity(capacity),
            bid_edits: Vec::new(),
            ask_edits: Vec::new(),
            published: vec![None; slots],
        }
    }

    /// The segment writer (to add and remove books, and for the heartbeat).
    pub fn writer(&mut self) -> &mut SegmentWriter {
        &mut self.writer
    }

    /// Capacity of each side in the segment.
    pub fn levels_per_side(&self) -> usize {
        self.writer.levels_per_side() as usize
    }

    /// Publishes `book` (its best levels, up to the segment's capacity) with `meta`, in one
    /// seqlock section: as the edits since its last publish when the slot holds that version,
    /// else whole. Marks the book published ([`OrderBook::mark_published`]).
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] when the book was removed from the segment.
    pub fn publish(
        &mut self,
        handle: BookHandle,
        meta: &BookMeta,
        book: &mut OrderBook,
    ) -> Result<(), WriteError> {
        if !self.publish_edits(handle, meta, book)? {
            self.publish_whole(handle, meta, book)?;
        }
        let version = book.mark_published();
        if let Some(slot) = self.published.get_mut(handle.slot() as usize) {
            *slot = Some(Published { handle, version });
        }
        Ok(())
    }

    /// Sets the top hash the book's next publish carries (see
    /// [`SegmentWriter::set_top_hash`]).
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] when the book was removed from the segment.
    pub fn set_top_hash(
        &mut self,
        handle: BookHandle,
        top_hash: TopHash,
    ) -> Result<(), WriteError> {
        self.writer.set_top_hash(handle, top_hash)
    }

    /// Publishes new metadata only (a status change), keeping the levels.
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] when the book was removed from the segment.
    pub fn publish_meta(&mut self, handle: BookHandle, meta: &BookMeta) -> Result<(), WriteError> {
        self.writer.publish_meta(handle, meta)
    }

    /// Publishes the book's journal as edits if the slot holds the version it starts from and
    /// the edits cost less than a whole copy; `false` when a whole publish is needed instead.
    fn publish_edits(
        &mut self,
        handle: BookHandle,
        meta: &BookMeta,
        book: &OrderBook,
    ) -> Result<bool, WriteError> {
        let Some(changes) = book.changes() else {
            return Ok(false);
        };
        let holds_base = self
            .published
            .get(handle.slot() as usize)
            .copied()
            .flatten()
            .is_some_and(|p| p.handle == handle && p.version == changes.since);
        if !holds_base {
            return Ok(false);
        }
        let capacity = self.writer.levels_per_side();
        let (Some(bids_held), Some(asks_held)) = (
            self.writer.published_levels(handle, Side::Bids),
            self.writer.published_levels(handle, Side::Asks),
        ) else {
            return Ok(false);
        };
        let window = |side| book.len(side).min(capacity as usize) as u64;
        let whole_cost = window(Side::Bids) + window(Side::Asks);
        let bids = SideEdits {
            side: Side::Bids,
            held: bids_held,
            capacity,
        };
        let asks = SideEdits {
            held: asks_held,
            side: Side::Asks,
            capacity,
        };
        let (Some(bid_cost), Some(ask_cost)) = (
            bids.translate(changes.bids, book, &mut self.bid_edits),
            asks.translate(changes.asks, book, &mut self.ask_edits),
        ) else {
            return Ok(false);
        };
        if bid_cost + ask_cost > whole_cost {
            return Ok(false);
        }
        let edits = BookEdits {
            bids: &self.bid_edits,
            asks: &self.ask_edits,
        };
        match self.writer.publish_edits(handle, meta, &edits) {
            Ok(()) => Ok(true),
            // The journal and the slot disagree: a bug, but one a whole publish repairs.
            Err(error @ (WriteError::InvalidEdit { .. } | WriteError::NoBaseVersion { .. })) => {
                tracing::warn!(%error, "edits do not fit the published book; publishing it whole");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Publishes the book's best levels, up to the segment's capacity, whole.
    fn publish_whole(
        &mut self,
        handle: BookHandle,
        meta: &BookMeta,
        book: &OrderBook,
    ) -> Result<(), WriteError> {
        let capacity = self.levels_per_side();
        fill_best_first(&mut self.bids, book.worst_first_runs(Side::Bids), capacity);
        fill_best_first(&mut self.asks, book.worst_first_runs(Side::Asks), capacity);
        let sides = BookSides {
            price_exponent: book.price_exponent(),
            quantity_exponent: book.quantity_exponent(),
            bids: &self.bids,
            asks: &self.asks,
        };
        self.writer.publish(handle, meta, &sides)
    }
}

/// Turns a side's journal (indexes in the whole book) into edits of the segment's window of it:
/// the segment holds the best `held` levels of the book (at most `capacity`).
struct SideEdits {
    side: Side,
    held: u32,
    capacity: u32,
}

impl SideEdits {
    /// Fills `out` with the edits, and returns their cost in levels written (the measure a whole
    /// publish is compared by); `None` when the journal does not fit what the segment holds.
    ///
    /// The window stays a prefix of the book through every edit: edits inside it apply, edits
    /// below it do not concern it, an insert inside a full window pushes its worst level out,
    /// and a removal shortens it. Afterwards the levels the window lacks (after removals, when
    /// the book is deeper than it) are appended from the book as it is now.
    fn translate(
        &self,
        journal: &[LevelEdit],
        book: &OrderBook,
        out: &mut Vec<LevelEdit>,
    ) -> Option<u64> {
        out.clear();
        let mut held = self.held;
        let mut cost = 0u64;
        for edit in journal {
            match *edit {
                LevelEdit::Insert { at, .. } if at <= held && at < self.capacity => {
                    cost += u64::from(at.min(held - at)) + 1;
                    held = (held + 1).min(self.capacity);
                }
                LevelEdit::Remove { at } if at < held => {
                    cost += u64::from(at.min(held - 1 - at)) + 1;
                    held -= 1;
                }
                LevelEdit::Replace { at, .. } if at < held => cost += 1,
                LevelEdit::Insert { .. } | LevelEdit::Remove { .. } | LevelEdit::Replace { .. } => {
                    continue;
                }
            }
            out.push(*edit);
        }
        let window = book.len(self.side).min(self.capacity as usize) as u32;
        if held > window {
            return None;
        }
        for at in held..window {
            let level = book.level(self.side, at as usize)?;
            out.push(LevelEdit::Insert { at, level });
            cost += 1;
        }
        Some(cost)
    }
}

/// Copies a side stored worst first into `out` best first, at most `capacity` levels. Two
/// `memcpy`s and one in-place reverse: a level-by-level reversed iterator cost a third of a DCN's
/// time under load (perf).
fn fill_best_first(
    out: &mut Vec<RawLevel>,
    (front, back): (&[RawLevel], &[RawLevel]),
    capacity: usize,
) {
    out.clear();
    // Only the best `capacity` are needed: they are the last ones of the worst-first runs.
    let skip = (front.len() + back.len()).saturating_sub(capacity);
    let (front, back) = if skip <= front.len() {
        (&front[skip..], back)
    } else {
        (&[][..], &back[skip - front.len()..])
    };
    out.extend_from_slice(front);
    out.extend_from_slice(back);
    out.reverse();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ubdcc_shm::{BookStatus, ClusterReader, Decimal, LevelQuery, SegmentConfig};

    /// Both sides as a reader sees them, as integer prices and quantities.
    fn read_back(reader: &mut ClusterReader) -> [Vec<(u64, u64)>; 2] {
        let mut out = Vec::new();
        [Side::Bids, Side::Asks].map(|side| {
            reader
                .read("binance.com", "X", side, &LevelQuery::ALL, &mut out)
                .expect("synced book");
            out.iter()
                .map(|l| (l.price as u64, l.quantity as u64))
                .collect()
        })
    }

    fn expected(book: &OrderBook, capacity: usize) -> [Vec<(u64, u64)>; 2] {
        [Side::Bids, Side::Asks].map(|side| {
            book.best_first(side)
                .take(capacity)
                .map(|l| (l.price, l.quantity))
                .collect()
        })
    }

    proptest! {
        /// Whatever the events, a reader sees the book's best levels after every publish, edits
        /// or whole, also when the book is deeper than the segment holds and gets reloaded.
        #[test]
        fn readers_see_the_book_after_every_publish(
            events in proptest::collection::vec(proptest::collection::vec((any::<bool>(), 1u64..40, 0u64..4), 1..12), 1..40),
            reload_at in 0usize..40,
        ) {
            let cluster = format!("pubprop{}", std::process::id());
            let capacity = 5;
            let writer = SegmentConfig::new(cluster.as_str(), "dcn").books(1).levels_per_side(capacity).create().unwrap();
            let mut publisher = Publisher::new(writer);
            let handle = publisher.writer().add_book("binance.com", "X").unwrap();
            let mut reader = ClusterReader::open(&cluster).unwrap();
            let mut book = OrderBook::new(8);
            let mut edited = 0;
            for (i, event) in events.iter().enumerate() {
                if i == reload_at {
                    book.clear();
                }
                for &(bid, price, quantity) in event {
                    let side = if bid { Side::Bids } else { Side::Asks };
                    let price = if bid { price } else { price + 100 };
                    book.apply(side, Decimal::new(price, 0), Decimal::new(quantity, 0)).unwrap();
                }
                book.trim();
                let meta = BookMeta { status: BookStatus::Synced, last_update_id: i as u64, ..BookMeta::starting() };
                let journaled = book.changes().is_some();
                publisher.publish(handle, &meta, &mut book).unwrap();
                edited += usize::from(journaled);
                prop_assert_eq!(read_back(&mut reader), expected(&book, capacity as usize));
                let bbo = reader.bbo("binance.com", "X").unwrap();
                let [bids, asks] = expected(&book, 1);
                prop_assert_eq!(bbo.bid.map(|l| (l.price as u64, l.quantity as u64)), bids.first().copied());
                prop_assert_eq!(bbo.ask.map(|l| (l.price as u64, l.quantity as u64)), asks.first().copied());
            }
            prop_assert!(edited > 0 || events.len() < 3);
        }
    }

    fn level(price: u64) -> RawLevel {
        RawLevel { price, quantity: 1 }
    }

    #[test]
    fn runs_are_copied_best_first_and_capped() {
        let mut out = Vec::new();
        let (front, back) = ([level(1), level(2)], [level(3), level(4), level(5)]);
        fill_best_first(&mut out, (&front, &back), 10);
        assert_eq!(
            out.iter().map(|l| l.price).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
        fill_best_first(&mut out, (&front, &back), 2);
        assert_eq!(out.iter().map(|l| l.price).collect::<Vec<_>>(), [5, 4]);
        fill_best_first(&mut out, (&front, &back), 4);
        assert_eq!(
            out.iter().map(|l| l.price).collect::<Vec<_>>(),
            [5, 4, 3, 2]
        );
        fill_best_first(&mut out, (&[], &back), 0);
        assert!(out.is_empty());
    }
}
