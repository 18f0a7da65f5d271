//! Per-thread shards of state the request path writes, so the proxy's threads
//! do not pass cache lines back and forth on every request.
//!
//! Why: with one runtime per thread, two requests on two cores share nothing
//! but what the proxy itself shares: a counter, a lock word, a reference count.
//! Each such write from the other core first has to fetch the line (~100 ns on
//! the development VM), and a small request made some 25 of them (metrics
//! series, in-flight gauge, token memo lock, pool lock, `Arc` counts). Each
//! thread now writes its own shard; readers (`/metrics`, the pool sweeper)
//! visit all of them. See docs/performance.md, "Sharing nothing per request".

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::ThreadId;

/// Shards per structure. Threads beyond this many share shards (by index
/// modulo), which stays correct: every shard has its own lock or atomics.
pub const SHARDS: usize = 16;

/// The next thread index to hand out.
static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's index and id, taken once per thread.
    static THIS: Cell<Option<(usize, ThreadId)>> = const { Cell::new(None) };
}

fn this() -> (usize, ThreadId) {
    THIS.with(|c| match c.get() {
        Some(t) => t,
        None => {
            let t = (NEXT_INDEX.fetch_add(1, Ordering::Relaxed), std::thread::current().id());
            c.set(Some(t));
            t
        }
    })
}

/// The current thread's id without `std::thread::current()`, which clones
/// (and drops) a reference-counted handle on every call.
pub fn thread_id() -> ThreadId {
    this().1
}

/// Keeps a shard on cache lines of its own (128 bytes: adjacent-line
/// prefetching pairs 64-byte lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One `T` per thread (up to [`SHARDS`]).
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Sharded { shards: (0..SHARDS).map(|_| Padded::default()).collect() }
    }
}

impl<T> Sharded<T> {
    /// The calling thread's shard.
    pub fn local(&self) -> &T {
        &self.shards[this().0 % SHARDS].0
    }

    /// Every shard, for readers that sum or sweep.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|p| &p.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn threads_get_their_own_shard_and_readers_see_all() {
        let s: Sharded<AtomicU64> = Sharded::default();
        let here = s.local() as *const AtomicU64 as usize;
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        s.local().fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let other = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(other, thread_id());
        assert_eq!(thread_id(), std::thread::current().id());
        assert_eq!(s.local() as *const AtomicU64 as usize, here, "stable per thread");
        assert_eq!(s.all().map(|a| a.load(Ordering::Relaxed)).sum::<u64>(), 4000);
        assert!(s.all().filter(|a| a.load(Ordering::Relaxed) > 0).count() >= 2, "spread over shards");
        assert_eq!(std::mem::align_of::<Padded<u8>>(), 128);
    }
}
