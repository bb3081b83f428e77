//! A cluster spread over three "hosts" (issue 12): network namespaces made by the test as root,
//! one IP each on a shared bridge, each with its own `/dev/shm` and `/etc/machine-id`, and the
//! simulator as the exchange on the bridge. Proves what loopback cannot: placement on distinct
//! machines, restapi reading a book held on other machines, REST weight counted per IP, a whole
//! machine lost under continuous reads, and a re-placed replica seeded from a peer over HTTP.
//!
//! Needs root, `ip` (iproute2), `unshare` and `nsenter` (util-linux); without them every test
//! fails with the reason, unless `UBDCC_SKIP_HOSTS=1` skips the suite on purpose.

// The network, the hosts and the processes on them.
mod net;
// The cluster over the hosts: simulator, mgmt, restapis, DCNs, and what tests ask of them.
mod rig;
// The blocking HTTP client of the e2e suite.
#[path = "../e2e/support/http.rs"]
mod http;

// Replicas of a book land on distinct machines.
mod placement;
// restapi on host 1 serves books only hosts 2 and 3 hold, equal to the truth.
mod remote_read;
// Each host's snapshots count against its own IP at the simulator.
mod weight;
// A whole host killed under continuous reads; the replacement seeded over HTTP.
mod host_loss;
