//! The DepthCache node's data plane: every book of one process, their stream connections and
//! their snapshots, driven by one loop on one thread.
//!
//! The loop owns the shared-memory [`Publisher`] and every [`DepthCache`]; connections and the
//! snapshot scheduler are tasks that talk to it over channels, so no book is ever touched from two
//! places. The heartbeat is stamped by this same loop, so a stuck loop is a silent heartbeat and
//! readers stop trusting its books.
//!
//! Files: `config` (settings, book specs), `handle` (the [`NodeHandle`], commands, errors),
//! `timers` (retries, silence checks, refreshes, delisted markets), `audits` (when books are
//! audited, issue 16), this file (the loop and its
//! event handlers, one method per `select!` arm).
//!
//! The loop also watches its tasks: should the scheduler or a connection that still carries books
//! end or panic, [`Node::run`] stops with [`NodeError::TaskEnded`] (and the DCN process exits
//! non-zero, to be restarted) rather than keep books that can never resync.

mod audits;
mod config;
mod handle;
mod seeding;
mod timers;

pub use config::{BookSpec, NodeConfig};
pub use handle::{BookReport, NodeCommand, NodeError, NodeHandle};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, interval, sleep_until};
use ubdcc_shm::{BookStatus, HEARTBEAT_INTERVAL, OutOfSyncReason, SegmentConfig};

use crate::binance::wire::DiffUpdate;
use crate::buffer_budget::BufferBudget;
use crate::connection::{ConnectionCommand, ConnectionConfig, StreamConnection, StreamEvent};
use crate::deepening::SHADOW_BYTES_PER_NODE;
use crate::depth_cache::{BufferLimits, DepthCache, DepthCacheError, NextStep};
use crate::exchange::{Exchange, is_valid_symbol};
use crate::peer_seed::Seeder;
use crate::publish::Publisher;
use crate::snapshot::{
    ApiKeys, BookId, SNAPSHOT_LIMIT, SnapshotConfig, SnapshotKind, SnapshotOutcome,
    SnapshotRequest, SnapshotScheduler, WeightShare,
};

/// First wait before asking again for a snapshot that failed or was too old; doubles up to
/// [`MAX_SNAPSHOT_RETRY`]. Options snapshots lag by up to ~30 s, so retries must not be eager.
const FIRST_SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
const MAX_SNAPSHOT_RETRY: Duration = Duration::from_secs(30);

/// Longest silence threshold of a quiet book: its verification costs one snapshot per hour.
const MAX_BOOK_SILENCE: Duration = Duration::from_secs(3600);

/// Wait before asking again for a market the exchange answered -1121 (not listed) for: a
/// delisting is not undone in seconds, and each ask costs weight (from spare budget only).
const DELISTED_RETRY: Duration = Duration::from_secs(300);

/// Stream events in flight from the connections to the loop. The channel is bounded: a full one
/// makes the connections wait (they stop reading their sockets), so a loop that falls behind
/// slows the exchange's sends instead of growing memory; a connection kept waiting too long is
/// cut by the exchange and its books resync as disconnected. The other channels stay unbounded
/// because their producer must never wait: the loop sends snapshot requests and connection
/// commands (at most a few per book and event it handles; waiting on a task that waits on the
/// loop would deadlock), and every node command's sender awaits its reply (one per caller).
///
/// Small on purpose: an event waits here after its receive time is taken, behind every event
/// queued before it. Binance's `@100ms` ticks reach a DCN as bursts (1 000 books: ~1 000 events
/// at once); with 4 096 in flight the connections parsed a whole burst before the loop applied
/// any of it, and an event waited for the burst (receive → publish p99 9.5 ms at 1 000 books,
/// `benches/dcn_load.py`). With 16, a connection parses at most 16 events ahead of the loop
/// (~0.1 ms of apply and publish) and the rest of a burst waits unread in the socket, whose
/// kernel buffer holds it for free (with the connections' 4 KiB reads: p99 1.5 ms).
const STREAM_EVENTS_IN_FLIGHT: usize = 16;

/// Stream events the loop handles per wake-up before it looks at its other inputs again, so a
/// burst is not one pass through the loop's `select!` (nine arms polled) per event.
const STREAM_EVENTS_PER_PASS: usize = STREAM_EVENTS_IN_FLIGHT;

/// One book and what the loop knows about it.
struct Entry {
    cache: DepthCache,
    spec: BookSpec,
    connection: usize,
    /// When the book last became synced (for `refresh_interval`).
    synced_since: Option<Instant>,
    /// Wait before the next snapshot retry.
    retry_delay: Duration,
    /// When the book's stream last brought an event (or the book last proved current).
    last_event: Instant,
    /// Silence after which the book is verified against a snapshot; doubles for quiet markets.
    silence_threshold: Duration,
    /// A verification snapshot is on its way.
    verifying: bool,
    /// The book's update id when its verification was asked for.
    verify_from: u64,
    /// The sync episode: bumped whenever the book loses sync, so snapshots asked for in an
    /// earlier episode (before a disconnect, say) are recognised and dropped.
    epoch: u64,
    /// The stream this book is carried on.
    stream: String,
    /// A deep snapshot for its shadow is on its way (see `crate::deepening`).
    deepening: bool,
    /// Where seeding from peers stands in this episode.
    seed: seeding::SeedState,
    /// Where the book's audit stands (see `audits`).
    audit: AuditState,
    /// When the book's last audit ended (`None`: never).
    audited_at: Option<Instant>,
    /// Events applied since then: the busiest books are audited first.
    events_since_audit: u64,
    /// An audit was asked for from outside (its replicas disagree): due at once.
    audit_wanted: bool,
    /// The `limit` the audit under way asked for (see `audits`).
    audit_limit: u32,
    /// When the book's last full-depth audit ended (`None`: never).
    deep_audited_at: Option<Instant>,
    /// When the book first became synced: the clock of its first full-depth audit (see
    /// `audits`), which resyncs do not restart — a book that resyncs more often than its share
    /// of the hour would otherwise never be audited deep.
    first_synced_at: Option<Instant>,
    /// The book's levels came from a peer's copy that no audit has compared with the exchange
    /// yet: its next audit is full depth.
    peer_copy_unaudited: bool,
    /// The recorder of its starting books and markers, when the book is recorded (its frames
    /// reach the recorder through its connection's tee).
    recorder: Option<crate::record::Recorder>,
}

/// Where a book's audit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuditState {
    /// None under way.
    Idle,
    /// Its snapshot is asked for.
    Requested,
    /// Its snapshot arrived and is catching up with the live book's update id.
    CatchingUp,
}

impl Entry {
    /// Starts a new sync episode: earlier snapshot answers no longer apply.
    fn begin_episode(&mut self) {
        self.epoch += 1;
        self.synced_since = None;
        self.verifying = false;
        self.deepening = false;
        // The book drops its audit itself when it loses sync.
        self.audit = AuditState::Idle;
        // The seed state lives on until the book is synced (see `seeding::SeedState`).
    }
}

/// A running connection task.
struct Connection {
    /// Its task in [`Node::tasks`].
    task: Id,
    url: String,
    exchange: Exchange,
    books: usize,
    /// `None` once the connection carries no book: dropping the sender ends its task.
    commands: Option<mpsc::UnboundedSender<ConnectionCommand>>,
}

impl Connection {
    fn send(&self, command: ConnectionCommand) {
        // A send fails only if the task ended, which it does only when we drop the sender.
        if let Some(commands) = &self.commands {
            commands.send(command).ok();
        }
    }
}

/// The node; see the module doc.
pub struct Node {
    config: NodeConfig,
    publisher: Publisher,
    books: BTreeMap<BookId, Entry>,
    keys: HashMap<(Exchange, String), BookId>,
    next_book: BookId,
    connections: Vec<Connection>,
    /// What every book may buffer.
    buffer: BufferLimits,
    stream_tx: mpsc::Sender<StreamEvent>,
    stream_rx: mpsc::Receiver<StreamEvent>,
    snapshot_tx: mpsc::UnboundedSender<SnapshotRequest>,
    outcome_rx: mpsc::UnboundedReceiver<SnapshotOutcome>,
    /// Snapshot retries due later: `(when, book)`.
    retries: Vec<(Instant, BookId)>,
    /// The snapshot scheduler's and every connection's task, watched by [`Node::run`].
    tasks: JoinSet<()>,
    /// The scheduler's task in `tasks`.
    scheduler: Id,
    /// Copies from peers, when seeding is on.
    seeder: Option<Seeder>,
    seed_tx: mpsc::UnboundedSender<seeding::SeedOutcome>,
    seed_rx: mpsc::UnboundedReceiver<seeding::SeedOutcome>,
    /// What the shadows of deepening books may buffer together.
    shadow_budget: BufferBudget,
    /// When a new book's snapshot was last asked for (deepening waits for a quiet moment).
    last_new_request: Option<Instant>,
    /// What the audits' copies of live events may buffer together (like the shadows').
    audit_budget: BufferBudget,
    /// This node's share of each REST host's weight (the agent may change it), which sets how
    /// deep audits can afford to look (see `audits`).
    weight_share: WeightShare,
}

impl Node {
    /// Creates the segment and the snapshot scheduler (spawned on the current runtime).
    ///
    /// # Errors
    /// [`NodeError::Segment`] when the segment cannot be created, [`NodeError::Snapshot`] when the
    /// HTTP client cannot be built.
    pub fn start(
        config: NodeConfig,
    ) -> Result<(Self, NodeHandle, mpsc::UnboundedReceiver<NodeCommand>), NodeError> {
        let mut segment = SegmentConfig::new(config.cluster.as_str(), config.dcn.as_str());
        segment
            .books(config.max_books)
            .levels_per_side(config.levels_per_side)
            .mode(config.segment_mode);
        if let Some(gid) = config.segment_group {
            segment.group(gid);
        }
        let writer = segment.create()?;
        let api_keys = ApiKeys::new(config.api_keys.clone());
        let weight_share = WeightShare::new(config.weight_share);
        let scheduler = SnapshotScheduler::new(SnapshotConfig {
            endpoints: config.endpoints.clone(),
            weight_share: weight_share.clone(),
            api_keys: api_keys.clone(),
        })?;
        let snapshot_stats = scheduler.stats();
        let (snapshot_tx, snapshot_rx) = mpsc::unbounded_channel();
        let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let scheduler = tasks.spawn(scheduler.run(snapshot_rx, outcome_tx)).id();
        let (stream_tx, stream_rx) = mpsc::channel(STREAM_EVENTS_IN_FLIGHT);
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let buffer = BufferLimits {
            per_book: config.buffer_bytes_per_book,
            budget: BufferBudget::new(config.buffer_bytes_per_node),
        };
        let buffer_budget = buffer.budget.clone();
        let seeder = Seeder::new(&config.cluster, &config.dcn, config.peers.clone());
        let seed_stats = seeder.stats();
        let peers = config.peers.clone();
        let seeder = config.peer_seeding.then_some(seeder);
        let (seed_tx, seed_rx) = mpsc::unbounded_channel();
        let node = Self {
            config,
            publisher: Publisher::new(writer),
            books: BTreeMap::new(),
            keys: HashMap::new(),
            next_book: 0,
            connections: Vec::new(),
            buffer,
            stream_tx,
            stream_rx,
            snapshot_tx,
            outcome_rx,
            retries: Vec::new(),
            tasks,
            scheduler,
            seeder,
            seed_tx,
            seed_rx,
            shadow_budget: BufferBudget::new(SHADOW_BYTES_PER_NODE),
            last_new_request: None,
            audit_budget: BufferBudget::new(SHADOW_BYTES_PER_NODE),
            weight_share: weight_share.clone(),
        };
        Ok((
            node,
            NodeHandle {
                commands: commands_tx,
                api_keys,
                weight_share,
                snapshot_stats,
                buffer_budget,
                seed_stats,
                peers,
            },
            commands_rx,
        ))
    }

    /// The segment's name.
    pub fn segment_name(&mut self) -> String {
        self.publisher.writer().name().to_owned()
    }

    /// Runs until `shutdown` completes or every handle is dropped; the segment is removed then.
    ///
    /// # Errors
    /// [`NodeError::TaskEnded`] when the snapshot scheduler, or a connection that carries books,
    /// ended or panicked: its books could never resync, so the node stops instead.
    pub async fn run(
        mut self,
        commands: mpsc::UnboundedReceiver<NodeCommand>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let result = self.run_loop(commands, shutdown).await;
        // On a normal stop the tasks end by themselves once their channels close (connections
        // say goodbye to the exchange); dropping the set would abort them instead.
        self.tasks.detach_all();
        result
    }

    async fn run_loop(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<NodeCommand>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), NodeError> {
        tokio::pin!(shutdown);
        let mut heartbeat = interval(HEARTBEAT_INTERVAL);
        let mut housekeeping = interval(Duration::from_secs(1));
        loop {
            let next_retry = self.retries.iter().map(|(when, _)| *when).min();
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return Ok(()),
                },
                Some(ended) = self.tasks.join_next_with_id() => self.on_task_ended(ended)?,
                Some(event) = self.stream_rx.recv() => self.on_stream_events(event),
                Some(outcome) = self.outcome_rx.recv() => self.on_snapshot(outcome),
                Some(outcome) = self.seed_rx.recv() => self.on_seed(outcome),
                _ = heartbeat.tick() => self.publisher.writer().heartbeat(),
                _ = housekeeping.tick() => {
                    self.refresh_due();
                    self.silence_due();
                    self.audit_due();
                }
                () = sleep_until(next_retry.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if next_retry.is_some() => self.retry_due(),
            }
        }
    }

    /// Judges a task that ended: only a connection that no longer carries books may.
    fn on_task_ended(&mut self, ended: Result<(Id, ()), JoinError>) -> Result<(), NodeError> {
        let (id, panicked) = match ended {
            Ok((id, ())) => (id, false),
            Err(error) => (error.id(), error.is_panic()),
        };
        let task = if id == self.scheduler {
            "snapshot scheduler"
        } else {
            let Some(connection) = self.connections.iter().find(|c| c.task == id) else {
                return Ok(());
            };
            if connection.commands.is_none() && !panicked {
                // Closed because it carried nothing any more.
                return Ok(());
            }
            "stream connection"
        };
        tracing::error!(
            task,
            panicked,
            "a task of the node is gone; stopping the node"
        );
        Err(NodeError::TaskEnded { task, panicked })
    }

    fn on_command(&mut self, command: NodeCommand) {
        // A dropped reply channel means the asker gave up; the work is done either way.
        match command {
            NodeCommand::Add(spec, reply) => {
                reply.send(self.add(spec)).ok();
            }
            NodeCommand::Remove {
                exchange,
                symbol,
                reply,
            } => {
                reply.send(self.remove(exchange, &symbol)).ok();
            }
            NodeCommand::Audit { exchange, symbol } => self.want_audit(exchange, &symbol),
            NodeCommand::List(reply) => {
                let reports = self
                    .books
                    .values()
                    .map(|entry| BookReport {
                        spec: entry.spec.clone(),
                        meta: *entry.cache.meta(),
                    })
                    .collect();
                reply.send(reports).ok();
            }
        }
    }

    fn add(&mut self, spec: BookSpec) -> Result<(), NodeError> {
        let key = (spec.exchange, spec.symbol.clone());
        if self.keys.contains_key(&key) {
            return Err(NodeError::Exists {
                exchange: spec.exchange,
                symbol: spec.symbol,
            });
        }
        if !is_valid_symbol(&spec.symbol) {
            return Err(NodeError::InvalidSymbol(spec.symbol));
        }
        let stream = spec
            .exchange
            .stream_name(&spec.symbol, spec.update_interval_ms)?;
        // Stream names are lower-case: `BTCUSDT` and `btcusdt` would share one stream, and one of
        // the two books would silently stop receiving events.
        if let Some(other) = self
            .books
            .values()
            .find(|entry| entry.spec.exchange == spec.exchange && entry.stream == stream)
        {
            return Err(NodeError::StreamTaken {
                exchange: spec.exchange,
                symbol: spec.symbol,
                other: other.spec.symbol.clone(),
            });
        }
        let cache = DepthCache::with_limits(
            spec.exchange,
            &spec.symbol,
            SNAPSHOT_LIMIT as usize,
            self.buffer.clone(),
            &mut self.publisher,
        )?;
        let book = self.next_book;
        self.next_book += 1;
        let recorder = self.recorder_for(&spec);
        let connection = self.connection_for(spec.exchange);
        self.connections[connection].books += 1;
        self.connections[connection].send(ConnectionCommand::Subscribe {
            book,
            stream: stream.clone(),
            record: recorder.is_some(),
        });
        tracing::info!(exchange = %spec.exchange, symbol = %spec.symbol, book, "DepthCache added");
        if let Some(recorder) = &recorder {
            recorder.marker(spec.exchange, &spec.symbol, "added", &stream);
        }
        self.keys.insert(key, book);
        self.books.insert(
            book,
            Entry {
                cache,
                spec,
                connection,
                synced_since: None,
                retry_delay: FIRST_SNAPSHOT_RETRY,
                last_event: Instant::now(),
                silence_threshold: self.config.book_silence,
                verifying: false,
                verify_from: 0,
                epoch: 0,
                stream,
                deepening: false,
                seed: seeding::SeedState::default(),
                audit: AuditState::Idle,
                audited_at: None,
                events_since_audit: 0,
                audit_wanted: false,
                audit_limit: SNAPSHOT_LIMIT,
                deep_audited_at: None,
                first_synced_at: None,
                peer_copy_unaudited: false,
                recorder,
            },
        );
        Ok(())
    }

    /// The recorder of a new book `spec`: the node's, when it records every book or `spec`
    /// asks to be recorded. A book that asks on a node without a recording directory is kept
    /// all the same (its info says so, from the DCN's registration), and logged.
    fn recorder_for(&self, spec: &BookSpec) -> Option<crate::record::Recorder> {
        let recorder = self.config.record.as_ref();
        if spec.record && recorder.is_none() {
            tracing::warn!(exchange = %spec.exchange, symbol = %spec.symbol, "record=true, but this DCN has no recording directory (--record-books DIR): the book is not recorded");
        }
        let wanted = spec.record || self.config.record_scope == crate::record::RecordScope::All;
        recorder.filter(|_| wanted).cloned()
    }

    fn remove(&mut self, exchange: Exchange, symbol: &str) -> Result<(), NodeError> {
        let not_found = || NodeError::NotFound {
            exchange,
            symbol: symbol.to_owned(),
        };
        let book = self
            .keys
            .remove(&(exchange, symbol.to_owned()))
            .ok_or_else(not_found)?;
        let entry = self.books.remove(&book).ok_or_else(not_found)?;
        let connection = &mut self.connections[entry.connection];
        connection.books -= 1;
        connection.send(ConnectionCommand::Unsubscribe { book });
        if connection.books == 0 {
            // Nothing left to carry: let the connection close instead of idling and reconnecting.
            connection.commands = None;
        }
        self.retries.retain(|(_, b)| *b != book);
        entry.cache.remove(&mut self.publisher)?;
        if let Some(recorder) = &entry.recorder {
            recorder.marker(exchange, symbol, "removed", "");
        }
        tracing::info!(%exchange, symbol, "DepthCache removed");
        Ok(())
    }

    /// A connection of `exchange` with room for one more stream, opened if none has.
    fn connection_for(&mut self, exchange: Exchange) -> usize {
        let spec = exchange.spec();
        let endpoints = self.config.endpoints.endpoints(exchange);
        let url = format!("{}{}", endpoints.ws_base, spec.combined_stream_path);
        if let Some(index) = self.connections.iter().position(|c| {
            c.commands.is_some()
                && c.url == url
                && c.exchange == exchange
                && c.books < spec.streams_per_connection
        }) {
            return index;
        }
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let connection = StreamConnection::new(ConnectionConfig {
            exchange,
            url: url.clone(),
            ping_interval: self.config.ping_interval,
            silence_timeout: self.config.silence_timeout,
            max_backoff: self.config.max_backoff,
            max_lifetime: self.config.max_connection_lifetime,
            tee: self.config.record.clone().map(|recorder| {
                crate::record::FrameTee::new(recorder, exchange, self.config.record_scope)
            }),
        });
        let task = self
            .tasks
            .spawn(connection.run(commands_rx, self.stream_tx.clone()))
            .id();
        self.connections.push(Connection {
            task,
            url,
            exchange,
            books: 0,
            commands: Some(commands),
        });
        self.connections.len() - 1
    }

    /// Applies a diff event to its book and acts on the outcome.
    fn on_diff(&mut self, book: BookId, update: DiffUpdate, received_ns: u64, replayed: bool) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        let before = entry.cache.meta().last_update_id;
        let step = if replayed {
            entry
                .cache
                .on_replayed_update(update, received_ns, &mut self.publisher)
        } else {
            entry
                .cache
                .on_update(update, received_ns, &mut self.publisher)
        };
        // Only an event that moved the book proves its stream alive: a stream whose ids
        // went backwards brings nothing but ignored events, and must meet the silence
        // check rather than look busy.
        if entry.cache.meta().last_update_id != before {
            entry.last_event = Instant::now();
            entry.events_since_audit += 1;
        }
        // Nearly every event leaves a synced book synced with no audit catching up: then
        // `after` and `audit_caught_up` have nothing to do, and each would look the book up
        // again (a walk of cold B-tree nodes at 1 000 books, `perf` of `benches/dcn_load.py`).
        let settled = matches!(step, Ok(NextStep::Continue))
            && (entry.synced_since.is_some() || !entry.cache.meta().status.is_synced())
            && entry.audit != AuditState::CatchingUp;
        if settled {
            return;
        }
        self.after(book, step);
        self.audit_caught_up(book);
    }

    /// Handles `first` and the events queued behind it, up to [`STREAM_EVENTS_PER_PASS`].
    fn on_stream_events(&mut self, first: StreamEvent) {
        self.on_stream_event(first);
        for _ in 1..STREAM_EVENTS_PER_PASS {
            let Ok(event) = self.stream_rx.try_recv() else {
                break;
            };
            self.on_stream_event(event);
        }
    }

    fn on_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Diff {
                book,
                update,
                received_ns,
                replayed,
            } => self.on_diff(book, update, received_ns, replayed),
            StreamEvent::Subscribed { books } => {
                for book in books {
                    self.request_snapshot(book);
                }
            }
            StreamEvent::Interrupted { books, reason } => {
                // The connection resubscribes and reports `Subscribed`; the snapshot follows then.
                // Retries and answers from before the interruption must not count.
                self.retries.retain(|(_, book)| !books.contains(book));
                for book in books {
                    if let Some(entry) = self.books.get_mut(&book) {
                        let (exchange, symbol) = (entry.spec.exchange, &entry.spec.symbol);
                        crate::record::resynced(entry.recorder.as_ref(), exchange, symbol, reason);
                        entry.begin_episode();
                        if let Err(error) = entry.cache.resync(reason, &mut self.publisher) {
                            tracing::error!(%error, book, "publishing out of sync failed");
                        }
                    }
                }
            }
            StreamEvent::Malformed { book } => {
                let Some(entry) = self.books.get_mut(&book) else {
                    return;
                };
                let (exchange, symbol, reason) = (
                    entry.spec.exchange,
                    &entry.spec.symbol,
                    OutOfSyncReason::MalformedMessage,
                );
                crate::record::resynced(entry.recorder.as_ref(), exchange, symbol, reason);
                let step = entry
                    .cache
                    .resync(OutOfSyncReason::MalformedMessage, &mut self.publisher);
                self.after(book, step);
            }
        }
    }

    fn on_snapshot(&mut self, outcome: SnapshotOutcome) {
        let Some(entry) = self.books.get_mut(&outcome.book) else {
            return;
        };
        if outcome.epoch != entry.epoch {
            tracing::debug!(
                book = outcome.book,
                "dropping a snapshot asked for before the book last lost sync"
            );
            return;
        }
        let synced = entry.cache.meta().status.is_synced();
        if synced && entry.audit == AuditState::Requested {
            // Audits are asked for only while nothing else is (see `audits`).
            self.on_audit_snapshot(outcome);
            return;
        }
        let (verifying, deepening) = (
            std::mem::take(&mut entry.verifying),
            std::mem::take(&mut entry.deepening),
        );
        if synced && (verifying || deepening) {
            // One request per book: a verification asked while a deepening waited (or the other
            // way round) was merged into one full snapshot, which serves both.
            if deepening {
                let snapshot = outcome.result.as_ref().ok().cloned();
                self.on_deep_snapshot(outcome.book, snapshot);
            }
            if verifying {
                self.verify(outcome);
            }
            return;
        }
        let step = match outcome.result {
            // The exchange's snapshot replaces any peer's copy loaded before.
            Ok(snapshot) => {
                if let Some(recorder) = &entry.recorder {
                    recorder.snapshot(entry.spec.exchange, &entry.spec.symbol, &snapshot);
                }
                entry.seed.clear_copy();
                entry.cache.on_starting_book(
                    &snapshot,
                    crate::clock::unix_now_ns(),
                    &mut self.publisher,
                )
            }
            Err(error) if error.is_unknown_symbol() => {
                self.delisted(outcome.book, &error);
                return;
            }
            Err(error) => {
                tracing::warn!(exchange = %entry.spec.exchange, symbol = %entry.spec.symbol, %error, "snapshot failed");
                if entry.cache.meta().status.is_synced() {
                    // A request the book no longer needs; nothing to retry.
                    return;
                }
                entry
                    .cache
                    .snapshot_failed(OutOfSyncReason::SnapshotFailed, &mut self.publisher)
                    .map(|()| NextStep::FetchSnapshot)
            }
        };
        let book = outcome.book;
        match step {
            // Too old or failed: ask again, later, so a lagging or failing host is not hammered.
            Ok(NextStep::FetchSnapshot) => self.schedule_retry(book),
            other => self.after(book, other),
        }
    }

    /// Acts on what a book needs next.
    fn after(&mut self, book: BookId, step: Result<NextStep, DepthCacheError>) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        match step {
            Ok(NextStep::Continue) => {
                if entry.cache.meta().status.is_synced() && entry.synced_since.is_none() {
                    // Newly synced: the refresh and silence clocks start now.
                    let now = Instant::now();
                    (entry.synced_since, entry.last_event) = (Some(now), now);
                    entry.first_synced_at.get_or_insert(now);
                    entry.retry_delay = FIRST_SNAPSHOT_RETRY;
                    let shallow = entry.cache.is_shallow();
                    self.synced_after_seeding(book);
                    if shallow {
                        self.request_deepening(book);
                    }
                }
            }
            Ok(NextStep::Deepen) => self.schedule_deepening(book),
            Ok(NextStep::FetchSnapshot) => {
                // The book lost sync with its stream still live: a new episode, asked for now.
                if let Some(recorder) = &entry.recorder {
                    let reason = entry.cache.meta().status.to_string();
                    recorder.marker(
                        entry.spec.exchange,
                        &entry.spec.symbol,
                        "out_of_sync",
                        &reason,
                    );
                }
                entry.begin_episode();
                self.request_snapshot(book);
            }
            Err(error) => tracing::error!(%error, book, "publishing failed"),
        }
    }

    fn request_snapshot(&mut self, book: BookId) {
        let Some(entry) = self.books.get(&book) else {
            return;
        };
        let meta = entry.cache.meta();
        // Resyncs count only books that were synced (`resyncs` counts exactly those losses).
        let kind =
            if entry.verifying || meta.status == BookStatus::OutOfSync(OutOfSyncReason::Delisted) {
                SnapshotKind::Verify
            } else if entry.deepening {
                SnapshotKind::Deepen
            } else if entry.audit == AuditState::Requested {
                SnapshotKind::Audit
            } else if meta.resyncs == 0 {
                SnapshotKind::New
            } else {
                SnapshotKind::Resync
            };
        if self.try_seed(book, kind) {
            return;
        }
        let Some(entry) = self.books.get(&book) else {
            return;
        };
        let wanted = match kind {
            SnapshotKind::New | SnapshotKind::Resync => self.config.initial_depth,
            SnapshotKind::Deepen | SnapshotKind::Verify => SNAPSHOT_LIMIT,
            SnapshotKind::Audit => entry.audit_limit,
        };
        // Futures and options take only some `limit`s: the next one up.
        let limit = entry.spec.exchange.spec().snapshot_limit(wanted);
        if kind == SnapshotKind::New {
            self.last_new_request = Some(Instant::now());
        }
        let request = SnapshotRequest {
            book,
            epoch: entry.epoch,
            exchange: entry.spec.exchange,
            symbol: entry.spec.symbol.clone(),
            kind,
            limit,
        };
        // The scheduler lives as long as the node.
        self.snapshot_tx.send(request).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::EndpointOverrides;

    /// A node of its own segment whose endpoints lead nowhere.
    fn node(name: &str) -> (Node, NodeHandle, mpsc::UnboundedReceiver<NodeCommand>) {
        let mut config = NodeConfig::new(format!("nodetask{}", std::process::id()), name);
        config.endpoints = EndpointOverrides::parse(["binance.com=http://127.0.0.1:9"]).unwrap();
        config.max_books = 4;
        config.levels_per_side = 10;
        Node::start(config).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_scheduler_stops_the_node_with_an_error() {
        let (mut node, _handle, commands) = node("panic");
        // Stand-in for a scheduler that panics (the real one no longer does on any input).
        node.scheduler = node.tasks.spawn(async { panic!("injected") }).id();
        assert_scheduler_ended(node, commands, true).await;
    }

    /// Runs `node` and asserts it stops with the scheduler's end (`panicked` or returned).
    async fn assert_scheduler_ended(
        node: Node,
        commands: mpsc::UnboundedReceiver<NodeCommand>,
        panicked: bool,
    ) {
        let ended = tokio::time::timeout(
            Duration::from_secs(10),
            node.run(commands, std::future::pending()),
        )
        .await
        .expect("the node stops");
        assert!(
            matches!(
                &ended,
                Err(NodeError::TaskEnded { task: "snapshot scheduler", panicked: p }) if *p == panicked
            ),
            "{ended:?}"
        );
    }

    #[tokio::test]
    async fn a_scheduler_that_ends_stops_the_node_with_an_error() {
        let (mut node, _handle, commands) = node("ended");
        node.tasks.abort_all();
        assert_scheduler_ended(node, commands, false).await;
    }

    #[tokio::test]
    async fn a_node_stopped_normally_reports_no_error() {
        let (node, _handle, commands) = node("normal");
        assert!(node.run(commands, async {}).await.is_ok());
    }
}
