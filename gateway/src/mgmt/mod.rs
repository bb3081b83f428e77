//! mgmt: the cluster's state and its decisions (which DCN keeps which book).
//!
//! So far the state model with the original's records ([`state`]) and replica placement
//! ([`placement`]), both pure and unit-tested; the HTTP service, heartbeats and backups that use
//! them arrive with the rest of the cluster issue.

pub mod placement;
pub mod state;
