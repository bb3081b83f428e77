//! Counters behind `GET /sim/stats`: per-venue WebSocket figures (REST figures live in each
//! family's [`WeightLedger`](crate::weight::WeightLedger)).
//!
//! Every counter is a Relaxed atomic: each is read on its own, and no other memory is published
//! through it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters of one WebSocket venue.
#[derive(Debug, Default)]
pub(crate) struct VenueStats {
    connections_opened: AtomicU64,
    connections_open: AtomicU64,
    closed_for_message_rate: AtomicU64,
    closed_for_pong_timeout: AtomicU64,
    closed_for_lifetime: AtomicU64,
    closed_for_slowness: AtomicU64,
    disconnected_by_fault: AtomicU64,
    server_shutdowns_sent: AtomicU64,
    client_messages: AtomicU64,
    control_messages: AtomicU64,
    error_replies: AtomicU64,
    max_messages_per_second: AtomicU64,
    pings_sent: AtomicU64,
    pongs_matched: AtomicU64,
}

/// Why the server ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// More client messages per second than the venue allows.
    MessageRate,
    /// A ping went unanswered past the deadline.
    PongTimeout,
    /// The 24-hour (configured) lifetime ended.
    Lifetime,
    /// The connection fell too far behind the event stream.
    Slowness,
    /// The `disconnect` fault.
    Fault,
    /// The `server_shutdown` fault.
    ServerShutdown,
}

impl VenueStats {
    /// A connection opened; the returned guard counts it as open until dropped and carries the
    /// connection's number on this venue (for logs).
    pub(crate) fn open(&self) -> OpenConnection<'_> {
        let number = self.connections_opened.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            stats: self,
            number,
        }
    }

    /// The server ended a connection for `reason`.
    pub(crate) fn closed(&self, reason: CloseReason) {
        let counter = match reason {
            CloseReason::MessageRate => &self.closed_for_message_rate,
            CloseReason::PongTimeout => &self.closed_for_pong_timeout,
            CloseReason::Lifetime => &self.closed_for_lifetime,
            CloseReason::Slowness => &self.closed_for_slowness,
            CloseReason::Fault => &self.disconnected_by_fault,
            CloseReason::ServerShutdown => &self.server_shutdowns_sent,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A client frame arrived; `in_last_second` is the connection's count over the last second.
    pub(crate) fn client_message(&self, in_last_second: usize) {
        self.client_messages.fetch_add(1, Ordering::Relaxed);
        self.max_messages_per_second
            .fetch_max(in_last_second as u64, Ordering::Relaxed);
    }

    /// A JSON control message (SUBSCRIBE, UNSUBSCRIBE, ...) arrived.
    pub(crate) fn control_message(&self) {
        self.control_messages.fetch_add(1, Ordering::Relaxed);
    }

    /// An error reply was sent.
    pub(crate) fn error_reply(&self) {
        self.error_replies.fetch_add(1, Ordering::Relaxed);
    }

    /// A ping was sent.
    pub(crate) fn ping_sent(&self) {
        self.pings_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A pong echoing an outstanding ping arrived.
    pub(crate) fn pong_matched(&self) {
        self.pongs_matched.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> VenueStatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        VenueStatsSnapshot {
            connections_opened: get(&self.connections_opened),
            connections_open: get(&self.connections_open),
            closed_for_message_rate: get(&self.closed_for_message_rate),
            closed_for_pong_timeout: get(&self.closed_for_pong_timeout),
            closed_for_lifetime: get(&self.closed_for_lifetime),
            closed_for_slowness: get(&self.closed_for_slowness),
            disconnected_by_fault: get(&self.disconnected_by_fault),
            server_shutdowns_sent: get(&self.server_shutdowns_sent),
            client_messages: get(&self.client_messages),
            control_messages: get(&self.control_messages),
            error_replies: get(&self.error_replies),
            max_messages_per_second: get(&self.max_messages_per_second),
            pings_sent: get(&self.pings_sent),
            pongs_matched: get(&self.pongs_matched),
        }
    }
}

/// Counts a connection as open while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection<'a> {
    stats: &'a VenueStats,
    /// 0 for the venue's first connection, then 1, 2, ...
    pub(crate) number: u64,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The WebSocket counters of one venue as `/sim/stats` shows them.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct VenueStatsSnapshot {
    /// Connections accepted so far.
    pub(crate) connections_opened: u64,
    /// Connections open now.
    pub(crate) connections_open: u64,
    /// Closed for exceeding the message rate.
    pub(crate) closed_for_message_rate: u64,
    /// Closed for not answering a ping.
    pub(crate) closed_for_pong_timeout: u64,
    /// Closed at the end of their lifetime.
    pub(crate) closed_for_lifetime: u64,
    /// Closed for falling behind the event stream.
    pub(crate) closed_for_slowness: u64,
    /// Cut by the `disconnect` fault.
    pub(crate) disconnected_by_fault: u64,
    /// Closed after a `serverShutdown` event.
    pub(crate) server_shutdowns_sent: u64,
    /// Client frames received (text, binary, ping, pong).
    pub(crate) client_messages: u64,
    /// JSON control messages received.
    pub(crate) control_messages: u64,
    /// Error replies sent.
    pub(crate) error_replies: u64,
    /// The most client frames any connection sent within one second.
    pub(crate) max_messages_per_second: u64,
    /// Pings sent.
    pub(crate) pings_sent: u64,
    /// Pongs that answered an outstanding ping.
    pub(crate) pongs_matched: u64,
}
