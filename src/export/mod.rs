//! `ubdcc export DIR --top N`: rebuilds every recorded book and writes its top N levels at every
//! update id it was synced at.
//!
//! The books are rebuilt by the engine's own [`DepthCache`] — the sync rules and the order book
//! the recorded node ran — fed the recorded starting books and frames in order, so the export is
//! the recording's own book (a gap the node met is a gap here, until the recorded starting book
//! that resynced it). The caches publish into a private scratch segment of this process (removed
//! when it ends), as a node's do; nothing reads it.
//!
//! CSV, one row per book and update id: `exchange,market,update_id,received_ns`, then
//! `bid_price_1,bid_qty_1,…,bid_price_N,bid_qty_N,ask_price_1,…` (best first; empty cells where
//! a side has fewer levels), in the exchange's decimal strings.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
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
    if args.format == ExportFormat::Parquet {
        bail!("parquet export is not built yet (docs/recording.md says why); use --format csv");
    }
    let recording = Recording::open(&args.dir)?;
    let out: Box<dyn Write> = match &args.out {
        Some(path) => {
            Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut exporter = Exporter::new(args.top as usize, BufWriter::new(out))?;
    exporter.write_header()?;
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
    exporter.out.flush().context("writing the export")?;
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

/// The export's state.
struct Exporter<W: Write> {
    top: usize,
    out: W,
    publisher: Publisher,
    books: HashMap<(Exchange, String), Rebuilt>,
    rows: u64,
    /// Frames that are no depth event (replies, malformed frames).
    unreadable: u64,
    /// Reused per frame (the wire parser works in place).
    buffer: Vec<u8>,
    line: String,
}

impl<W: Write> Exporter<W> {
    fn new(top: usize, out: W) -> anyhow::Result<Self> {
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
            line: String::new(),
        })
    }

    fn write_header(&mut self) -> anyhow::Result<()> {
        let mut header = String::from("exchange,market,update_id,received_ns");
        for side in ["bid", "ask"] {
            for level in 1..=self.top {
                header.push_str(&format!(",{side}_price_{level},{side}_qty_{level}"));
            }
        }
        writeln!(self.out, "{header}").context("writing the export")
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
        write_row(
            &mut self.out,
            &mut self.line,
            self.top,
            &row,
            side(Side::Bids),
            side(Side::Asks),
        )?;
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
        write_row(
            &mut self.out,
            &mut self.line,
            self.top,
            &row,
            bids.into_iter(),
            asks.into_iter(),
        )?;
        self.rows += 1;
        Ok(())
    }
}

/// What starts a row.
struct Row<'a> {
    exchange: Exchange,
    market: &'a str,
    update_id: u64,
    received_ns: u64,
}

/// Writes one CSV row: the best `top` levels of each side, empty cells where a side has fewer.
fn write_row(
    out: &mut impl Write,
    line: &mut String,
    top: usize,
    row: &Row<'_>,
    bids: impl Iterator<Item = (Decimal, Decimal)>,
    asks: impl Iterator<Item = (Decimal, Decimal)>,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    line.clear();
    let Row {
        exchange,
        market,
        update_id,
        received_ns,
    } = row;
    // Writing into a String cannot fail.
    write!(line, "{exchange},{market},{update_id},{received_ns}").ok();
    push_side(line, top, bids);
    push_side(line, top, asks);
    writeln!(out, "{line}").context("writing the export")
}

/// Appends a side's best `top` levels to a row, `,,` for each missing one.
fn push_side(line: &mut String, top: usize, levels: impl Iterator<Item = (Decimal, Decimal)>) {
    use std::fmt::Write as _;
    let mut levels = levels.take(top);
    for _ in 0..top {
        // Writing into a String cannot fail.
        match levels.next() {
            Some((price, quantity)) => write!(line, ",{price},{quantity}").ok(),
            None => write!(line, ",,").ok(),
        };
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
