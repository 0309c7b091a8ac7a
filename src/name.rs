//! Names a source stamps on every one of its events: its file's path, and
//! the dataset and host a pipeline or a stream's labels give it.
//!
//! Each event used to hold such a name as an `Arc<str>` clone (or as a
//! fresh copy, for a dataset or host), made on the parse stage's thread
//! and dropped on the detect stage's. For a file's path that is one
//! reference count for every event of the file, incremented on one core
//! and decremented on another: the count's cache line went back and forth
//! once per event (7% of a replay's CPU). A [`Name`] is kept once for the
//! life of the process instead, and an event holds a plain `&'static str`.
//!
//! Names come from configuration and from streams' labels; a pusher can
//! make up labels without end, so the table is bounded
//! ([`MAX_NAMES`], [`MAX_BYTES`]): once it is full, a new name is shared by
//! reference count, as before, and costs what it did.

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex};

/// The most names kept for the process.
pub const MAX_NAMES: usize = 4096;
/// The most bytes of names kept for the process.
pub const MAX_BYTES: usize = 1 << 20;

/// A source's name; reads as a `&str`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// Kept for the process: copying it is copying a pointer.
    Kept(&'static str),
    /// Shared by reference count (the table was full).
    Shared(Arc<str>),
}

/// The names kept so far, and their bytes.
struct Table {
    names: HashSet<&'static str>,
    bytes: usize,
    max_names: usize,
    max_bytes: usize,
}

impl Table {
    fn new(max_names: usize, max_bytes: usize) -> Table {
        Table {
            names: HashSet::new(),
            bytes: 0,
            max_names,
            max_bytes,
        }
    }

    fn name(&mut self, s: &str) -> Name {
        if let Some(kept) = self.names.get(s) {
            return Name::Kept(kept);
        }
        if self.names.len() >= self.max_names || self.bytes + s.len() > self.max_bytes {
            return Name::Shared(Arc::from(s));
        }
        let kept: &'static str = Box::leak(Box::from(s));
        self.names.insert(kept);
        self.bytes += s.len();
        Name::Kept(kept)
    }
}

static TABLE: LazyLock<Mutex<Table>> =
    LazyLock::new(|| Mutex::new(Table::new(MAX_NAMES, MAX_BYTES)));

impl Name {
    /// `s`, kept for the process while the table has room.
    pub fn new(s: &str) -> Name {
        // a poisoned lock only means another thread panicked while
        // holding it; the set is still whole
        TABLE.lock().unwrap_or_else(|p| p.into_inner()).name(s)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Name::Kept(s) => s,
            Name::Shared(s) => s,
        }
    }

    /// The name as an event's `Cow` field (`event.dataset`): borrowed when
    /// kept, a copy otherwise.
    pub fn to_cow(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Name::Kept(s) => std::borrow::Cow::Borrowed(s),
            Name::Shared(s) => std::borrow::Cow::Owned(s.to_string()),
        }
    }

    /// The name as an event's text field (`host.name`).
    pub fn to_text(&self) -> crate::event::Text {
        match self {
            Name::Kept(s) => crate::event::Text::Static(s),
            Name::Shared(s) => crate::event::Text::from(&**s),
        }
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_name() {
        let mut t = Table::new(8, 1024);
        let (a, b) = (t.name("/var/log/app.log"), t.name("/var/log/app.log"));
        match (&a, &b) {
            (Name::Kept(x), Name::Kept(y)) => assert!(std::ptr::eq(*x, *y)),
            other => panic!("not kept: {other:?}"),
        }
        assert_eq!(t.names.len(), 1);
        assert_eq!(&*a, "/var/log/app.log");
        assert_eq!(a.to_cow(), "/var/log/app.log");
    }

    #[test]
    fn a_full_table_shares_new_names() {
        // made-up names past the bound, as a pusher inventing labels
        // would send: each still reads right, and the table stays bounded
        let mut t = Table::new(16, 1024);
        let names: Vec<Name> = (0..40)
            .map(|i| t.name(&format!("made-up-host-{i}")))
            .collect();
        assert_eq!(
            names.iter().filter(|n| matches!(n, Name::Kept(_))).count(),
            16
        );
        for (i, n) in names.iter().enumerate() {
            assert_eq!(n.as_str(), format!("made-up-host-{i}"));
        }
        // a kept name is still found once the table is full
        assert!(matches!(t.name("made-up-host-3"), Name::Kept(_)));
        let mut t = Table::new(16, 20);
        assert!(matches!(t.name("0123456789"), Name::Kept(_)));
        assert!(matches!(t.name("0123456789abcdef"), Name::Shared(_)));
        assert_eq!(t.bytes, 10);
    }
}
