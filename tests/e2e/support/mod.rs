//! What the e2e tests share, so that a test file holds only tests:
//!
//! - `process`: `ubdcc` roles as child processes ([`Process`]), a cluster's segments removed at
//!   the end ([`Cleanup`]), the test run's ban board and this machine's token.
//! - [`sim`]: the simulator as the exchange — its markets, the endpoints pointing a role at it,
//!   fault injection, its stats and the weight budget.
//! - [`rig`]: the rigs tests start from — [`rig::ClusterRig`] (mgmt, two restapis, DCNs placed by
//!   mgmt) and [`rig::DcnRig`] (one standalone DCN to inject faults into) — and `start_dcn`.
//! - [`wait`]: the only way a test waits — poll with a deadline, panic with the last answer.
//! - [`truth`]: the simulator's truth and the comparisons of held and served books against it.
//! - [`http`]: a blocking HTTP client; [`metrics`]: a DCN's `/metrics`.
//!
//! What nearly every test starts with (the processes, the simulator's markets, the wait for
//! them to sync) is re-exported here. `tests/security` mounts this module as its `cluster` and
//! uses exactly these names, so the parts refer to each other by `super::`, never `crate::`.

pub mod http;
pub mod metrics;
mod process;
pub mod rig;
pub mod sim;
pub mod truth;
pub mod wait;

pub use process::{Cleanup, Process, test_ban_board};
pub use sim::{markets, sim_endpoints};
pub use wait::wait_synced;
