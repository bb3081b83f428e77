//! The cluster's HTTP side: the original's envelope and error ids, and the DCN's read endpoints.
//!
//! # Brief overview
//! - [`envelope`]: `OK` / `ERROR` envelopes ([`ErrorId`], [`ApiError`]) exactly as the original
//!   shapes them, HTTP 200 always.
//! - [`dcn_api`]: the DCN's `/test`, `/get_asks`, `/get_bids`, answered from shared memory.
//! - [`mgmt`]: the cluster state with the original's records, replica placement and credential
//!   distribution.
//! - [`restapi`]: the routing of reads to replicas (candidates, round-robin, failover text).
//!
//! mgmt's service, restapi and the DCN's cluster agent arrive with the rest of the cluster issue. The gateway never
//! reaches into the engine: it reads books through `ubdcc-shm` like any other reader.
#![forbid(unsafe_code)]

pub mod dcn_api;
pub mod envelope;
pub mod mgmt;
pub mod restapi;

pub use envelope::{ApiError, ErrorId};
