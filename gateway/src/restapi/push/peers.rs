//! Push clients per peer IP address: the per-host cap on connections and the `/sse` request
//! rate, so one neighbour can take neither every client slot nor the workers' time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::limits::{MAX_CLIENTS_PER_IP, MAX_SSE_PER_IP_PER_SECOND};

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

/// One peer's clients and its current `/sse` second.
#[derive(Debug, Clone, Copy)]
struct Peer {
    clients: usize,
    second: Instant,
    requests: u32,
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
        if now.saturating_duration_since(peer.second) >= Duration::from_secs(1) {
            (peer.second, peer.requests) = (now, 0);
        }
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
}

/// `ip`'s entry, made at `now` when new; sweeps stale entries first when the map is large.
fn entry(peers: &mut HashMap<IpAddr, Peer>, ip: IpAddr, now: Instant) -> &mut Peer {
    if peers.len() > SWEEP_ABOVE && !peers.contains_key(&ip) {
        peers.retain(|_, peer| {
            peer.clients > 0 || now.saturating_duration_since(peer.second) < Duration::from_secs(1)
        });
    }
    peers.entry(ip).or_insert(Peer {
        clients: 0,
        second: now,
        requests: 0,
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
