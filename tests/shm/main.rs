//! End-to-end tests of the shared-memory segments across processes: the `ubdcc shm test-pattern`
//! writer runs as a child process, readers (and waiters) run here.

mod liveness;
mod pattern_writer;
mod torture;
mod wait;
