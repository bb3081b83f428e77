//! Model-checks the wait/wake protocol of `src/wait.rs` (that very file, included by path) with
//! loom: under every interleaving and reordering loom explores, a waiter that sleeps until a
//! change stamp passes `last_seen` is always woken by the publish that passes it. A missed
//! wake-up would leave the waiter asleep for good, which loom reports as a deadlock.
//!
//! The kernel's futex is modelled by what makes it correct: `FUTEX_WAIT` compares the word and
//! queues the waiter under the same lock `FUTEX_WAKE` takes to wake the queue (a mutex and a
//! condition variable here). The last test shows the model catches a broken protocol.

#[allow(dead_code)]
#[path = "../src/wait.rs"]
mod wait;

use std::sync::atomic::Ordering;
use std::time::Duration;

use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
use loom::sync::{Arc, Condvar, Mutex};
use wait::{FutexWord, WaitOutcome, signal, wait_for_change};

/// A futex word with the kernel's guarantee: the compare and the queueing happen under the lock
/// the waker takes.
struct ModelFutex {
    word: AtomicU32,
    bucket: Mutex<()>,
    queue: Condvar,
}

impl FutexWord for ModelFutex {
    fn load_acquire(&self) -> u32 {
        let value = self.word.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        value
    }

    fn store_release(&self, value: u32) {
        self.word.store(value, Ordering::Release);
    }

    fn sleep(&self, expected: u32, _timeout: Duration) {
        let bucket = self.bucket.lock().expect("no panics while held");
        if self.word.load(Ordering::Relaxed) != expected {
            return;
        }
        drop(self.queue.wait(bucket).expect("no panics while held"));
    }

    fn wake_all(&self) {
        let _bucket = self.bucket.lock().expect("no panics while held");
        self.queue.notify_all();
    }
}

/// A slot's change stamp and its futex word.
struct Slot {
    stamp: AtomicU64,
    futex: ModelFutex,
}

impl Slot {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            stamp: AtomicU64::new(0),
            futex: ModelFutex {
                word: AtomicU32::new(0),
                bucket: Mutex::new(()),
                queue: Condvar::new(),
            },
        })
    }

    /// What `SegmentWriter` does per write section: the stamp (Relaxed inside the section, whose
    /// Release close the signal's Release store stands in for), then the signal.
    fn publish(&self, stamp: u64) {
        self.stamp.store(stamp, Ordering::Relaxed);
        signal(&self.futex);
    }

    /// Waits with no timeout for a stamp above `last_seen`.
    fn wait(&self, last_seen: u64) -> u64 {
        let outcome = wait_for_change(
            &self.futex,
            || self.stamp.load(Ordering::Relaxed),
            last_seen,
            Duration::MAX,
            || Ok::<(), ()>(()),
        );
        match outcome {
            Ok(WaitOutcome::Changed(stamp)) => stamp,
            other => panic!("a wait without timeout ended with {other:?}"),
        }
    }
}

fn spawn_publisher(slot: &Arc<Slot>, stamps: &'static [u64]) -> loom::thread::JoinHandle<()> {
    let slot = Arc::clone(slot);
    loom::thread::spawn(move || {
        for &stamp in stamps {
            slot.publish(stamp);
        }
    })
}

#[test]
fn a_waiter_is_woken_by_the_publish_it_waits_for() {
    loom::model(|| {
        let slot = Slot::new();
        let publisher = spawn_publisher(&slot, &[1]);
        assert_eq!(slot.wait(0), 1);
        publisher.join().expect("publisher");
    });
}

#[test]
fn a_waiter_past_the_first_publish_is_woken_by_the_second() {
    loom::model(|| {
        let slot = Slot::new();
        let publisher = spawn_publisher(&slot, &[1, 2]);
        let first = slot.wait(0);
        assert!(first == 1 || first == 2);
        assert_eq!(slot.wait(1), 2);
        publisher.join().expect("publisher");
    });
}

#[test]
fn two_waiters_are_both_woken() {
    loom::model(|| {
        let slot = Slot::new();
        let other = {
            let slot = Arc::clone(&slot);
            loom::thread::spawn(move || slot.wait(0))
        };
        let publisher = spawn_publisher(&slot, &[1]);
        assert_eq!(slot.wait(0), 1);
        assert_eq!(other.join().expect("waiter"), 1);
        publisher.join().expect("publisher");
    });
}

/// The negative control: a waiter that loads the stamp before the futex word can see the old
/// stamp, then the new word, and sleep on a word no publish will change again. loom finds that
/// deadlock (and then aborts the process while unwinding the blocked thread), so the model runs
/// in a child process of this test binary and the test checks that it reported the deadlock.
#[test]
fn the_model_catches_a_waiter_that_loads_the_word_after_the_stamp() {
    let output = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["--exact", "broken_waiter_model", "--ignored", "--nocapture"])
        .output()
        .expect("run the broken model");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the broken protocol passed the model"
    );
    assert!(stderr.contains("deadlock"), "{stderr}");
}

/// The broken waiter of the test above; run only as its child process.
#[test]
#[ignore = "run by the_model_catches_a_waiter_that_loads_the_word_after_the_stamp"]
fn broken_waiter_model() {
    loom::model(|| {
        let slot = Slot::new();
        let publisher = spawn_publisher(&slot, &[1]);
        loop {
            let stamp = slot.stamp.load(Ordering::Relaxed);
            let expected = slot.futex.load_acquire();
            if stamp > 0 {
                break;
            }
            slot.futex.sleep(expected, Duration::MAX);
        }
        publisher.join().expect("publisher");
    });
}
