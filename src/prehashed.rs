//! A hasher for map keys that are already hashes (xxh3 of a group key, a
//! token, a fingerprint). SipHash over a value that is already uniformly
//! distributed buys nothing on the hot path; this folds the written words
//! with one multiply-xorshift, enough to spread tuple keys across buckets.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517C_C1B7_2722_0A95);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

pub type Prehashed = BuildHasherDefault<PrehashedHasher>;
pub type PrehashedMap<K, V> = std::collections::HashMap<K, V, Prehashed>;
pub type PrehashedSet<K> = std::collections::HashSet<K, Prehashed>;

/// xxh3 of byte parts as if they were one slice. Short inputs (nearly all
/// group keys: an address, a user, a host) are joined on the stack and
/// hashed in one call, a fraction of a streaming hasher's set-up; longer
/// ones stream. The digest is the same either way.
pub struct JoinedHash {
    joined: [u8; JOINED_INLINE],
    len: usize,
    streamed: Option<Box<xxhash_rust::xxh3::Xxh3>>,
}

const JOINED_INLINE: usize = 256;

impl Default for JoinedHash {
    fn default() -> Self {
        JoinedHash {
            joined: [0; JOINED_INLINE],
            len: 0,
            streamed: None,
        }
    }
}

impl JoinedHash {
    pub fn write(&mut self, part: &[u8]) {
        if let Some(h) = &mut self.streamed {
            h.update(part);
            return;
        }
        match self.joined.get_mut(self.len..self.len + part.len()) {
            Some(room) => {
                room.copy_from_slice(part);
                self.len += part.len();
            }
            None => {
                let mut h = Box::new(xxhash_rust::xxh3::Xxh3::new());
                h.update(&self.joined[..self.len]);
                h.update(part);
                self.streamed = Some(h);
            }
        }
    }

    pub fn finish(&self) -> u64 {
        match &self.streamed {
            Some(h) => h.digest(),
            None => xxhash_rust::xxh3::xxh3_64(&self.joined[..self.len]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_hash_equals_one_stream_whatever_the_length() {
        for n in [0, 1, 7, 85, 86, 200, 255, 256, 257, 2000] {
            let parts: Vec<Vec<u8>> = (0..3).map(|i| vec![b'a' + i as u8; n]).collect();
            let mut joined = JoinedHash::default();
            let mut stream = xxhash_rust::xxh3::Xxh3::new();
            for p in &parts {
                joined.write(p);
                stream.update(p);
            }
            assert_eq!(joined.finish(), stream.digest(), "{n}");
        }
    }
}
