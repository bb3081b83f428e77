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
        self.bids.clear();
        self.bids.extend(book.best_first(Side::Bids).take(capacity));
        self.asks.clear();
        self.asks.extend(book.best_first(Side::Asks).take(capacity));
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
