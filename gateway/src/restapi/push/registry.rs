//! Who subscribes to what: stream names to topic ids, the limits on subscriptions, and the
//! queue of joins and leaves the watcher applies at its next pass (so a subscription never
//! waits for the watcher, and the watcher never holds this lock while it reads books). The
//! queue is taken every pass; once the watcher stopped for good ([`Registry::close`]) nothing
//! is queued any more, so it cannot grow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::limits::{MAX_SUBSCRIPTIONS, MAX_TOPICS, MAX_VIEW_LEVELS};
use super::outbox::{Outbox, TopicId};
use super::stream::{StreamKind, StreamName};

/// A change for the watcher to apply.
pub(crate) enum Change {
    /// `outbox` subscribed to `topic` (named `name`).
    Join {
        topic: TopicId,
        name: StreamName,
        outbox: Arc<Outbox>,
    },
    /// `outbox` unsubscribed from `topic`.
    Leave { topic: TopicId, outbox: Arc<Outbox> },
}

/// Why a subscription was refused by the server-wide limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LimitError {
    /// Too many subscriptions across all clients.
    #[error(
        "the server holds its most subscriptions ({MAX_SUBSCRIPTIONS}) across all clients; try later"
    )]
    Subscriptions,
    /// Too many distinct streams across all clients.
    #[error("the server serves its most distinct streams ({MAX_TOPICS}); try later")]
    Topics,
    /// The views of all distinct streams would hold too many levels.
    #[error(
        "the server's stream views hold their most levels ({MAX_VIEW_LEVELS}); try later, or a shallower @bookN"
    )]
    ViewLevels,
    /// The watcher stopped for good.
    #[error("push streams are unavailable: {}", super::watcher::STOPPED)]
    Stopped,
}

/// The levels a topic of `name` holds in its view (see [`MAX_VIEW_LEVELS`]).
pub(super) fn view_levels(name: &StreamName) -> u64 {
    match name.kind() {
        StreamKind::Bbo => 1,
        StreamKind::Book(depth) => u64::from(depth),
    }
}

/// The subscriptions of every client.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Stream name → its topic and how many clients subscribe to it.
    topics: HashMap<Arc<str>, (TopicId, usize)>,
    next_id: TopicId,
    subscriptions: usize,
    /// The view levels of all topics ([`view_levels`]).
    levels: u64,
    changes: Vec<Change>,
    /// The watcher stopped for good: nothing is queued, nothing subscribed.
    closed: bool,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update below is complete before it can panic (none does): the data stays valid.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes `outbox` to `names` (which it does not hold yet), all or none.
    ///
    /// # Errors
    /// [`LimitError`] when the server-wide limits would be passed.
    pub(crate) fn subscribe(
        &self,
        outbox: &Arc<Outbox>,
        names: &[StreamName],
    ) -> Result<Vec<TopicId>, LimitError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(LimitError::Stopped);
        }
        if inner.subscriptions + names.len() > MAX_SUBSCRIPTIONS {
            return Err(LimitError::Subscriptions);
        }
        let new: Vec<&StreamName> = names
            .iter()
            .filter(|name| !inner.topics.contains_key(name.text()))
            .collect();
        if inner.topics.len() + new.len() > MAX_TOPICS {
            return Err(LimitError::Topics);
        }
        let new_levels: u64 = new.iter().map(|name| view_levels(name)).sum();
        if inner.levels + new_levels > MAX_VIEW_LEVELS {
            return Err(LimitError::ViewLevels);
        }
        inner.levels += new_levels;
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            let next_id = inner.next_id;
            let (id, count) = inner
                .topics
                .entry(Arc::clone(name.text()))
                .or_insert((next_id, 0));
            *count += 1;
            let id = *id;
            if id == next_id {
                inner.next_id += 1;
            }
            inner.changes.push(Change::Join {
                topic: id,
                name: name.clone(),
                outbox: Arc::clone(outbox),
            });
            ids.push(id);
        }
        inner.subscriptions += names.len();
        Ok(ids)
    }

    /// Unsubscribes `outbox` from `topics` (named `names`, which it holds).
    pub(crate) fn unsubscribe(&self, outbox: &Arc<Outbox>, topics: &[(StreamName, TopicId)]) {
        let mut inner = self.lock();
        for (name, topic) in topics {
            if let Some((_, count)) = inner.topics.get_mut(name.text()) {
                *count -= 1;
                if *count == 0 {
                    inner.topics.remove(name.text());
                    inner.levels = inner.levels.saturating_sub(view_levels(name));
                }
            }
            if inner.closed {
                continue;
            }
            inner.changes.push(Change::Leave {
                topic: *topic,
                outbox: Arc::clone(outbox),
            });
        }
        inner.subscriptions = inner.subscriptions.saturating_sub(topics.len());
    }

    /// The changes since the last call, oldest first.
    pub(crate) fn take_changes(&self, into: &mut Vec<Change>) {
        into.append(&mut self.lock().changes);
    }

    /// Refuses every subscription from now on and drops the queue: the watcher stopped for good.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.changes = Vec::new();
    }

    /// Subscriptions and distinct streams now.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.subscriptions, inner.topics.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(texts: &[String]) -> Vec<StreamName> {
        texts
            .iter()
            .map(|t| StreamName::parse(t).unwrap())
            .collect()
    }

    #[test]
    fn deep_views_count_against_the_level_budget_and_come_back_when_left() {
        let registry = Registry::default();
        let outbox = Arc::new(Outbox::default());
        let fit = MAX_VIEW_LEVELS / 1000;
        let mut held = Vec::new();
        for i in 0..fit {
            let batch = names(&[format!("binance.com:M{i}@book1000")]);
            let ids = registry.subscribe(&outbox, &batch).unwrap();
            held.extend(batch.into_iter().zip(ids));
        }
        let one_more = names(&["binance.com:LAST@book1000".to_owned()]);
        assert_eq!(
            registry.subscribe(&outbox, &one_more),
            Err(LimitError::ViewLevels)
        );
        // A second subscriber of a held stream costs no view.
        assert!(registry.subscribe(&outbox, &[held[0].0.clone()]).is_ok());
        let shallow = names(&["binance.com:LAST@book5".to_owned()]);
        assert!(registry.subscribe(&outbox, &shallow).is_ok());
        registry.unsubscribe(&outbox, &held[1..2]);
        assert!(registry.subscribe(&outbox, &one_more).is_ok());
    }

    #[test]
    fn a_closed_registry_refuses_and_queues_nothing() {
        let registry = Registry::default();
        let outbox = Arc::new(Outbox::default());
        let batch = names(&["binance.com:BTCUSDT@bbo".to_owned()]);
        let ids = registry.subscribe(&outbox, &batch).unwrap();
        registry.close();
        assert_eq!(
            registry.subscribe(&outbox, &batch),
            Err(LimitError::Stopped)
        );
        let held: Vec<_> = batch.into_iter().zip(ids).collect();
        registry.unsubscribe(&outbox, &held);
        let mut changes = Vec::new();
        registry.take_changes(&mut changes);
        assert!(changes.is_empty());
    }
}
