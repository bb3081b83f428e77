//! Stopping a pod: one signal that `/shutdown`, Ctrl-C and SIGTERM all trigger, and that every
//! task of the pod waits on.

use std::time::Duration;

use tokio::sync::watch;

/// A pod's shutdown signal; clones share it.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Sender<bool>);

impl Default for ShutdownSignal {
    fn default() -> Self {
        Self(watch::Sender::new(false))
    }
}

impl ShutdownSignal {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Triggers it now.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Triggers it in 200 ms, so the answer to `/shutdown` still goes out.
    pub fn trigger_soon(&self) {
        let signal = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            signal.trigger();
        });
    }

    /// Completes once triggered.
    pub async fn wait(&self) {
        let mut receiver = self.0.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        receiver.wait_for(|stopped| *stopped).await.ok();
    }

    /// Triggers on Ctrl-C or SIGTERM. The handlers are installed before this returns (a
    /// SIGTERM right after start must not kill the process before it cleans up).
    pub fn on_os_signals(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let (interrupt, terminate) = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for SIGINT / SIGTERM");
                return;
            }
        };
        let signal = self.clone();
        tokio::spawn(async move {
            let (mut interrupt, mut terminate) = (interrupt, terminate);
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            signal.trigger();
        });
    }
}

/// How often pods sweep their host's shared memory for segments of crashed DCNs.
pub const DEAD_SEGMENT_SWEEP: Duration = Duration::from_secs(5);

/// Removes segments of crashed DCNs of `cluster` on this host now and every
/// [`DEAD_SEGMENT_SWEEP`] (spawned on the current runtime; ends with the runtime).
pub fn sweep_dead_segments(cluster: &str) {
    let Ok(mut reader) = ubdcc_shm::ClusterReader::open(cluster) else {
        return;
    };
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(DEAD_SEGMENT_SWEEP);
        loop {
            ticker.tick().await;
            for name in reader.remove_dead_segments() {
                tracing::info!(segment = %name, "removed the segment of a DCN that is gone");
            }
        }
    });
}
