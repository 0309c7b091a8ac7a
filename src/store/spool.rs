//! The durable spool: batches that could not be inserted wait here, one
//! file each, and are replayed oldest first. A batch is written to a
//! temporary file, synced, then renamed into place, so a crash leaves
//! either the whole batch or none of it. A file that cannot be read back is
//! moved aside to `corrupt/` (kept for inspection, counted), never deleted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rows::{ActionRow, AuditRow, EventRow, FindingRow, IncidentRow, TemplateRow};

/// One table's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Batch {
    Events(Vec<EventRow>),
    Findings(Vec<FindingRow>),
    Templates(Vec<TemplateRow>),
    Incidents(Vec<IncidentRow>),
    Actions(Vec<ActionRow>),
    Audit(Vec<AuditRow>),
}

impl Batch {
    pub fn table(&self) -> &'static str {
        match self {
            Batch::Events(_) => "events",
            Batch::Findings(_) => "findings",
            Batch::Templates(_) => "templates",
            Batch::Incidents(_) => "incidents",
            Batch::Actions(_) => "actions",
            Batch::Audit(_) => "audit",
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Batch::Events(r) => r.len(),
            Batch::Findings(r) => r.len(),
            Batch::Templates(r) => r.len(),
            Batch::Incidents(r) => r.len(),
            Batch::Actions(r) => r.len(),
            Batch::Audit(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty batch of the same table.
    pub fn empty_like(&self) -> Batch {
        match self {
            Batch::Events(_) => Batch::Events(Vec::new()),
            Batch::Findings(_) => Batch::Findings(Vec::new()),
            Batch::Templates(_) => Batch::Templates(Vec::new()),
            Batch::Incidents(_) => Batch::Incidents(Vec::new()),
            Batch::Actions(_) => Batch::Actions(Vec::new()),
            Batch::Audit(_) => Batch::Audit(Vec::new()),
        }
    }

    /// Adds another batch's rows when it is of the same table.
    pub fn append(&mut self, other: Batch) {
        match (self, other) {
            (Batch::Events(a), Batch::Events(b)) => a.extend(b),
            (Batch::Findings(a), Batch::Findings(b)) => a.extend(b),
            (Batch::Templates(a), Batch::Templates(b)) => a.extend(b),
            (Batch::Incidents(a), Batch::Incidents(b)) => a.extend(b),
            (Batch::Actions(a), Batch::Actions(b)) => a.extend(b),
            (Batch::Audit(a), Batch::Audit(b)) => a.extend(b),
            _ => {}
        }
    }
}

pub struct Spool {
    dir: PathBuf,
    /// (sequence, bytes) of the files waiting, oldest first.
    files: std::collections::VecDeque<(u64, u64)>,
    next: u64,
    bytes: u64,
    pub max_bytes: u64,
}

impl Spool {
    /// Opens (or creates) a spool folder and finds what waits in it.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name
                .strip_suffix(".batch")
                .and_then(|s| s.parse::<u64>().ok())
            {
                files.push((seq, e.metadata()?.len()));
            } else if name.ends_with(".tmp") {
                // an interrupted write: the batch was never acknowledged as spooled
                let _ = std::fs::remove_file(e.path());
            }
        }
        files.sort();
        let next = files.last().map_or(1, |(s, _)| s + 1);
        let bytes = files.iter().map(|(_, b)| b).sum();
        Ok(Spool {
            dir: dir.to_owned(),
            files: files.into(),
            next,
            bytes,
            max_bytes,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn batches(&self) -> usize {
        self.files.len()
    }

    /// The newest batch's sequence number, if any waits.
    pub fn last_seq(&self) -> Option<u64> {
        self.files.back().map(|f| f.0)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn full(&self) -> bool {
        self.bytes >= self.max_bytes
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.batch"))
    }

    /// Appends a batch durably.
    pub fn push(&mut self, batch: &Batch) -> std::io::Result<()> {
        use std::io::Write;
        let data = postcard::to_allocvec(batch).map_err(std::io::Error::other)?;
        let seq = self.next;
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path(seq))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.next += 1;
        self.files.push_back((seq, data.len() as u64));
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// The oldest batch; an unreadable one is moved aside and the next tried.
    pub fn front(&mut self) -> std::io::Result<Option<(u64, Batch)>> {
        while let Some(&(seq, _)) = self.files.front() {
            let data = std::fs::read(self.path(seq))?;
            match postcard::from_bytes::<Batch>(&data) {
                Ok(b) => return Ok(Some((seq, b))),
                Err(e) => {
                    let aside = self.dir.join("corrupt");
                    std::fs::create_dir_all(&aside)?;
                    std::fs::rename(self.path(seq), aside.join(format!("{seq:020}.batch")))?;
                    tracing::error!(seq, error = %e, "unreadable spool batch moved to corrupt/");
                    self.forget_front();
                }
            }
        }
        Ok(None)
    }

    /// Removes the oldest batch once it is stored.
    pub fn pop(&mut self, seq: u64) -> std::io::Result<()> {
        if self.files.front().map(|f| f.0) == Some(seq) {
            std::fs::remove_file(self.path(seq))?;
            self.forget_front();
        }
        Ok(())
    }

    fn forget_front(&mut self) {
        if let Some((_, b)) = self.files.pop_front() {
            self.bytes -= b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(id: &str) -> TemplateRow {
        TemplateRow {
            template_id: id.into(),
            template_text: "a <*>".into(),
            dataset: "app".into(),
            first_seen_ms: 1,
            last_seen_ms: 2,
            version: 2,
            day: 0,
        }
    }

    #[test]
    fn batches_come_back_in_order_across_reopening() {
        let dir = std::env::temp_dir().join(format!("tp-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        s.push(&Batch::Templates(vec![template("a")])).unwrap();
        s.push(&Batch::Templates(vec![template("b")])).unwrap();
        std::fs::write(dir.join("00000000000000000009.tmp"), b"half").unwrap();
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(s.batches(), 2);
        let (seq, b) = s.front().unwrap().unwrap();
        assert_eq!(b, Batch::Templates(vec![template("a")]));
        s.pop(seq).unwrap();
        // a damaged file is set aside, not lost and not blocking
        std::fs::write(dir.join("00000000000000000002.batch"), b"\xff\xff garbage").unwrap();
        s.push(&Batch::Templates(vec![template("c")])).unwrap();
        let (seq, b) = s.front().unwrap().unwrap();
        assert_eq!(b, Batch::Templates(vec![template("c")]));
        s.pop(seq).unwrap();
        assert!(s.is_empty());
        assert!(dir.join("corrupt/00000000000000000002.batch").exists());
        assert!(!dir.join("00000000000000000009.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
