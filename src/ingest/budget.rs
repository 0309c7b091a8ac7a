//! One memory budget for everything ingestion holds: request bodies,
//! what they decompress and decode to, and the lines waiting for the
//! parse stage.
//!
//! Counting requests bounds nothing when one 150 KB gzipped body decodes
//! to two million entries, so each request takes a [`Grant`] of bytes
//! before it allocates them, and grows it as it decompresses and decodes.
//! When the budget is spent the request is refused (503 with
//! `Retry-After`) before the allocation, and the process stays under its
//! ceiling however many bombs arrive at once. A grant travels with its
//! batches into the graph and is given back when the parse stage has
//! turned them into events (whose queues are bounded by batch counts).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes an event costs beyond its line, as the parse stage builds it
/// (the struct, its parsed fields, the batch vectors' slots).
pub const EVENT_OVERHEAD: usize = std::mem::size_of::<crate::event::Event>() + 256;

/// What one decoded line is charged: the line as received, again as the
/// event's `event.original`, and the event around it.
pub fn line_cost(len: usize) -> usize {
    2 * len + EVENT_OVERHEAD
}

/// The shared budget: a limit and what grants hold of it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// The bytes grants hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A grant of `n` bytes, or `None` when that would pass the limit.
    pub fn grant(self: &Arc<Self>, n: usize) -> Option<Grant> {
        let mut g = Grant {
            budget: self.clone(),
            held: 0,
        };
        g.resize(n).then_some(g)
    }

    fn take(&self, n: usize) -> bool {
        let ok = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok();
        if !ok {
            metrics::counter!(crate::metrics::INGEST_BUDGET_REFUSALS).increment(1);
        }
        self.publish();
        ok
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.publish();
    }

    fn publish(&self) {
        metrics::gauge!(crate::metrics::INGEST_BUDGET_USED).set(self.used() as f64);
    }
}

/// Bytes held of a budget; given back when dropped.
#[derive(Debug)]
pub struct Grant {
    budget: Arc<MemoryBudget>,
    held: usize,
}

impl Grant {
    /// Holds `n` bytes in all: shrinking always succeeds, growing only
    /// within the budget (false, and nothing changed, otherwise).
    pub fn resize(&mut self, n: usize) -> bool {
        if n <= self.held {
            self.budget.give_back(self.held - n);
            self.held = n;
            return true;
        }
        if !self.budget.take(n - self.held) {
            return false;
        }
        self.held = n;
        true
    }

    /// Grows by `n` bytes; false when the budget has no room for them.
    pub fn grow(&mut self, n: usize) -> bool {
        self.resize(self.held.saturating_add(n))
    }

    pub fn held(&self) -> usize {
        self.held
    }

    /// A grant of nothing on the same budget.
    pub fn empty(&self) -> Grant {
        Grant {
            budget: self.budget.clone(),
            held: 0,
        }
    }

    /// Takes over what `other` holds (of the same budget).
    pub fn absorb(&mut self, mut other: Grant) {
        self.held += other.held;
        other.held = 0;
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_share_the_limit_and_give_back_when_dropped() {
        let b = MemoryBudget::new(100);
        let mut a = b.grant(60).unwrap();
        assert!(b.grant(50).is_none(), "over the limit");
        let c = b.grant(40).unwrap();
        assert_eq!(b.used(), 100);
        assert!(!a.grow(1));
        assert_eq!(a.held(), 60, "a refused growth changes nothing");
        drop(c);
        assert!(a.grow(30));
        assert!(a.resize(10));
        assert_eq!(b.used(), 10);
        drop(a);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn concurrent_grants_never_pass_the_limit() {
        let b = MemoryBudget::new(1000);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (b, peak) = (b.clone(), peak.clone());
                s.spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(g) = b.grant(300) {
                            peak.fetch_max(b.used(), Ordering::Relaxed);
                            drop(g);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 1000);
        assert_eq!(b.used(), 0);
    }
}
