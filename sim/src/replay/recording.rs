//! Reading a recording (`docs/recording.md`): the files of a directory in name order (which is
//! time order), each a sequence of zstd frames, each frame a run of length-framed records.
//!
//! This reader is the second implementation of the format (the engine's recorder writes it), so
//! a misreading in one shows up as a failing replay or export, not as silently wrong data.
//!
//! A file is read a chunk at a time, frame by frame (memory holds one frame, not the file). A
//! frame that is cut short (a writer killed mid-write) or fails its checksum ends its file: what
//! came before it is every complete second; the next file is read as usual.

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
    /// Frames dropped as torn or damaged (one per file at most).
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
                Next::Torn(bytes) => {
                    // Torn by a kill, or damaged: everything before it stands.
                    tracing::warn!(path = %file.path.display(), offset = file.offset, bytes, "dropping a torn recording frame");
                    self.torn_frames += 1;
                    self.current = None;
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
    /// The rest of the file (this many bytes) is no complete frame.
    Torn(usize),
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
            // An incomplete frame is an error or a size beyond what is read: read more.
            let complete = zstd::zstd_safe::find_frame_compressed_size(rest)
                .ok()
                .filter(|&len| len > 0 && len <= rest.len());
            if let Some(len) = complete {
                let decoded = zstd::decode_all(&rest[..len]);
                self.start += len;
                self.offset += len as u64;
                return Ok(match decoded {
                    Ok(frame) => Next::Frame(frame),
                    // A complete frame that fails its checksum: damage.
                    Err(_) => Next::Torn(len),
                });
            }
            if self.eof || rest.len() > MAX_FRAME {
                return Ok(match rest.len() {
                    0 => Next::End,
                    bytes => Next::Torn(bytes),
                });
            }
            self.buffer.drain(..self.start);
            self.start = 0;
            let read = self.buffer.len();
            self.buffer.resize(read + READ_CHUNK, 0);
            let got = self.file.read(&mut self.buffer[read..])?;
            self.buffer.truncate(read + got);
            self.eof = got == 0;
        }
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
