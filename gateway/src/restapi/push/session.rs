//! One push client's subscriptions, shared by the WebSocket and SSE handlers: checks a request's
//! stream names (all or none), keeps the client within its limits, registers and unregisters
//! with the watcher, and gives the client's slot back when it goes.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use indexmap::IndexMap;
use ubdcc_shm::ReadError;

use super::Push;
use super::limits::{MAX_DEEP_STREAMS_PER_CLIENT, MAX_STREAMS_PER_CLIENT};
use super::outbox::{Outbox, Outgoing, TopicId};
use super::protocol::RequestError;
use super::stream::{MAX_DEEP_BOOK, StreamName};
use crate::restapi::RestApi;

/// A connected client.
pub(crate) struct Session {
    api: Arc<RestApi>,
    /// The peer address whose client slot this session holds.
    peer: IpAddr,
    outbox: Arc<Outbox>,
    /// Stream name (as subscribed) → the parsed name and its topic, in the order subscribed
    /// (LIST_SUBSCRIPTIONS answers in that order).
    streams: IndexMap<Arc<str>, (StreamName, TopicId)>,
    /// How many of `streams` are deep ([`StreamName::is_deep`]).
    deep: usize,
}

impl Session {
    /// A session of `api`'s push server; the caller holds one of its client slots for `peer`
    /// ([`Push::admit`]), which the session gives back when dropped.
    pub(crate) fn new(api: Arc<RestApi>, peer: IpAddr) -> Self {
        Self {
            api,
            peer,
            outbox: Arc::new(Outbox::default()),
            streams: IndexMap::new(),
            deep: 0,
        }
    }

    fn push(&self) -> &Push {
        self.api
            .push
            .as_ref()
            .expect("a session exists only where push is on")
    }

    /// The client's outbox.
    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// `true` while the client holds no stream.
    pub(crate) fn is_idle(&self) -> bool {
        self.streams.is_empty()
    }

    /// The stream names held, in the order subscribed.
    pub(crate) fn list(&self) -> Vec<String> {
        self.streams.keys().map(|name| name.to_string()).collect()
    }

    /// Subscribes to `names` — all of them, or none with the reason. Names already held are
    /// kept as they are.
    ///
    /// # Errors
    /// A bad stream name, a book not in this host's shared memory, more than
    /// [`MAX_STREAMS_PER_CLIENT`] streams or [`MAX_DEEP_STREAMS_PER_CLIENT`] deep ones, the
    /// peer address's share of the stream budgets held ([`super::peers::ShareError`]), the
    /// watcher stopped, or a server-wide limit.
    pub(crate) fn subscribe(&mut self, names: &[String]) -> Result<(), RequestError> {
        let new = self.new_streams(names)?;
        let deep = new.iter().filter(|name| name.is_deep()).count();
        if self.deep + deep > MAX_DEEP_STREAMS_PER_CLIENT {
            return Err(RequestError::invalid(format!(
                "too many deep streams (@bookN with N > {MAX_DEEP_BOOK}): a connection holds at most {MAX_DEEP_STREAMS_PER_CLIENT}, this one {} and asked for {deep} more",
                self.deep
            )));
        }
        for name in &new {
            self.check_local(name)?;
        }
        let push = self.push();
        push.ensure_watcher().map_err(RequestError::invalid)?;
        push.peers
            .take(self.peer, &new, Instant::now())
            .map_err(RequestError::invalid)?;
        let topics = match push.registry.subscribe(&self.outbox, &new) {
            Ok(topics) => topics,
            Err(error) => {
                push.peers.give_back(self.peer, new.iter());
                return Err(RequestError::invalid(error));
            }
        };
        self.deep += deep;
        for (name, topic) in new.into_iter().zip(topics) {
            self.streams.insert(Arc::clone(name.text()), (name, topic));
        }
        Ok(())
    }

    /// The streams of `names` this session does not hold yet, parsed, each once.
    ///
    /// # Errors
    /// A bad stream name, or more than [`MAX_STREAMS_PER_CLIENT`] in all (checked as the names
    /// come, so a long request costs no more than the limit allows).
    fn new_streams(&self, names: &[String]) -> Result<Vec<StreamName>, RequestError> {
        let too_many = |more: usize| {
            RequestError::invalid(format!(
                "too many streams: a connection holds at most {MAX_STREAMS_PER_CLIENT}, this one {} and asked for {more} more",
                self.streams.len(),
            ))
        };
        let mut seen: HashSet<Arc<str>> = HashSet::new();
        let mut new: Vec<StreamName> = Vec::new();
        for name in names {
            let name = StreamName::parse(name).map_err(RequestError::invalid)?;
            if self.streams.contains_key(name.text()) || !seen.insert(Arc::clone(name.text())) {
                continue;
            }
            new.push(name);
            if self.streams.len() + new.len() > MAX_STREAMS_PER_CLIENT {
                return Err(too_many(names.len()));
            }
        }
        Ok(new)
    }

    /// Unsubscribes from `names` (as subscribed); names not held are ignored, as Binance does.
    pub(crate) fn unsubscribe(&mut self, names: &[String]) {
        let gone: Vec<(StreamName, TopicId)> = names
            .iter()
            .filter_map(|name| StreamName::parse(name).ok())
            .filter_map(|name| self.streams.shift_remove(name.text()))
            .collect();
        self.deep -= gone.iter().filter(|(name, _)| name.is_deep()).count();
        let push = self.push();
        push.registry.unsubscribe(&self.outbox, &gone);
        push.peers
            .give_back(self.peer, gone.iter().map(|(name, _)| name));
    }

    /// Records `messages` as sent now, in the publish → sent histogram.
    pub(crate) fn sent(&self, messages: &[Outgoing]) {
        self.push()
            .latency
            .record(messages.iter().map(|m| m.published_ns));
    }

    /// Counts this client as cut for reading too slowly; its task calls it once, as it ends.
    pub(crate) fn count_cut(&self) {
        self.push()
            .shared
            .cut
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Refuses a book this host's shared memory does not hold: the push server reads only there.
    fn check_local(&self, name: &StreamName) -> Result<(), RequestError> {
        let Some(reader) = &self.api.reader else {
            return Err(RequestError::invalid(super::NO_LOCAL_READS));
        };
        let mut reader = reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match reader.info(name.exchange(), name.market()) {
            Err(ReadError::NotFound { .. }) => Err(RequestError::invalid(format!(
                "{}:{} is not in this host's shared memory: push streams serve the books with a replica on the restapi's host (ask that host's restapi, or poll /get_book)",
                name.exchange(),
                name.market()
            ))),
            // Any other state (starting, out of sync, writer gone) is reported on the stream.
            Ok(_) | Err(_) => Ok(()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let all: Vec<(StreamName, TopicId)> =
            self.streams.drain(..).map(|(_, held)| held).collect();
        let push = self.push();
        push.registry.unsubscribe(&self.outbox, &all);
        push.peers
            .give_back(self.peer, all.iter().map(|(name, _)| name));
        push.release(self.peer);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ubdcc_shm::{ClusterReader, SegmentConfig};

    use super::*;
    use crate::agent::StateCopy;
    use crate::client::{DEFAULT_TIMEOUT, InternalClient};
    use crate::identity::{PodIdentity, Role};
    use crate::restapi::push::limits::MAX_VIEW_LEVELS_PER_IP;
    use crate::restapi::push::peers::ShareError;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    /// `count` names of `@book{depth}` of the one book, each with its own interval from `from` ms.
    fn names(depth: u32, from: u32, count: u32) -> Vec<String> {
        (from..from + count)
            .map(|ms| format!("binance.com:BTCUSDT@book{depth}@{ms}ms"))
            .collect()
    }

    fn session(api: &Arc<RestApi>, peer: IpAddr) -> Session {
        api.push.as_ref().unwrap().admit(peer).unwrap();
        Session::new(Arc::clone(api), peer)
    }

    #[test]
    fn an_address_past_its_share_is_refused_and_gets_it_back_when_its_streams_go() {
        let cluster = format!("pushshare{}", std::process::id());
        let mut writer = SegmentConfig::new(cluster.as_str(), "dcn")
            .books(2)
            .levels_per_side(16)
            .create()
            .unwrap();
        writer.add_book("binance.com", "BTCUSDT").unwrap();
        let api = RestApi::new(
            PodIdentity::new(Role::Restapi, None, None),
            StateCopy::new(false),
            InternalClient::new(None, None, DEFAULT_TIMEOUT),
            "http://127.0.0.1:9",
            Some(ClusterReader::open(&cluster).unwrap()),
        );
        let push = api.push.as_ref().unwrap();
        // A connection holds at most 64 deep streams: 64 × 1000 + 960 × 100 = 160 000 levels.
        let full: Vec<String> = [names(1000, 10, 64), names(100, 10, 960)].concat();
        let mut first = session(&api, A);
        first.subscribe(&full).unwrap();
        // Other names on a second connection: 64 × 1000 + 381 × 100 → 262 100 of 262 144.
        let rest: Vec<String> = [names(1000, 1000, 64), names(100, 1000, 381)].concat();
        let mut second = session(&api, A);
        second.subscribe(&rest).unwrap();
        assert_eq!(push.peers.held(A), (2 * 64 + 960 + 381, 262_100));
        // A name the first connection holds costs the address nothing more.
        second.subscribe(&full[64..66]).unwrap();
        assert_eq!(push.peers.held(A), (2 * 64 + 960 + 381, 262_100));
        let error = second
            .subscribe(&[
                "binance.com:BTCUSDT@bbo".to_owned(),
                "binance.com:BTCUSDT@book100".to_owned(),
            ])
            .unwrap_err();
        let text = format!("{error:?}");
        assert!(
            text.contains(&MAX_VIEW_LEVELS_PER_IP.to_string()) && text.contains("view levels"),
            "{text}"
        );
        let one = vec![StreamName::parse("binance.com:BTCUSDT@book100").unwrap()];
        assert!(matches!(
            push.peers.take(A, &one, Instant::now()),
            Err(ShareError::ViewLevels { .. })
        ));
        assert_eq!(
            push.peers.held(A),
            (2 * 64 + 960 + 381, 262_100),
            "refused whole"
        );
        // Another address still subscribes.
        let mut other = session(&api, B);
        other
            .subscribe(&["binance.com:BTCUSDT@book1000".to_owned()])
            .unwrap();
        assert_eq!(push.peers.held(B), (1, 1000));
        // Unsubscribing gives the share back; so does the end of a session.
        second.unsubscribe(&rest[..10]);
        assert_eq!(push.peers.held(A).1, 262_100 - 10_000);
        // New names a second later (the address's share of new levels this second is made).
        std::thread::sleep(std::time::Duration::from_secs(1));
        second
            .subscribe(&["binance.com:BTCUSDT@book100".to_owned()])
            .unwrap();
        drop(second);
        assert_eq!(
            push.peers.held(A),
            (64 + 960, 160_000),
            "the first's are held"
        );
        first.unsubscribe(&full);
        assert_eq!(push.peers.held(A), (0, 0));
        assert!(first.is_idle());
        drop(first);
        drop(other);
        assert_eq!(push.peers.held(B), (0, 0));
        assert_eq!(push.registry.counts(), (0, 0));
        drop(writer);
    }
}
