//! Replaying a recording (`ubdcc replay`, `docs/recording.md`) through Binance's protocol, so an
//! unchanged client (our cluster, or any other) reproduces a recorded period of the market.
//!
//! - Streams: a combined-stream WebSocket per venue (`/stream`, `/public/stream`,
//!   `/dstream/stream`) takes `SUBSCRIBE`/`UNSUBSCRIBE`/`LIST_SUBSCRIPTIONS` and carries every
//!   recorded frame of its subscribed streams, unchanged, at the recorded pace × `speed` from
//!   the first subscription on (the replay's clock starts then)
//!   (gaps and duplicates the recorder saw are replayed too: the client meets what the recorded
//!   node met).
//! - REST: `<prefix>/depth?symbol=&limit=` answers the book at the update id the replay has
//!   reached — a recorded starting book advanced by the recorded events since — in the family's
//!   shape. While the recording does not know the book (before its first starting book, after a
//!   gap until the next one) a request waits for it, up to 30 s, then gets Binance's -1007.
//! - `from`/`to` (Unix ns): records before `from` only build the books; the replay stops after
//!   `to`.
//!
//! Not served: raw `/ws` streams, `exchangeInfo`, weight limits and faults (use the live
//! simulator for those); a client must subscribe the recorded stream names (same update speed).
//!
//! Files: `recording` (the reader, also used by `ubdcc export`), `market` (a replayed book),
//! `server` (pacing, REST, WebSocket), this file (the entry point).

mod market;
pub mod recording;
mod server;

use std::future::Future;
use std::io;
use std::path::PathBuf;

use tokio::net::TcpListener;

use recording::{Recording, RecordingError};

/// What to replay, and how fast.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The recording's directory.
    pub dir: PathBuf,
    /// 1.0 is the recorded pace; 10.0 ten times faster.
    pub speed: f64,
    /// Start at this time (Unix ns); `None`: at the beginning.
    pub from_ns: Option<u64>,
    /// Stop after this time (Unix ns); `None`: at the end.
    pub to_ns: Option<u64>,
}

/// A replay could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The recording cannot be opened.
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// `speed` is not a positive number.
    #[error("speed must be a positive number, got {0}")]
    Speed(f64),
    /// Serving failed.
    #[error("serving the replay: {0}")]
    Io(#[from] io::Error),
}

/// Serves the recording in `config.dir` on `listener` until `shutdown` completes (the books
/// stay served after the recording ends).
///
/// # Errors
/// [`ReplayError::Recording`] when the directory holds no readable recording,
/// [`ReplayError::Speed`] for a speed that is not positive, [`ReplayError::Io`] when serving
/// fails.
pub async fn replay(
    listener: TcpListener,
    config: ReplayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReplayError> {
    if !(config.speed.is_finite() && config.speed > 0.0) {
        return Err(ReplayError::Speed(config.speed));
    }
    let recording = Recording::open(&config.dir)?;
    tracing::info!(
        address = %listener.local_addr()?,
        dir = %config.dir.display(),
        files = recording.files().count(),
        speed = config.speed,
        "replay serving"
    );
    let shared = server::Shared::new();
    let items = server::spawn_reader(recording);
    tokio::spawn(server::pace(shared.clone(), config, items));
    let app = server::router(shared.clone());
    let stopping = shared.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.shut_down();
        })
        .await?;
    shared.shut_down();
    Ok(())
}
