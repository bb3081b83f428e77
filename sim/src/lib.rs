//! A local exchange that speaks Binance's wire protocol, with fault injection (not yet built).
//!
//! Built by the engine issue. It shares no code with `ubdcc-engine`, by design: a misreading of
//! the protocol in one must not be able to hide in the other.
#![forbid(unsafe_code)]
