//! The `ubdcc` binary (being built up issue by issue).
fn main() {}
