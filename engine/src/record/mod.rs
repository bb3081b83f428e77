//! The recorder: raw stream frames with their receive times, the starting books (REST snapshots
//! and peers' copies) and sync markers, appended to zstd-compressed hourly files by a thread of
//! its own, so that any stretch of the market can be replayed (`ubdcc replay`) or exported
//! (`ubdcc export`). The format is specified in `docs/recording.md`.
//!
//! **Never slows the live path.** Producers (a connection's socket reader, the node's loop) hand
//! a [`Record`] to a bounded queue with `try_send`: a frame costs a copy of its bytes (or, for a
//! rare large one, a reference-count increment; see [`COPY_MAX`]), a clock read and the queue's
//! push. The queue is bounded in records ([`QUEUE`]) and in bytes ([`QUEUE_BYTES`]); past either
//! the record is dropped and counted; the writer then writes a [`RecordKind::Behind`] marker with
//! the count, so the recording says where it is incomplete and the books never wait for the disk.
//!
//! **Loses at most the last second.** The writer compresses what it gathered into one complete
//! zstd frame at least every second ([`FLUSH_INTERVAL`], checked after every record, so a
//! continuous feed flushes on time too) and writes it with one `write`; a reader drops a
//! truncated last frame, so a `kill -9` costs at most the second being gathered. A write that
//! fails (disk full, EIO) is cut back off the file, so the file stays a run of complete frames,
//! and its records are counted as dropped (a behind marker tells of them).
//!
//! **Bounded.** A new file starts every UTC hour (and when one file reaches an eighth of the
//! bound, so dropping whole files keeps the total near it); the oldest files are deleted while
//! the directory holds more than [`RecordConfig::max_bytes`].
//!
//! Files: `format` (record framing, file names), `writer` (the thread), this file (the handle).

mod format;
mod writer;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::exchange::Exchange;

/// How often gathered records are compressed and written: the most a crash can lose.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Records waiting for the writer. At 1 000 books × 10 events/s this is ~6 s of frames: room
/// for a slow disk's hiccup, bounded memory (a frame is a few hundred bytes) when it lasts.
const QUEUE: usize = 65_536;

/// Payload bytes the queue may hold (as [`charge`] counts them): a disk stall holds at most this
/// much memory, whatever the frames' sizes.
const QUEUE_BYTES: usize = 64 << 20;

/// Frames up to this size are copied out of the connection's read buffer when queued. A frame
/// tungstenite hands over is a slice of its 128 KiB read buffer ([`PINNED_CHUNK`]): queued as a
/// reference it keeps the whole buffer alive (65 536 of them could pin gigabytes during a disk
/// stall), and tungstenite must allocate a fresh buffer instead of reusing its own. Measured on
/// the dev box (2 cores, release, `bytes` 1.x): reference clone+drop 17 ns at any size; copy+drop
/// 24 ns at 300 B, 62 ns at 2 KB, 595 ns at 16 KB: a few ns for the usual depth frame, and
/// still a bounded, non-blocking cost at the limit. Larger frames (rare) stay references and
/// are charged the buffer they may pin.
const COPY_MAX: usize = 16 << 10;

/// tungstenite's read buffer (`READ_BUF_LEN`): what a frame kept by reference may pin.
const PINNED_CHUNK: usize = 128 << 10;

/// What a payload of `len` bytes counts against [`QUEUE_BYTES`]: its bytes, or for a frame that
/// may be kept by reference the read buffer it may pin. A function of the length alone, so the
/// writer releases exactly what the producer charged.
pub(crate) fn charge(len: usize) -> usize {
    if len <= COPY_MAX {
        len
    } else {
        len.max(PINNED_CHUNK)
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A text frame of a stream connection, exactly as received (exchange set, market empty).
    Frame = 1,
    /// A book's starting book: `{"lastUpdateId","depth","bids","asks"}` (levels best first).
    Snapshot = 2,
    /// A sync marker of a book: `{"event":"added"|"removed"|"out_of_sync", ...}`.
    Marker = 3,
    /// The queue was full: `{"dropped":N}` records since the previous marker are missing.
    Behind = 4,
}

/// One record, before framing.
#[derive(Debug, Clone)]
pub struct Record {
    /// What it holds.
    pub kind: RecordKind,
    /// When it was received (or happened), Unix ns.
    pub received_ns: u64,
    /// The exchange string (`binance.com`); empty for [`RecordKind::Behind`].
    pub exchange: &'static str,
    /// The market symbol; empty for frames (the frame names its stream).
    pub market: String,
    /// The payload (UTF-8 JSON, or the frame's text).
    pub payload: Utf8Bytes,
}

/// Which books of a node its recorder records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordScope {
    /// Every book (`ubdcc dcn --record DIR`).
    #[default]
    All,
    /// Only the books created with `record=true` (`ubdcc dcn --record-books DIR`): their
    /// frames, starting books and markers; other books' frames are left out by the tee.
    Chosen,
}

/// Settings of a recorder.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// The directory (created `0700` if missing; files are `0600`).
    pub dir: PathBuf,
    /// The most the directory's recording files may hold; the oldest go first.
    pub max_bytes: u64,
    /// zstd level (1 is the cheapest; 3 is zstd's default).
    pub level: i32,
}

impl RecordConfig {
    /// Records into `dir`, at most 10 GB, zstd level 3.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 10_000_000_000,
            level: 3,
        }
    }
}

/// A recorder's handle: cheap to clone, never blocks. The writer thread ends when every handle
/// is dropped, after writing what it holds ([`RecorderThread::wait`] waits for that).
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: SyncSender<Record>,
    /// Records dropped because the queue was full (or a write failed), not yet reported by a
    /// marker.
    dropped: Arc<AtomicU64>,
    /// Bytes queued, as [`charge`] counts them; the writer subtracts what it takes.
    queued_bytes: Arc<AtomicUsize>,
}

impl Recorder {
    /// Opens the directory and starts the writer thread; the [`RecorderThread`] tells when it
    /// has written everything and ended.
    ///
    /// # Errors
    /// The directory cannot be created or is not a directory.
    pub fn start(config: RecordConfig) -> std::io::Result<(Self, RecorderThread)> {
        writer::prepare_dir(&config.dir)?;
        let (queue, records) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let writer = writer::Writer::new(
            config,
            records,
            Arc::clone(&dropped),
            Arc::clone(&queued_bytes),
        );
        // Dropped by the thread when it ends: the waiting side sees it disconnect.
        let (ended, done) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("ubdcc-recorder".into())
            .spawn(move || {
                let _ended = ended;
                writer.run();
            })?;
        let recorder = Self {
            queue,
            dropped,
            queued_bytes,
        };
        Ok((recorder, RecorderThread { done }))
    }

    /// Queues `record`; when the queue is full it is dropped and counted (see the module doc).
    pub fn record(&self, record: Record) {
        let charge = charge(record.payload.len());
        // Charged before the push, so the writer never releases more than was charged.
        let before = self.queued_bytes.fetch_add(charge, Ordering::Relaxed);
        let queued = before + charge <= QUEUE_BYTES && self.queue.try_send(record).is_ok();
        if !queued {
            // Over the byte bound, or the queue is full (the writer reports the count) or gone
            // (the writer failed and said so).
            self.queued_bytes.fetch_sub(charge, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a raw stream frame of `exchange` received now. `text` is queued as it is: a slice
    /// of a larger buffer keeps that buffer alive until written (a connection's tee copies small ones).
    pub fn frame(&self, exchange: Exchange, text: Utf8Bytes) {
        self.record(Record {
            kind: RecordKind::Frame,
            received_ns: crate::clock::unix_now_ns(),
            exchange: exchange.as_str(),
            market: String::new(),
            payload: text,
        });
    }

    /// Queues a book's record of `kind` (a snapshot or a marker) with a JSON payload.
    pub fn book(&self, kind: RecordKind, exchange: Exchange, market: &str, payload: String) {
        self.record(Record {
            kind,
            received_ns: crate::clock::unix_now_ns(),
            exchange: exchange.as_str(),
            market: market.to_owned(),
            payload: payload.into(),
        });
    }

    /// Queues a starting book of a market (a REST snapshot or a peer's copy).
    pub fn snapshot(&self, exchange: Exchange, market: &str, snapshot: &crate::Snapshot) {
        let levels = |levels: &[crate::binance::wire::LevelUpdate]| {
            levels
                .iter()
                .map(|level| [level.price.to_string(), level.quantity.to_string()])
                .collect::<Vec<_>>()
        };
        let payload = serde_json::json!({
            "lastUpdateId": snapshot.last_update_id,
            "depth": snapshot.depth,
            "bids": levels(&snapshot.bids),
            "asks": levels(&snapshot.asks),
        });
        self.book(RecordKind::Snapshot, exchange, market, payload.to_string());
    }

    /// Queues a sync marker: `event` (`added`, `removed`, `out_of_sync`) with its details.
    pub fn marker(&self, exchange: Exchange, market: &str, event: &str, detail: &str) {
        let payload = serde_json::json!({"event": event, "detail": detail});
        self.book(RecordKind::Marker, exchange, market, payload.to_string());
    }
}

/// Records that the node forced `exchange`/`market` to resync for `reason` (a disconnect, a
/// malformed frame, a silent stream, a refresh): a reader must restart the book's sync there too,
/// as the stream itself does not show it. Nothing without a recorder.
pub(crate) fn resynced(
    recorder: Option<&Recorder>,
    exchange: Exchange,
    market: &str,
    reason: ubdcc_shm::OutOfSyncReason,
) {
    if let Some(recorder) = recorder {
        recorder.marker(exchange, market, "resync", reason.as_str());
    }
}

/// Reads a recorded starting book (the payload of a [`RecordKind::Snapshot`]) with the parser
/// of REST snapshots; `None` when it does not parse.
pub fn starting_book(payload: &[u8]) -> Option<crate::Snapshot> {
    #[derive(serde::Deserialize)]
    struct Depth {
        depth: u32,
    }
    let Depth { depth } = serde_json::from_slice(payload).ok()?;
    let mut body = payload.to_vec();
    crate::snapshot::parse_snapshot(&mut body, depth).ok()
}

/// The writer thread of a [`Recorder`], for a graceful shutdown to wait for its last frame.
#[derive(Debug)]
pub struct RecorderThread {
    done: std::sync::mpsc::Receiver<()>,
}

impl RecorderThread {
    /// Waits up to `limit` for the thread to end (it ends once every [`Recorder`] handle is
    /// dropped, after writing what it held); `true` if it did.
    pub fn wait(self, limit: std::time::Duration) -> bool {
        matches!(
            self.done.recv_timeout(limit),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        )
    }
}

/// What a connection needs to tee its frames: the recorder, the exchange it carries and, when
/// only some books are recorded ([`RecordScope::Chosen`]), their streams.
#[derive(Debug, Clone)]
pub(crate) struct FrameTee {
    pub(crate) recorder: Recorder,
    pub(crate) exchange: Exchange,
    /// `None`: every frame is recorded. Else only frames of these streams: the connection adds
    /// and removes a recorded book's stream as it subscribes and unsubscribes it.
    pub(crate) streams: Option<HashSet<String>>,
}

impl FrameTee {
    /// A tee of `exchange`'s frames for a recorder of `scope`.
    pub(crate) fn new(recorder: Recorder, exchange: Exchange, scope: RecordScope) -> Self {
        let streams = (scope == RecordScope::Chosen).then(HashSet::new);
        Self {
            recorder,
            exchange,
            streams,
        }
    }

    /// The connection now carries `stream`, of a book recorded or not.
    pub(crate) fn subscribed(&mut self, stream: &str, recorded: bool) {
        if let Some(streams) = &mut self.streams {
            if recorded {
                streams.insert(stream.to_owned());
            } else {
                streams.remove(stream);
            }
        }
    }

    /// The connection no longer carries `stream`.
    pub(crate) fn unsubscribed(&mut self, stream: &str) {
        if let Some(streams) = &mut self.streams {
            streams.remove(stream);
        }
    }

    /// Whether `text` is to be recorded: always when every frame is; else only a frame of a
    /// recorded stream (replies and other messages name no book, and are left out).
    fn wanted(&self, text: &str) -> bool {
        match &self.streams {
            None => true,
            Some(streams) => stream_of(text).is_some_and(|stream| streams.contains(stream)),
        }
    }

    /// Queues one received text frame, if wanted: a copy up to [`COPY_MAX`] bytes (so the queue
    /// does not pin tungstenite's read buffer), a reference beyond.
    pub(crate) fn frame(&self, text: &Utf8Bytes) {
        if !self.wanted(text) {
            return;
        }
        let payload = if text.len() <= COPY_MAX {
            Utf8Bytes::from(text.as_str())
        } else {
            text.clone()
        };
        self.recorder.frame(self.exchange, payload);
    }
}

/// The stream a combined-stream frame names, read from its first bytes without parsing it:
/// Binance (and the simulator) write `{"stream":"<name>",` first, and stream names hold no
/// quote or escape. `None` for any other frame (a reply, an error), which is then not
/// recorded: the frame is parsed once, after the tee, by the connection.
fn stream_of(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(r#"{"stream":""#)?;
    rest.split_once('"').map(|(stream, _)| stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorder whose queue nobody drains (`records` is kept so it stays connected).
    fn stalled() -> (Recorder, std::sync::mpsc::Receiver<Record>) {
        let (queue, records) = sync_channel(QUEUE);
        let recorder = Recorder {
            queue,
            dropped: Arc::default(),
            queued_bytes: Arc::default(),
        };
        (recorder, records)
    }

    #[test]
    fn a_stalled_queue_is_bounded_in_bytes_and_counts_what_it_drops() {
        let (recorder, records) = stalled();
        let big = Utf8Bytes::from("x".repeat(1 << 20));
        for _ in 0..QUEUE_BYTES / (1 << 20) + 3 {
            recorder.frame(Exchange::BinanceCom, big.clone());
        }
        // 64 records of 1 MiB fill the bound, far below the record bound; the rest are counted.
        assert_eq!(records.try_iter().count(), QUEUE_BYTES / (1 << 20));
        assert_eq!(recorder.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(recorder.queued_bytes.load(Ordering::Relaxed), QUEUE_BYTES);
    }

    #[test]
    fn a_small_frame_is_copied_out_of_the_read_buffer_a_large_one_is_not() {
        let (recorder, records) = stalled();
        let tee = FrameTee::new(recorder, Exchange::BinanceCom, RecordScope::All);
        // As tungstenite hands frames over: slices of one larger read buffer.
        let buffer = tokio_tungstenite::tungstenite::Bytes::from("y".repeat(PINNED_CHUNK));
        let inside = |text: &Utf8Bytes| buffer.as_ptr_range().contains(&text.as_ptr());
        let small = Utf8Bytes::try_from(buffer.slice(0..300)).expect("utf-8");
        let large = Utf8Bytes::try_from(buffer.slice(0..COPY_MAX + 1)).expect("utf-8");
        tee.frame(&small);
        tee.frame(&large);
        let queued: Vec<Record> = records.try_iter().collect();
        assert_eq!(queued[0].payload, small);
        assert!(!inside(&queued[0].payload), "a small frame is a copy");
        assert!(inside(&queued[1].payload), "a large frame is shared");
        assert_eq!(
            tee.recorder.queued_bytes.load(Ordering::Relaxed),
            300 + PINNED_CHUNK,
            "the large one is charged the buffer it may pin"
        );
    }

    #[test]
    fn a_tee_of_chosen_books_keeps_only_the_frames_of_their_streams() {
        let (recorder, records) = stalled();
        let mut tee = FrameTee::new(recorder, Exchange::BinanceCom, RecordScope::Chosen);
        tee.subscribed("aaausdt@depth", true);
        tee.subscribed("bbbusdt@depth", false);
        tee.subscribed("cccusdt@depth", true);
        tee.unsubscribed("cccusdt@depth");
        let frame = |stream: &str| {
            Utf8Bytes::from(format!(
                r#"{{"stream":"{stream}","data":{{"e":"depthUpdate"}}}}"#
            ))
        };
        for text in [
            frame("aaausdt@depth"),
            frame("bbbusdt@depth"),
            frame("cccusdt@depth"),
            // A stream name that only starts like a recorded one.
            frame("aaausdt@depth@100ms"),
            Utf8Bytes::from(r#"{"result":null,"id":1}"#),
            Utf8Bytes::from(r#"{"stream":"aaausdt@depth"#),
        ] {
            tee.frame(&text);
        }
        let kept: Vec<String> = records
            .try_iter()
            .map(|record| record.payload.to_string())
            .collect();
        assert_eq!(kept, [frame("aaausdt@depth").to_string()]);
        // Every frame when every book is recorded.
        let (recorder, records) = stalled();
        let all = FrameTee::new(recorder, Exchange::BinanceCom, RecordScope::All);
        all.frame(&frame("bbbusdt@depth"));
        all.frame(&Utf8Bytes::from(r#"{"result":null,"id":1}"#));
        assert_eq!(records.try_iter().count(), 2);
    }
}
