//! How the rest of the process talks to a running node: a cheap-to-clone [`NodeHandle`] that
//! sends [`NodeCommand`]s to the node's loop and awaits their answers, and the errors and
//! reports they carry.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use ubdcc_shm::{BookMeta, CreateSegmentError};

use super::BookSpec;
use crate::buffer_budget::BufferBudget;
use crate::depth_cache::DepthCacheError;
use crate::exchange::{Exchange, ExchangeError};
use crate::peer_seed::{PeerDirectory, SeedStats};
use crate::snapshot::{ApiKeys, SnapshotError, SnapshotStats, WeightShare};

/// A book's state, as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookReport {
    /// The book.
    pub spec: BookSpec,
    /// Its published metadata.
    pub meta: BookMeta,
}

/// A node request failed.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The segment could not be created.
    #[error("creating the shared-memory segment: {0}")]
    Segment(#[from] CreateSegmentError),
    /// The book exists already.
    #[error("DepthCache {symbol} for {exchange} exists already")]
    Exists {
        /// Exchange.
        exchange: Exchange,
        /// Symbol.
        symbol: String,
    },
    /// The symbol has characters Binance symbols never have.
    #[error("invalid symbol {0:?}: 1 to 48 of A-Z a-z 0-9 - _")]
    InvalidSymbol(String),
    /// Another book already uses the same stream (symbols differing only in case).
    #[error("DepthCache {symbol} for {exchange} would share its stream with {other}")]
    StreamTaken {
        /// Exchange.
        exchange: Exchange,
        /// Symbol asked for.
        symbol: String,
        /// The book already on that stream.
        other: String,
    },
    /// The book does not exist.
    #[error("DepthCache {symbol} for {exchange} not found")]
    NotFound {
        /// Exchange.
        exchange: Exchange,
        /// Symbol.
        symbol: String,
    },
    /// The stream cannot be named (an interval the exchange does not offer).
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The segment refused the book.
    #[error(transparent)]
    DepthCache(#[from] DepthCacheError),
    /// The snapshot scheduler could not start.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A task the node cannot do without ended or panicked; the node stopped.
    #[error("the node's {task} task {}; the node stopped", if *panicked { "panicked" } else { "ended" })]
    TaskEnded {
        /// Which task (`snapshot scheduler`, `stream connection`).
        task: &'static str,
        /// Whether it panicked (else it returned).
        panicked: bool,
    },
}

/// Requests to a running node.
#[derive(Debug)]
pub enum NodeCommand {
    /// Start keeping a book.
    Add(BookSpec, oneshot::Sender<Result<(), NodeError>>),
    /// Stop keeping a book and remove it from shared memory.
    Remove {
        /// Exchange.
        exchange: Exchange,
        /// Symbol.
        symbol: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Report every book.
    List(oneshot::Sender<Vec<BookReport>>),
    /// Audit a book as soon as spare weight allows, whatever its audit interval (its replicas
    /// disagree, issue 16). An unknown book is ignored.
    Audit {
        /// Exchange.
        exchange: Exchange,
        /// Symbol.
        symbol: String,
    },
}

/// A handle to send commands to a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(super) commands: mpsc::UnboundedSender<NodeCommand>,
    pub(super) api_keys: ApiKeys,
    pub(super) weight_share: WeightShare,
    pub(super) snapshot_stats: Arc<SnapshotStats>,
    pub(super) buffer_budget: BufferBudget,
    pub(super) seed_stats: Arc<SeedStats>,
    pub(super) peers: PeerDirectory,
}

impl NodeHandle {
    /// The budget of the books' event buffers (bytes held now, peak, overflows).
    pub fn buffer_budget(&self) -> BufferBudget {
        self.buffer_budget.clone()
    }

    /// How many books started from a peer's copy, by source, and how many copies failed.
    pub fn seed_stats(&self) -> Arc<SeedStats> {
        Arc::clone(&self.seed_stats)
    }

    /// Where the node finds peers for its books (the agent fills it from mgmt's state).
    pub fn peers(&self) -> PeerDirectory {
        self.peers.clone()
    }

    /// The snapshot scheduler's counters (downloads, weight spent, 429 / 418).
    pub fn snapshot_stats(&self) -> Arc<SnapshotStats> {
        Arc::clone(&self.snapshot_stats)
    }

    /// Sets (or with `None` clears) the API key snapshots of `exchange` are sent with, from the
    /// next download on (the cluster agent applies the credentials mgmt assigns).
    pub fn set_api_key(&self, exchange: Exchange, key: Option<String>) {
        self.api_keys.set(exchange, key);
    }

    /// Sets this node's share of each REST host's weight limit, from the next dispatch on (the
    /// cluster agent applies the share mgmt's state implies: DCNs of one host split it).
    pub fn set_weight_share(&self, share: f64) {
        self.weight_share.set(share);
    }

    /// This node's current share of each REST host's weight limit.
    pub fn weight_share(&self) -> f64 {
        self.weight_share.get()
    }

    /// Starts keeping `spec`.
    ///
    /// # Errors
    /// [`NodeError::Exists`], [`NodeError::Exchange`], [`NodeError::DepthCache`] (segment full),
    /// [`NodeError::Stopped`].
    pub async fn add(&self, spec: BookSpec) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(NodeCommand::Add(spec, reply))
            .map_err(|_| NodeError::Stopped)?;
        answer.await.map_err(|_| NodeError::Stopped)?
    }

    /// Stops keeping a book.
    ///
    /// # Errors
    /// [`NodeError::NotFound`], [`NodeError::Stopped`].
    pub async fn remove(&self, exchange: Exchange, symbol: &str) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(NodeCommand::Remove {
                exchange,
                symbol: symbol.to_owned(),
                reply,
            })
            .map_err(|_| NodeError::Stopped)?;
        answer.await.map_err(|_| NodeError::Stopped)?
    }

    /// Asks for an audit of a book as soon as spare weight allows (see [`NodeCommand::Audit`]);
    /// a stopped node or an unknown book makes it a no-op.
    pub fn audit_now(&self, exchange: Exchange, symbol: &str) {
        // A stopped node has nothing left to audit.
        self.commands
            .send(NodeCommand::Audit {
                exchange,
                symbol: symbol.to_owned(),
            })
            .ok();
    }

    /// Every book and its state.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn list(&self) -> Result<Vec<BookReport>, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(NodeCommand::List(reply))
            .map_err(|_| NodeError::Stopped)?;
        answer.await.map_err(|_| NodeError::Stopped)
    }
}
