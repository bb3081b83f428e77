//! Integration tests of the simulator over real sockets: each test starts its own simulator on
//! `127.0.0.1:0` and talks to it with an HTTP client and tokio-tungstenite.
//!
//! Most tests run with `rate_hz = 0` and step the markets with `POST /sim/advance`, so they
//! know exactly which events exist; no test sleeps for readiness or asserts on elapsed time.

// Checks the REST shapes, limits and errors of every family.
mod rest;
// Checks weight headers, 429 → 418 escalation and forced statuses.
mod weight;
// Checks stream endpoints, shapes, control messages and connection limits.
mod websocket;
// Checks server pings, pong deadlines and the message rate that pongs count towards.
mod ping;
// Checks every fault of /sim/control.
mod faults;
// Checks that WS events applied to a REST snapshot reproduce /sim/truth.
mod truth;
// Checks that a seed fixes the events.
mod determinism;
// Checks COIN-M's REST host, its dstream venue under /dstream, and its faults.
mod coin_futures;
// The test simulator, clients and a reference book.
mod support;
