//! An event's raw line (`event.original`), kept as a range of the buffer
//! its batch was read into.
//!
//! Readers put a batch's lines in one buffer ([`crate::flow::Lines`]). An
//! event that copied its line out of it paid an allocation and a copy on
//! the parse stage's thread and a free on the detect stage's, for every
//! line (2–6% of a replay's CPU). A [`Line`] shares the
//! batch's buffer instead, which goes when the batch's last event does.
//! Whatever keeps an event long after its batch keeps a
//! [`Line::detached`] copy, so that one old event does not hold a whole
//! batch's memory.

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

/// A line of text: all of a buffer of its own, or a range of a buffer
/// shared with the other lines of its batch. Reads as a `&str`.
///
/// The text's address is kept beside the buffer, so that reading the line
/// (every field of an event is read through it) is a pointer and a
/// length, not a walk through the buffer and two boundary checks.
pub struct Line {
    /// Where the text starts: within `keep`'s buffer, or dangling for the
    /// empty line.
    ptr: NonNull<u8>,
    len: usize,
    /// The buffer; None for the empty line (no allocation for a default
    /// event).
    keep: Option<Arc<String>>,
}

// SAFETY: a `Line` is a shared, read-only view of `keep`'s buffer, like
// an `Arc<String>` with a range: nothing is ever written through `ptr`,
// and the buffer lives as long as `keep` does.
unsafe impl Send for Line {}
// SAFETY: as for `Send`: no interior mutability, reads only.
unsafe impl Sync for Line {}

impl Line {
    /// `buf[start..end]`, sharing `buf`. A range that is not a line of it
    /// (out of bounds, not on character boundaries) is the empty line.
    pub fn of(buf: &Arc<String>, start: usize, end: usize) -> Line {
        match buf.get(start..end) {
            // the `String` is behind an `Arc` from now on and never
            // mutated (nothing hands out `&mut` to it), so its text stays
            // where it is, unchanged, while `keep` holds it
            Some(text) if !text.is_empty() => Line {
                ptr: NonNull::from(text.as_bytes()).cast(),
                len: text.len(),
                keep: Some(Arc::clone(buf)),
            },
            _ => Line::default(),
        }
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: `ptr..ptr + len` is a range of `keep`'s text on
        // character boundaries ([`Line::of`], [`Line::truncate`]), which
        // `self` keeps alive and nobody mutates; for the empty line it is
        // a dangling, aligned pointer with length 0, which is valid.
        unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.ptr.as_ptr(), self.len))
        }
    }

    /// Shortens the line to its first `len` bytes (unchanged when `len`
    /// is not a character boundary of it or is past its end).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len && self.as_str().is_char_boundary(len) {
            self.len = len;
        }
    }

    /// The line in a buffer of its own: what an event kept past its batch
    /// holds, so that the batch's buffer can go.
    pub fn detached(&self) -> Line {
        match &self.keep {
            Some(b) if b.len() != self.len => Line::from(self.as_str()),
            _ => self.clone(),
        }
    }
}

impl Default for Line {
    fn default() -> Line {
        Line {
            ptr: NonNull::dangling(),
            len: 0,
            keep: None,
        }
    }
}

impl Clone for Line {
    fn clone(&self) -> Line {
        Line {
            ptr: self.ptr,
            len: self.len,
            keep: self.keep.clone(),
        }
    }
}

impl Deref for Line {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Line {
    fn as_ref(&self) -> &str {
        self
    }
}

impl From<String> for Line {
    fn from(s: String) -> Line {
        let buf = Arc::new(s);
        Line::of(&buf, 0, buf.len())
    }
}

impl From<&str> for Line {
    fn from(s: &str) -> Line {
        Line::from(s.to_owned())
    }
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl PartialEq for Line {
    fn eq(&self, other: &Line) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Line {}

impl PartialEq<str> for Line {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Line {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for Line {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Line {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Line, D::Error> {
        String::deserialize(d).map(Line::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_one_buffer_read_as_their_ranges() {
        let buf = Arc::new("first\nsécond\n".to_owned());
        let a = Line::of(&buf, 0, 5);
        let b = Line::of(&buf, 6, 13);
        assert_eq!((a.as_str(), b.as_str()), ("first", "sécond"));
        assert_eq!(Arc::strong_count(&buf), 3, "shared, not copied");
        // not a range of the buffer: empty, never a panic
        assert_eq!(Line::of(&buf, 8, 10).as_str(), "", "inside a character");
        assert_eq!(Line::of(&buf, 6, 99).as_str(), "");
        drop((a, b));
        assert_eq!(
            Arc::strong_count(&buf),
            1,
            "the buffer goes with its last line"
        );
    }

    #[test]
    fn a_detached_line_holds_only_itself() {
        let buf = Arc::new("one\ntwo\r".to_owned());
        let mut two = Line::of(&buf, 4, 8);
        two.truncate(3);
        assert_eq!(two, "two");
        two.truncate(9);
        assert_eq!(two, "two", "not lengthened");
        let kept = two.detached();
        assert_eq!(kept, two);
        drop(two);
        assert_eq!(
            Arc::strong_count(&buf),
            1,
            "the copy does not hold the batch"
        );
        // a line that is its whole buffer is not copied again
        let own = Line::from("alone");
        let again = own.detached();
        assert!(std::ptr::eq(own.as_ptr(), again.as_ptr()));
    }

    #[test]
    fn the_empty_line_needs_no_buffer() {
        assert_eq!(Line::default().as_str(), "");
        assert_eq!(Line::from(String::new()), Line::default());
        assert_eq!(format!("{:?}", Line::from("a\"b")), "\"a\\\"b\"");
    }
}
