//! The recorder's thread: gathers records, compresses them into one zstd frame per flush, and
//! appends the frame to the hour's file; rotates and prunes files.
//!
//! A failed write (disk full, EIO) may have left part of its frame in the file: the file is cut
//! back to its last complete frame (or, if even that fails, left for a new file), so a reader
//! never meets a torn frame followed by good ones; the frame's records count as dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use super::format::{self, FILE_SUFFIX};
use super::{FLUSH_INTERVAL, Record, RecordConfig, RecordKind};

/// Gathered bytes that force a flush before the second is over, so a burst does not hold an
/// unbounded buffer (and one frame stays a small unit to decompress).
const FLUSH_BYTES: usize = 8 << 20;

/// Creates `dir` owner-only if it is missing; an existing one must be a directory of this user
/// that nobody else may write to (anyone who can write there could plant files the pruning
/// would count, or swap ours).
///
/// # Errors
/// It cannot be created; it is not a directory; it belongs to another user or is writable by
/// others.
pub(super) fn prepare_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // `symlink_metadata`: a planted symlink is not a directory of ours.
    let metadata = fs::symlink_metadata(dir)?;
    let refuse = |why: &str| Err(io::Error::other(format!("{}: {why}", dir.display())));
    if !metadata.is_dir() {
        return refuse("not a directory");
    }
    if metadata.uid() != rustix::process::geteuid().as_raw() {
        return refuse("belongs to another user");
    }
    if metadata.mode() & 0o022 != 0 {
        return refuse("others may write to it (chmod go-w, or let the recorder create it)");
    }
    Ok(())
}

/// The file being appended to.
struct OpenFile {
    file: File,
    path: PathBuf,
    hour: u64,
    bytes: u64,
}

/// Appends a compressed frame to the file (a seam: tests make it fail half-way).
type Sink = fn(&mut File, &[u8]) -> io::Result<()>;

/// The writer; see the module doc of `record`.
pub(super) struct Writer {
    config: RecordConfig,
    records: Receiver<Record>,
    dropped: Arc<AtomicU64>,
    /// The producers' byte count of the queue; released as records are taken.
    queued_bytes: Arc<AtomicUsize>,
    /// Records gathered since the last flush, framed.
    buffer: Vec<u8>,
    /// How many records `buffer` holds (counted as dropped if its write fails).
    buffered: u64,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    file: Option<OpenFile>,
    /// A write failed and was logged; the next failures are not (until one succeeds).
    failing: bool,
    /// The clock flushes are timed by (a seam: tests drive it).
    now: Box<dyn FnMut() -> Instant + Send>,
    sink: Sink,
}

impl Writer {
    pub(super) fn new(
        config: RecordConfig,
        records: Receiver<Record>,
        dropped: Arc<AtomicU64>,
        queued_bytes: Arc<AtomicUsize>,
    ) -> Self {
        let compressor = zstd::bulk::Compressor::new(config.level)
            .and_then(|mut compressor| {
                // A checksum per frame: a torn or damaged last frame is recognised, not replayed.
                compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
                Ok(compressor)
            })
            .map_err(|error| tracing::error!(%error, "zstd compressor; recording nothing"))
            .ok();
        Self {
            config,
            records,
            dropped,
            queued_bytes,
            buffer: Vec::with_capacity(1 << 20),
            buffered: 0,
            compressor,
            file: None,
            failing: false,
            now: Box::new(Instant::now),
            sink: |file, frame| file.write_all(frame),
        }
    }

    /// Runs until every [`super::Recorder`] is dropped, flushing at least every second.
    pub(super) fn run(mut self) {
        tracing::info!(dir = %self.config.dir.display(), "recording");
        let mut next_flush = (self.now)() + FLUSH_INTERVAL;
        loop {
            let wait = next_flush.saturating_duration_since((self.now)());
            match self.records.recv_timeout(wait) {
                Ok(record) => {
                    self.take(&record);
                    // Checked after every record too: a feed that never pauses never lets
                    // `recv_timeout` time out, and must still be flushed each second.
                    let now = (self.now)();
                    if now >= next_flush {
                        self.flush();
                        next_flush = now + FLUSH_INTERVAL;
                    } else if self.buffer.len() >= FLUSH_BYTES {
                        self.flush();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.flush();
                    next_flush = (self.now)() + FLUSH_INTERVAL;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    tracing::info!(dir = %self.config.dir.display(), "recording ended");
                    return;
                }
            }
        }
    }

    /// Gathers one record taken from the queue, releasing its share of the byte bound.
    fn take(&mut self, record: &Record) {
        let charge = super::charge(record.payload.len());
        self.queued_bytes.fetch_sub(charge, Ordering::Relaxed);
        format::encode(record, &mut self.buffer);
        self.buffered += 1;
    }

    /// Writes what was gathered (and a behind marker for what was dropped) as one frame.
    fn flush(&mut self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "recording fell behind; records dropped");
            let record = Record {
                kind: RecordKind::Behind,
                received_ns: crate::clock::unix_now_ns(),
                exchange: "",
                market: String::new(),
                payload: format!("{{\"dropped\":{dropped}}}").into(),
            };
            format::encode(&record, &mut self.buffer);
        }
        if self.buffer.is_empty() {
            return;
        }
        let result = self.write_frame();
        self.buffer.clear();
        let lost = std::mem::take(&mut self.buffered) + dropped;
        match result {
            Ok(()) => self.failing = false,
            Err(error) => {
                // The frame's records and the count its marker carried: the next behind marker
                // tells of them, so the recording shows the hole.
                self.dropped.fetch_add(lost, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    tracing::error!(dir = %self.config.dir.display(), %error, "recording write failed; dropping records until it works");
                }
            }
        }
    }

    fn write_frame(&mut self) -> io::Result<()> {
        let Some(compressor) = self.compressor.as_mut() else {
            return Ok(());
        };
        let frame = compressor.compress(&self.buffer)?;
        let now_ms = crate::clock::unix_now_ns() / 1_000_000;
        let sink = self.sink;
        let file = self.file_for(now_ms, frame.len() as u64)?;
        // One write per frame: a kill leaves at most this frame torn.
        match sink(&mut file.file, &frame) {
            Ok(()) => {
                file.bytes += frame.len() as u64;
                Ok(())
            }
            Err(error) => {
                if let Err(cut) = cut_back(file) {
                    // The file may end torn: never append after that, start a new one.
                    tracing::warn!(path = %file.path.display(), error = %cut, "cutting a failed write off the recording failed; starting a new file");
                    self.file = None;
                }
                Err(error)
            }
        }
    }

    /// The file to append `len` bytes to at `now_ms`: a new one each hour and whenever the
    /// current one reaches an eighth of the bound.
    fn file_for(&mut self, now_ms: u64, len: u64) -> io::Result<&mut OpenFile> {
        let part = (self.config.max_bytes / 8).max(1);
        let rotate = match &self.file {
            None => true,
            Some(file) => file.hour != format::hour_of(now_ms) || file.bytes + len > part,
        };
        if rotate {
            self.file = None;
            let path = self.config.dir.join(format::file_name(now_ms));
            // `create_new`: never follow a planted symlink or append to someone else's file.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            tracing::debug!(path = %path.display(), "recording file opened");
            self.file = Some(OpenFile {
                file,
                path,
                hour: format::hour_of(now_ms),
                bytes: 0,
            });
            self.prune(len);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("no recording file"))
    }

    /// Deletes the oldest recording files while the directory would hold more than the bound
    /// after `incoming` more bytes; never the current file.
    fn prune(&self, incoming: u64) {
        let current = self.file.as_ref().map(|file| file.path.as_path());
        let mut files = match recording_files(&self.config.dir) {
            Ok(files) => files,
            Err(error) => {
                tracing::warn!(%error, "listing the recording directory failed; not pruning");
                return;
            }
        };
        files.sort();
        let mut total: u64 = files.iter().map(|(_, len)| len).sum::<u64>() + incoming;
        for (path, len) in files {
            if total <= self.config.max_bytes {
                break;
            }
            if Some(path.as_path()) == current {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    total -= len;
                    tracing::info!(path = %path.display(), "oldest recording file dropped (size bound)");
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "dropping a recording file failed")
                }
            }
        }
    }
}

/// Cuts what a failed write left off the end of `file`, back to its last complete frame, and
/// puts the write position there (`set_len` alone would leave it past the end: the next write
/// would leave a hole of zeros).
fn cut_back(file: &mut OpenFile) -> io::Result<()> {
    file.file.set_len(file.bytes)?;
    file.file.seek(SeekFrom::Start(file.bytes))?;
    Ok(())
}

/// The recording files of `dir` with their sizes.
fn recording_files(dir: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(FILE_SUFFIX) {
            continue;
        }
        let metadata = entry.metadata()?;
        if metadata.is_file() {
            files.push((entry.path(), metadata.len()));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::{RecordConfig, RecordKind, Recorder};
    use super::*;
    use crate::exchange::Exchange;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ubdcc-record-{name}-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        dir
    }

    /// Every complete frame of every file, decompressed and concatenated.
    fn read_all(dir: &Path) -> Vec<u8> {
        let mut files = recording_files(dir).expect("list");
        files.sort();
        let mut out = Vec::new();
        for (path, _) in files {
            let bytes = fs::read(path).expect("read");
            out.extend(zstd::decode_all(bytes.as_slice()).expect("complete frames"));
        }
        out
    }

    #[test]
    fn records_reach_a_private_file_when_the_last_handle_goes() {
        let dir = temp_dir("private");
        let (recorder, thread) = Recorder::start(RecordConfig::new(&dir)).expect("start");
        recorder.frame(Exchange::BinanceCom, "{\"stream\":\"x\"}".into());
        recorder.marker(Exchange::BinanceCom, "BTCUSDT", "added", "btcusdt@depth");
        drop(recorder);
        assert!(
            thread.wait(std::time::Duration::from_secs(30)),
            "the writer ends"
        );
        let files: Vec<PathBuf> = recording_files(&dir)
            .expect("list")
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        let mode = fs::metadata(&files[0]).expect("meta").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let dir_mode = fs::metadata(&dir).expect("meta").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&dir_mode) & 0o777,
            0o700
        );
        let bytes = read_all(&dir);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("{\"stream\":\"x\"}"));
        assert!(text.contains("\"event\":\"added\""));
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_directory_others_may_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir("shared");
        prepare_dir(&dir).expect("created");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = prepare_dir(&dir).expect_err("refused");
        assert!(error.to_string().contains("others may write"), "{error}");
        let file = dir.join("plain");
        fs::write(&file, b"x").expect("file");
        assert!(prepare_dir(&file).is_err(), "a file is no directory");
        fs::remove_dir_all(&dir).ok();
    }

    fn marker(market: &str) -> Record {
        Record {
            kind: RecordKind::Marker,
            received_ns: 1,
            exchange: "binance.com",
            market: market.into(),
            payload: "{}".into(),
        }
    }

    /// The complete zstd frames of the recording's files, counted.
    fn frames(dir: &Path) -> usize {
        let mut count = 0;
        for (path, _) in recording_files(dir).expect("list") {
            let bytes = fs::read(path).expect("read");
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let len = zstd::zstd_safe::find_frame_compressed_size(rest).expect("a frame");
                rest = &rest[len..];
                count += 1;
            }
        }
        count
    }

    /// Writes half of the frame, then fails as a full disk does.
    fn torn_write(file: &mut File, frame: &[u8]) -> io::Result<()> {
        file.write_all(&frame[..frame.len() / 2])?;
        Err(io::Error::from_raw_os_error(28))
    }

    #[test]
    fn a_failed_write_is_cut_off_the_file_and_told_by_a_behind_marker() {
        let dir = temp_dir("torn");
        prepare_dir(&dir).expect("dir");
        let (_tx, rx) = std::sync::mpsc::sync_channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut writer = Writer::new(
            RecordConfig::new(&dir),
            rx,
            Arc::clone(&dropped),
            Arc::default(),
        );
        writer.take(&marker("BEFORE"));
        writer.flush();
        writer.sink = torn_write;
        writer.take(&marker("LOST1"));
        writer.take(&marker("LOST2"));
        writer.flush();
        assert_eq!(dropped.load(Ordering::Relaxed), 2, "the lost records count");
        writer.sink = |file, frame| file.write_all(frame);
        writer.take(&marker("AFTER"));
        writer.flush();
        // Every byte of the file is a complete frame: nothing torn is left mid-file.
        let bytes = read_all(&dir);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("BEFORE") && text.contains("AFTER"), "{text}");
        assert!(!text.contains("LOST"), "{text}");
        assert!(text.contains("{\"dropped\":2}"), "a behind marker: {text}");
        assert_eq!(frames(&dir), 2);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_feed_that_never_pauses_is_still_flushed_every_second() {
        let dir = temp_dir("feed");
        prepare_dir(&dir).expect("dir");
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        for n in 0..10 {
            tx.send(marker(&format!("M{n}"))).expect("queued");
        }
        // Every record is there at once: `recv_timeout` never times out.
        drop(tx);
        let mut writer = Writer::new(RecordConfig::new(&dir), rx, Arc::default(), Arc::default());
        // Each clock read is 400 ms later: 10 records span several seconds.
        let base = Instant::now();
        let mut reads = 0;
        writer.now = Box::new(move || {
            reads += 1;
            base + std::time::Duration::from_millis(400 * reads)
        });
        writer.run();
        let text = String::from_utf8_lossy(&read_all(&dir)).into_owned();
        assert!((0..10).all(|n| text.contains(&format!("M{n}"))), "{text}");
        // 20 clock reads after the first: about 8 s, one frame per second (plus the last).
        assert!(frames(&dir) >= 4, "frames: {}", frames(&dir));
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_oldest_files_go_first_beyond_the_bound() {
        let dir = temp_dir("bound");
        prepare_dir(&dir).expect("dir");
        for ms in [1_000u64, 2_000, 3_000] {
            fs::write(dir.join(format::file_name(ms)), vec![0u8; 1000]).expect("write");
        }
        let (_tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut config = RecordConfig::new(&dir);
        config.max_bytes = 2_500;
        let mut writer = Writer::new(config, rx, Arc::default(), Arc::default());
        writer.buffer.extend_from_slice(b"some bytes");
        writer.write_frame().expect("write");
        let mut left: Vec<String> = recording_files(&dir)
            .expect("list")
            .into_iter()
            .map(|(path, _)| {
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        left.sort();
        // The oldest (ms 1000) went; the next one stays as the total is then within the bound.
        assert_eq!(left.len(), 3);
        assert_eq!(left[0], format::file_name(2_000));
        fs::remove_dir_all(&dir).ok();
    }
}
