//! The push server's limits, each a bound on what one client, one peer IP address (all its
//! clients together) or all clients can make the server hold. A client over a limit gets an
//! error (or is cut) with the limit in the text. The server-wide stream budgets
//! ([`MAX_TOPICS`], [`MAX_VIEW_LEVELS`]) are shared first come, first served; each peer address
//! may hold only a quarter of them ([`MAX_STREAMS_PER_IP`], [`MAX_VIEW_LEVELS_PER_IP`]),
//! so one host alone cannot leave every other client "try later".

use std::time::Duration;

/// Push clients (WebSocket and SSE) at once. Each costs a task, an outbox and its socket
/// (~20 KiB); the HTTP server's own connection cap bounds them too. Over it, a new client is
/// refused with HTTP 503.
pub(crate) const MAX_CLIENTS: usize = 8192;

/// Push clients one peer IP address may hold at once, so one host cannot take every slot of
/// [`MAX_CLIENTS`] (the bench runs 1 000 clients from one host). Over it, HTTP 503.
pub(crate) const MAX_CLIENTS_PER_IP: usize = 1024;

/// Streams one client may hold, as Binance allows one connection (1 024). `/sse` refuses a
/// query naming more before it parses any name.
pub(crate) const MAX_STREAMS_PER_CLIENT: usize = 1024;

/// Deep streams (`@bookN` with N > 100, `super::stream::MAX_DEEP_BOOK`) one client may hold:
/// each pins a message of up to ~60 KiB per update in its outbox while unsent, and a client
/// needs one per book it trades.
pub(crate) const MAX_DEEP_STREAMS_PER_CLIENT: usize = 64;

/// Subscriptions across all clients: 1 000 clients × 1 000 streams. Each costs a subscriber
/// entry in its topic, an outbox entry and up to [`super::outbox::MAX_PENDING_PER_STREAM`]
/// queued messages (~300 B of pointers and bookkeeping, ~300 MiB at the limit). The messages
/// are shared with every other subscriber; what a slow client pins of them is bounded by
/// [`MAX_DEEP_STREAMS_PER_CLIENT`] and [`CUT_AFTER`].
pub(crate) const MAX_SUBSCRIPTIONS: usize = 1_000_000;

/// Distinct streams (names) across all clients. Every topic costs the watcher a look per pass;
/// books must be on this host, and what deep topics cost is bounded by [`MAX_VIEW_LEVELS`].
pub(crate) const MAX_TOPICS: usize = 65_536;

/// View levels across all topics: a `@bookN` topic (one per distinct name, conflated or not)
/// holds N levels per side in its view, its diff buffers and its snapshot (~130 B per N, so
/// ~130 KiB for `@book1000`), a `@bbo` topic counts as 1. This bounds the watcher's memory
/// (~128 MiB) and the levels it diffs per pass (at most 2²⁰, however the names vary N and the
/// interval), which [`MAX_TOPICS`] alone does not.
pub(crate) const MAX_VIEW_LEVELS: u64 = 1 << 20;

/// Distinct streams (names) all the push clients of one peer IP address may hold at once: a
/// quarter of [`MAX_TOPICS`], so one host alone cannot take every topic (a name several of its
/// connections hold counts once: the bench, 1 000 clients of one host on the same 100
/// `@bbo` names, holds 100). Over it, SUBSCRIBE (or `/sse`) is refused with the limit in the
/// text.
pub(crate) const MAX_STREAMS_PER_IP: usize = MAX_TOPICS / 4;

/// View levels the distinct streams of one peer IP address's clients may hold at once (N per
/// `@bookN` name, 1 per `@bbo`, each name once): a quarter of [`MAX_VIEW_LEVELS`] (2¹⁸), so one
/// host alone cannot take the server's budget, nor make more than a quarter of the watcher's
/// worst pass. Over it, SUBSCRIBE (or `/sse`) is refused with the limit in the text.
pub(crate) const MAX_VIEW_LEVELS_PER_IP: u64 = MAX_VIEW_LEVELS / 4;

/// View levels of names new to one peer IP address (none of its clients held them) its clients
/// may subscribe to per second: its whole share ([`MAX_VIEW_LEVELS_PER_IP`]) once a second, so
/// churning fresh names (each a new topic, whose first message is a snapshot of its own) makes
/// the watcher serialise at most a quarter of the budget's snapshots a second per address.
/// Over it, SUBSCRIBE (or `/sse`) is refused with the limit in the text; a second later it
/// passes.
pub(crate) const MAX_NEW_VIEW_LEVELS_PER_IP_PER_SECOND: u64 = MAX_VIEW_LEVELS_PER_IP;

/// A client whose oldest unsent message has waited this long is cut (close code 1008 with the
/// reason, or a last SSE event). A client that reads at all drains its outbox far sooner; one
/// that stopped reading would otherwise hold its socket's buffers until the HTTP write timeout.
pub(crate) const CUT_AFTER: Duration = Duration::from_secs(5);

/// The WebSocket writer gives one frame this long to go out before it cuts the client (the same
/// stall seen from the writer's side).
pub(crate) const SEND_TIMEOUT: Duration = CUT_AFTER;

/// The most bytes of messages a client's task takes from its outbox at a time; the rest stays
/// there, where conflation and the cut still apply to it (a slow client never has every
/// pending snapshot copied out at once).
pub(crate) const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// How often the server pings a WebSocket client (SSE: sends a comment), so a vanished peer is
/// noticed and an idle connection keeps its NATs open.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(30);

/// A WebSocket client that sends nothing (not even a pong) for this long is closed: three pings
/// unanswered.
pub(crate) const SILENT_CUT: Duration = Duration::from_secs(90);

/// Requests (SUBSCRIBE, …, and any binary frame) one WebSocket client may send per second;
/// Binance allows 5 and disconnects beyond. Past it the connection is closed with code 1008.
pub(crate) const MAX_REQUESTS_PER_SECOND: u32 = 10;

/// `/sse` requests one peer IP address may make per second: each parses up to
/// [`MAX_STREAMS_PER_CLIENT`] names and checks each book. Past it, HTTP 429.
pub(crate) const MAX_SSE_PER_IP_PER_SECOND: u32 = 20;

/// The largest request a client may send: 1 024 stream names of ~60 bytes, quoted (a longer
/// SUBSCRIBE can be split). It bounds what each connection may park unfinished.
pub(crate) const MAX_REQUEST_BYTES: usize = 64 * 1024;
