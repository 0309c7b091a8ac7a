//! A direct-mapped memo: the answer last worked out for a byte string,
//! found again by the string's hash.
//!
//! Logs repeat themselves: a few hundred user agents and a few thousand
//! paths in ten thousand requests, the same words and most of the same
//! numbers line after line. Several hot paths remember a costly answer
//! this way: the keyword scan of a field value, the masking of a token,
//! the Sigma rules a set of field values matches. Hashing and comparing a
//! key costs a fraction of working the answer out again.
//!
//! Bounded and without bookkeeping: `SLOTS` slots (a power of two), keys
//! up to `MAX_KEY` bytes; a new key overwrites its slot. A hit needs the
//! hash and the bytes to be equal, so a collision is a miss, never a
//! wrong answer. A slot keeps its buffers when it is overwritten, so keys
//! that never repeat (ids in query strings) cost a copy, not an
//! allocation; the slots themselves are allocated on the first `put`.

/// Answers of type `V` by key. The caller hashes the key (it often has
/// the hash already, or needs it for something else too).
pub struct Memo<V, const SLOTS: usize, const MAX_KEY: usize> {
    slots: Vec<Option<Slot<V>>>,
}

struct Slot<V> {
    hash: u64,
    key: Vec<u8>,
    value: V,
}

impl<V, const SLOTS: usize, const MAX_KEY: usize> Default for Memo<V, SLOTS, MAX_KEY> {
    fn default() -> Self {
        const { assert!(SLOTS.is_power_of_two()) };
        Memo { slots: Vec::new() }
    }
}

impl<V: Default, const SLOTS: usize, const MAX_KEY: usize> Memo<V, SLOTS, MAX_KEY> {
    /// The answer remembered for `key`, whose hash is `hash`.
    #[inline]
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<&V> {
        let slot = self.slots.get(hash as usize & (SLOTS - 1))?.as_ref()?;
        (slot.hash == hash && slot.key == key).then_some(&slot.value)
    }

    /// The place for `key`'s answer, for the caller to overwrite (it holds
    /// the slot's previous answer, whose buffers can be reused); None when
    /// the key is too long to remember.
    pub fn put(&mut self, hash: u64, key: &[u8]) -> Option<&mut V> {
        if key.len() > MAX_KEY {
            return None;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        let slot = self.slots[hash as usize & (SLOTS - 1)].get_or_insert_with(|| Slot {
            hash,
            key: Vec::with_capacity(key.len()),
            value: V::default(),
        });
        slot.hash = hash;
        slot.key.clear();
        slot.key.extend_from_slice(key);
        Some(&mut slot.value)
    }

    /// Whether a key of this length is remembered at all (a caller need
    /// not hash a key that is not).
    #[inline]
    pub fn fits(key: &[u8]) -> bool {
        key.len() <= MAX_KEY
    }

    /// The slot of `key`'s answer, and whether it holds it already: an
    /// answer built up piece by piece (the caller fills in what it works
    /// out as it goes) is looked up once and then reached by position.
    /// When it does not, the slot is `key`'s from now on and holds the
    /// previous key's answer, for the caller to reset. None when the key
    /// is too long to remember. The position stays valid until the next
    /// `claim` or `put`.
    pub fn claim(&mut self, hash: u64, key: &[u8]) -> Option<(usize, bool)> {
        let at = hash as usize & (SLOTS - 1);
        if self
            .slots
            .get(at)
            .and_then(Option::as_ref)
            .is_some_and(|s| s.hash == hash && s.key == key)
        {
            return Some((at, true));
        }
        self.put(hash, key).map(|_| (at, false))
    }

    /// The answer in the slot at `at` (from [`Memo::claim`]).
    #[inline]
    pub fn at_mut(&mut self, at: usize) -> Option<&mut V> {
        self.slots.get_mut(at)?.as_mut().map(|s| &mut s.value)
    }
}

/// Whether a memo pays for itself where values may never repeat (an
/// sshd line's message, an attack's unique URLs): its hits are counted
/// over trials of `TRIAL` lookups, and after a trial with fewer than a
/// quarter, the memo is passed over for the next `REST` values (a miss
/// costs a hash, a copy of the key into a cold slot and resetting its
/// answer, more than working the answer out afresh), then tried again.
#[derive(Debug, Default)]
pub struct Trial {
    looked: u32,
    found: u32,
    resting: u32,
}

/// What to do with the memo for the next value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consult {
    /// Look the value up.
    Look,
    /// Work the answer out without the memo.
    Skip,
    /// As `Skip`, the trial just having failed: the memo's answers can go.
    Forget,
}

impl Trial {
    const TRIAL: u32 = 4096;
    const HITS: u32 = Self::TRIAL / 4;
    const REST: u32 = 1 << 18;

    /// Whether the next value is looked up.
    pub fn consult(&mut self) -> Consult {
        if self.resting > 0 {
            self.resting -= 1;
            return Consult::Skip;
        }
        if self.looked == Self::TRIAL {
            let paid = self.found >= Self::HITS;
            self.looked = 0;
            self.found = 0;
            if !paid {
                self.resting = Self::REST;
                return Consult::Forget;
            }
        }
        self.looked += 1;
        Consult::Look
    }

    /// The value looked up was found.
    pub fn hit(&mut self) {
        self.found += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_for_its_own_key() {
        let mut memo: Memo<Vec<u64>, 16, 8> = Memo::default();
        assert_eq!(memo.get(7, b"/a"), None);
        memo.put(7, b"/a").unwrap().push(1);
        assert_eq!(memo.get(7, b"/a").map(Vec::as_slice), Some(&[1][..]));
        // the same hash (or slot) with another key is a miss, never a wrong answer
        assert_eq!(memo.get(7, b"/b"), None);
        assert_eq!(memo.get(7 + 16, b"/a"), None);
        // a key too long is not remembered, and leaves the slot as it was
        assert!(memo.put(7, b"/0123456789").is_none());
        assert_eq!(memo.get(7, b"/a").map(Vec::as_slice), Some(&[1][..]));
        // a new key takes the slot over, with the old answer's buffer to reuse
        let v = memo.put(23, b"/c").unwrap();
        assert_eq!(v, &[1]);
        v.clear();
        v.push(2);
        assert_eq!(memo.get(7, b"/a"), None);
        assert_eq!(memo.get(23, b"/c").map(Vec::as_slice), Some(&[2][..]));
    }

    #[test]
    fn a_memo_that_does_not_pay_is_rested_then_tried_again() {
        let mut t = Trial::default();
        let mut looked = 0;
        // a trial of all misses
        while t.consult() == Consult::Look {
            looked += 1;
        }
        assert_eq!(looked, Trial::TRIAL);
        let mut skipped = 1;
        while t.consult() == Consult::Skip {
            skipped += 1;
        }
        assert_eq!(skipped, Trial::REST + 1, "the failing value and the rest");
        // tried again: hits keep it in use past a trial
        for _ in 0..3 * Trial::TRIAL {
            assert_eq!(t.consult(), Consult::Look);
            t.hit();
        }
    }

    #[test]
    fn a_claimed_slot_is_found_again_by_its_key_only() {
        let mut memo: Memo<Vec<u64>, 16, 8> = Memo::default();
        let (at, known) = memo.claim(7, b"/a").unwrap();
        assert!(!known);
        memo.at_mut(at).unwrap().push(1);
        assert_eq!(memo.claim(7, b"/a"), Some((at, true)));
        assert_eq!(memo.at_mut(at).map(|v| v.as_slice()), Some(&[1][..]));
        // another key of the same slot takes it over, old answer left to reset
        assert_eq!(memo.claim(7 + 16, b"/b"), Some((at, false)));
        assert_eq!(memo.at_mut(at).map(|v| v.as_slice()), Some(&[1][..]));
        assert_eq!(memo.get(7, b"/a"), None);
        assert!(memo.claim(7, b"/012345678").is_none());
        assert!(!Memo::<Vec<u64>, 16, 8>::fits(b"/012345678"));
    }
}
