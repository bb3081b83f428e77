//! `ubdcc export DIR --top N`: rebuilds every recorded book and writes its top N levels at every
//! update id it was synced at.
//!
//! The books are rebuilt by the engine's own [`DepthCache`] — the sync rules and the order book
//! the recorded node ran — fed the recorded starting books and frames in order, so the export is
//! the recording's own book (a gap the node met is a gap here, until the recorded starting book
//! that resynced it). The caches publish into a private scratch segment of this process (removed
//! when it ends), as a node's do; nothing reads it.
//!
//! One row per book and update id: `exchange,market,update_id,received_ns`, then
//! `bid_price_1,bid_qty_1,…,bid_price_N,bid_qty_N,ask_price_1,…` (best first; empty where a side
//! has fewer levels), in the exchange's decimal strings — as CSV (`csv`) or as a Parquet file with
//! the same columns (`parquet`).
//!
//! The output file (`--out`) is created `0600` under a temporary name and renamed into place
//! once complete (`output`): never world-readable, never written through a symlink or over a
//! device (an existing name that is no regular file is refused), and a failed export leaves what
//! was there.
//!
//! Files: this one (rebuilding the books), `csv` and `parquet` (the two [`Rows`] sinks),
//! `output` (the output file).

mod csv;
mod output;
mod parquet;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ubdcc_engine::binance::wire::{DiffUpdate, LevelUpdate, StreamMessage};
use ubdcc_engine::{DepthCache, Exchange, Publisher, SNAPSHOT_LIMIT, Snapshot, starting_book};
use ubdcc_shm::{Decimal, OutOfSyncReason, SegmentConfig, Side};
use ubdcc_sim::replay::recording::{RecordKind, RecordedItem, Recording};

use crate::cli::{ExportArgs, ExportFormat};

/// Books the scratch segment holds (a DCN holds at most 1 024 by default).
const MAX_BOOKS: u32 = 8192;

/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs the export.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let recording = Recording::open(&args.dir)?;
    let top = args.top as usize;
    if args.format == ExportFormat::Parquet && args.out.is_none() {
        bail!("--format parquet needs --out FILE");
    }
    let (output, file) = match &args.out {
        Some(path) => {
            let (output, file) = output::OutputFile::create(path)?;
            (Some(output), Some(file))
        }
        None => (None, None),
    };
    let rows: Box<dyn Rows> = match (args.format, file) {
        (ExportFormat::Parquet, Some(file)) => Box::new(parquet::ParquetRows::create(file, top)?),
        (_, file) => Box::new(csv::CsvRows::create(file, top)?),
    };
    let mut exporter = Exporter::new(top, rows)?;
    let mut progress = Instant::now();
    let mut records = 0u64;
    for item in recording {
        let item = item?;
        exporter.on_item(&item)?;
        records += 1;
        if progress.elapsed() >= PROGRESS_EVERY {
            progress = Instant::now();
            tracing::info!(
                records,
                rows = exporter.rows,
                books = exporter.books.len(),
                "exporting"
            );
        }
    }
    exporter.out.finish().context("writing the export")?;
    if let Some(output) = output {
        output.commit()?;
    }
    tracing::info!(
        records,
        rows = exporter.rows,
        books = exporter.books.len(),
        unreadable = exporter.unreadable,
        "export done"
    );
    Ok(())
}

/// One rebuilt book.
struct Rebuilt {
    cache: DepthCache,
    /// The update id of the last row written.
    written: u64,
}

/// Where the rows go.
trait Rows {
    /// Writes one row: `row`, then the best levels of each side (at most the export's `top`).
    ///
    /// # Errors
    /// The output cannot be written.
    fn write(
        &mut self,
        row: &Row<'_>,
        bids: &mut dyn Iterator<Item = (Decimal, Decimal)>,
        asks: &mut dyn Iterator<Item = (Decimal, Decimal)>,
    ) -> anyhow::Result<()>;

    /// Writes what is buffered and completes the output.
    ///
    /// # Errors
    /// The output cannot be written.
    fn finish(&mut self) -> anyhow::Result<()>;
}

/// What starts a row.
struct Row<'a> {
    exchange: Exchange,
    market: &'a str,
    update_id: u64,
    received_ns: u64,
}

/// The export's state.
struct Exporter {
    top: usize,
    out: Box<dyn Rows>,
    publisher: Publisher,
    books: HashMap<(Exchange, String), Rebuilt>,
    rows: u64,
    /// Frames that are no depth event (replies, malformed frames).
    unreadable: u64,
    /// Reused per frame (the wire parser works in place).
    buffer: Vec<u8>,
}

impl Exporter {
    fn new(top: usize, out: Box<dyn Rows>) -> anyhow::Result<Self> {
        let cluster = format!("export{}", std::process::id());
        let writer = SegmentConfig::new(&cluster, "books")
            .books(MAX_BOOKS)
            .levels_per_side(top as u32)
            .create()
            .context("creating the export's scratch segment")?;
        Ok(Self {
            top,
            out,
            publisher: Publisher::new(writer),
            books: HashMap::new(),
            rows: 0,
            unreadable: 0,
            buffer: Vec::new(),
        })
    }

    fn on_item(&mut self, item: &RecordedItem) -> anyhow::Result<()> {
        match item.kind {
            RecordKind::Frame => self.on_frame(item),
            RecordKind::Snapshot => self.on_snapshot(item),
            RecordKind::Marker => self.on_marker(item),
            RecordKind::Behind => Ok(()),
        }
    }

    fn on_frame(&mut self, item: &RecordedItem) -> anyhow::Result<()> {
        let exchange: Exchange = item.exchange.parse().context("a recorded exchange")?;
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        buffer.extend_from_slice(&item.payload);
        let parsed = match StreamMessage::parse(&mut buffer) {
            Ok(StreamMessage::Depth { update, .. }) => {
                let market = update.symbol.to_owned();
                DiffUpdate::try_from(update).ok().map(|diff| (market, diff))
            }
            _ => None,
        };
        self.buffer = buffer;
        let Some((market, diff)) = parsed else {
            self.unreadable += 1;
            return Ok(());
        };
        let book = rebuilt(&mut self.books, &mut self.publisher, exchange, &market)?;
        book.cache
            .on_update(diff, item.received_ns, &mut self.publisher)
            .with_context(|| format!("rebuilding {exchange} {market}"))?;
        self.write_if_new(exchange, &market, item.received_ns)
    }

    /// A resync the node forced (a disconnect, a malformed frame, a silent stream, a refresh)
    /// restarts the book's sync here too: the stream alone does not show it. Other markers are
    /// what the sync rules find again by themselves.
    fn on_marker(&mut self, item: &RecordedItem) -> anyhow::Result<()> {
        #[derive(serde::Deserialize)]
        struct Marker {
            event: String,
        }
        let forced = serde_json::from_slice::<Marker>(&item.payload)
            .is_ok_and(|marker| marker.event == "resync");
        let Ok(exchange) = item.exchange.parse::<Exchange>() else {
            return Ok(());
        };
        let Some(book) = self.books.get_mut(&(exchange, item.market.clone())) else {
            return Ok(());
        };
        if forced {
            // The reason only labels the scratch segment's status, which nobody reads.
            book.cache
                .resync(OutOfSyncReason::Unspecified, &mut self.publisher)
                .with_context(|| format!("rebuilding {exchange} {}", item.market))?;
        }
        Ok(())
    }

    fn on_snapshot(&mut self, item: &RecordedItem) -> anyhow::Result<()> {
        let exchange: Exchange = item.exchange.parse().context("a recorded exchange")?;
        let Some(snapshot) = starting_book(&item.payload) else {
            tracing::warn!(%exchange, market = %item.market, "a recorded starting book does not parse; skipped");
            return Ok(());
        };
        let book = rebuilt(&mut self.books, &mut self.publisher, exchange, &item.market)?;
        book.cache
            .on_starting_book(&snapshot, item.received_ns, &mut self.publisher)
            .with_context(|| format!("rebuilding {exchange} {}", item.market))?;
        self.write_starting_row(exchange, &item.market, &snapshot, item.received_ns)?;
        self.write_if_new(exchange, &item.market, item.received_ns)
    }

    /// Writes the book's row if it is synced at an update id not written yet.
    fn write_if_new(
        &mut self,
        exchange: Exchange,
        market: &str,
        received_ns: u64,
    ) -> anyhow::Result<()> {
        let Some(book) = self.books.get_mut(&(exchange, market.to_owned())) else {
            return Ok(());
        };
        let meta = book.cache.meta();
        if !meta.status.is_synced() || meta.last_update_id == book.written {
            return Ok(());
        }
        book.written = meta.last_update_id;
        let order_book = book.cache.book();
        let exponents = (order_book.price_exponent(), order_book.quantity_exponent());
        let side = |side| {
            order_book.best_first(side).map(move |level| {
                (
                    Decimal::new(level.price, exponents.0),
                    Decimal::new(level.quantity, exponents.1),
                )
            })
        };
        let row = Row {
            exchange,
            market,
            update_id: meta.last_update_id,
            received_ns,
        };
        let (mut bids, mut asks) = (
            side(Side::Bids).take(self.top),
            side(Side::Asks).take(self.top),
        );
        self.out.write(&row, &mut bids, &mut asks)?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the row of a starting book the cache accepted but went past at once (events it
    /// had buffered follow it): the book at the starting book's own update id is the starting
    /// book, and a client synced from it (a replay's REST answer) holds exactly that.
    fn write_starting_row(
        &mut self,
        exchange: Exchange,
        market: &str,
        snapshot: &Snapshot,
        received_ns: u64,
    ) -> anyhow::Result<()> {
        let Some(book) = self.books.get_mut(&(exchange, market.to_owned())) else {
            return Ok(());
        };
        let meta = book.cache.meta();
        let past = meta.status.is_synced() && meta.last_update_id > snapshot.last_update_id;
        if !past || book.written == snapshot.last_update_id {
            return Ok(());
        }
        let levels = |levels: &[LevelUpdate]| {
            levels
                .iter()
                .map(|level| (level.price, level.quantity))
                .collect::<Vec<_>>()
        };
        let row = Row {
            exchange,
            market,
            update_id: snapshot.last_update_id,
            received_ns,
        };
        let (bids, asks) = (levels(&snapshot.bids), levels(&snapshot.asks));
        self.out
            .write(&row, &mut bids.into_iter(), &mut asks.into_iter())?;
        self.rows += 1;
        Ok(())
    }
}

/// The book of `exchange`/`market`, created (buffering, waiting for a starting book) on first
/// sight.
fn rebuilt<'a>(
    books: &'a mut HashMap<(Exchange, String), Rebuilt>,
    publisher: &mut Publisher,
    exchange: Exchange,
    market: &str,
) -> anyhow::Result<&'a mut Rebuilt> {
    match books.entry((exchange, market.to_owned())) {
        std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
        std::collections::hash_map::Entry::Vacant(entry) => {
            let cache = DepthCache::new(exchange, market, SNAPSHOT_LIMIT as usize, publisher)
                .with_context(|| format!("rebuilding {exchange} {market}"))?;
            Ok(entry.insert(Rebuilt { cache, written: 0 }))
        }
    }
}
