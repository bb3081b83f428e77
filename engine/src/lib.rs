//! The DepthCache node's data plane (not yet built).
//!
//! This crate will hold the order book, exact decimals, Binance's protocol per exchange, the sync
//! state machine, connections, the snapshot scheduler and publishing into `ubdcc-shm` segments.
//! It is built by the engine issue; until then it deliberately exports nothing, so nothing can
//! depend on behaviour that does not exist.
#![forbid(unsafe_code)]
