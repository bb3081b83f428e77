//! Hostile-neighbour tests (issue 10) with real processes on loopback: every attack against a
//! cluster started with defaults is refused, nothing leaks, the cluster keeps serving.
//!
//! - `attacks`: forged registration, sync, backup and shutdown; DNS rebinding; state file modes;
//!   secrets never in argv; huge and deep bodies; timestamps from the far future.
//! - `shm_trust`: segments of other owners ignored by the Rust, C and Python readers; a segment
//!   truncated under a reader.
//! - `slowloris`: thousands of half-open connections against restapi and a DCN.

#[path = "../e2e/support/mod.rs"]
#[allow(dead_code)]
mod cluster;

/// The e2e support's HTTP helpers, under the name the attacks use.
use cluster::http;

mod attacks;
mod shm_trust;
mod slowloris;
