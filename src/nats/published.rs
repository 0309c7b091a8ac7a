//! Which finding versions a worker has published, kept in a JetStream
//! key-value bucket so that each version is published once whatever the
//! downtime.
//!
//! After a restart a worker reprocesses what came after its checkpoint
//! and emits again the finding versions it had already published. The
//! server drops a repeated message id only within its duplicate window
//! (ten minutes by default): a worker down longer would store every one
//! of them twice. So before publishing, each version is checked against
//! the last version published for its finding (a cache in front of the
//! bucket; the bucket is read only for findings not seen since the
//! start), and after the server acknowledged them the new versions are
//! written back, all at once. Entries expire after `max_age`, far longer
//! than any finding's life.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv::Store;
use bytes::Bytes;
use futures_util::future::join_all;

use super::NatsError;
use crate::finding::Finding;

/// Findings remembered in memory; past it the cache starts over (and
/// reads the bucket again for findings it meets).
const CACHE_MAX: usize = 200_000;

pub struct Published {
    kv: Store,
    cache: HashMap<String, u32>,
}

impl Published {
    /// Opens (creating it if needed) the bucket of worker `name`.
    pub async fn open(js: &jetstream::Context, name: &str) -> Result<Published, NatsError> {
        let bucket = bucket_name(name);
        let kv = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => {
                js.create_key_value(jetstream::kv::Config {
                    bucket: bucket.clone(),
                    description: "finding versions this worker has published".into(),
                    history: 1,
                    max_age: Duration::from_secs(30 * 86_400),
                    ..Default::default()
                })
                .await
                .map_err(|e| NatsError::Setup(format!("published-versions bucket {bucket}: {e}")))?
            }
        };
        Ok(Published {
            kv,
            cache: HashMap::new(),
        })
    }

    /// Which of `findings` are versions not published yet (true), in order.
    pub async fn unpublished(&mut self, findings: &[Finding]) -> Vec<bool> {
        let unknown: Vec<&str> = findings
            .iter()
            .map(|f| f.finding_id.as_str())
            .filter(|id| !self.cache.contains_key(*id))
            .collect();
        if !unknown.is_empty() {
            let kv = &self.kv;
            let read = join_all(unknown.iter().map(|id| async move {
                let v = kv.get(*id).await.ok().flatten();
                (
                    *id,
                    v.and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u32>().ok()),
                )
            }))
            .await;
            self.make_room(read.len());
            for (id, v) in read {
                // a finding the bucket does not know has published nothing
                self.cache.insert(id.to_owned(), v.map_or(0, |n| n + 1));
            }
        }
        // cached: the number of versions published (update_count of the last, plus one)
        let mut seen: HashMap<&str, u32> = HashMap::new();
        findings
            .iter()
            .map(|f| {
                let done = seen
                    .get(f.finding_id.as_str())
                    .copied()
                    .or_else(|| self.cache.get(&f.finding_id).copied())
                    .unwrap_or(0);
                let fresh = f.update_count >= done;
                if fresh {
                    seen.insert(f.finding_id.as_str(), f.update_count + 1);
                }
                fresh
            })
            .collect()
    }

    /// Records `findings` as published (the server acknowledged them).
    pub async fn record(&mut self, findings: &[&Finding]) {
        self.make_room(findings.len());
        let mut last: HashMap<&str, u32> = HashMap::new();
        for f in findings {
            let n = last.entry(f.finding_id.as_str()).or_insert(0);
            *n = (*n).max(f.update_count);
        }
        for (id, n) in &last {
            let e = self.cache.entry((*id).to_owned()).or_insert(0);
            *e = (*e).max(n + 1);
        }
        let kv = &self.kv;
        let writes = join_all(
            last.iter()
                .map(|(id, n)| kv.put(*id, Bytes::from(n.to_string()))),
        )
        .await;
        let failed = writes.iter().filter(|w| w.is_err()).count();
        if failed > 0 {
            // the server's duplicate window still covers a restart soon after
            tracing::warn!(
                failed,
                "could not record published finding versions; a restart may publish them again"
            );
            metrics::counter!(crate::metrics::NATS_PUBLISHED_RECORD_ERRORS)
                .increment(failed as u64);
        }
    }

    fn make_room(&mut self, n: usize) {
        if self.cache.len() + n > CACHE_MAX {
            self.cache.clear();
        }
    }
}

/// A bucket name from a worker name (letters, digits, `-` and `_` only).
fn bucket_name(worker: &str) -> String {
    let clean: String = worker
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("threatpilot_published_{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_valid_for_any_worker_name() {
        assert_eq!(bucket_name("edge.p0/1"), "threatpilot_published_edge_p0_1");
    }
}
