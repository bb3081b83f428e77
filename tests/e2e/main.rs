//! End-to-end tests with real processes on loopback: `ubdcc sim` as the exchange, `ubdcc dcn`
//! keeping books from it, mgmt and restapi around them, readers checking the books against the
//! simulator's truth.

mod bad_input;
mod book_reads;
mod cluster;
mod coin_futures;
mod faults;
mod gateway;
mod http;
mod peer_seeding;
mod progressive_depth;
mod pypi_client;
mod shared_ban;
mod snapshots;
mod start;
mod sync;
