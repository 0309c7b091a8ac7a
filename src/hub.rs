//! The findings hub: where every finding version goes once detection has
//! emitted it, below everything that consumes findings.
//!
//! ```text
//! detect ─> sink stage ─> Subscriber::accept ─┬─> FindingsHub (API list, live stream)
//!                                             └─> response (incidents, actions)
//! ```
//! The sink stage hands each version, in emission order, to every
//! [`Subscriber`]; a subscriber must not block (it queues what is slow).
//! The [`FindingsHub`] keeps the latest version of each finding and its
//! recent updates in memory (bounded) for the API, and broadcasts every
//! version for live streams. It is a view for operators, not the record:
//! the sinks (files, JetStream, ClickHouse) keep every version. Past
//! `max_findings` the finding updated longest ago is forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::finding::{Finding, Severity};

/// Takes every finding version the pipeline emits, in order.
pub trait Subscriber: Send {
    /// Must return quickly: whatever is slow is queued by the subscriber.
    fn accept(&mut self, f: &Arc<Finding>);
    /// The input has ended; nothing more will come.
    fn finish(&mut self) {}
}

impl Subscriber for Arc<FindingsHub> {
    fn accept(&mut self, f: &Arc<Finding>) {
        self.publish(f.clone());
    }
}

/// Updates kept per finding for `GET /findings/{id}`.
const VERSIONS_KEPT: usize = 50;

pub struct FindingsHub {
    inner: Mutex<Store>,
    live: broadcast::Sender<Arc<Finding>>,
    max: usize,
}

#[derive(Default)]
struct Store {
    by_id: HashMap<String, Entry>,
    /// (touch sequence, id), oldest first; stale pairs are skipped.
    order: VecDeque<(u64, String)>,
    seq: u64,
    forgotten: u64,
}

struct Entry {
    seq: u64,
    versions: VecDeque<Arc<Finding>>,
}

impl FindingsHub {
    pub fn new(max: usize) -> FindingsHub {
        FindingsHub {
            inner: Mutex::new(Store::default()),
            live: broadcast::channel(4096).0,
            max: max.max(1),
        }
    }

    /// Takes one finding version (from the sink stage).
    pub fn publish(&self, f: Arc<Finding>) {
        let _ = self.live.send(f.clone());
        let Ok(mut s) = self.inner.lock() else { return };
        s.seq += 1;
        let seq = s.seq;
        let id = f.finding_id.clone();
        let e = s.by_id.entry(id.clone()).or_insert_with(|| Entry {
            seq,
            versions: VecDeque::new(),
        });
        e.seq = seq;
        if e.versions.len() == VERSIONS_KEPT {
            e.versions.pop_front();
        }
        e.versions.push_back(f);
        s.order.push_back((seq, id));
        while s.by_id.len() > self.max {
            let Some((seq, id)) = s.order.pop_front() else {
                break;
            };
            if s.by_id.get(&id).is_some_and(|e| e.seq == seq) {
                s.by_id.remove(&id);
                s.forgotten += 1;
            }
        }
        // drop stale order entries so the queue stays near the map's size
        if s.order.len() > 2 * self.max + 1024 {
            let Store { by_id, order, .. } = &mut *s;
            order.retain(|(seq, id)| by_id.get(id).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Latest versions that pass `q`, most recently seen first.
    pub fn list(&self, q: &ListQuery) -> Vec<Arc<Finding>> {
        let since = q.since_ms().ok().flatten();
        let Ok(s) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Arc<Finding>> = s
            .by_id
            .values()
            .filter_map(|e| e.versions.back())
            .filter(|f| q.admits_since(f, since))
            .cloned()
            .collect();
        drop(s);
        let newest_first = |a: &Arc<Finding>, b: &Arc<Finding>| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(a.finding_id.cmp(&b.finding_id))
        };
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        // only the page is sorted: a hundred thousand held stay cheap
        if out.len() > limit {
            out.select_nth_unstable_by(limit, newest_first);
            out.truncate(limit);
        }
        out.sort_by(newest_first);
        out
    }

    /// The latest version of every finding held, in no order.
    pub fn latest(&self) -> Vec<Arc<Finding>> {
        self.inner
            .lock()
            .map(|s| {
                s.by_id
                    .values()
                    .filter_map(|e| e.versions.back().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A finding's updates, oldest first; `None` when unknown.
    pub fn get(&self, id: &str) -> Option<Vec<Arc<Finding>>> {
        let s = self.inner.lock().ok()?;
        s.by_id
            .get(id)
            .map(|e| e.versions.iter().cloned().collect())
    }

    pub fn counts(&self) -> (usize, u64) {
        self.inner
            .lock()
            .map(|s| (s.by_id.len(), s.forgotten))
            .unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Finding>> {
        self.live.subscribe()
    }
}

/// Filters of the list and the live stream; all optional.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub domain: Option<String>,
    pub classification: Option<String>,
    /// Minimum severity (`high` gives high and critical).
    pub severity: Option<Severity>,
    pub detector: Option<String>,
    /// Offender value (an address, a user, a host).
    pub offender: Option<String>,
    /// Last seen at or after this instant (RFC 3339).
    pub since: Option<String>,
    pub limit: Option<usize>,
}

impl ListQuery {
    pub fn since_ms(&self) -> Result<Option<i64>, String> {
        self.since
            .as_deref()
            .map(|t| {
                crate::time::parse_rfc3339(t.as_bytes())
                    .map(|x| x.0)
                    .ok_or_else(|| format!("since={t:?} is not an RFC 3339 time"))
            })
            .transpose()
    }

    pub fn admits(&self, f: &Finding) -> bool {
        self.admits_since(f, self.since_ms().ok().flatten())
    }

    /// [`admits`](Self::admits) with `since` already read.
    fn admits_since(&self, f: &Finding, since: Option<i64>) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.status, f.status.as_str())
            && eq(&self.domain, f.domain.as_str())
            && eq(&self.classification, &f.classification)
            && eq(&self.detector, &f.detector.id)
            && eq(&self.offender, &f.offender.value)
            && self.severity.is_none_or(|s| f.severity >= s)
            && since.is_none_or(|t| f.last_seen >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, last_seen: i64, update: u32) -> Finding {
        let mut f: Finding =
            serde_json::from_str(include_str!("../tests/data/finding.json")).unwrap();
        f.finding_id = id.into();
        f.last_seen = last_seen;
        f.update_count = update;
        f
    }

    #[test]
    fn keeps_latest_versions_newest_first_and_bounded() {
        let hub = FindingsHub::new(2);
        hub.publish(Arc::new(finding("a", 10, 0)));
        hub.publish(Arc::new(finding("b", 20, 0)));
        hub.publish(Arc::new(finding("a", 30, 1)));
        let ids: Vec<String> = hub
            .list(&ListQuery::default())
            .iter()
            .map(|f| f.finding_id.clone())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(hub.get("a").unwrap().len(), 2);
        hub.publish(Arc::new(finding("c", 40, 0)));
        // b was updated longest ago
        assert!(hub.get("b").is_none());
        assert_eq!(hub.counts(), (2, 1));
    }
}
