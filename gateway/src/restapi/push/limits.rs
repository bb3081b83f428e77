//! The push server's limits, each a bound on what one client, or all of them, can make the
//! server hold. A client over a limit gets an error (or is cut) with the limit in the text.

use std::time::Duration;

/// Push clients (WebSocket and SSE) at once. Each costs a task, an outbox and its socket
/// (~20 KiB); the HTTP server's own connection cap bounds them too. Over it, a new client is
/// refused with HTTP 503.
pub(crate) const MAX_CLIENTS: usize = 8192;

/// Streams one client may hold, as Binance allows one connection (1 024).
pub(crate) const MAX_STREAMS_PER_CLIENT: usize = 1024;

/// Subscriptions across all clients: 1 000 clients × 1 000 streams. Each is a topic entry and
/// up to [`super::outbox::MAX_PENDING_PER_STREAM`] pointers (~200 B), so ~200 MiB at most.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 1_000_000;

/// Distinct streams across all clients. Every topic costs the watcher a look per pass; books
/// must be on this host, so real use is a few per book.
pub(crate) const MAX_TOPICS: usize = 65_536;

/// A client whose oldest unsent message has waited this long is cut (close code 1008 with the
/// reason, or a last SSE event). A client that reads at all drains its outbox far sooner; one
/// that stopped reading would otherwise hold its socket's buffers until the HTTP write timeout.
pub(crate) const CUT_AFTER: Duration = Duration::from_secs(5);

/// The WebSocket writer gives one frame this long to go out before it cuts the client (the same
/// stall seen from the writer's side).
pub(crate) const SEND_TIMEOUT: Duration = CUT_AFTER;

/// Requests (SUBSCRIBE, …) one WebSocket client may send per second; Binance allows 5 and
/// disconnects beyond. Past it the connection is closed with code 1008.
pub(crate) const MAX_REQUESTS_PER_SECOND: u32 = 10;

/// The largest request a client may send: 1 024 stream names of up to 128 bytes, quoted.
pub(crate) const MAX_REQUEST_BYTES: usize = 160 * 1024;
