//! Who subscribes to what: stream names to topic ids, the limits on subscriptions, and the
//! queue of joins and leaves the watcher applies at its next pass (so a subscription never
//! waits for the watcher, and the watcher never holds this lock while it reads books).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::limits::{MAX_SUBSCRIPTIONS, MAX_TOPICS};
use super::outbox::{Outbox, TopicId};
use super::stream::StreamName;

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
    changes: Vec<Change>,
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
        if inner.subscriptions + names.len() > MAX_SUBSCRIPTIONS {
            return Err(LimitError::Subscriptions);
        }
        let new_topics = names
            .iter()
            .filter(|name| !inner.topics.contains_key(name.text()))
            .count();
        if inner.topics.len() + new_topics > MAX_TOPICS {
            return Err(LimitError::Topics);
        }
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
    pub(crate) fn unsubscribe(&self, outbox: &Arc<Outbox>, topics: &[(Arc<str>, TopicId)]) {
        let mut inner = self.lock();
        for (name, topic) in topics {
            if let Some((_, count)) = inner.topics.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    inner.topics.remove(name);
                }
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

    /// Subscriptions and distinct streams now.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.subscriptions, inner.topics.len())
    }
}
