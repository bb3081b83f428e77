//! The simulator's settings: markets, event rate, seed, book depth, REST budgets and WebSocket
//! limits. Built with [`SimConfig::builder`]; the defaults are Binance's values.

use std::time::Duration;

use crate::error::ConfigError;
use crate::family::{Family, Venue};

/// The most updates a market's history keeps, whatever the rate. An update costs about 250
/// bytes and the checkpoints about 2 MB per market, so 100 000 updates are about 27 MB per
/// market; the default (10 markets per family at 10 Hz) keeps 1024 and needs about 110 MB in all.
const MAX_RETAINED_UPDATES: usize = 100_000;

/// The fewest updates a market's history keeps (also the manual-stepping value).
const MIN_RETAINED_UPDATES: usize = 1024;

/// The WebSocket limits of one venue (`docs/binance-protocol.md` §1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueLimits {
    /// How often the server pings each connection.
    pub ping_interval: Duration,
    /// How long a ping may stay unanswered before the connection is dropped.
    pub pong_timeout: Duration,
    /// Streams one connection may hold.
    pub max_streams: usize,
    /// Client frames (text, ping, pong, binary) per second before the connection is closed.
    pub max_messages_per_second: u32,
    /// Connection lifetime; Binance cuts every connection after 24 hours.
    pub max_lifetime: Duration,
}

impl VenueLimits {
    /// Binance's limits for `venue`: spot pings every 20 s and wants a pong within a minute,
    /// 5 messages/s, 1024 streams; futures pings every 3 min, 10 min deadline, 10 messages/s,
    /// 200 streams (used for options too, whose `fstream/public` values are unknown); COIN-M's
    /// `dstream` documents the same numbers as USD-M's `fstream`.
    pub fn binance(venue: Venue) -> VenueLimits {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        match venue {
            Venue::Spot => VenueLimits {
                ping_interval: Duration::from_secs(20),
                pong_timeout: Duration::from_secs(60),
                max_streams: 1024,
                max_messages_per_second: 5,
                max_lifetime: DAY,
            },
            Venue::FStream | Venue::DStream => VenueLimits {
                ping_interval: Duration::from_secs(180),
                pong_timeout: Duration::from_secs(600),
                max_streams: 200,
                max_messages_per_second: 10,
                max_lifetime: DAY,
            },
        }
    }
}

/// Everything the simulator needs to know before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    markets: usize,
    rate_hz: u32,
    seed: u64,
    book_depth: usize,
    options_snapshot_lag: Duration,
    history: Duration,
    weight_limits: [u32; Family::COUNT],
    ban_duration: Duration,
    venues: [VenueLimits; Venue::COUNT],
    unrouted_venue: Venue,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            markets: 10,
            rate_hz: 10,
            seed: 1,
            book_depth: 1500,
            options_snapshot_lag: Duration::ZERO,
            history: Duration::from_secs(60),
            weight_limits: Family::ALL.map(Family::default_weight_limit),
            ban_duration: Duration::from_secs(120),
            venues: Venue::ALL.map(VenueLimits::binance),
            unrouted_venue: Venue::Spot,
        }
    }
}

impl SimConfig {
    /// A builder starting from the defaults: 10 markets per family, 10 events per second per
    /// market, seed 1, 1500 levels per side, no options snapshot lag, 60 s of history, Binance's
    /// weight limits and WebSocket limits, a first ban of 2 minutes, `/ws` and `/stream` for spot.
    pub fn builder() -> SimConfigBuilder {
        SimConfigBuilder {
            config: SimConfig::default(),
        }
    }

    /// Markets per family.
    pub fn markets(&self) -> usize {
        self.markets
    }

    /// Events per second per market; 0 means events come only from `POST /sim/advance`.
    pub fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    /// The seed every market and event derives from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Levels per side each book holds (about; see the generator's rebalancing).
    pub fn book_depth(&self) -> usize {
        self.book_depth
    }

    /// How far the options REST snapshot lags the live stream.
    pub fn options_snapshot_lag(&self) -> Duration {
        self.options_snapshot_lag
    }

    /// The request-weight limit per minute of a family's REST host.
    pub fn weight_limit(&self, family: Family) -> u32 {
        self.weight_limits[family.index()]
    }

    /// The first ban's length; every further ban doubles it, up to 3 days.
    pub fn ban_duration(&self) -> Duration {
        self.ban_duration
    }

    /// The WebSocket limits of a venue.
    pub fn venue_limits(&self, venue: Venue) -> &VenueLimits {
        &self.venues[venue.index()]
    }

    /// The venue the un-routed paths `/ws` and `/stream` belong to.
    pub fn unrouted_venue(&self) -> Venue {
        self.unrouted_venue
    }

    /// Updates each market's history keeps: the configured history plus the options lag at the
    /// configured rate, between 1024 and 100 000.
    pub(crate) fn retained_updates(&self) -> usize {
        let seconds = (self.history + self.options_snapshot_lag).as_secs_f64();
        let wanted = (seconds * f64::from(self.rate_hz)).ceil() as usize;
        wanted.clamp(MIN_RETAINED_UPDATES, MAX_RETAINED_UPDATES)
    }
}

/// Builds a [`SimConfig`]; every setter has the default described on [`SimConfig::builder`].
#[derive(Debug, Clone)]
pub struct SimConfigBuilder {
    config: SimConfig,
}

impl SimConfigBuilder {
    /// Markets per family (`SIM0USDT` … `SIM{n-1}USDT`).
    pub fn markets(mut self, markets: usize) -> Self {
        self.config.markets = markets;
        self
    }

    /// Events per second per market; 0 steps only on `POST /sim/advance`.
    pub fn rate_hz(mut self, rate_hz: u32) -> Self {
        self.config.rate_hz = rate_hz;
        self
    }

    /// The seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Levels per side.
    pub fn book_depth(mut self, levels: usize) -> Self {
        self.config.book_depth = levels;
        self
    }

    /// How far the options REST snapshot lags the stream (`docs/binance-protocol.md` §4.4).
    pub fn options_snapshot_lag(mut self, lag: Duration) -> Self {
        self.config.options_snapshot_lag = lag;
        self
    }

    /// How much past the truth endpoint can tell, at the configured rate.
    pub fn history(mut self, history: Duration) -> Self {
        self.config.history = history;
        self
    }

    /// The per-minute request-weight limit of a family's REST host.
    pub fn weight_limit(mut self, family: Family, limit: u32) -> Self {
        self.config.weight_limits[family.index()] = limit;
        self
    }

    /// The first ban's length.
    pub fn ban_duration(mut self, duration: Duration) -> Self {
        self.config.ban_duration = duration;
        self
    }

    /// All WebSocket limits of a venue at once.
    pub fn venue_limits(mut self, venue: Venue, limits: VenueLimits) -> Self {
        self.config.venues[venue.index()] = limits;
        self
    }

    /// Ping interval and pong deadline of a venue.
    pub fn ping(mut self, venue: Venue, interval: Duration, pong_timeout: Duration) -> Self {
        let limits = &mut self.config.venues[venue.index()];
        limits.ping_interval = interval;
        limits.pong_timeout = pong_timeout;
        self
    }

    /// Which venue the un-routed `/ws` and `/stream` serve: spot (the default), futures and
    /// options (`fstream` accepts un-routed connections too, `docs/binance-protocol.md` §2), or
    /// COIN-M (whose `dstream` has only these paths); one port cannot give the same path to
    /// more than one. Every venue but spot is also served under its
    /// [`Venue::path_prefix`].
    pub fn unrouted_venue(mut self, venue: Venue) -> Self {
        self.config.unrouted_venue = venue;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] names the first setting out of range.
    pub fn build(self) -> Result<SimConfig, ConfigError> {
        let config = self.config;
        if !(1..=10_000).contains(&config.markets) {
            return Err(ConfigError::Markets(config.markets));
        }
        if config.rate_hz > 1000 {
            return Err(ConfigError::Rate(config.rate_hz));
        }
        if !(10..=5000).contains(&config.book_depth) {
            return Err(ConfigError::BookDepth(config.book_depth));
        }
        for family in Family::ALL {
            let limit = config.weight_limit(family);
            if limit == 0 {
                return Err(ConfigError::WeightLimit { family, limit });
            }
        }
        for limits in &config.venues {
            let zero = [
                ("ping_interval", limits.ping_interval.is_zero()),
                ("pong_timeout", limits.pong_timeout.is_zero()),
                ("max_streams", limits.max_streams == 0),
                (
                    "max_messages_per_second",
                    limits.max_messages_per_second == 0,
                ),
                ("max_lifetime", limits.max_lifetime.is_zero()),
            ];
            if let Some((setting, _)) = zero.into_iter().find(|(_, is_zero)| *is_zero) {
                return Err(ConfigError::WebSocket { setting });
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_binances_values() {
        let config = SimConfig::builder().build();
        let Ok(config) = config else {
            panic!("defaults must be valid: {config:?}");
        };
        assert_eq!(config.weight_limit(Family::Spot), 6000);
        assert_eq!(config.venue_limits(Venue::FStream).max_streams, 200);
        assert_eq!(config.venue_limits(Venue::Spot).max_messages_per_second, 5);
        assert_eq!(config.weight_limit(Family::CoinFutures), 2400);
        let dstream = config.venue_limits(Venue::DStream);
        assert_eq!(
            (
                dstream.max_streams,
                dstream.max_messages_per_second,
                dstream.ping_interval,
                dstream.pong_timeout
            ),
            (200, 10, Duration::from_secs(180), Duration::from_secs(600))
        );
    }

    #[test]
    fn out_of_range_settings_are_named() {
        assert_eq!(
            SimConfig::builder().markets(0).build(),
            Err(ConfigError::Markets(0))
        );
        assert_eq!(
            SimConfig::builder()
                .weight_limit(Family::Options, 0)
                .build(),
            Err(ConfigError::WeightLimit {
                family: Family::Options,
                limit: 0
            })
        );
    }

    #[test]
    fn history_covers_the_options_lag() {
        let Ok(config) = SimConfig::builder()
            .rate_hz(100)
            .options_snapshot_lag(Duration::from_secs(30))
            .build()
        else {
            panic!("valid settings");
        };
        assert_eq!(config.retained_updates(), 9000);
    }
}
