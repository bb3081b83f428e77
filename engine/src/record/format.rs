//! The bytes of a recording: how one record is framed, and how files are named.
//!
//! `docs/recording.md` is the specification; the simulator's reader (`ubdcc-sim`'s
//! `replay::recording`) is a second, independent implementation of it.

use super::{Record, RecordKind};

/// Suffix of every recording file: each one is a sequence of complete zstd frames.
pub(crate) const FILE_SUFFIX: &str = ".ubdcc-rec.zst";

/// Appends `record` to `out` as `len u32 | kind u8 | time u64 | exchange (u8 len) | market
/// (u8 len) | payload`, little-endian; `len` counts every byte after itself.
pub(crate) fn encode(record: &Record, out: &mut Vec<u8>) {
    let exchange = clip(record.exchange.as_bytes());
    let market = clip(record.market.as_bytes());
    let payload = record.payload.as_bytes();
    let len = 1 + 8 + 1 + exchange.len() + 1 + market.len() + payload.len();
    // A frame is at most a few MB (Binance caps WebSocket messages far below 4 GiB).
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.push(record.kind.code());
    out.extend_from_slice(&record.received_ns.to_le_bytes());
    out.push(exchange.len() as u8);
    out.extend_from_slice(exchange);
    out.push(market.len() as u8);
    out.extend_from_slice(market);
    out.extend_from_slice(payload);
}

/// Exchange strings and symbols are short; a longer one is cut rather than corrupt the framing.
fn clip(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(usize::from(u8::MAX))]
}

/// `YYYYMMDDTHH-<unix ms>` + [`FILE_SUFFIX`]: sorted by name is sorted by time, and the hour is
/// readable; the milliseconds tell apart two files of one hour (a rotation by size, a restart).
pub(crate) fn file_name(unix_ms: u64) -> String {
    let (year, month, day, hour) = civil_hour(unix_ms / 1000);
    format!("{year:04}{month:02}{day:02}T{hour:02}-{unix_ms:013}{FILE_SUFFIX}")
}

/// The hour a time falls in, as a number that changes exactly when the file must rotate.
pub(crate) fn hour_of(unix_ms: u64) -> u64 {
    unix_ms / 3_600_000
}

/// UTC year, month, day and hour of a Unix time in seconds (Howard Hinnant's `civil_from_days`;
/// no calendar crate for one file name).
fn civil_hour(unix_s: u64) -> (u64, u64, u64, u64) {
    let days = unix_s / 86_400;
    let hour = unix_s % 86_400 / 3600;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day, hour)
}

impl RecordKind {
    /// The kind's byte in a record.
    pub(crate) const fn code(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_the_utc_hour_and_sort_by_time() {
        // 2026-12-04 23:05:55.123 UTC.
        let ms = 1_796_425_555_123;
        assert_eq!(file_name(ms), "20261204T23-1796425555123.ubdcc-rec.zst");
        assert!(file_name(ms) < file_name(ms + 3_600_000));
        assert_eq!(civil_hour(0), (1970, 1, 1, 0));
        // A leap day.
        assert_eq!(civil_hour(951_782_400), (2000, 2, 29, 0));
    }

    #[test]
    fn a_record_is_framed_by_its_length() {
        let record = Record {
            kind: RecordKind::Marker,
            received_ns: 7,
            exchange: "binance.com",
            market: "BTCUSDT".into(),
            payload: "{}".into(),
        };
        let mut out = Vec::new();
        encode(&record, &mut out);
        let len = u32::from_le_bytes(out[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(out[4], RecordKind::Marker.code());
        assert_eq!(u64::from_le_bytes(out[5..13].try_into().expect("8")), 7);
        assert_eq!(&out[14..25], b"binance.com");
        assert_eq!(&out[out.len() - 2..], b"{}");
    }
}
