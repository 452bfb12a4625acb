//! Userspace side of the kernel's `WATCH_BITS` prefilter (see
//! [`detector_common::watch_bits`]): which bits to set as keys are added, and when to rewrite
//! the bitmap to drop the bits of keys no longer watched.
//!
//! Invariant the kernel relies on: every live key's bit is set whenever the key is in
//! `WATCHED`. Adding sets bits (after the key is inserted); removing leaves stale bits, which
//! only cost a hash lookup for the files that happen to share their slot; a rewrite computes
//! the bitmap of the live keys only. A kernel reader racing the rewrite sees, per byte, the
//! old value (a superset of the live keys' bits) or the new one (exactly them): never less.

use detector_common::{watch_bits, WatchKey};

/// The bitmap as last written to the kernel, and how many removed keys may still own bits.
pub(crate) struct WatchBits {
    words: Box<[u64; watch_bits::WORDS]>,
    stale: usize,
}

impl Default for WatchBits {
    fn default() -> Self {
        Self {
            words: Box::new([0; watch_bits::WORDS]),
            stale: 0,
        }
    }
}

impl WatchBits {
    /// Applies a change of the watch list; `live` is every key watched after it. Returns
    /// true when the bitmap changed and must be written to the kernel.
    pub(crate) fn update<'a>(
        &mut self,
        added: impl IntoIterator<Item = &'a WatchKey>,
        removed: usize,
        live: impl IntoIterator<Item = &'a WatchKey>,
    ) -> bool {
        let before = self.words.clone();
        self.stale += removed;
        // Rewrite once stale bits could outnumber the live keys' (and not for a few).
        let live: Vec<&WatchKey> = live.into_iter().collect();
        if self.stale > 64 && self.stale > live.len() {
            self.words.fill(0);
            for k in &live {
                self.set(k);
            }
            self.stale = 0;
        } else {
            for k in added {
                self.set(k);
            }
        }
        *self.words != *before
    }

    fn set(&mut self, k: &WatchKey) {
        let (w, m) = watch_bits::slot(k.dev, k.ino);
        self.words[w] |= m;
    }

    /// Whether a key's bit is set (what the kernel tests).
    #[cfg(test)]
    pub(crate) fn maybe(&self, k: &WatchKey) -> bool {
        let (w, m) = watch_bits::slot(k.dev, k.ino);
        self.words[w] & m != 0
    }

    /// The bitmap to write to the kernel map.
    pub(crate) fn words(&self) -> &[u64; watch_bits::WORDS] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> WatchKey {
        WatchKey {
            dev: 0x800001,
            ino: 1000 + i,
        }
    }

    #[test]
    fn added_keys_have_their_bit_and_unrelated_files_mostly_do_not() {
        let mut b = WatchBits::default();
        let keys: Vec<WatchKey> = (0..300).map(key).collect();
        assert!(b.update(&keys, 0, &keys));
        assert!(keys.iter().all(|k| b.maybe(k)));
        // 300 keys in 65,536 slots: a random other file hits a set bit < 1 % of the time.
        let hits = (0..100_000u64)
            .filter(|i| {
                b.maybe(&WatchKey {
                    dev: 0x800002,
                    ino: 7_000_000 + i * 7919,
                })
            })
            .count();
        assert!(hits < 1_000, "{hits} false positives in 100,000");
        // Nothing new: nothing to write.
        assert!(!b.update(&[], 0, &keys));
    }

    #[test]
    fn removals_keep_bits_until_a_rewrite_drops_only_the_dead_ones() {
        let mut b = WatchBits::default();
        let all: Vec<WatchKey> = (0..200).map(key).collect();
        b.update(&all, 0, &all);
        // A few removals: bits stay (a stale bit costs one hash lookup, a missing one a miss).
        let live: Vec<WatchKey> = all[10..].to_vec();
        assert!(!b.update(&[], 10, &live));
        assert!(all.iter().all(|k| b.maybe(k)));
        // Most keys gone: rewrite from the live set.
        let live: Vec<WatchKey> = all[150..].to_vec();
        assert!(b.update(&[], 140, &live));
        assert!(live.iter().all(|k| b.maybe(k)), "a live key lost its bit");
        let dead_set = all[..150].iter().filter(|k| b.maybe(k)).count();
        // Dead keys keep a bit only when they share a slot with a live one.
        assert!(dead_set <= 2, "{dead_set} dead keys still set");
    }

    #[test]
    fn a_rewrite_also_sets_keys_added_in_the_same_change() {
        let mut b = WatchBits::default();
        let old: Vec<WatchKey> = (0..100).map(key).collect();
        b.update(&old, 0, &old);
        let new: Vec<WatchKey> = (500..510).map(key).collect();
        assert!(b.update(&new, 100, &new));
        assert!(new.iter().all(|k| b.maybe(k)));
    }
}
