//! One push client's subscriptions, shared by the WebSocket and SSE handlers: checks a request's
//! stream names (all or none), keeps the client within its limits, registers and unregisters
//! with the watcher, and gives the client's slot back when it goes.

use std::sync::Arc;

use indexmap::IndexMap;
use ubdcc_shm::ReadError;

use super::Push;
use super::limits::MAX_STREAMS_PER_CLIENT;
use super::outbox::{Outbox, Outgoing, TopicId};
use super::protocol::RequestError;
use super::stream::StreamName;
use crate::restapi::RestApi;

/// A connected client.
pub(crate) struct Session {
    api: Arc<RestApi>,
    outbox: Arc<Outbox>,
    /// Stream name → topic, in the order subscribed (LIST_SUBSCRIPTIONS answers in that order).
    streams: IndexMap<Arc<str>, TopicId>,
}

impl Session {
    /// A session of `api`'s push server; the caller holds one of its client slots
    /// ([`Push::admit`]), which the session gives back when dropped.
    pub(crate) fn new(api: Arc<RestApi>) -> Self {
        Self {
            api,
            outbox: Arc::new(Outbox::default()),
            streams: IndexMap::new(),
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
    /// [`MAX_STREAMS_PER_CLIENT`] streams, or a server-wide limit.
    pub(crate) fn subscribe(&mut self, names: &[String]) -> Result<(), RequestError> {
        let mut new: Vec<StreamName> = Vec::new();
        for name in names {
            let name = StreamName::parse(name).map_err(RequestError::invalid)?;
            if !self.streams.contains_key(name.text()) && !new.contains(&name) {
                new.push(name);
            }
        }
        if self.streams.len() + new.len() > MAX_STREAMS_PER_CLIENT {
            return Err(RequestError::invalid(format!(
                "too many streams: a connection holds at most {MAX_STREAMS_PER_CLIENT}, this one {} and asked for {} more",
                self.streams.len(),
                new.len()
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
        for (name, topic) in new.iter().zip(topics) {
            self.streams.insert(Arc::clone(name.text()), topic);
        }
        Ok(())
    }

    /// Unsubscribes from `names`; names not held are ignored, as Binance does.
    pub(crate) fn unsubscribe(&mut self, names: &[String]) {
        let gone: Vec<(Arc<str>, TopicId)> = names
            .iter()
            .filter_map(|name| self.streams.shift_remove_entry(name.as_str()))
            .collect();
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
        let all: Vec<(Arc<str>, TopicId)> = self.streams.drain(..).collect();
        let push = self.push();
        push.registry.unsubscribe(&self.outbox, &all);
        push.release();
    }
}
