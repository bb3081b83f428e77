//! The cluster's HTTP side: mgmt, restapi, the cluster agent of restapi and DCN pods, and the
//! original's envelope and error ids.
//!
//! # Brief overview
//! - [`envelope`]: `OK` / `ERROR` envelopes ([`ErrorId`], [`ApiError`]) exactly as the original
//!   shapes them, HTTP 200.
//! - [`params`]: request parameters from query or JSON body, one rule for "not set".
//! - [`book_answer`]: reading a book from shared memory and writing its JSON (DCN and restapi).
//! - [`dcn_api`]: the DCN's `/get_asks`, `/get_bids`.
//! - [`mgmt`]: the cluster state, placement, heartbeats, backups and recovery, as a service.
//! - [`restapi`]: the public API: local shared-memory reads, routing, failover, forwarding.
//! - [`agent`]: registration, heartbeats and status reports of restapi and DCN pods; the DCN's
//!   assignments applied to its engine.
//! - [`client`], [`auth`], [`identity`], [`lifecycle`], [`metrics`]: internal calls, secrets,
//!   pod identity, shutdown, `/metrics`.
//! - [`private_file`]: files that hold secrets (0600 in 0700 folders, written atomically).
//!
//! The gateway never reaches into the engine's books: it reads them through `ubdcc-shm` like any
//! other reader, and drives a DCN's engine only through its public `NodeHandle`.
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod book_answer;
mod book_copy;
pub mod book_query;
pub mod client;
pub mod dcn_api;
pub mod envelope;
pub mod identity;
pub mod lifecycle;
pub mod metrics;
pub mod mgmt;
pub mod params;
pub mod private_file;
pub mod restapi;

pub use envelope::{ApiError, ErrorId};
