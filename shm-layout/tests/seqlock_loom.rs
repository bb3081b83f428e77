//! Model-checks the seqlock protocol in `src/seqlock.rs` (that very file, included by path) with
//! loom: under every interleaving and every reordering loom explores, a read that validates saw
//! one version whole.

#[allow(dead_code)]
#[path = "../src/seqlock.rs"]
mod seqlock;

use std::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use seqlock::{ReadSection, SeqAtomic, WriteSection};

/// loom's atomics for the protocol.
struct LoomWord(AtomicU64);

impl SeqAtomic for LoomWord {
    fn load(&self, order: Ordering) -> u64 {
        self.0.load(order)
    }

    fn store(&self, value: u64, order: Ordering) {
        self.0.store(value, order);
    }

    fn fence(order: Ordering) {
        loom::sync::atomic::fence(order);
    }
}

/// A sequence word and a two-word payload, like a slot's header and a level.
struct Shared {
    seq: LoomWord,
    a: AtomicU64,
    b: AtomicU64,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            seq: LoomWord(AtomicU64::new(0)),
            a: AtomicU64::new(0),
            b: AtomicU64::new(0),
        })
    }
}

/// Publishes `versions` as (v, v), one write section each, on a new thread.
fn spawn_writer(
    shared: &Arc<Shared>,
    versions: std::ops::RangeInclusive<u64>,
) -> loom::thread::JoinHandle<()> {
    let shared = Arc::clone(shared);
    loom::thread::spawn(move || {
        for version in versions {
            let _section = WriteSection::begin(&shared.seq);
            shared.a.store(version, Ordering::Relaxed);
            shared.b.store(version, Ordering::Relaxed);
        }
    })
}

#[test]
fn a_validated_read_never_mixes_two_versions() {
    loom::model(|| {
        let shared = Shared::new();
        let writer = spawn_writer(&shared, 1..=2);
        if let Some(read) = ReadSection::begin(&shared.seq) {
            let a = shared.a.load(Ordering::Relaxed);
            let b = shared.b.load(Ordering::Relaxed);
            if read.validate(&shared.seq) {
                assert_eq!(a, b, "a validated read mixed versions");
            }
        }
        writer.join().expect("writer");
    });
}

#[test]
fn a_read_after_the_writer_finished_sees_the_last_version() {
    loom::model(|| {
        let shared = Shared::new();
        spawn_writer(&shared, 7..=7).join().expect("writer");
        let read = ReadSection::begin(&shared.seq).expect("writer is done");
        let copy = (
            shared.a.load(Ordering::Relaxed),
            shared.b.load(Ordering::Relaxed),
        );
        assert_eq!(copy, (7, 7));
        assert!(read.validate(&shared.seq));
    });
}
