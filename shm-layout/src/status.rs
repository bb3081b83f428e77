//! What a book's slot says about it: its sync status and, when out of sync, why.

/// The sync status of a book, as its writer published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookStatus {
    /// Added, not yet synced for the first time: there is no data to serve.
    Starting,
    /// Synced with the exchange: the levels are the exchange's book at `last_update_id`.
    Synced,
    /// Lost sync and resyncing: the levels must not be served.
    OutOfSync(OutOfSyncReason),
}

/// Why a book is out of sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OutOfSyncReason {
    /// No reason recorded (an older writer, or a slot being set up).
    Unspecified = 0,
    /// The diff stream skipped update ids.
    Gap = 1,
    /// The WebSocket connection dropped.
    Disconnected = 2,
    /// No event arrived within the watchdog's window.
    StreamSilent = 3,
    /// The exchange announced `serverShutdown`.
    ServerShutdown = 4,
    /// Downloading or applying the REST snapshot failed.
    SnapshotFailed = 5,
    /// The periodic `refresh_interval` resync.
    Refresh = 6,
    /// A message could not be parsed.
    MalformedMessage = 7,
    /// The writer panicked while publishing; the slot's contents are not trustworthy.
    WriterFault = 8,
    /// The exchange no longer lists the market (REST answered -1121 "Invalid symbol"); checked
    /// again every few minutes, from spare request weight.
    Delisted = 9,
    /// The exchange refused to subscribe the book's stream; the connection and its other books
    /// carry on, and the subscription is tried again later.
    SubscriptionRefused = 10,
    /// The book's buffered events exceeded what its DCN allows all books to hold while they wait
    /// for snapshots; the buffer was dropped and refills until the snapshot asked for arrives.
    BufferOverflow = 11,
    /// The book's best bid reached its best ask (a crossed book): an update was missed or the
    /// exchange changed the book without one. Never served; resynced at once.
    Crossed = 12,
    /// The diff stream's update ids went backwards (an exchange-side reset): the events no
    /// longer follow the book, which is resynced from a new snapshot.
    IdsBackwards = 13,
}

impl OutOfSyncReason {
    /// Short lower-case name, as used in error messages and the REST API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Gap => "gap in update ids",
            Self::Disconnected => "stream disconnected",
            Self::StreamSilent => "stream silent",
            Self::ServerShutdown => "server shutdown",
            Self::SnapshotFailed => "snapshot failed",
            Self::Refresh => "refresh interval",
            Self::MalformedMessage => "malformed message",
            Self::WriterFault => "writer fault",
            Self::Delisted => "market not listed by the exchange",
            Self::SubscriptionRefused => "subscription refused",
            Self::BufferOverflow => "event buffer overflow",
            Self::Crossed => "crossed",
            Self::IdsBackwards => "update ids went backwards",
        }
    }

    const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Gap,
            2 => Self::Disconnected,
            3 => Self::StreamSilent,
            4 => Self::ServerShutdown,
            5 => Self::SnapshotFailed,
            6 => Self::Refresh,
            7 => Self::MalformedMessage,
            8 => Self::WriterFault,
            9 => Self::Delisted,
            10 => Self::SubscriptionRefused,
            11 => Self::BufferOverflow,
            12 => Self::Crossed,
            13 => Self::IdsBackwards,
            // Codes a newer minor version added are still "out of sync", just unnamed here.
            _ => Self::Unspecified,
        }
    }
}

impl std::fmt::Display for OutOfSyncReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status codes in bits 0..8 of the slot's status word.
pub(crate) const STATUS_EMPTY: u8 = 0;
pub(crate) const STATUS_STARTING: u8 = 1;
pub(crate) const STATUS_SYNCED: u8 = 2;
pub(crate) const STATUS_OUT_OF_SYNC: u8 = 3;

/// Bit position of the out-of-sync reason in the status word (the status code is the low byte).
pub(crate) const REASON_SHIFT: u32 = 8;

impl BookStatus {
    /// `true` only for [`BookStatus::Synced`], the one status whose data may be served.
    pub const fn is_synced(self) -> bool {
        matches!(self, Self::Synced)
    }

    /// Short name: `starting`, `synced` or `out_of_sync`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Synced => "synced",
            Self::OutOfSync(_) => "out_of_sync",
        }
    }

    /// The status word stored in a slot.
    pub(crate) const fn to_word(self) -> u64 {
        let (code, reason) = match self {
            Self::Starting => (STATUS_STARTING, 0),
            Self::Synced => (STATUS_SYNCED, 0),
            Self::OutOfSync(reason) => (STATUS_OUT_OF_SYNC, reason as u8),
        };
        code as u64 | (reason as u64) << REASON_SHIFT
    }

    /// Decodes a slot's status word; `None` for an empty slot or an unknown code.
    pub(crate) const fn from_word(word: u64) -> Option<Self> {
        let reason = OutOfSyncReason::from_code((word >> REASON_SHIFT) as u8);
        match word as u8 {
            STATUS_STARTING => Some(Self::Starting),
            STATUS_SYNCED => Some(Self::Synced),
            STATUS_OUT_OF_SYNC => Some(Self::OutOfSync(reason)),
            _ => None,
        }
    }

    /// The numeric code used by the C ABI (1 starting, 2 synced, 3 out of sync).
    pub const fn code(self) -> u8 {
        (self.to_word() & 0xff) as u8
    }

    /// The reason code used by the C ABI (0 unless out of sync).
    pub const fn reason_code(self) -> u8 {
        (self.to_word() >> REASON_SHIFT) as u8
    }
}

impl std::fmt::Display for BookStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfSync(reason) => write!(f, "out of sync ({reason})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A side of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Buy orders, best (highest price) first.
    Bids,
    /// Sell orders, best (lowest price) first.
    Asks,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_round_trip() {
        for status in [
            BookStatus::Starting,
            BookStatus::Synced,
            BookStatus::OutOfSync(OutOfSyncReason::Gap),
            BookStatus::OutOfSync(OutOfSyncReason::WriterFault),
            BookStatus::OutOfSync(OutOfSyncReason::Delisted),
            BookStatus::OutOfSync(OutOfSyncReason::SubscriptionRefused),
            BookStatus::OutOfSync(OutOfSyncReason::BufferOverflow),
            BookStatus::OutOfSync(OutOfSyncReason::Crossed),
            BookStatus::OutOfSync(OutOfSyncReason::IdsBackwards),
        ] {
            assert_eq!(BookStatus::from_word(status.to_word()), Some(status));
        }
        assert_eq!(BookStatus::from_word(u64::from(STATUS_EMPTY)), None);
        assert_eq!(BookStatus::from_word(0xff), None);
    }
}
