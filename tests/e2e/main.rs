//! End-to-end tests with real processes on loopback: `ubdcc sim` as the exchange, `ubdcc dcn`
//! keeping books from it, mgmt and restapi around them, readers checking the books against the
//! simulator's truth.

// The processes, rigs, waits and truth comparisons every test uses; test files hold only tests.
mod support;

mod bad_input;
mod book_reads;
mod coin_futures;
mod faults;
mod gateway;
mod peer_seeding;
mod progressive_depth;
mod push;
mod pypi_client;
mod record_replay;
mod shared_ban;
mod snapshots;
mod start;
mod sync;
mod trust_audit;
mod trust_freshness;
mod trust_invariants;
mod trust_replicas;
