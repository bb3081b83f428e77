//! Model-checks the seqlock protocol in `src/seqlock.rs` and the ring edits of `src/ring.rs`
//! (those very files, included by path) with loom: under every interleaving and every reordering
//! loom explores, a read that validates saw one version whole — also while the writer moves a
//! ring's head and shifts its levels inside the section, as `SegmentWriter::publish_edits` does.

#[allow(dead_code)]
#[path = "../src/seqlock.rs"]
mod seqlock;

#[allow(dead_code)]
#[path = "../src/ring.rs"]
mod ring;

use std::sync::atomic::Ordering;

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use ring::{LevelCells, Ring};
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

/// A slot in miniature: the sequence word, the packed ring word (count and head, as in
/// `SlotHeader::rings`) and one side of three level cells of two words each.
struct RingSlot {
    seq: LoomWord,
    ring: AtomicU64,
    cells: [[AtomicU64; 2]; 3],
}

impl LevelCells for [[AtomicU64; 2]; 3] {
    fn capacity(&self) -> u32 {
        3
    }

    fn load(&self, index: usize) -> [u64; 2] {
        [
            self[index][0].load(Ordering::Relaxed),
            self[index][1].load(Ordering::Relaxed),
        ]
    }

    fn store(&self, index: usize, level: [u64; 2]) {
        self[index][0].store(level[0], Ordering::Relaxed);
        self[index][1].store(level[1], Ordering::Relaxed);
    }
}

impl RingSlot {
    /// Best-first levels `prices` (each level `(p, p)`) from physical cell 0.
    fn new(prices: &[u64]) -> Arc<Self> {
        let cell = |i: usize| {
            let p = prices.get(i).copied().unwrap_or(0);
            [AtomicU64::new(p), AtomicU64::new(p)]
        };
        let ring = Ring {
            head: 0,
            len: prices.len() as u32,
        };
        Arc::new(Self {
            seq: LoomWord(AtomicU64::new(0)),
            ring: AtomicU64::new(u64::from(ring.pack())),
            cells: [cell(0), cell(1), cell(2)],
        })
    }

    /// One write section that applies `edit` to the ring, as the writer does.
    fn write(&self, edit: impl FnOnce(&[[AtomicU64; 2]; 3], &mut Ring)) {
        let _section = WriteSection::begin(&self.seq);
        // The writer's private mirror of the ring; the shared word is only ever stored.
        let mut ring = Ring::unpack(self.ring.load(Ordering::Relaxed) as u32);
        edit(&self.cells, &mut ring);
        self.ring.store(u64::from(ring.pack()), Ordering::Relaxed);
    }

    /// One read as `SegmentReader` reads a side: ring word, then the runs it names; `None` when
    /// the section did not validate. A level whose two words differ is reported as price 0.
    fn read(&self) -> Option<Vec<u64>> {
        let section = ReadSection::begin(&self.seq)?;
        let ring = Ring::unpack(self.ring.load(Ordering::Relaxed) as u32);
        let (first, second) = ring.runs(usize::MAX, 3);
        let levels: Vec<u64> = first
            .chain(second)
            .map(|i| {
                let [p, q] = self.cells.load(i);
                if p == q { p } else { 0 }
            })
            .collect();
        section.validate(&self.seq).then_some(levels)
    }
}

/// Runs `edit` in one write section on the model's main thread while a spawned reader reads the
/// side once; a validated read must be `before` or `after` whole. (The reader is the spawned
/// thread: with the writer spawned instead, loom 0.7 explored a single interleaving of these
/// models, which a mutant without validation passed.)
fn check_edit(
    before: &'static [u64],
    after: &'static [u64],
    edit: impl FnOnce(&[[AtomicU64; 2]; 3], &mut Ring) + Send + 'static,
) {
    let slot = RingSlot::new(before);
    let reader = {
        let slot = Arc::clone(&slot);
        loom::thread::spawn(move || slot.read())
    };
    slot.write(edit);
    if let Some(levels) = reader.join().expect("reader") {
        assert!(
            levels == before || levels == after,
            "a validated read saw {levels:?}"
        );
    }
    assert_eq!(slot.read().as_deref(), Some(after));
}

#[test]
fn a_validated_read_never_sees_a_ring_insert_half_done() {
    // Inserting at index 1 of two levels moves the top level one cell towards the best end: the
    // head wraps from cell 0 to cell 2.
    loom::model(|| {
        check_edit(&[10, 20], &[10, 15, 20], |cells, ring| {
            ring::insert(cells, ring, 1, [15, 15]);
        });
    });
}

#[test]
fn a_validated_read_never_sees_a_ring_insert_into_a_full_side_half_done() {
    // Inserting below the middle of a full side moves the lower level towards the worst end,
    // over the worst level, which falls off.
    loom::model(|| {
        check_edit(&[10, 20, 30], &[10, 20, 25], |cells, ring| {
            ring::insert(cells, ring, 2, [25, 25]);
        });
    });
}

#[test]
fn a_validated_read_never_sees_a_ring_removal_half_done() {
    // Removing index 1 of three moves the top level one cell towards the worst end and the head
    // with it; the worst level stays where it is.
    loom::model(|| {
        check_edit(&[10, 15, 20], &[10, 20], |cells, ring| {
            ring::remove(cells, ring, 1);
        });
    });
}
