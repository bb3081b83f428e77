//! The cluster: mgmt, restapi and the DCN's cluster agent (not yet built).
//!
//! Built by the cluster issue on axum + tokio; until then it deliberately exports nothing.
#![forbid(unsafe_code)]
