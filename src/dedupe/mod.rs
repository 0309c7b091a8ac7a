//! Exact dedup (SPEC 6): identical events collapse into one with a count.
//!
//! ```text
//! batch in ─> fingerprint (event.hash, set at parse) ─> first occurrence kept,
//!             later ones within `window_ms` fold into its event.count ─> batch out
//! ```
//! Dedup works inside a batch, so it adds no latency beyond the batching the
//! stage graph already does and needs no timer; batches are bounded, so its
//! memory is too. Alerts are different: Alertmanager re-sends a firing alert
//! on every repeat interval, and a resend is not a new occurrence, so alert
//! keys (group key, fingerprint, startsAt, status) are remembered across
//! batches in a bounded set and resends are dropped, not counted.
//!
//! Invariant (tested with proptest): the sum of `event.count` over the output
//! equals the sum over the input minus dropped alert resends.

use std::collections::VecDeque;

use crate::prehashed::{PrehashedMap, PrehashedSet};

use crate::event::{Event, Kind};

/// Outcome counts of one call, for the stage counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DedupStats {
    pub received: u64,
    pub emitted: u64,
    /// Events folded into an earlier identical one.
    pub merged: u64,
    /// Alert resends already seen.
    pub alert_resends: u64,
}

pub struct Deduper {
    window_ms: i64,
    index: PrehashedMap<u64, usize>,
    alerts_seen: PrehashedSet<u64>,
    alerts_order: VecDeque<u64>,
    max_alert_keys: usize,
}

impl Deduper {
    pub fn new(window_ms: i64, max_alert_keys: usize) -> Deduper {
        Deduper {
            window_ms,
            index: PrehashedMap::with_capacity_and_hasher(1024, Default::default()),
            alerts_seen: PrehashedSet::default(),
            alerts_order: VecDeque::new(),
            max_alert_keys: max_alert_keys.max(1),
        }
    }

    /// Alert keys remembered, oldest first (the only state that outlives a batch).
    pub fn snapshot(&self) -> Vec<u64> {
        self.alerts_order.iter().copied().collect()
    }

    pub fn restore(&mut self, alert_keys: Vec<u64>) {
        self.alerts_seen = alert_keys.iter().copied().collect();
        self.alerts_order = alert_keys.into();
    }

    /// Collapses duplicates in `batch`, appending survivors to `out` in order
    /// of first occurrence.
    pub fn process(&mut self, batch: Vec<Event>, out: &mut Vec<Event>) -> DedupStats {
        let mut stats = DedupStats {
            received: batch.len() as u64,
            ..DedupStats::default()
        };
        self.index.clear();
        let base = out.len();
        for ev in batch {
            if ev.kind == Kind::Alert {
                if !self.remember_alert(ev.hash) {
                    stats.alert_resends += 1;
                    continue;
                }
                out.push(ev);
                continue;
            }
            if let Some(&i) = self.index.get(&ev.hash) {
                let first = &mut out[i];
                if first.time_domain == ev.time_domain
                    && (ev.timestamp - first.timestamp).abs() <= self.window_ms
                    && first.original.len() == ev.original.len()
                    && first.message() == ev.message()
                {
                    first.count = first.count.saturating_add(ev.count);
                    stats.merged += 1;
                    continue;
                }
            }
            self.index.insert(ev.hash, out.len());
            out.push(ev);
        }
        stats.emitted = (out.len() - base) as u64;
        stats
    }

    fn remember_alert(&mut self, key: u64) -> bool {
        if !self.alerts_seen.insert(key) {
            return false;
        }
        self.alerts_order.push_back(key);
        if self.alerts_order.len() > self.max_alert_keys
            && let Some(old) = self.alerts_order.pop_front()
        {
            self.alerts_seen.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, SourceState, parse_line};
    use proptest::prelude::*;

    fn events(lines: &[&str]) -> Vec<Event> {
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        lines.iter().map(|l| parse_line(l, &mut st, 0)).collect()
    }

    #[test]
    fn identical_lines_collapse_with_count() {
        let line = r#"2021/12/02 11:53:15 [error] 1#1: *4 limiting requests, excess: 5.428 by zone "z", client: ::1, server: , request: "GET / HTTP/1.1", host: "h""#;
        let mut d = Deduper::new(1000, 10);
        let mut out = Vec::new();
        let st = d.process(events(&[line, line, line]), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, 3);
        assert_eq!(
            st,
            DedupStats {
                received: 3,
                emitted: 1,
                merged: 2,
                alert_resends: 0
            }
        );
    }

    #[test]
    fn same_message_outside_window_is_kept() {
        let mut d = Deduper::new(1000, 10);
        let mut out = Vec::new();
        d.process(
            events(&[
                "Feb 12 14:10:21 h sshd[1]: Connection closed by 1.2.3.4 port 1 [preauth]",
                "Feb 12 14:10:25 h sshd[1]: Connection closed by 1.2.3.4 port 1 [preauth]",
            ]),
            &mut out,
        );
        assert_eq!(out.len(), 2);
    }

    proptest! {
        #[test]
        fn counts_are_conserved(picks in proptest::collection::vec(0usize..4, 1..60)) {
            let pool = ["Feb 12 14:10:21 h sshd[1]: Connection closed by 1.2.3.4 port 1 [preauth]",
                        "Feb 12 14:10:21 h sshd[1]: Connection closed by 1.2.3.5 port 1 [preauth]",
                        "Feb 12 14:10:21 h sshd[2]: Invalid user a from 1.2.3.4 port 3",
                        "Feb 12 14:10:22 h2 sshd[2]: Invalid user a from 1.2.3.4 port 3"];
            let lines: Vec<&str> = picks.iter().map(|&i| pool[i]).collect();
            let input = events(&lines);
            let total: u64 = input.iter().map(|e| e.count as u64).sum();
            let mut d = Deduper::new(1000, 10);
            let mut out = Vec::new();
            let st = d.process(input, &mut out);
            prop_assert_eq!(out.iter().map(|e| e.count as u64).sum::<u64>(), total);
            prop_assert_eq!(st.received, st.emitted + st.merged + st.alert_resends);
            // dedup key stability: the same line always gets the same fingerprint
            let again = events(&lines);
            for (a, b) in again.iter().zip(events(&lines).iter()) { prop_assert_eq!(a.hash, b.hash); }
        }
    }
}
