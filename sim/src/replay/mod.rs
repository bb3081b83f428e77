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
//! - One exchange per family: binance.com, binance.us, trbinance.com, the testnets and margin
//!   all speak spot's protocol on the same paths, so a recording holding two of them (e.g.
//!   `binance.com` and `binance.us` books) is refused with [`ReplayError::MixedExchanges`]
//!   rather than merging their books ([`check_recording`] checks the recording's beginning
//!   before a command binds its port; a second exchange first met later ends the replay there). `ubdcc export` keys books
//!   by exchange and exports such a recording whole.
//! - Limits (it is a test tool, but may listen beyond loopback): WebSocket messages of at most
//!   [`MAX_MESSAGE`] bytes, [`MAX_STREAMS`] streams per connection, and at most
//!   [`MAX_DEPTH_WAITS`] depth requests waiting for a book at a time (more get -1003 at once).
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
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpListener;

use recording::{Recording, RecordingError};

pub use server::{MAX_DEPTH_WAITS, MAX_MESSAGE, MAX_STREAMS};

/// The speeds a replay takes: a hundredth of the recorded pace to ten thousand times it.
pub const SPEEDS: std::ops::RangeInclusive<f64> = 0.01..=10_000.0;

/// What to replay, and how fast.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The recording's directory.
    pub dir: PathBuf,
    /// 1.0 is the recorded pace; 10.0 ten times faster; within [`SPEEDS`].
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
    /// `speed` is not within [`SPEEDS`].
    #[error("speed must be a number from 0.01 to 10000, got {0:?}")]
    Speed(f64),
    /// The recording holds two exchanges of one family, which the replay would serve as one.
    #[error(
        "the recording holds books of {first} and of {second}, both {family} exchanges: the \
         replay serves one exchange per family (they share its paths) and would merge their \
         books; replay a recording of one of them (`ubdcc export` exports both)"
    )]
    MixedExchanges {
        /// The family.
        family: String,
        /// The exchange met first.
        first: String,
        /// The other one.
        second: String,
    },
    /// Serving failed.
    #[error("serving the replay: {0}")]
    Io(#[from] io::Error),
}

/// Serves the recording in `config.dir` on `listener` until `shutdown` completes (the books
/// stay served after the recording ends).
///
/// # Errors
/// [`ReplayError::Recording`] when the directory holds no readable recording,
/// [`ReplayError::Speed`] for a speed outside [`SPEEDS`], [`ReplayError::MixedExchanges`] for a
/// recording of two exchanges of one family, [`ReplayError::Io`] when serving fails.
pub async fn replay(
    listener: TcpListener,
    config: ReplayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReplayError> {
    config.validate()?;
    let recording = Recording::open(&config.dir)?;
    tracing::info!(
        address = %listener.local_addr()?,
        dir = %config.dir.display(),
        files = recording.files().count(),
        speed = config.speed,
        "replay serving"
    );
    let shared = server::Shared::new();
    let (items, mut refused) = server::spawn_reader(recording);
    tokio::spawn(server::pace(shared.clone(), config, items));
    let app = server::router(shared.clone());
    let stopping = shared.clone();
    let refusal = Arc::new(Mutex::new(None));
    let refusal_seen = Arc::clone(&refusal);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {}
                // A reader that ends without a refusal drops its sender: this branch is then
                // disabled and the replay serves on.
                Ok(mixed) = &mut refused => {
                    *refusal_seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(mixed);
                }
            }
            stopping.shut_down();
        })
        .await?;
    shared.shut_down();
    let refusal = refusal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    refusal.map_or(Ok(()), |mixed| Err(mixed.into()))
}

impl From<server::MixedExchanges> for ReplayError {
    fn from(mixed: server::MixedExchanges) -> Self {
        Self::MixedExchanges {
            family: mixed.family.to_string(),
            first: mixed.first,
            second: mixed.second,
        }
    }
}

/// Checks a recording before it is served: it opens, and its first records (what the replay
/// reads ahead at start) hold no two exchanges of one family. Cheap (milliseconds), so a
/// command can refuse such a recording before it binds and announces its port; [`replay`]
/// checks every record in any case.
///
/// # Errors
/// [`ReplayError::Recording`] when the recording cannot be opened or read,
/// [`ReplayError::MixedExchanges`] when its beginning holds two exchanges of one family.
pub fn check_recording(dir: &std::path::Path) -> Result<(), ReplayError> {
    let mut seen = server::ExchangesSeen::default();
    for item in Recording::open(dir)?.take(server::READ_AHEAD) {
        seen.check(&item?.exchange)?;
    }
    Ok(())
}

impl ReplayConfig {
    /// Checks what can be checked before the recording is opened: the speed.
    ///
    /// # Errors
    /// [`ReplayError::Speed`] for a speed outside [`SPEEDS`] (or not a number).
    pub fn validate(&self) -> Result<(), ReplayError> {
        if !SPEEDS.contains(&self.speed) {
            return Err(ReplayError::Speed(self.speed));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record as the recorder frames it.
    fn record(kind: u8, exchange: &str, market: &str, payload: &str) -> Vec<u8> {
        let mut body = vec![kind];
        body.extend_from_slice(&1u64.to_le_bytes());
        body.push(exchange.len() as u8);
        body.extend_from_slice(exchange.as_bytes());
        body.push(market.len() as u8);
        body.extend_from_slice(market.as_bytes());
        body.extend_from_slice(payload.as_bytes());
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend(body);
        out
    }

    fn config(dir: PathBuf, speed: f64) -> ReplayConfig {
        ReplayConfig {
            dir,
            speed,
            from_ns: None,
            to_ns: None,
        }
    }

    #[test]
    fn speeds_outside_the_range_are_refused_not_a_panic() {
        for speed in [1e-300, 0.0, -1.0, 0.009, 10_001.0, f64::NAN, f64::INFINITY] {
            let error = config(PathBuf::new(), speed).validate();
            assert!(matches!(error, Err(ReplayError::Speed(_))), "{speed}");
        }
        for speed in [*SPEEDS.start(), 1.0, 10.0, *SPEEDS.end()] {
            assert!(config(PathBuf::new(), speed).validate().is_ok(), "{speed}");
        }
        let message = ReplayError::Speed(0.0).to_string();
        let bounds = format!("from {} to {}", SPEEDS.start(), SPEEDS.end());
        assert!(message.contains(&bounds), "{message}");
    }

    /// A directory holding one recording file of starting books of `exchanges`.
    fn recording_of(name: &str, exchanges: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ubdcc-sim-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).expect("dir");
        let book = r#"{"lastUpdateId":1,"depth":5,"bids":[],"asks":[]}"#;
        let records: Vec<u8> = exchanges
            .iter()
            .flat_map(|exchange| record(2, exchange, "BTCUSDT", book))
            .collect();
        let file = zstd::encode_all(records.as_slice(), 3).expect("zstd");
        let name = format!("a{}", recording::FILE_SUFFIX);
        std::fs::write(dir.join(name), file).expect("write");
        dir
    }

    #[test]
    fn a_recording_of_one_exchange_per_family_passes_the_check() {
        let dir = recording_of(
            "one-each",
            &["binance.com", "binance.com-futures", "binance.com"],
        );
        check_recording(&dir).expect("one exchange per family");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_recording_of_two_exchanges_of_one_family_is_refused() {
        let dir = recording_of(
            "mixed",
            &["binance.com", "binance.com-futures", "binance.us"],
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        // Never shut down from outside: only the refusal ends it.
        let outcome = replay(listener, config(dir.clone(), 1.0), std::future::pending()).await;
        let Err(ReplayError::MixedExchanges {
            family,
            first,
            second,
        }) = outcome
        else {
            panic!("refused: {outcome:?}");
        };
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("binance.com", "binance.us")
        );
        assert_eq!(family, crate::family::Family::Spot.to_string());
        let checked = check_recording(&dir);
        assert!(
            matches!(checked, Err(ReplayError::MixedExchanges { .. })),
            "{checked:?}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
