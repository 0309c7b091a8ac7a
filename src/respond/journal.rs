//! The action journal: every state of every action and incident, appended
//! as JSON lines and synced before an action is handed to its connector,
//! so after a crash nothing that was decided is lost and nothing that ran
//! is forgotten. At start the journal is read (the last state of each id
//! wins; a torn last line from a crash is ignored), then rewritten compact
//! (tmp file, sync, rename).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::action::Action;
use super::incident::Incident;

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
enum Entry {
    Action(Box<Action>),
    Incident(Box<Incident>),
}

pub struct Journal {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    unsynced: bool,
}

/// What a journal held.
#[derive(Default)]
pub struct Restored {
    pub actions: Vec<Action>,
    pub incidents: Vec<Incident>,
    /// Lines that could not be read (a torn write at a crash).
    pub skipped: usize,
}

fn read(path: &Path) -> std::io::Result<Restored> {
    let mut actions: HashMap<String, Action> = HashMap::new();
    let mut incidents: HashMap<String, Incident> = HashMap::new();
    let mut skipped = 0;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Restored::default()),
        Err(e) => return Err(e),
    };
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(&line) {
            Ok(Entry::Action(a)) => {
                actions.insert(a.action_id.clone(), *a);
            }
            Ok(Entry::Incident(i)) => {
                incidents.insert(i.incident_id.clone(), *i);
            }
            Err(_) => skipped += 1,
        }
    }
    let mut actions: Vec<Action> = actions.into_values().collect();
    actions.sort_by(|a, b| {
        a.created_ms
            .cmp(&b.created_ms)
            .then(a.action_id.cmp(&b.action_id))
    });
    let mut incidents: Vec<Incident> = incidents.into_values().collect();
    incidents.sort_by(|a, b| {
        a.opened_ms
            .cmp(&b.opened_ms)
            .then(a.incident_id.cmp(&b.incident_id))
    });
    Ok(Restored {
        actions,
        incidents,
        skipped,
    })
}

impl Journal {
    /// Reads what the journal holds and reopens it, compacted, for appending.
    pub fn open(path: &Path) -> std::io::Result<(Journal, Restored)> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        let restored = read(path)?;
        let tmp = path.with_extension("compact.tmp");
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for i in &restored.incidents {
                serde_json::to_writer(&mut w, &Entry::Incident(Box::new(i.clone())))?;
                w.write_all(b"\n")?;
            }
            for a in &restored.actions {
                serde_json::to_writer(&mut w, &Entry::Action(Box::new(a.clone())))?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        let f = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok((
            Journal {
                path: path.to_path_buf(),
                out: std::io::BufWriter::new(f),
                unsynced: false,
            },
            restored,
        ))
    }

    pub fn action(&mut self, a: &Action) -> std::io::Result<()> {
        self.write(&Entry::Action(Box::new(a.clone())))
    }

    pub fn incident(&mut self, i: &Incident) -> std::io::Result<()> {
        self.write(&Entry::Incident(Box::new(i.clone())))
    }

    fn write(&mut self, e: &Entry) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, e)?;
        self.out.write_all(b"\n")?;
        self.unsynced = true;
        Ok(())
    }

    /// Makes everything written durable.
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
