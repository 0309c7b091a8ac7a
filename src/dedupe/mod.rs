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
    /// Fingerprint to the last event kept with it; kept across batches
    /// (bounded by `INDEX_KEEP`) so that a line repeated across a batch
    /// boundary is told apart from its earlier copy.
    index: PrehashedMap<u64, Seen>,
    /// Which batch this is; `Seen::batch` equal to it means "in this batch".
    batch_no: u64,
    alerts_seen: PrehashedSet<u64>,
    alerts_order: VecDeque<u64>,
    max_alert_keys: usize,
    /// Per-batch scratch: which events stay, and the counts merged into each.
    keep: Vec<bool>,
    added: Vec<u32>,
}

/// The last event kept with a fingerprint.
#[derive(Clone, Copy)]
struct Seen {
    batch: u64,
    /// Its place in that batch.
    at: u32,
    time_domain: u32,
    timestamp: i64,
    len: u32,
    /// The occurrence number the next identical event (same domain, time
    /// and line) gets.
    next: u32,
}

/// Fingerprints remembered past their batch before the index is pruned:
/// small enough to stay in cache.
const INDEX_KEEP: usize = 8192;

impl Deduper {
    pub fn new(window_ms: i64, max_alert_keys: usize) -> Deduper {
        Deduper {
            window_ms,
            index: PrehashedMap::with_capacity_and_hasher(1024, Default::default()),
            batch_no: 0,
            alerts_seen: PrehashedSet::default(),
            alerts_order: VecDeque::new(),
            max_alert_keys: max_alert_keys.max(1),
            keep: Vec::new(),
            added: Vec::new(),
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

    /// Collapses duplicates in `batch` in place: the first occurrence of
    /// each event stays where it was, with the counts of the later ones
    /// added to it; later ones and alert resends are removed. Events are
    /// not moved to another vector, so the batch's memory is reused.
    ///
    /// An event identical to one kept earlier (same time domain, time and
    /// line: a run of identical lines longer than a batch) is kept with
    /// the next `event.occurrence`, so its stored id differs from the
    /// earlier copy's and neither's count is lost when a store merges rows
    /// by id.
    pub fn process(&mut self, batch: &mut Vec<Event>) -> DedupStats {
        let mut stats = DedupStats {
            received: batch.len() as u64,
            ..DedupStats::default()
        };
        self.batch_no += 1;
        let now = self.batch_no;
        if self.index.len() > INDEX_KEEP {
            // what the last batch kept is what a run of identical lines continues
            self.index.retain(|_, s| s.batch + 1 >= now);
        }
        let mut keep = std::mem::take(&mut self.keep);
        let mut added = std::mem::take(&mut self.added);
        keep.clear();
        keep.resize(batch.len(), true);
        added.clear();
        added.resize(batch.len(), 0u32);
        for i in 0..batch.len() {
            let ev = &batch[i];
            if ev.kind == Kind::Alert {
                if !self.remember_alert(ev.hash) {
                    stats.alert_resends += 1;
                    keep[i] = false;
                }
                continue;
            }
            let len = ev.original.len() as u32;
            let mut occurrence = 0;
            match self.index.get_mut(&ev.hash) {
                Some(seen) => {
                    if seen.batch == now {
                        let first = &batch[seen.at as usize];
                        if first.time_domain == ev.time_domain
                            && (ev.timestamp - first.timestamp).abs() <= self.window_ms
                            && first.original.len() == ev.original.len()
                            && first.message() == ev.message()
                        {
                            added[seen.at as usize] =
                                added[seen.at as usize].saturating_add(ev.count);
                            stats.merged += 1;
                            keep[i] = false;
                            continue;
                        }
                    }
                    let same = seen.time_domain == ev.time_domain
                        && seen.timestamp == ev.timestamp
                        && seen.len == len;
                    if same {
                        occurrence = seen.next;
                    }
                    *seen = Seen {
                        batch: now,
                        at: i as u32,
                        time_domain: ev.time_domain,
                        timestamp: ev.timestamp,
                        len,
                        next: if same { seen.next.saturating_add(1) } else { 1 },
                    };
                }
                None => {
                    self.index.insert(
                        ev.hash,
                        Seen {
                            batch: now,
                            at: i as u32,
                            time_domain: ev.time_domain,
                            timestamp: ev.timestamp,
                            len,
                            next: 1,
                        },
                    );
                }
            }
            batch[i].occurrence = occurrence;
        }
        if stats.merged + stats.alert_resends > 0 {
            for (ev, n) in batch.iter_mut().zip(&added) {
                ev.count = ev.count.saturating_add(*n);
            }
            let mut flags = keep.iter();
            batch.retain(|_| flags.next().copied().unwrap_or(true));
        }
        stats.emitted = batch.len() as u64;
        self.keep = keep;
        self.added = added;
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
        let mut out = events(&[line, line, line]);
        let st = d.process(&mut out);
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
    fn a_run_of_identical_lines_across_batches_keeps_every_count_under_distinct_ids() {
        let line = "Feb 12 14:10:21 h sshd[1]: Connection closed by 1.2.3.4 port 1 [preauth]";
        let mut d = Deduper::new(1000, 10);
        let mut kept = Vec::new();
        for _ in 0..12 {
            let mut batch = events(&vec![line; 250]);
            d.process(&mut batch);
            kept.extend(batch);
        }
        assert_eq!(kept.len(), 12);
        assert_eq!(kept.iter().map(|e| e.count).sum::<u32>(), 3000);
        let ids: std::collections::HashSet<String> =
            kept.iter().map(crate::store::rows::event_id).collect();
        assert_eq!(ids.len(), 12, "one id per stored event");
        // the first keeps the id a lone line has
        assert_eq!(kept[0].occurrence, 0);
        assert_eq!(kept[11].occurrence, 11);
    }

    #[test]
    fn same_message_outside_window_is_kept() {
        let mut d = Deduper::new(1000, 10);
        let mut out = events(&[
            "Feb 12 14:10:21 h sshd[1]: Connection closed by 1.2.3.4 port 1 [preauth]",
            "Feb 12 14:10:25 h sshd[1]: Connection closed by 1.2.3.4 port 1 [preauth]",
        ]);
        d.process(&mut out);
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
            let mut out = input;
            let st = d.process(&mut out);
            prop_assert_eq!(out.iter().map(|e| e.count as u64).sum::<u64>(), total);
            prop_assert_eq!(st.received, st.emitted + st.merged + st.alert_resends);
            // survivors are the first occurrences, in input order
            let mut firsts: Vec<&str> = Vec::new();
            for l in &lines {
                if !firsts.contains(l) {
                    firsts.push(l);
                }
            }
            prop_assert_eq!(out.iter().map(|e| e.original.as_str()).collect::<Vec<_>>(), firsts);
            // dedup key stability: the same line always gets the same fingerprint
            let again = events(&lines);
            for (a, b) in again.iter().zip(events(&lines).iter()) { prop_assert_eq!(a.hash, b.hash); }
        }
    }
}
