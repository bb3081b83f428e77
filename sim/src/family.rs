//! The four market families the simulator serves and what Binance's protocol fixes for each:
//! REST prefix, snapshot limits and weights, per-minute weight limits, stream speeds, and the
//! WebSocket venue (`stream.binance.com` style for spot, `fstream.binance.com/public` style for
//! USD-M futures and options, `dstream.binance.com` style for COIN-M futures).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A market family: one REST host with its own weight budget, and one sync family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Spot (`/api/v3`, `binance.com`).
    Spot,
    /// USD-M futures (`/fapi/v1`, `binance.com-futures`).
    Futures,
    /// European options (`/eapi/v1`, `binance.com-vanilla-options`).
    Options,
    /// COIN-M futures (`/dapi/v1`, `binance.com-coin_futures`): coin-margined perpetual and
    /// delivery contracts (`BTCUSD_PERP`, `BTCUSD_260626`).
    #[serde(rename = "coin_futures")]
    CoinFutures,
}

impl Family {
    /// How many families there are (the length of per-family arrays).
    pub const COUNT: usize = 4;

    /// Every family, in index order.
    pub const ALL: [Family; Family::COUNT] = [
        Family::Spot,
        Family::Futures,
        Family::Options,
        Family::CoinFutures,
    ];

    /// The family's name as used in the simulator's JSON (`spot`, `futures`, `options`,
    /// `coin_futures`).
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Spot => "spot",
            Family::Futures => "futures",
            Family::Options => "options",
            Family::CoinFutures => "coin_futures",
        }
    }

    /// Position in [`Family::ALL`], for per-family arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Family::Spot => 0,
            Family::Futures => 1,
            Family::Options => 2,
            Family::CoinFutures => 3,
        }
    }

    /// The REST path prefix (`/api/v3`, `/fapi/v1`, `/eapi/v1`, `/dapi/v1`).
    pub fn rest_prefix(self) -> &'static str {
        match self {
            Family::Spot => "/api/v3",
            Family::Futures => "/fapi/v1",
            Family::Options => "/eapi/v1",
            Family::CoinFutures => "/dapi/v1",
        }
    }

    /// The request-weight limit per minute (`docs/binance-protocol.md` §1.2). Binance does not
    /// document the options limit; the simulator uses the futures value, 2400, since both live
    /// on the same derivatives platform. COIN-M's is 2400 too, counted on its own host.
    pub fn default_weight_limit(self) -> u32 {
        match self {
            Family::Spot => 6000,
            Family::Futures | Family::Options | Family::CoinFutures => 2400,
        }
    }

    /// The WebSocket venue that carries this family's streams.
    pub fn venue(self) -> Venue {
        match self {
            Family::Spot => Venue::Spot,
            Family::Futures | Family::Options => Venue::FStream,
            Family::CoinFutures => Venue::DStream,
        }
    }

    /// The path under which the simulator also serves this family's REST and stream hosts, for
    /// a family whose stream paths are the same as another family's on Binance (COIN-M's
    /// `dstream` has spot's un-routed `/ws` and `/stream`). One port cannot tell hosts apart, so
    /// `/dstream` stands for COIN-M's two hosts: an exchange endpoint
    /// `binance.com-coin_futures=http://<sim>/dstream` reaches `/dstream/dapi/v1/depth` and
    /// `/dstream/stream`. `None`: the family's paths are unique at the root.
    pub fn host_prefix(self) -> Option<&'static str> {
        match self {
            Family::Spot | Family::Futures | Family::Options => None,
            Family::CoinFutures => Some(Venue::DStream.path_prefix()),
        }
    }

    /// The snapshot depth when the request names no `limit`.
    pub(crate) fn default_depth_limit(self) -> u32 {
        match self {
            Family::Spot | Family::Options => 100,
            Family::Futures | Family::CoinFutures => 500,
        }
    }

    /// The weight of `GET <prefix>/depth` at an accepted `limit` (`docs/binance-protocol.md`
    /// §1.2). For options at 10–50 the two doc versions say 1 or 2; the simulator charges 2, so
    /// an engine that fits the simulator's budget also fits Binance's. COIN-M's `/dapi/v1/depth`
    /// has USD-M's bands.
    pub(crate) fn depth_weight(self, limit: u32) -> u32 {
        match self {
            Family::Spot => match limit {
                0..=100 => 5,
                101..=500 => 25,
                501..=1000 => 50,
                _ => 250,
            },
            Family::Futures | Family::Options | Family::CoinFutures => match limit {
                0..=50 => 2,
                51..=100 => 5,
                101..=500 => 10,
                _ => 20,
            },
        }
    }

    /// The `limit` values the family accepts: `None` for spot (any of 1..=5000; more is
    /// truncated to 5000, as the spot docs say), the fixed list otherwise.
    pub(crate) fn valid_depth_limits(self) -> Option<&'static [u32]> {
        match self {
            Family::Spot => None,
            Family::Futures | Family::CoinFutures => Some(&[5, 10, 20, 50, 100, 500, 1000]),
            Family::Options => Some(&[10, 20, 50, 100, 500, 1000]),
        }
    }

    /// The weight of `exchangeInfo` (spot 20, the derivatives families 1).
    pub(crate) fn exchange_info_weight(self) -> u32 {
        match self {
            Family::Spot => 20,
            Family::Futures | Family::Options | Family::CoinFutures => 1,
        }
    }

    /// Whether the family serves a diff-depth stream at `speed` (`docs/binance-protocol.md`
    /// §1.3: options have no bare `@depth`, spot has no `@depth@500ms`; both futures families
    /// have all three).
    pub(crate) fn accepts_speed(self, speed: Speed) -> bool {
        match (self, speed) {
            (Family::Spot, Speed::Ms500) | (Family::Options, Speed::Default) => false,
            (Family::Spot, Speed::Default | Speed::Ms100)
            | (
                Family::Futures | Family::CoinFutures,
                Speed::Default | Speed::Ms100 | Speed::Ms500,
            )
            | (Family::Options, Speed::Ms100 | Speed::Ms500) => true,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The speed suffix of a diff-depth stream name. Every speed carries every event (see the crate
/// doc), so the suffix only selects the stream name and whether the family accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Speed {
    /// `<symbol>@depth`.
    Default,
    /// `<symbol>@depth@100ms`.
    Ms100,
    /// `<symbol>@depth@500ms`.
    Ms500,
}

impl Speed {
    /// Parses what follows `<symbol>@` in a stream name.
    pub(crate) fn from_suffix(suffix: &str) -> Option<Speed> {
        match suffix {
            "depth" => Some(Speed::Default),
            "depth@100ms" => Some(Speed::Ms100),
            "depth@500ms" => Some(Speed::Ms500),
            _ => None,
        }
    }
}

/// A WebSocket venue: a set of endpoints with one set of connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Venue {
    /// Spot streams (`/ws`, `/stream`), as on `stream.binance.com`.
    Spot,
    /// Futures and options streams (`/public/ws`, `/public/stream`), as on
    /// `fstream.binance.com/public`; the symbol decides the family.
    FStream,
    /// COIN-M streams, as on `dstream.binance.com` (`/ws`, `/stream`, served under
    /// [`Venue::path_prefix`]).
    DStream,
}

impl Venue {
    /// How many venues there are (the length of per-venue arrays).
    pub const COUNT: usize = 3;

    /// Every venue, in index order.
    pub const ALL: [Venue; Venue::COUNT] = [Venue::Spot, Venue::FStream, Venue::DStream];

    /// The venue's name in the simulator's JSON (`spot`, `fstream`, `dstream`).
    pub fn as_str(self) -> &'static str {
        match self {
            Venue::Spot => "spot",
            Venue::FStream => "fstream",
            Venue::DStream => "dstream",
        }
    }

    /// Position in [`Venue::ALL`], for per-venue arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Venue::Spot => 0,
            Venue::FStream => 1,
            Venue::DStream => 2,
        }
    }

    /// The families whose streams this venue carries.
    pub(crate) fn families(self) -> &'static [Family] {
        match self {
            Venue::Spot => &[Family::Spot],
            Venue::FStream => &[Family::Futures, Family::Options],
            Venue::DStream => &[Family::CoinFutures],
        }
    }

    /// Where the venue's `/ws` and `/stream` are mounted besides the un-routed root: `/public`
    /// (Binance's own route on `fstream`), `/dstream` (the simulator's stand-in for COIN-M's
    /// hosts, see [`Family::host_prefix`]), nothing for spot.
    pub fn path_prefix(self) -> &'static str {
        match self {
            Venue::Spot => "",
            Venue::FStream => "/public",
            Venue::DStream => "/dstream",
        }
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_weights_at_1000_match_the_reference() {
        assert_eq!(Family::Spot.depth_weight(1000), 50);
        assert_eq!(Family::Futures.depth_weight(1000), 20);
        assert_eq!(Family::Options.depth_weight(1000), 20);
        assert_eq!(Family::Spot.depth_weight(5000), 250);
        assert_eq!(Family::Futures.depth_weight(5), 2);
    }

    #[test]
    fn options_have_no_bare_depth_stream_and_spot_no_500ms() {
        assert!(!Family::Options.accepts_speed(Speed::Default));
        assert!(!Family::Spot.accepts_speed(Speed::Ms500));
        assert!(Family::Futures.accepts_speed(Speed::Ms500));
    }

    #[test]
    fn coin_m_has_its_own_prefix_venue_and_usd_m_numbers() {
        let coin_m = Family::CoinFutures;
        assert_eq!(coin_m.rest_prefix(), "/dapi/v1");
        assert_eq!(coin_m.venue(), Venue::DStream);
        assert_eq!(coin_m.host_prefix(), Some("/dstream"));
        assert_eq!(Family::Futures.host_prefix(), None);
        assert_eq!(coin_m.default_weight_limit(), 2400);
        assert_eq!(coin_m.default_depth_limit(), 500);
        assert_eq!(coin_m.exchange_info_weight(), 1);
        let weights: Vec<u32> = [5, 10, 20, 50, 100, 500, 1000]
            .map(|limit| coin_m.depth_weight(limit))
            .to_vec();
        assert_eq!(weights, [2, 2, 2, 2, 5, 10, 20]);
        assert_eq!(
            coin_m.valid_depth_limits(),
            Some(&[5, 10, 20, 50, 100, 500, 1000][..])
        );
        for speed in [Speed::Default, Speed::Ms100, Speed::Ms500] {
            assert!(coin_m.accepts_speed(speed), "{speed:?}");
        }
    }

    #[test]
    fn every_family_has_its_place_in_the_per_family_arrays() {
        for (index, family) in Family::ALL.into_iter().enumerate() {
            assert_eq!(family.index(), index, "{family}");
            assert!(family.venue().families().contains(&family), "{family}");
            let json = serde_json::to_string(&family).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", family.as_str()));
        }
        for (index, venue) in Venue::ALL.into_iter().enumerate() {
            assert_eq!(venue.index(), index, "{venue}");
        }
    }
}
