//! Push clients per peer IP address: the per-host cap on connections, the `/sse` request
//! rate and the host's share of the server-wide stream budgets (subscriptions and view levels
//! held by all its connections), so one neighbour can take neither every client slot, nor the
//! workers' time, nor every distinct stream or view level.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::limits::{
    MAX_CLIENTS_PER_IP, MAX_NEW_VIEW_LEVELS_PER_IP_PER_SECOND, MAX_SSE_PER_IP_PER_SECOND,
    MAX_STREAMS_PER_IP, MAX_VIEW_LEVELS_PER_IP,
};
use super::registry::view_levels;
use super::stream::StreamName;

/// Entries kept before stale ones (no client, no request in the last second) are swept: the map
/// never holds more than the connected peers plus one second of requesters.
const SWEEP_ABOVE: usize = 4096;

/// Why a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PeerError {
    /// It holds [`MAX_CLIENTS_PER_IP`] push clients.
    #[error("this address holds its most push clients ({MAX_CLIENTS_PER_IP}); close one first")]
    Clients,
    /// It made [`MAX_SSE_PER_IP_PER_SECOND`] `/sse` requests this second.
    #[error("too many /sse requests: at most {MAX_SSE_PER_IP_PER_SECOND} a second per address")]
    Rate,
}

/// Why a peer's subscriptions were refused: its share of the server-wide stream budgets is
/// held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ShareError {
    /// Its connections hold [`MAX_STREAMS_PER_IP`] distinct streams.
    #[error(
        "this address's connections hold their most distinct streams ({MAX_STREAMS_PER_IP} in all), {held} now and asked for {more} more; unsubscribe first"
    )]
    Streams {
        /// Held now.
        held: usize,
        /// Asked for (names none of its connections holds yet).
        more: usize,
    },
    /// Its connections' distinct streams hold [`MAX_VIEW_LEVELS_PER_IP`] view levels.
    #[error(
        "this address's streams hold their most view levels ({MAX_VIEW_LEVELS_PER_IP}: N per distinct @bookN name, 1 per @bbo), {held} now and asked for {more} more; unsubscribe first, or a shallower @bookN"
    )]
    ViewLevels {
        /// Held now.
        held: u64,
        /// Asked for.
        more: u64,
    },
    /// Its connections subscribed names new to it of
    /// [`MAX_NEW_VIEW_LEVELS_PER_IP_PER_SECOND`] view levels this second.
    #[error(
        "this address made new streams of their most view levels this second ({MAX_NEW_VIEW_LEVELS_PER_IP_PER_SECOND} a second), {made} so far and asked for {more} more; try again in a second"
    )]
    Churn {
        /// Made this second.
        made: u64,
        /// Asked for.
        more: u64,
    },
}

/// One peer's clients, its current second (`/sse` requests and new view levels in it) and the
/// streams its clients hold.
#[derive(Debug)]
struct Peer {
    clients: usize,
    second: Instant,
    requests: u32,
    /// View levels of the names new to it this second ([`MAX_NEW_VIEW_LEVELS_PER_IP_PER_SECOND`]).
    new_levels: u64,
    /// Distinct stream names its connections hold → how many of them hold each.
    names: HashMap<Arc<str>, u32>,
    /// View levels of `names` (`super::registry::view_levels` each, counted once per name).
    levels: u64,
}

impl Peer {
    /// Starts a new second at `now` when the current one is over.
    fn tick(&mut self, now: Instant) {
        if now.saturating_duration_since(self.second) >= Duration::from_secs(1) {
            (self.second, self.requests, self.new_levels) = (now, 0, 0);
        }
    }
}

/// Every peer with a client or a recent request.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    inner: Mutex<HashMap<IpAddr, Peer>>,
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Peer>> {
        // Each update is one step: a panic elsewhere leaves consistent counts.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an `/sse` request of `ip` made at `now`.
    ///
    /// # Errors
    /// [`PeerError::Rate`] past the rate.
    pub(crate) fn count_request(&self, ip: IpAddr, now: Instant) -> Result<(), PeerError> {
        let mut peers = self.lock();
        let peer = entry(&mut peers, ip, now);
        peer.tick(now);
        peer.requests += 1;
        if peer.requests > MAX_SSE_PER_IP_PER_SECOND {
            return Err(PeerError::Rate);
        }
        Ok(())
    }

    /// Takes a client slot of `ip`.
    ///
    /// # Errors
    /// [`PeerError::Clients`] when it holds its most.
    pub(crate) fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), PeerError> {
        let mut peers = self.lock();
        let peer = entry(&mut peers, ip, now);
        if peer.clients >= MAX_CLIENTS_PER_IP {
            return Err(PeerError::Clients);
        }
        peer.clients += 1;
        Ok(())
    }

    /// Gives a client slot of `ip` back.
    pub(crate) fn release(&self, ip: IpAddr) {
        if let Some(peer) = self.lock().get_mut(&ip) {
            peer.clients = peer.clients.saturating_sub(1);
        }
    }

    /// Counts `names` (each once; a connection of `ip` subscribes to them) against `ip`'s share,
    /// all or none: a name none of its connections holds yet takes one of its distinct streams
    /// and its view levels. The caller gives them back with [`Peers::give_back`].
    ///
    /// # Errors
    /// [`ShareError`] when `ip`'s connections would hold more than their share.
    pub(crate) fn take(
        &self,
        ip: IpAddr,
        names: &[StreamName],
        now: Instant,
    ) -> Result<(), ShareError> {
        let mut peers = self.lock();
        let peer = entry(&mut peers, ip, now);
        peer.tick(now);
        let new = || {
            names
                .iter()
                .filter(|name| !peer.names.contains_key(name.text()))
        };
        let more = new().count();
        if peer.names.len() + more > MAX_STREAMS_PER_IP {
            return Err(ShareError::Streams {
                held: peer.names.len(),
                more,
            });
        }
        let levels: u64 = new().map(view_levels).sum();
        if peer.levels + levels > MAX_VIEW_LEVELS_PER_IP {
            return Err(ShareError::ViewLevels {
                held: peer.levels,
                more: levels,
            });
        }
        if peer.new_levels + levels > MAX_NEW_VIEW_LEVELS_PER_IP_PER_SECOND {
            return Err(ShareError::Churn {
                made: peer.new_levels,
                more: levels,
            });
        }
        peer.levels += levels;
        peer.new_levels += levels;
        for name in names {
            *peer.names.entry(Arc::clone(name.text())).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Gives `names` (taken by one connection of `ip`) back to `ip`'s share.
    pub(crate) fn give_back<'a>(&self, ip: IpAddr, names: impl Iterator<Item = &'a StreamName>) {
        let mut peers = self.lock();
        let Some(peer) = peers.get_mut(&ip) else {
            return;
        };
        for name in names {
            if let Some(count) = peer.names.get_mut(name.text()) {
                *count -= 1;
                if *count == 0 {
                    peer.names.remove(name.text());
                    peer.levels = peer.levels.saturating_sub(view_levels(name));
                }
            }
        }
        if peer.names.is_empty() {
            // Its room goes with the last name.
            peer.names = HashMap::new();
        }
    }

    /// What `ip`'s connections hold: distinct streams and their view levels.
    #[cfg(test)]
    pub(crate) fn held(&self, ip: IpAddr) -> (usize, u64) {
        self.lock()
            .get(&ip)
            .map_or((0, 0), |peer| (peer.names.len(), peer.levels))
    }
}

/// `ip`'s entry, made at `now` when new; sweeps stale entries first when the map is large.
fn entry(peers: &mut HashMap<IpAddr, Peer>, ip: IpAddr, now: Instant) -> &mut Peer {
    if peers.len() > SWEEP_ABOVE && !peers.contains_key(&ip) {
        peers.retain(|_, peer| {
            peer.clients > 0
                || !peer.names.is_empty()
                || now.saturating_duration_since(peer.second) < Duration::from_secs(1)
        });
    }
    peers.entry(ip).or_insert(Peer {
        clients: 0,
        second: now,
        requests: 0,
        new_levels: 0,
        names: HashMap::new(),
        levels: 0,
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn one_address_cannot_take_more_than_its_client_slots() {
        let peers = Peers::default();
        let now = Instant::now();
        for _ in 0..MAX_CLIENTS_PER_IP {
            peers.admit(A, now).unwrap();
        }
        assert_eq!(peers.admit(A, now), Err(PeerError::Clients));
        assert_eq!(
            peers.admit(B, now),
            Ok(()),
            "another address is not affected"
        );
        peers.release(A);
        assert_eq!(peers.admit(A, now), Ok(()));
    }

    #[test]
    fn sse_requests_are_limited_per_address_and_second() {
        let peers = Peers::default();
        let now = Instant::now();
        for _ in 0..MAX_SSE_PER_IP_PER_SECOND {
            peers.count_request(A, now).unwrap();
        }
        assert_eq!(peers.count_request(A, now), Err(PeerError::Rate));
        assert_eq!(peers.count_request(B, now), Ok(()));
        let later = now + Duration::from_secs(1);
        assert_eq!(peers.count_request(A, later), Ok(()));
    }

    fn names(texts: &[String]) -> Vec<StreamName> {
        texts
            .iter()
            .map(|t| StreamName::parse(t).unwrap())
            .collect()
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share_of_the_stream_budgets() {
        let peers = Peers::default();
        let now = Instant::now();
        let per_book = MAX_VIEW_LEVELS_PER_IP / 1000;
        let deep = names(
            &(0..per_book)
                .map(|i| format!("binance.com:M{i}@book1000"))
                .collect::<Vec<_>>(),
        );
        peers.take(A, &deep, now).unwrap();
        // Another connection of A holding the same names costs nothing more.
        peers.take(A, &deep, now).unwrap();
        assert_eq!(peers.held(A), (deep.len(), per_book * 1000));
        let one_more = names(&["binance.com:LAST@book1000".to_owned()]);
        assert_eq!(
            peers.take(A, &one_more, now),
            Err(ShareError::ViewLevels {
                held: per_book * 1000,
                more: 1000
            })
        );
        assert_eq!(peers.take(B, &one_more, now), Ok(()), "B is not affected");
        peers.give_back(A, deep.iter());
        assert_eq!(
            peers.held(A).0,
            deep.len(),
            "the other connection holds them"
        );
        peers.give_back(A, deep.iter());
        assert_eq!(peers.held(A), (0, 0));
        let bbo = names(
            &(0..MAX_STREAMS_PER_IP)
                .map(|i| format!("binance.com:M{i}@bbo"))
                .collect::<Vec<_>>(),
        );
        // A second later: the deep names were new to A this second too.
        let now = now + Duration::from_secs(1);
        peers.take(A, &bbo, now).unwrap();
        let one_bbo = names(&["binance.com:LAST@bbo".to_owned()]);
        assert_eq!(
            peers.take(A, &one_bbo, now),
            Err(ShareError::Streams {
                held: MAX_STREAMS_PER_IP,
                more: 1
            })
        );
        assert_eq!(peers.take(B, &one_bbo, now), Ok(()));
        peers.give_back(A, bbo.iter());
        assert_eq!(peers.held(A), (0, 0));
        assert_eq!(peers.held(B), (2, 1001));
    }

    #[test]
    fn an_address_renews_at_most_its_share_of_view_levels_a_second() {
        let peers = Peers::default();
        let now = Instant::now();
        let per_book = MAX_VIEW_LEVELS_PER_IP / 1000;
        let batch = |round: u64| {
            names(
                &(0..per_book)
                    .map(|i| format!("binance.com:M{i}@book1000@{}ms", 10 + round))
                    .collect::<Vec<_>>(),
            )
        };
        let first = batch(0);
        peers.take(A, &first, now).unwrap();
        peers.give_back(A, first.iter());
        assert_eq!(peers.held(A), (0, 0));
        let fresh = batch(1);
        assert_eq!(
            peers.take(A, &fresh, now),
            Err(ShareError::Churn {
                made: per_book * 1000,
                more: per_book * 1000
            })
        );
        assert_eq!(peers.held(A), (0, 0), "refused whole");
        assert_eq!(peers.take(B, &fresh, now), Ok(()), "B is not affected");
        let later = now + Duration::from_secs(1);
        assert_eq!(peers.take(A, &fresh, later), Ok(()));
    }

    #[test]
    fn stale_addresses_are_swept_so_the_map_stays_bounded() {
        let peers = Peers::default();
        let now = Instant::now();
        for i in 0..=u32::try_from(SWEEP_ABOVE).unwrap() {
            peers
                .count_request(IpAddr::V4(Ipv4Addr::from(i)), now)
                .unwrap();
        }
        peers.admit(A, now).unwrap();
        let later = now + Duration::from_secs(2);
        peers.count_request(B, later).unwrap();
        assert_eq!(
            peers.lock().len(),
            2,
            "only the client holder and the new requester"
        );
    }
}
