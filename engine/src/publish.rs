//! Publishing books into the DCN's shared-memory segment.

use ubdcc_shm::{BookHandle, BookMeta, BookSides, RawLevel, SegmentWriter, Side, WriteError};

use crate::book::OrderBook;

/// The DCN's segment writer plus reusable level buffers, so a publish allocates nothing.
#[derive(Debug)]
pub struct Publisher {
    writer: SegmentWriter,
    bids: Vec<RawLevel>,
    asks: Vec<RawLevel>,
}

impl Publisher {
    /// Publishes into `writer`'s segment.
    pub fn new(writer: SegmentWriter) -> Self {
        let capacity = writer.levels_per_side() as usize;
        Self {
            writer,
            bids: Vec::with_capacity(capacity),
            asks: Vec::with_capacity(capacity),
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
    /// seqlock section.
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] when the book was removed from the segment.
    pub fn publish(
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

    /// Publishes new metadata only (a status change), keeping the levels.
    ///
    /// # Errors
    /// [`WriteError::StaleHandle`] when the book was removed from the segment.
    pub fn publish_meta(&mut self, handle: BookHandle, meta: &BookMeta) -> Result<(), WriteError> {
        self.writer.publish_meta(handle, meta)
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
