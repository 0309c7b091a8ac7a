//! The durable outbox: every external call is written here, synced, before
//! it is sent, and acknowledged once the far side took it. After a crash
//! what was not acknowledged is sent again.
//!
//! Messages are keyed by what they are about (`slack:soc:i-…`): a newer
//! state of an incident replaces an older one that was not sent yet, so a
//! storm of updates becomes one message with the latest state, and the
//! backlog of an outage is bounded by the number of incidents, not of
//! updates. References learned from the far side (a Slack message's
//! channel and `ts`, so later states update it in place) are kept here too.
//!
//! One JSON record per line, compacted on open:
//! `{"op":"put","seq":7,"key":…,"channel":…,"body":…}`, `{"op":"ack","seq":7}`,
//! `{"op":"dead","seq":7,"why":…}`, `{"op":"ref","key":…,"value":…}`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A message waiting to be sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// What the message is about; a newer put with the same key replaces it.
    pub key: String,
    pub channel: String,
    pub body: serde_json::Value,
    pub enqueued_ms: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Put(Entry),
    Ack { seq: u64 },
    Dead { seq: u64, why: String },
    Ref { key: String, value: String },
}

pub struct Outbox {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    pending: BTreeMap<u64, Entry>,
    by_key: HashMap<String, u64>,
    refs: HashMap<String, String>,
    next_seq: u64,
    unsynced: bool,
    /// Lines that could not be read at open (a torn write at a crash).
    pub skipped_at_open: usize,
}

impl Outbox {
    /// Opens (or creates) `dir/outbox.jsonl`, restores what it holds and
    /// rewrites it compacted.
    pub fn open(dir: &Path) -> std::io::Result<Outbox> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("outbox.jsonl");
        let mut pending = BTreeMap::new();
        let mut refs = HashMap::new();
        let mut skipped = 0;
        let mut next_seq = 1;
        if path.exists() {
            let f = std::io::BufReader::new(std::fs::File::open(&path)?);
            for line in f.lines() {
                let line = line?;
                match serde_json::from_str::<Record>(&line) {
                    Ok(Record::Put(e)) => {
                        next_seq = next_seq.max(e.seq + 1);
                        pending.insert(e.seq, e);
                    }
                    Ok(Record::Ack { seq } | Record::Dead { seq, .. }) => {
                        pending.remove(&seq);
                    }
                    Ok(Record::Ref { key, value }) => {
                        refs.insert(key, value);
                    }
                    Err(_) => skipped += 1,
                }
            }
        }
        // a newer put superseded older ones with its key
        let mut by_key: HashMap<String, u64> = HashMap::new();
        let mut superseded = Vec::new();
        for (seq, e) in &pending {
            if let Some(old) = by_key.insert(e.key.clone(), *seq) {
                superseded.push(old);
            }
        }
        for s in superseded {
            pending.remove(&s);
        }
        let tmp = path.with_extension("compact.tmp");
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for (key, value) in &refs {
                serde_json::to_writer(
                    &mut w,
                    &Record::Ref {
                        key: key.clone(),
                        value: value.clone(),
                    },
                )?;
                w.write_all(b"\n")?;
            }
            for e in pending.values() {
                serde_json::to_writer(&mut w, &Record::Put(e.clone()))?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let f = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Outbox {
            path,
            out: std::io::BufWriter::new(f),
            pending,
            by_key,
            refs,
            next_seq,
            unsynced: false,
            skipped_at_open: skipped,
        })
    }

    fn write(&mut self, r: &Record) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")?;
        self.unsynced = true;
        Ok(())
    }

    /// Queues a message; an unsent one with the same key is replaced.
    /// Returns its sequence number. Durable after [`Outbox::sync`].
    pub fn put(
        &mut self,
        key: &str,
        channel: &str,
        body: serde_json::Value,
        now_ms: i64,
    ) -> std::io::Result<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let e = Entry {
            seq,
            key: key.to_owned(),
            channel: channel.to_owned(),
            body,
            enqueued_ms: now_ms,
        };
        self.write(&Record::Put(e.clone()))?;
        if let Some(old) = self.by_key.insert(key.to_owned(), seq) {
            // the older state is never sent now; an in-flight one is acked
            // by its own sequence number when it returns
            self.pending.remove(&old);
        }
        self.pending.insert(seq, e);
        Ok(seq)
    }

    /// The far side took message `seq`.
    pub fn ack(&mut self, seq: u64) -> std::io::Result<()> {
        self.write(&Record::Ack { seq })?;
        self.forget(seq);
        Ok(())
    }

    /// Message `seq` can never be sent (a permanent error), with why.
    pub fn dead(&mut self, seq: u64, why: &str) -> std::io::Result<()> {
        self.write(&Record::Dead {
            seq,
            why: why.to_owned(),
        })?;
        self.forget(seq);
        Ok(())
    }

    fn forget(&mut self, seq: u64) {
        if let Some(e) = self.pending.remove(&seq)
            && self.by_key.get(&e.key) == Some(&seq)
        {
            self.by_key.remove(&e.key);
        }
    }

    /// Remembers what the far side calls a key's message.
    pub fn set_ref(&mut self, key: &str, value: &str) -> std::io::Result<()> {
        self.write(&Record::Ref {
            key: key.to_owned(),
            value: value.to_owned(),
        })?;
        self.refs.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    pub fn reference(&self, key: &str) -> Option<&str> {
        self.refs.get(key).map(String::as_str)
    }

    /// The oldest waiting message of `channel` for which `ready` holds.
    pub fn next_for(&self, channel: &str, ready: impl Fn(&Entry) -> bool) -> Option<&Entry> {
        self.pending
            .values()
            .find(|e| e.channel == channel && ready(e))
    }

    pub fn get(&self, seq: u64) -> Option<&Entry> {
        self.pending.get(&seq)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tp-outbox-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_newer_state_replaces_an_unsent_one_and_survives_a_restart() {
        let d = dir("restart");
        let mut o = Outbox::open(&d).unwrap();
        let a = o
            .put("slack:soc:i-1", "soc", serde_json::json!({"v": 1}), 1)
            .unwrap();
        let b = o
            .put("slack:soc:i-2", "soc", serde_json::json!({"v": 1}), 2)
            .unwrap();
        let c = o
            .put("slack:soc:i-1", "soc", serde_json::json!({"v": 2}), 3)
            .unwrap();
        assert_eq!(o.pending(), 2);
        assert!(o.get(a).is_none());
        o.ack(b).unwrap();
        o.set_ref("slack:soc:i-2", "C1/1700000000.000100").unwrap();
        o.sync().unwrap();
        drop(o);
        // a torn line at the end is skipped
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("outbox.jsonl"))
            .unwrap();
        f.write_all(b"{\"op\":\"put\",\"seq\":9,\"ke").unwrap();
        drop(f);
        let o = Outbox::open(&d).unwrap();
        assert_eq!(o.skipped_at_open, 1);
        assert_eq!(o.pending(), 1);
        let e = o.next_for("soc", |_| true).unwrap();
        assert_eq!((e.seq, &e.body), (c, &serde_json::json!({"v": 2})));
        assert_eq!(o.reference("slack:soc:i-2"), Some("C1/1700000000.000100"));
        assert!(o.next_for("siem", |_| true).is_none());
        let mut o = o;
        assert!(o.put("k", "soc", serde_json::json!(null), 4).unwrap() > c);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_in_flight_message_acked_after_a_newer_put_leaves_the_newer_one() {
        let d = dir("inflight");
        let mut o = Outbox::open(&d).unwrap();
        let a = o.put("k", "soc", serde_json::json!(1), 1).unwrap();
        // `a` is being sent when a newer state arrives
        let b = o.put("k", "soc", serde_json::json!(2), 2).unwrap();
        o.ack(a).unwrap();
        assert_eq!(o.next_for("soc", |_| true).map(|e| e.seq), Some(b));
        o.dead(b, "channel_not_found").unwrap();
        assert_eq!(o.pending(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
