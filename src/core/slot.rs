//! Which worker thread this is, for state kept once per worker
//! (`proxy::workers`): each worker's upstream connections stay on it.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Worker threads started in this process (the most one set has had).
static STARTED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's worker number; 0 on any other thread.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as worker `n`.
pub fn enter(n: usize) {
    INDEX.set(n);
}

/// Notes that `count` workers were started.
pub fn started(count: usize) {
    STARTED.fetch_max(count, Ordering::Relaxed);
}

/// How many slots per-worker state needs: one per worker thread, and one
/// when there are none.
pub fn slots() -> usize {
    STARTED.load(Ordering::Relaxed).max(1)
}

/// The slot of the calling thread, below [`slots`]: its worker number on a
/// worker thread, 0 on any other.
pub fn slot() -> usize {
    INDEX.get()
}

/// One `T` per worker slot; each thread gets its own worker's.
#[derive(Debug, Clone)]
pub struct PerWorker<T>(Box<[T]>);

impl<T> PerWorker<T> {
    /// One `make()` per slot.
    pub fn new(mut make: impl FnMut() -> T) -> PerWorker<T> {
        PerWorker((0..slots()).map(|_| make()).collect())
    }

    /// The calling thread's.
    pub fn mine(&self) -> &T {
        &self.0[slot() % self.0.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_its_workers_own_and_others_the_first() {
        started(2);
        let each = PerWorker::new({
            let mut n = 0;
            move || {
                n += 1;
                n
            }
        });
        assert_eq!(*each.mine(), 1, "a thread that is no worker");
        let on_second = std::thread::spawn(move || {
            enter(1);
            *each.mine()
        });
        assert_eq!(on_second.join().unwrap(), 2);
    }
}
