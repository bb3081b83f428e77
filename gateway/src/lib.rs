//! The cluster's HTTP side: mgmt, restapi, the cluster agent of restapi and DCN pods, and the
//! original's envelope and error ids.
//!
//! # What is public, and why
//! The `ubdcc` binary runs each role from these modules, so they are public:
//! - [`mgmt`]: the cluster state, placement, heartbeats, backups and recovery, as a service.
//! - [`restapi`]: the public API: local shared-memory reads, routing, failover, forwarding;
//!   its OpenAPI document.
//! - [`dcn_api`]: a DCN's own endpoints (reads, `/ubdcc_book_copy` for peers, `/metrics`).
//! - [`agent`]: registration, heartbeats and status reports of restapi and DCN pods; the DCN's
//!   assignments (and peers to seed from) applied to its engine.
//! - [`client`], [`auth`], [`identity`], [`lifecycle`]: internal calls, secrets and the `Host`
//!   check, pod identity, shutdown — shared by the roles and the binary's commands.
//! - [`private_file`]: files that hold secrets (0600 in 0700 folders, written atomically).
//! - [`book_answer`]: how old a book is, as every read reports it (`ubdcc top` shows the same).
//! - [`ErrorId`] and [`ApiError`]: the original's error ids and envelopes, for callers that
//!   match on them.
//!
//! Everything else is an implementation detail of the roles and stays `pub(crate)`: the envelope
//! writer, request parameters (one rule for "not set"), the reads beyond one side and their
//! answers, the HTTP metrics.
//!
//! The gateway never reaches into the engine's books: it reads them through `ubdcc-shm` like any
//! other reader, and drives a DCN's engine only through its public `NodeHandle`.
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod book_answer;
mod book_copy;
pub(crate) mod book_query;
pub mod client;
pub mod dcn_api;
pub(crate) mod envelope;
pub mod identity;
pub mod lifecycle;
pub(crate) mod metrics;
pub mod mgmt;
pub(crate) mod params;
pub mod private_file;
pub mod restapi;

pub use envelope::{ApiError, ErrorId};
