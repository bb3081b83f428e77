//! One push client's subscriptions, shared by the WebSocket and SSE handlers: checks a request's
//! stream names (all or none), keeps the client within its limits, registers and unregisters
//! with the watcher, and gives the client's slot back when it goes.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

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
        let topics = push
            .registry
            .subscribe(&self.outbox, &new)
            .map_err(RequestError::invalid)?;
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
        self.push().registry.unsubscribe(&self.outbox, &gone);
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
        push.release(self.peer);
    }
}
