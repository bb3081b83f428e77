//! The one TLS crypto provider of the engine's HTTPS and WSS clients.

/// Installs *ring* as the process's rustls provider unless one is installed already. Every
/// constructor of a TLS client calls this first: reqwest (built without a provider of its own)
/// panics when none is installed, and *ring* builds with a C compiler alone (no cmake).
pub(crate) fn install_crypto_provider() {
    // Err means a provider is installed already, which is all that is needed.
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
}
