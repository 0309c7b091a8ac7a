//! The audit log: every proposal, decision, approval, execution,
//! verification, rollback and expiry, as an append-only, hash-chained
//! record. Each record's SHA-256 covers the previous record's hash and its
//! own fields, so changing, removing or reordering one record breaks every
//! hash after it; [`verify`] names the first record that does not hold.
//!
//! ```text
//! hash(n) = sha256(prev_hash(n) ‖ 0x1f ‖ seq ‖ 0x1f ‖ at_ms ‖ 0x1f ‖ actor ‖ … ‖ detail)
//! ```
//! Records go to a local file (one JSON object per line, flushed and
//! synced with each batch) and to the store's `audit` table. A restart
//! continues the chain from the file's last record.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at_ms: i64,
    /// Who decided: `policy`, `playbook`, `ttl`, a token's name, …
    pub actor: String,
    /// proposed, skipped, pending_approval, approved, rejected, expired,
    /// executing, succeeded, failed, verified, verification_failed,
    /// rolled_back, undone, escalated, breaker_opened, breaker_reset, …
    pub decision: String,
    /// What it is about: an action id (or an incident id, a connector).
    pub subject: String,
    /// The reason, in words.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of a record given its predecessor's.
pub fn chain_hash(r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    for part in [
        r.prev_hash.as_bytes(),
        r.seq.to_string().as_bytes(),
        r.at_ms.to_string().as_bytes(),
        r.actor.as_bytes(),
        r.decision.as_bytes(),
        r.subject.as_bytes(),
        r.detail.as_bytes(),
    ] {
        h.update(part);
        h.update([0x1f]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Appends records to the chain and its file.
pub struct AuditLog {
    file: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    last_hash: String,
    next_seq: u64,
    unsynced: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Broken(String),
}

/// Cuts a last record that a crash left half written (no closing newline).
/// Records are synced before anything they describe is done, so a record
/// that never finished describes nothing that happened; whole records with
/// bad hashes are still refused by the chain check.
fn drop_torn_tail(path: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(
        path = %path.display(),
        bytes = bytes.len() - keep,
        "audit log: a record left half written by a crash was cut"
    );
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64)?;
    f.sync_all()
}

impl AuditLog {
    /// A chain kept only in memory (replay, tests).
    pub fn in_memory() -> AuditLog {
        AuditLog {
            file: None,
            last_hash: GENESIS.into(),
            next_seq: 1,
            unsynced: false,
        }
    }

    /// Opens (or creates) the file and continues its chain. A file whose
    /// chain is broken is refused: the operator looks at it first.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        if path.exists() {
            drop_torn_tail(path).map_err(io)?;
        }
        let (last_hash, next_seq) = if path.exists() {
            match verify(path).map_err(|e| AuditError::Broken(e.to_string()))? {
                Verified::Intact { last_hash, records } => (last_hash, records + 1),
                Verified::Broken { seq, reason, .. } => {
                    return Err(AuditError::Broken(format!(
                        "audit log {} is broken at record {seq}: {reason} (run `threatpilot audit verify`)",
                        path.display()
                    )));
                }
            }
        } else {
            (GENESIS.to_owned(), 1)
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(AuditLog {
            file: Some((path.to_path_buf(), std::io::BufWriter::new(f))),
            last_hash,
            next_seq,
            unsynced: false,
        })
    }

    /// Chains a record and writes it; returns it with seq and hashes set.
    pub fn append(
        &mut self,
        at_ms: i64,
        actor: &str,
        decision: &str,
        subject: &str,
        detail: &str,
    ) -> Result<AuditRecord, AuditError> {
        let mut r = AuditRecord {
            seq: self.next_seq,
            at_ms,
            actor: actor.to_owned(),
            decision: decision.to_owned(),
            subject: subject.to_owned(),
            detail: detail.to_owned(),
            prev_hash: self.last_hash.clone(),
            hash: String::new(),
        };
        r.hash = chain_hash(&r);
        if let Some((path, w)) = &mut self.file {
            let line = serde_json::to_string(&r).map_err(|e| AuditError::Broken(e.to_string()))?;
            writeln!(w, "{line}").map_err(|source| AuditError::Io {
                path: path.display().to_string(),
                source,
            })?;
            self.unsynced = true;
        }
        self.last_hash = r.hash.clone();
        self.next_seq += 1;
        Ok(r)
    }

    /// Flushes and syncs what was appended.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        if !self.unsynced {
            return Ok(());
        }
        if let Some((path, w)) = &mut self.file {
            let io = |source| AuditError::Io {
                path: path.display().to_string(),
                source,
            };
            w.flush().map_err(io)?;
            w.get_ref().sync_data().map_err(io)?;
        }
        self.unsynced = false;
        Ok(())
    }
}

/// What `verify` found.
#[derive(Debug, PartialEq)]
pub enum Verified {
    Intact { records: u64, last_hash: String },
    Broken { seq: u64, line: u64, reason: String },
}

/// Checks a chain file from its first record.
pub fn verify(path: &Path) -> std::io::Result<Verified> {
    let f = std::fs::File::open(path)?;
    let mut at = Progress::default();
    for line in std::io::BufReader::new(f).split(b'\n') {
        if let Some(broken) = at.check(&line?) {
            return Ok(broken);
        }
    }
    Ok(at.verified())
}

/// How far a chain file has been verified: the byte after the last
/// complete record checked, and what the next record must continue.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub offset: u64,
    pub line: u64,
    pub records: u64,
    pub prev_hash: String,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            offset: 0,
            line: 0,
            records: 0,
            prev_hash: GENESIS.to_owned(),
        }
    }
}

impl Progress {
    /// Checks the next line (without its newline); `Some` when it breaks
    /// the chain.
    fn check(&mut self, line: &[u8]) -> Option<Verified> {
        self.line += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let expect_seq = self.records + 1;
        let broken = |reason: String| {
            Some(Verified::Broken {
                seq: expect_seq,
                line: self.line,
                reason,
            })
        };
        let r: AuditRecord = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => return broken(format!("not a record ({e})")),
        };
        if r.seq != expect_seq {
            return broken(format!("sequence {} where {expect_seq} was due", r.seq));
        }
        if r.prev_hash != self.prev_hash {
            return broken("prev_hash is not the previous record's hash".to_owned());
        }
        if chain_hash(&r) != r.hash {
            return broken("its hash does not match its content".to_owned());
        }
        self.prev_hash = r.hash;
        self.records += 1;
        None
    }

    fn verified(&self) -> Verified {
        Verified::Intact {
            records: self.records,
            last_hash: self.prev_hash.clone(),
        }
    }
}

/// Goes on verifying a chain file from `from` (from its first record when
/// `None`), over complete lines only: a record being written is left for
/// the next call. For a reader that watches a live chain grow without
/// hashing it all again each time.
pub fn verify_from(path: &Path, from: Option<Progress>) -> std::io::Result<(Verified, Progress)> {
    use std::io::{BufRead, Seek};
    let mut at = from.unwrap_or_default();
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(at.offset))?;
    let mut r = std::io::BufReader::new(f);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        if let Some(broken) = at.check(&line[..n - 1]) {
            return Ok((broken, at));
        }
        at.offset += n as u64;
    }
    Ok((at.verified(), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edited_byte_is_named_and_a_restart_continues_the_chain() {
        let dir = std::env::temp_dir().join(format!("tp-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        let mut log = AuditLog::open(&path).unwrap();
        for i in 0..5 {
            log.append(i, "policy", "skipped", &format!("a-{i}"), "protected")
                .unwrap();
        }
        log.sync().unwrap();
        drop(log);
        let mut log = AuditLog::open(&path).unwrap();
        log.append(9, "ttl", "undone", "a-9", "expired").unwrap();
        log.sync().unwrap();
        assert_eq!(
            verify(&path).unwrap(),
            Verified::Intact {
                records: 6,
                last_hash: log.last_hash.clone()
            }
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("a-3", "a-4", 1);
        std::fs::write(&path, edited).unwrap();
        match verify(&path).unwrap() {
            Verified::Broken { seq, line, .. } => assert_eq!((seq, line), (4, 4)),
            other => panic!("{other:?}"),
        }
        assert!(AuditLog::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_a_crash_left_half_written_is_cut_and_the_chain_goes_on() {
        let dir = std::env::temp_dir().join(format!("tp-audit-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        let mut log = AuditLog::open(&path).unwrap();
        for i in 0..3 {
            log.append(i, "policy", "executed", &format!("a-{i}"), "ok")
                .unwrap();
        }
        log.sync().unwrap();
        drop(log);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"seq\":4,\"at_ms\":9,\"act");
        std::fs::write(&path, &torn).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        let r = log.append(9, "ttl", "undone", "a-0", "expired").unwrap();
        log.sync().unwrap();
        assert_eq!(r.seq, 4);
        assert!(matches!(
            verify(&path).unwrap(),
            Verified::Intact { records: 4, .. }
        ));
        // a whole record with a bad hash is not cut: it is refused
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("a-1", "a-2", 1)).unwrap();
        assert!(AuditLog::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_growing_chain_is_verified_from_where_the_last_check_stopped() {
        let dir = std::env::temp_dir().join(format!("tp-audit-grow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        let mut log = AuditLog::open(&path).unwrap();
        for i in 0..3 {
            log.append(i, "policy", "executed", &format!("a-{i}"), "ok")
                .unwrap();
        }
        log.sync().unwrap();
        let (v, at) = verify_from(&path, None).unwrap();
        assert!(matches!(v, Verified::Intact { records: 3, .. }));
        assert_eq!(at.offset, std::fs::metadata(&path).unwrap().len());
        for i in 3..5 {
            log.append(i, "policy", "executed", &format!("a-{i}"), "ok")
                .unwrap();
        }
        log.sync().unwrap();
        // a record still being written waits for its newline
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"seq\":6,").unwrap();
        let (v, at) = verify_from(&path, Some(at)).unwrap();
        assert_eq!(
            v,
            Verified::Intact {
                records: 5,
                last_hash: log.last_hash.clone()
            }
        );
        assert_eq!(verify_from(&path, None).unwrap().1, at);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
