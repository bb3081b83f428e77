//! Binance's side of the protocol: the messages as they arrive on the wire.

pub mod wire;
