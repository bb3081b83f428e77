//! restapi: the public API's routing of reads to DCN replicas.
//!
//! So far the routing decisions ([`routing`]), pure and unit-tested; the HTTP service arrives with
//! the rest of the cluster issue.

pub mod routing;
