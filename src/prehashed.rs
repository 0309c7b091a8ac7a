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
