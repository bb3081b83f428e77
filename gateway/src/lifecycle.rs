//! Stopping a pod: one signal that `/shutdown`, Ctrl-C, SIGTERM and a dead task all trigger, and
//! that every task of the pod waits on.
//!
//! Tasks the pod cannot do without (its HTTP server, mgmt's revise and pusher, the cluster
//! agent's heartbeat, the segment sweeper) are spawned with [`ShutdownSignal::must_live`]: if one
//! ends or panics while the pod runs, the pod stops and its role exits non-zero, so a supervisor
//! (`ubdcc start`, Kubernetes) restarts it. One way for all, and never a pod that still reports
//! healthy while a part of it is dead. (Restarting a task in place was rejected: a task that
//! panicked left its state half-changed, and the process is the unit that restarts cleanly.)

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// A pod's shutdown signal; clones share it.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    stop: watch::Sender<bool>,
    /// The must-live task whose end stopped the pod (the first, if several ended).
    failure: Arc<OnceLock<&'static str>>,
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        Self {
            stop: watch::Sender::new(false),
            failure: Arc::default(),
        }
    }
}

/// A task the pod cannot do without ended while the pod was running.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("the {task} task ended while the pod was running; stopped so that it is restarted")]
pub struct TaskEnded {
    /// The task's name, as given to [`ShutdownSignal::must_live`].
    pub task: &'static str,
}

impl ShutdownSignal {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Triggers it now.
    pub fn trigger(&self) {
        self.stop.send_replace(true);
    }

    /// Whether it was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.stop.borrow()
    }

    /// Triggers it in 200 ms, so the answer to `/shutdown` still goes out.
    pub fn trigger_soon(&self) {
        let signal = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            signal.trigger();
        });
    }

    /// Completes once triggered.
    pub async fn wait(&self) {
        let mut receiver = self.stop.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        receiver.wait_for(|stopped| *stopped).await.ok();
    }

    /// How the pod stopped: `Err` names the must-live task whose end stopped it, which the role
    /// turns into a non-zero exit.
    ///
    /// # Errors
    /// [`TaskEnded`] when a task spawned with [`ShutdownSignal::must_live`] ended or panicked
    /// while the pod was running.
    pub fn outcome(&self) -> Result<(), TaskEnded> {
        self.failure
            .get()
            .map_or(Ok(()), |task| Err(TaskEnded { task }))
    }

    /// Spawns `task` (on the current runtime), which must run as long as the pod: if it returns
    /// before the pod stops, or panics at any time, an error is logged and the pod stops with
    /// [`ShutdownSignal::outcome`] naming it. Ending after the signal is normal.
    ///
    /// The handle completes when the task does; aborting it aborts the task.
    pub fn must_live<F>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let signal = self.clone();
        // The task runs in a task of its own so that a panic is caught (by tokio) and reported
        // here, instead of unwinding through this watcher.
        let task = tokio::spawn(task);
        let abort = AbortOnDrop(task.abort_handle());
        tokio::spawn(async move {
            let _abort = abort;
            match task.await {
                Ok(()) if signal.is_triggered() => {}
                Err(error) if error.is_cancelled() => {}
                Ok(()) => signal.fail(name, "ended"),
                Err(_) => signal.fail(name, "panicked"),
            }
        })
    }

    /// Records `task` as the reason the pod stops (the first one wins) and stops it.
    fn fail(&self, task: &'static str, how: &str) {
        tracing::error!(
            task,
            how,
            "a task the pod cannot do without is gone; stopping the pod with an error"
        );
        self.failure.set(task).ok();
        self.trigger();
    }

    /// Triggers on Ctrl-C or SIGTERM. The handlers are installed before this returns (a
    /// SIGTERM right after start must not kill the process before it cleans up).
    pub fn on_os_signals(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let (interrupt, terminate) = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for SIGINT / SIGTERM");
                return;
            }
        };
        let signal = self.clone();
        tokio::spawn(async move {
            let (mut interrupt, mut terminate) = (interrupt, terminate);
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            signal.trigger();
        });
    }
}

/// Aborts a task when dropped: ties a must-live task to the handle [`ShutdownSignal::must_live`]
/// returns.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often pods sweep their host's shared memory for segments of crashed DCNs.
pub const DEAD_SEGMENT_SWEEP: Duration = Duration::from_secs(5);

/// Removes segments of crashed DCNs of `cluster` on this host now and every
/// [`DEAD_SEGMENT_SWEEP`] (a must-live task of the pod stopped by `shutdown`; see
/// [`ShutdownSignal::must_live`]). Without access to the host's shared memory there is nothing
/// to sweep, and no task.
pub fn sweep_dead_segments(cluster: &str, shutdown: &ShutdownSignal) {
    let mut reader = match ubdcc_shm::ClusterReader::open(cluster) {
        Ok(reader) => reader,
        Err(error) => {
            tracing::warn!(%error, "cannot sweep the segments of crashed DCNs");
            return;
        }
    };
    let stopping = shutdown.clone();
    shutdown.must_live("dead-segment sweeper", async move {
        let mut ticker = tokio::time::interval(DEAD_SEGMENT_SWEEP);
        loop {
            tokio::select! {
                () = stopping.wait() => return,
                _ = ticker.tick() => {}
            }
            for name in reader.remove_dead_segments() {
                tracing::info!(segment = %name, "removed the segment of a DCN that is gone");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for the signal, or panics after a bound far above what the test needs.
    async fn stopped(signal: &ShutdownSignal) {
        tokio::time::timeout(Duration::from_secs(10), signal.wait())
            .await
            .expect("the pod stops");
    }

    #[tokio::test]
    async fn a_must_live_task_that_panics_stops_the_pod_with_an_error() {
        let signal = ShutdownSignal::new();
        signal.must_live("snapshot pusher", async { panic!("injected") });
        stopped(&signal).await;
        assert_eq!(
            signal.outcome(),
            Err(TaskEnded {
                task: "snapshot pusher"
            })
        );
    }

    #[tokio::test]
    async fn a_must_live_task_that_returns_early_stops_the_pod_with_an_error() {
        let signal = ShutdownSignal::new();
        signal.must_live("revise", async {});
        stopped(&signal).await;
        assert_eq!(signal.outcome(), Err(TaskEnded { task: "revise" }));
    }

    #[tokio::test]
    async fn a_must_live_task_ending_after_the_shutdown_is_normal() {
        let signal = ShutdownSignal::new();
        let stopping = signal.clone();
        let task = signal.must_live("agent", async move { stopping.wait().await });
        signal.trigger();
        task.await.expect("the watcher ends");
        assert_eq!(signal.outcome(), Ok(()));
    }

    #[tokio::test]
    async fn aborting_the_handle_aborts_the_task_and_is_no_failure() {
        let signal = ShutdownSignal::new();
        let (alive, gone) = tokio::sync::oneshot::channel::<()>();
        let task = signal.must_live("pusher", async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        });
        task.abort();
        // The task's end drops the sender.
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .expect("the task is aborted")
            .ok();
        assert!(!signal.is_triggered());
        assert_eq!(signal.outcome(), Ok(()));
    }
}
