//! Per-group window state, kept small: a tracked key costs a few dozen bytes
//! plus its evidence sample (SPEC 14: well under 1 KiB per key).
//!
//! - tumbling: one aligned window `[k*size, (k+1)*size)`, reset at the boundary;
//! - sliding: up to ten sub-buckets of `size/10`, so the window slides at a
//!   tenth of its length (exact enough for thresholds, bounded in memory);
//! - leaky bucket: a level that drains one event per `leak` and fills by
//!   each event's count (CrowdSec's model);
//! - distinct count: value hashes with their last time, capped;
//! - sequence: the step reached, its count, and when the first step began.
//!
//! Invariant (proptest): a count window never reports more than the events
//! added, and an event older than the window no longer counts.

use std::collections::VecDeque;

use smallvec::SmallVec;

use super::WindowLogic;
use super::config::{AggregateKind, WindowKind};

const SLIDING_BUCKETS: i64 = 10;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum WindowState {
    Tumbling {
        index: i64,
        num: f64,
        den: f64,
    },
    Sliding {
        buckets: VecDeque<(i64, f64, f64)>,
    },
    Leaky {
        level: f64,
        last: i64,
    },
    /// The first value is held inline: most keys see one.
    Distinct {
        index: i64,
        values: SmallVec<[(u64, i64); 1]>,
    },
    Sequence {
        stage: u16,
        count: u64,
        start: i64,
    },
}

/// What one event contributes.
pub struct Contribution {
    pub ts: i64,
    /// Events this one stands for (`event.count`).
    pub weight: f64,
    /// Ratio numerator weight, or the summed value.
    pub num: f64,
    /// Distinct-count value hash.
    pub distinct: u64,
}

impl WindowState {
    pub fn new(logic: &WindowLogic) -> WindowState {
        match (logic.kind, logic.aggregate) {
            (_, AggregateKind::DistinctCount) => WindowState::Distinct {
                index: i64::MIN,
                values: SmallVec::new(),
            },
            (WindowKind::Tumbling, _) => WindowState::Tumbling {
                index: i64::MIN,
                num: 0.0,
                den: 0.0,
            },
            (WindowKind::Sliding, _) => WindowState::Sliding {
                buckets: VecDeque::new(),
            },
            (WindowKind::LeakyBucket, _) => WindowState::Leaky {
                level: 0.0,
                last: i64::MIN,
            },
        }
    }

    /// Adds an event; returns (aggregate value, events in the window).
    pub fn observe(&mut self, logic: &WindowLogic, c: &Contribution) -> (f64, f64) {
        let finish = |num: f64, den: f64| match logic.aggregate {
            AggregateKind::Ratio => (if den > 0.0 { num / den } else { 0.0 }, den),
            AggregateKind::Count => (den, den),
            _ => (num, den),
        };
        let add_num = match logic.aggregate {
            AggregateKind::Sum | AggregateKind::Ratio => c.num,
            _ => 0.0,
        };
        match self {
            WindowState::Tumbling { index, num, den } => {
                let i = c.ts.div_euclid(logic.size_ms);
                if i > *index {
                    *index = i;
                    *num = 0.0;
                    *den = 0.0;
                }
                if i == *index {
                    *num += add_num;
                    *den += c.weight;
                }
                finish(*num, *den)
            }
            WindowState::Sliding { buckets } => {
                let width = (logic.size_ms / SLIDING_BUCKETS).max(1);
                let i = c.ts.div_euclid(width);
                let newest = buckets.back().map_or(i, |b| b.0.max(i));
                while buckets
                    .front()
                    .is_some_and(|b| b.0 <= newest - SLIDING_BUCKETS)
                {
                    buckets.pop_front();
                }
                if i > newest - SLIDING_BUCKETS {
                    match buckets.iter_mut().find(|b| b.0 == i) {
                        Some(b) => {
                            b.1 += add_num;
                            b.2 += c.weight;
                        }
                        None => {
                            let at = buckets
                                .iter()
                                .position(|b| b.0 > i)
                                .unwrap_or(buckets.len());
                            if buckets.capacity() == 0 {
                                buckets.reserve_exact(1);
                            }
                            buckets.insert(at, (i, add_num, c.weight));
                        }
                    }
                }
                let (num, den) = buckets
                    .iter()
                    .fold((0.0, 0.0), |(n, d), b| (n + b.1, d + b.2));
                finish(num, den)
            }
            WindowState::Leaky { level, last } => {
                // whole events leak once per interval, as CrowdSec's buckets do
                if *last == i64::MIN || *level <= 0.0 {
                    *last = c.ts;
                } else if c.ts > *last {
                    let leaked = ((c.ts - *last) as f64 / logic.leak_ms).floor();
                    *level = (*level - leaked).max(0.0);
                    *last += (leaked * logic.leak_ms) as i64;
                    if *level <= 0.0 {
                        *last = c.ts;
                    }
                }
                *level += c.weight;
                (*level, *level)
            }
            WindowState::Distinct { index, values } => {
                let cap = (logic.threshold.max(1.0) as usize)
                    .saturating_mul(2)
                    .clamp(8, 4096);
                match logic.kind {
                    WindowKind::Tumbling => {
                        let i = c.ts.div_euclid(logic.size_ms);
                        if i > *index {
                            *index = i;
                            values.clear();
                        }
                    }
                    _ => {
                        let horizon = c.ts - logic.size_ms;
                        values.retain(|v| v.1 > horizon);
                    }
                }
                match values.iter_mut().find(|v| v.0 == c.distinct) {
                    Some(v) => v.1 = v.1.max(c.ts),
                    None => {
                        if values.len() >= cap
                            && let Some(oldest) = values
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, v)| v.1)
                                .map(|(i, _)| i)
                        {
                            values.swap_remove(oldest);
                        }
                        values.push((c.distinct, c.ts));
                    }
                }
                (values.len() as f64, values.len() as f64)
            }
            WindowState::Sequence { .. } => (0.0, 0.0),
        }
    }

    /// How long after its last event a key's window is certainly empty.
    pub fn span_ms(&self, logic: &WindowLogic) -> i64 {
        match self {
            WindowState::Leaky { level, .. } => (level * logic.leak_ms) as i64 + 1,
            _ => logic.size_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn logic(kind: WindowKind) -> WindowLogic {
        WindowLogic {
            kind,
            size_ms: 60_000,
            leak_ms: 10_000.0,
            aggregate: AggregateKind::Count,
            field: None,
            numerator: None,
            min_events: 1,
            min_gap_ms: 0,
            threshold: 5.0,
        }
    }

    fn add(w: &mut WindowState, l: &WindowLogic, ts: i64) -> f64 {
        w.observe(
            l,
            &Contribution {
                ts,
                weight: 1.0,
                num: 0.0,
                distinct: 0,
            },
        )
        .0
    }

    #[test]
    fn leaky_bucket_drains() {
        let l = logic(WindowKind::LeakyBucket);
        let mut w = WindowState::new(&l);
        for i in 0..5 {
            add(&mut w, &l, i * 1000);
        }
        // five events in 4 s leak nothing; by 24 s two whole events have leaked
        assert_eq!(add(&mut w, &l, 4_500), 6.0);
        assert_eq!(add(&mut w, &l, 24_000), 6.0 - 2.0 + 1.0);
    }

    #[test]
    fn tumbling_resets_at_boundary() {
        let l = logic(WindowKind::Tumbling);
        let mut w = WindowState::new(&l);
        assert_eq!(add(&mut w, &l, 59_000), 1.0);
        assert_eq!(add(&mut w, &l, 60_000), 1.0);
    }

    #[test]
    fn sum_and_ratio_over_a_sliding_window() {
        let mut l = logic(WindowKind::Sliding);
        l.aggregate = AggregateKind::Sum;
        let mut w = WindowState::new(&l);
        let c = |ts, num| Contribution {
            ts,
            weight: 1.0,
            num,
            distinct: 0,
        };
        assert_eq!(w.observe(&l, &c(0, 100.0)).0, 100.0);
        assert_eq!(w.observe(&l, &c(30_000, 250.0)).0, 350.0);
        // the first contribution has slid out a minute later
        assert_eq!(w.observe(&l, &c(61_000, 1.0)).0, 251.0);
        l.aggregate = AggregateKind::Ratio;
        let mut w = WindowState::new(&l);
        w.observe(&l, &c(0, 1.0));
        w.observe(&l, &c(1_000, 0.0));
        w.observe(&l, &c(2_000, 0.0));
        let (ratio, events) = w.observe(&l, &c(3_000, 1.0));
        assert_eq!((ratio, events), (0.5, 4.0));
    }

    proptest! {
        /// Window assignment: a sliding count never exceeds the events added,
        /// and events a full window older than the newest no longer count.
        #[test]
        fn sliding_counts_only_recent(mut times in proptest::collection::vec(0i64..600_000, 1..80)) {
            times.sort();
            let l = logic(WindowKind::Sliding);
            let mut w = WindowState::new(&l);
            let mut last = 0.0;
            for &t in &times { last = add(&mut w, &l, t); }
            let newest = *times.last().unwrap();
            // the window covers between nine and ten tenths of its size
            let surely_in = times.iter().filter(|&&t| t >= newest - 54_000).count() as f64;
            let at_most = times.iter().filter(|&&t| t > newest - 60_000).count() as f64;
            prop_assert!(last >= surely_in && last <= at_most, "count {} in {} max {}", last, surely_in, at_most);
        }
    }
}
