//! Reading a recording (`docs/recording.md`): the files of a directory in name order (which is
//! time order), each a sequence of zstd frames, each frame a run of length-framed records.
//!
//! This reader is the second implementation of the format (the engine's recorder writes it), so
//! a misreading in one shows up as a failing replay or export, not as silently wrong data.
//!
//! A file is read a chunk at a time, frame by frame (memory holds one frame, not the file). A
//! frame that is cut short (a writer killed mid-write, a failed write of an older recorder) or
//! damaged (fails its checksum, garbage) is skipped: the reader looks for the next zstd frame
//! start ([`FRAME_MAGIC`]) after the bad frame's first byte and reads on from there, so one bad
//! frame in the middle of an hour's file costs that frame, not the rest of the file. (Searching
//! from the first byte rather than past the frame's claimed size: a damaged header's size may
//! reach into the good frames after it.)

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Suffix of a recording file.
pub const FILE_SUFFIX: &str = ".ubdcc-rec.zst";

/// Bytes read from a file at a time: a file is read frame by frame, never whole (an hour of
/// 1 000 books is gigabytes).
const READ_CHUNK: usize = 1 << 20;

/// A frame this large is damage, not a second of records (the writer flushes at 8 MB raw).
const MAX_FRAME: usize = 256 << 20;

/// The first four bytes of every zstd frame (0xFD2FB528, little-endian).
pub const FRAME_MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();

/// zstd's `ZSTD_error_srcSize_wrong` as its functions return it (`-72` as a `size_t`): the
/// frame goes on past the bytes given. Any other error of `find_frame_compressed_size` means
/// the bytes are no frame at all, and reading more would not help.
const NEEDS_MORE: usize = 0usize.wrapping_sub(72);

/// What a record holds (the byte after its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A stream connection's text frame, as received; its exchange is set, its market empty.
    Frame,
    /// A book's starting book: `{"lastUpdateId","depth","bids","asks"}`.
    Snapshot,
    /// A book's sync marker: `{"event","detail"}` (`added` with the stream name, `removed`,
    /// `out_of_sync` with the reason).
    Marker,
    /// The recorder's queue was full: `{"dropped":N}` records are missing before this one.
    Behind,
}

impl RecordKind {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Frame,
            2 => Self::Snapshot,
            3 => Self::Marker,
            4 => Self::Behind,
            _ => return None,
        })
    }
}

/// One record of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedItem {
    /// What it holds.
    pub kind: RecordKind,
    /// When it was received, Unix ns.
    pub received_ns: u64,
    /// The exchange string (`binance.com`); empty for [`RecordKind::Behind`].
    pub exchange: String,
    /// The market; empty for frames.
    pub market: String,
    /// The payload (JSON text).
    pub payload: Vec<u8>,
}

/// A recording could not be read.
#[derive(Debug, Error)]
pub enum RecordingError {
    /// The directory or a file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no recording file.
    #[error("{0} holds no recording file (*{FILE_SUFFIX})")]
    Empty(PathBuf),
    /// A complete, checksummed frame holds a record that does not parse: not our format.
    #[error("{path}: malformed record at byte {offset} of a frame")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Offset in the decompressed frame.
        offset: usize,
    },
}

/// Every record of a directory's recording, in order; an iterator.
#[derive(Debug)]
pub struct Recording {
    files: VecDeque<PathBuf>,
    /// The file being read.
    current: Option<FrameFile>,
    items: VecDeque<RecordedItem>,
    /// Frames (or runs of damaged bytes) skipped as torn or damaged.
    torn_frames: u64,
}

impl Recording {
    /// Opens the recording in `dir`.
    ///
    /// # Errors
    /// [`RecordingError::Io`] when the directory cannot be listed, [`RecordingError::Empty`] when
    /// it holds no recording file.
    pub fn open(dir: &Path) -> Result<Self, RecordingError> {
        let io = |source| RecordingError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let is_recording = path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().ends_with(FILE_SUFFIX));
            if is_recording && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(RecordingError::Empty(dir.to_owned()));
        }
        files.sort();
        Ok(Self {
            files: files.into(),
            current: None,
            items: VecDeque::new(),
            torn_frames: 0,
        })
    }

    /// The recording's files, in order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.current
            .iter()
            .map(|file| file.path.as_path())
            .chain(self.files.iter().map(PathBuf::as_path))
    }

    /// Frames dropped so far as torn (cut by a kill) or damaged.
    pub fn torn_frames(&self) -> u64 {
        self.torn_frames
    }

    /// Decodes the next frame into `items`; `Ok(false)` at the end of the recording.
    fn next_frame(&mut self) -> Result<bool, RecordingError> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.pop_front() else {
                    return Ok(false);
                };
                self.current = Some(FrameFile::open(path)?);
            }
            let Some(file) = self.current.as_mut() else {
                continue;
            };
            let next = file.next().map_err(|source| RecordingError::Io {
                path: file.path.clone(),
                source,
            })?;
            match next {
                Next::Frame(frame) => {
                    let path = file.path.clone();
                    parse_records(&frame, &mut self.items)
                        .map_err(|offset| RecordingError::Malformed { path, offset })?;
                    return Ok(true);
                }
                Next::End => self.current = None,
                Next::Torn { offset, bytes } => {
                    // Torn by a kill or a failed write, or damaged: what is before and after
                    // it stands.
                    tracing::warn!(path = %file.path.display(), offset, bytes, "skipping a torn or damaged recording frame");
                    self.torn_frames += 1;
                }
            }
        }
    }
}

/// What a file gives next.
enum Next {
    /// A complete frame, decompressed.
    Frame(Vec<u8>),
    /// The file ends after its last complete frame.
    End,
    /// These bytes from this file offset are no complete frame; they were skipped to the next
    /// frame start (or the end of the file).
    Torn {
        /// Where they start.
        offset: u64,
        /// How many.
        bytes: usize,
    },
}

/// One recording file, read a chunk at a time.
#[derive(Debug)]
struct FrameFile {
    path: PathBuf,
    file: File,
    /// Bytes read and not yet taken, from `start`.
    buffer: Vec<u8>,
    start: usize,
    /// File offset of `buffer[start]` (for the log).
    offset: u64,
    eof: bool,
}

impl FrameFile {
    fn open(path: PathBuf) -> Result<Self, RecordingError> {
        let file = File::open(&path).map_err(|source| RecordingError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            file,
            buffer: Vec::new(),
            start: 0,
            offset: 0,
            eof: false,
        })
    }

    fn next(&mut self) -> io::Result<Next> {
        loop {
            let rest = &self.buffer[self.start..];
            if rest.is_empty() && self.eof {
                return Ok(Next::End);
            }
            match zstd::zstd_safe::find_frame_compressed_size(rest) {
                Ok(len) if len > 0 && len <= rest.len() => {
                    if let Ok(frame) = zstd::decode_all(&rest[..len]) {
                        self.take(len);
                        return Ok(Next::Frame(frame));
                    }
                    // A complete frame that fails its checksum or does not decode: damage.
                    return self.skip_damage();
                }
                Err(NEEDS_MORE) if !self.eof && rest.len() <= MAX_FRAME => self.read_more()?,
                // No frame starts here, a frame is cut short by the end of the file, or it is
                // too large to be one: damage.
                _ => return self.skip_damage(),
            }
        }
    }

    /// Skips from the bad frame at `start` to the next frame start after its first byte (or to
    /// the end of the file).
    fn skip_damage(&mut self) -> io::Result<Next> {
        let offset = self.offset;
        let mut skipped = 1;
        self.take(1);
        loop {
            let rest = &self.buffer[self.start..];
            let found = rest
                .windows(FRAME_MAGIC.len())
                .position(|w| w == FRAME_MAGIC);
            if let Some(at) = found {
                self.take(at);
                return Ok(Next::Torn {
                    offset,
                    bytes: skipped + at,
                });
            }
            // A magic may straddle the end of what is read: keep its first bytes.
            let keep = rest.len().min(FRAME_MAGIC.len() - 1);
            let gone = rest.len() - keep;
            self.take(gone);
            skipped += gone;
            if self.eof {
                let bytes = skipped + keep;
                self.take(keep);
                return Ok(Next::Torn { offset, bytes });
            }
            self.read_more()?;
        }
    }

    /// Moves past `len` bytes of the buffer.
    fn take(&mut self, len: usize) {
        self.start += len;
        self.offset += len as u64;
    }

    /// Reads the next chunk of the file behind what is not yet taken.
    fn read_more(&mut self) -> io::Result<()> {
        self.buffer.drain(..self.start);
        self.start = 0;
        let read = self.buffer.len();
        self.buffer.resize(read + READ_CHUNK, 0);
        let got = self.file.read(&mut self.buffer[read..])?;
        self.buffer.truncate(read + got);
        self.eof = got == 0;
        Ok(())
    }
}

impl Iterator for Recording {
    type Item = Result<RecordedItem, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.items.is_empty() {
            match self.next_frame() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
        self.items.pop_front().map(Ok)
    }
}

/// Parses the records of one decompressed frame; `Err(offset)` at the first malformed one.
fn parse_records(mut frame: &[u8], out: &mut VecDeque<RecordedItem>) -> Result<(), usize> {
    let total = frame.len();
    while !frame.is_empty() {
        let offset = total - frame.len();
        let (item, rest) = parse_record(frame).ok_or(offset)?;
        out.push_back(item);
        frame = rest;
    }
    Ok(())
}

fn parse_record(bytes: &[u8]) -> Option<(RecordedItem, &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let body = bytes.get(4..4 + len)?;
    let rest = &bytes[4 + len..];
    let kind = RecordKind::from_code(*body.first()?)?;
    let received_ns = u64::from_le_bytes(body.get(1..9)?.try_into().ok()?);
    let (exchange, body) = short_string(body.get(9..)?)?;
    let (market, payload) = short_string(body)?;
    let item = RecordedItem {
        kind,
        received_ns,
        exchange,
        market,
        payload: payload.to_vec(),
    };
    Some((item, rest))
}

/// A `u8`-length-prefixed UTF-8 string and what follows it.
fn short_string(bytes: &[u8]) -> Option<(String, &[u8])> {
    let len = usize::from(*bytes.first()?);
    let text = std::str::from_utf8(bytes.get(1..1 + len)?).ok()?;
    Some((text.to_owned(), &bytes[1 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, time: u64, exchange: &str, market: &str, payload: &str) -> Vec<u8> {
        let mut body = vec![kind];
        body.extend_from_slice(&time.to_le_bytes());
        body.push(exchange.len() as u8);
        body.extend_from_slice(exchange.as_bytes());
        body.push(market.len() as u8);
        body.extend_from_slice(market.as_bytes());
        body.extend_from_slice(payload.as_bytes());
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend(body);
        out
    }

    #[test]
    fn a_torn_last_frame_is_dropped_and_the_complete_ones_read() {
        let dir = std::env::temp_dir().join(format!("ubdcc-sim-rec-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        fs::create_dir_all(&dir).expect("dir");
        let first = record(1, 5, "binance.com", "", "{\"a\":1}");
        let second = [
            record(3, 6, "binance.com", "BTCUSDT", "{}"),
            record(4, 7, "", "", "x"),
        ]
        .concat();
        let mut file = zstd::encode_all(first.as_slice(), 3).expect("zstd");
        file.extend(zstd::encode_all(second.as_slice(), 3).expect("zstd"));
        let third = zstd::encode_all(first.as_slice(), 3).expect("zstd");
        file.extend(&third[..third.len() - 3]);
        fs::write(dir.join(format!("a{FILE_SUFFIX}")), file).expect("write");
        let mut recording = Recording::open(&dir).expect("open");
        let items: Vec<RecordedItem> = recording.by_ref().map(|item| item.expect("item")).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].kind, RecordKind::Frame);
        assert_eq!(items[0].payload, b"{\"a\":1}");
        assert_eq!(items[1].market, "BTCUSDT");
        assert_eq!(items[2].kind, RecordKind::Behind);
        assert_eq!(recording.torn_frames(), 1);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn frames_after_a_torn_or_damaged_frame_in_the_middle_are_still_read() {
        let dir = std::env::temp_dir().join(format!("ubdcc-sim-rec-mid-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        fs::create_dir_all(&dir).expect("dir");
        let frame = |n: u64| {
            let records = record(1, n, "binance.com", "", &format!("{{\"n\":{n}}}"));
            let mut encoder = zstd::bulk::Compressor::new(3).expect("zstd");
            encoder
                .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                .expect("checksum");
            encoder.compress(&records).expect("zstd")
        };
        let mut file = frame(1);
        // A torn frame (a failed write of an older recorder), then a good one.
        let torn = frame(2);
        file.extend(&torn[..torn.len() / 2]);
        file.extend(frame(3));
        // Garbage, then a good one.
        file.extend(b"not a zstd frame at all, nor its magic");
        file.extend(frame(4));
        // A complete frame whose checksum fails, then a good one.
        let mut damaged = frame(5);
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        file.extend(damaged);
        file.extend(frame(6));
        fs::write(dir.join(format!("a{FILE_SUFFIX}")), file).expect("write");
        let mut recording = Recording::open(&dir).expect("open");
        let times: Vec<u64> = recording
            .by_ref()
            .map(|item| item.expect("item").received_ns)
            .collect();
        assert_eq!(times, [1, 3, 4, 6]);
        assert_eq!(recording.torn_frames(), 3);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn every_cut_of_a_frame_asks_for_more_not_damage() {
        // A read may end anywhere in a frame, even inside its magic: that must read on.
        let mut encoder = zstd::bulk::Compressor::new(3).expect("zstd");
        encoder
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .expect("checksum");
        let frame = encoder
            .compress(&record(1, 1, "binance.com", "", "{\"a\":1}"))
            .expect("zstd");
        assert_eq!(frame[..4], FRAME_MAGIC);
        for cut in 0..frame.len() {
            let found = zstd::zstd_safe::find_frame_compressed_size(&frame[..cut]);
            assert_eq!(found, Err(NEEDS_MORE), "cut at {cut}");
        }
        let found = zstd::zstd_safe::find_frame_compressed_size(&frame);
        assert_eq!(found, Ok(frame.len()));
    }

    #[test]
    fn frames_larger_than_a_read_are_read_whole() {
        let dir = std::env::temp_dir().join(format!("ubdcc-sim-rec-big-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        fs::create_dir_all(&dir).expect("dir");
        // Incompressible payloads, so the frames span several reads.
        let mut state = 1u64;
        let mut noise = || {
            (0..3 * READ_CHUNK)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    char::from(b'a' + (state >> 59) as u8)
                })
                .collect::<String>()
        };
        let (first, second) = (noise(), noise());
        let mut file = zstd::encode_all(record(1, 1, "x", "", &first).as_slice(), 1).expect("zstd");
        file.extend(zstd::encode_all(record(1, 2, "x", "", &second).as_slice(), 1).expect("zstd"));
        fs::write(dir.join(format!("a{FILE_SUFFIX}")), file).expect("write");
        let items: Vec<RecordedItem> = Recording::open(&dir)
            .expect("open")
            .map(|item| item.expect("item"))
            .collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].payload, second.as_bytes());
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_empty_directory_is_an_error() {
        let dir = std::env::temp_dir().join(format!("ubdcc-sim-rec-empty-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        assert!(matches!(
            Recording::open(&dir),
            Err(RecordingError::Empty(_))
        ));
        fs::remove_dir_all(&dir).ok();
    }
}
