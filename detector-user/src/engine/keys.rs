//! Key hashing. Two kinds, kept apart:
//!
//! - **Stable** (what reaches an alert id: the alert's group, the derived-id seed) — XXH3-64,
//!   seeded, from `xxhash-rust`: its output is frozen by the xxHash specification since 0.8.0
//!   and the crate is tested against the reference implementation, so derived alert ids do not
//!   change with the toolchain or a dependency bump (std's `DefaultHasher` leaves its algorithm
//!   unspecified across releases). Computed once per alert, off the hot path.
//! - **Fast** (the engine's own tables: group keys, counted values, destinations, single-event
//!   rules' suppression keys) — foldhash with a fixed seed, a fifth of SipHash's cost on these
//!   short keys. Its output may change with a foldhash release; nothing derived from it leaves
//!   the process (an id hashes the alert's rendered group instead).
//!
//! `keys_pin` in the tests pins concrete stable outputs.

use std::collections::BTreeMap;
use std::hash::Hasher;

use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::fields::{self, Field, Policy, Val};
use crate::event::Event;

/// The fixed seed (ASCII "lateral "); each kind of value hashes under its own seed derived
/// from it, so a string and an integer with the same bytes differ.
const SEED: u64 = 0x6c61_7465_7261_6c20;

/// Domain tags of the values hashed.
const GROUP: u8 = 5;
const HOST: u8 = 6;

/// Bytes hashed under one tag.
#[inline]
fn tagged(tag: u8, bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, SEED ^ u64::from(tag))
}

/// Builds a hash input of several parts without allocating for the usual short ones.
type Buf = SmallVec<[u8; 128]>;

/// The hasher of the engine's tables (fast, not stable across foldhash releases): fixed seed,
/// so a run is reproducible.
pub(crate) fn key_hasher() -> foldhash::fast::FoldHasher {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(SEED).build_hasher()
}

/// Hash of an integer field value (a `process.tree` root among them).
#[inline]
pub(crate) fn int_hash(n: i64) -> u64 {
    let mut h = key_hasher();
    h.write_u8(1);
    h.write_i64(n);
    h.finish()
}

/// Hash of a field value.
#[inline]
pub(crate) fn val_hash(v: &Val<'_>) -> u64 {
    match v {
        Val::Int(n) => int_hash(*n),
        Val::Str(s) => {
            let mut h = key_hasher();
            h.write_u8(0);
            h.write(s.as_bytes());
            h.finish()
        }
        Val::Bool(b) => {
            let mut h = key_hasher();
            h.write_u8(2);
            h.write_u8(u8::from(*b));
            h.finish()
        }
        Val::List(l) => {
            let mut h = key_hasher();
            h.write_u8(3);
            for s in l.iter() {
                h.write(s.as_bytes());
                h.write_u8(0xff);
            }
            h.finish()
        }
    }
}

/// A group key from its fields' hashes.
#[inline]
pub(crate) fn combine(parts: &[u64]) -> u64 {
    let mut h = key_hasher();
    for &x in parts {
        h.write_u64(x);
    }
    h.finish()
}

/// The stable key of an alert's group (field path → rendered value, in path order): what a
/// derived alert id hashes.
pub(crate) fn alert_group_hash(group: &BTreeMap<String, String>) -> u64 {
    let mut buf = Buf::new();
    for (f, v) in group {
        buf.extend_from_slice(f.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    tagged(GROUP, &buf)
}

/// The key of a single-event rule's group: its fields and rendered values.
#[inline]
pub(crate) fn group_hash(group: &[(Field, String)]) -> u64 {
    let mut buf = Buf::new();
    for (f, v) in group {
        buf.extend_from_slice(f.path().as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    tagged(GROUP, &buf)
}

/// The derived-id seed of a host and capture start (a recording's header).
#[inline]
pub(crate) fn host_seed(host: &str, started: u64) -> u64 {
    let mut buf = Buf::new();
    buf.extend_from_slice(host.as_bytes());
    buf.push(0xff);
    buf.extend_from_slice(&started.to_le_bytes());
    tagged(HOST, &buf)
}

/// Hash of a destination that has no reversible code (not a canonical IPv4 address).
#[inline]
pub(crate) fn dst_hash(addr: &str, port: u16) -> u64 {
    use std::hash::Hash;
    let mut h = key_hasher();
    addr.hash(&mut h);
    port.hash(&mut h);
    h.finish()
}

/// Hashes of an event's field values, each computed once per event: several correlations
/// group by or count the same fields.
#[derive(Default)]
pub(crate) struct Memo(SmallVec<[(Field, Option<u64>); 8]>);

impl Memo {
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    #[inline]
    pub(crate) fn hash(&mut self, f: Field, ev: &Event, pol: &Policy) -> Option<u64> {
        if let Some(&(_, h)) = self.0.iter().find(|(g, _)| *g == f) {
            return h;
        }
        let h = fields::get(f, ev, pol).map(|v| val_hash(&v));
        self.0.push((f, h));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the algorithm: a change of hash (or of how values are fed to it) changes every
    /// derived alert id, and must be a deliberate, documented change that updates these.
    #[test]
    fn keys_pin() {
        // The reference XXH3-64 of the empty input (seed 0): the crate computes XXH3 itself.
        assert_eq!(xxh3_64_with_seed(b"", 0), 0x2d06_8005_38d3_94c2);
        let group: BTreeMap<String, String> =
            [("process.identity".to_string(), "web".to_string())].into();
        let got = [
            group_hash(&[(Field::Identity, "web".into())]),
            host_seed("host-a", 7),
            alert_group_hash(&group),
        ];
        // The same encoding: an event rule's group and its alert's group hash alike.
        let want: [u64; 3] = [
            0x1386_5d73_3c33_9102,
            0xeee5_f2c6_5160_c1cd,
            0x1386_5d73_3c33_9102,
        ];
        assert_eq!(got, want, "{got:#018x?}");
    }
}
