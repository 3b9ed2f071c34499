//! Work areas for Argon2id, reused and bounded.
//!
//! Every derivation needs `m_cost` KiB (19 MiB by default). Allocating that per login lets a
//! burst of logins exhaust memory, and glibc keeps freed buffers of this size in per-thread
//! arenas, so the process's RSS only grows (about 5 GB after 500 cold logins was measured).
//! Here a fixed number of areas is shared: a derivation waits for a free one, uses it, wipes it
//! (it held password-derived state) and hands it back.

use argon2::Block;
use std::sync::{Condvar, LazyLock, Mutex};
use zeroize::Zeroize;

/// Areas larger than this are not kept for reuse (only unusually expensive KDF parameters need
/// them); they are wiped and freed after use.
const MAX_POOLED_BLOCKS: usize = 64 * 1024; // 64 MiB of 1 KiB blocks

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Pool::new((cores * 2).max(2))
});

/// Run `derive` with a wiped area of `blocks` Argon2 blocks, waiting while all areas are busy.
pub(crate) fn with_kdf_memory<R>(blocks: usize, derive: impl FnOnce(&mut [Block]) -> R) -> R {
    POOL.with_memory(blocks, derive)
}

struct Pool {
    state: Mutex<PoolState>,
    freed: Condvar,
    /// Derivations allowed at once: enough to keep every core busy.
    slots: usize,
}

struct PoolState {
    idle: Vec<Vec<Block>>,
    in_use: usize,
}

impl Pool {
    fn new(slots: usize) -> Self {
        Pool {
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                in_use: 0,
            }),
            freed: Condvar::new(),
            slots,
        }
    }

    fn with_memory<R>(&self, blocks: usize, derive: impl FnOnce(&mut [Block]) -> R) -> R {
        let mut area = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.in_use >= self.slots {
                state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.in_use += 1;
            state.idle.pop().unwrap_or_default()
        };
        if area.len() < blocks {
            area.resize(blocks, Block::default());
        }
        let result = derive(&mut area[..blocks]);
        area[..blocks].iter_mut().for_each(Zeroize::zeroize);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_use -= 1;
        if area.len() <= MAX_POOLED_BLOCKS {
            state.idle.push(area);
        }
        drop(state);
        self.freed.notify_one();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn areas_are_reused_not_reallocated() {
        // A single caller gets back the area it returned: no fresh 19 MiB per login.
        let pool = Pool::new(2);
        let first = pool.with_memory(16, |area| area.as_ptr() as usize);
        let second = pool.with_memory(16, |area| area.as_ptr() as usize);
        assert_eq!(first, second);
    }

    #[test]
    fn concurrent_derivations_never_exceed_the_slots() {
        static ACTIVE: AtomicUsize = AtomicUsize::new(0);
        static PEAK: AtomicUsize = AtomicUsize::new(0);
        static LOCAL: LazyLock<Pool> = LazyLock::new(|| Pool::new(3));
        let threads: Vec<_> = (0..9)
            .map(|_| {
                std::thread::spawn(|| {
                    LOCAL.with_memory(8, |_| {
                        let now = ACTIVE.fetch_add(1, Ordering::SeqCst) + 1;
                        PEAK.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        ACTIVE.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let peak = PEAK.load(Ordering::SeqCst);
        assert!(peak <= 3, "{peak} derivations at once with 3 slots");
        assert!(
            peak >= 2,
            "the test must actually overlap derivations: peak {peak}"
        );
    }
}
