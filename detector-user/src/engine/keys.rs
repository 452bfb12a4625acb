//! Stable hashing: everything that reaches an alert id (group keys, single-event rule groups,
//! the derived id seed) and the destination codes.
//!
//! XXH3 (64-bit, seeded) from `xxhash-rust`: its output is frozen since xxHash 0.8.0 and the
//! crate is tested against the reference implementation, so derived alert ids do not change
//! with the toolchain or a dependency bump (std's `DefaultHasher` leaves its algorithm
//! unspecified, foldhash reserves the right to change its output), and on the short keys
//! hashed here it costs what foldhash did. `keys_pin` in the tests pins concrete outputs.

use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::fields::{self, Field, Policy, Val};
use crate::event::Event;

/// The fixed seed (ASCII "lateral "); each kind of value hashes under its own seed derived
/// from it, so a string and an integer with the same bytes differ.
const SEED: u64 = 0x6c61_7465_7261_6c20;

/// Domain tags of the values hashed.
const STR: u8 = 0;
const INT: u8 = 1;
const BOOL: u8 = 2;
const LIST: u8 = 3;
const DST: u8 = 4;
const GROUP: u8 = 5;
const HOST: u8 = 6;
const COMBINE: u8 = 7;

/// Bytes hashed under one tag.
#[inline]
fn tagged(tag: u8, bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, SEED ^ u64::from(tag))
}

/// Builds a hash input of several parts without allocating for the usual short ones.
type Buf = SmallVec<[u8; 128]>;

/// Hash of an integer field value (a `process.tree` root among them).
#[inline]
pub(crate) fn int_hash(n: i64) -> u64 {
    tagged(INT, &n.to_le_bytes())
}

/// Hash of a field value.
#[inline]
pub(crate) fn val_hash(v: &Val<'_>) -> u64 {
    match v {
        Val::Int(n) => int_hash(*n),
        Val::Str(s) => tagged(STR, s.as_bytes()),
        Val::Bool(b) => tagged(BOOL, &[u8::from(*b)]),
        Val::List(l) => {
            let mut buf = Buf::new();
            for s in l.iter() {
                buf.extend_from_slice(s.as_bytes());
                // Not UTF-8: no element can contain it, so element bounds are unambiguous.
                buf.push(0xff);
            }
            tagged(LIST, &buf)
        }
    }
}

/// A group key from its fields' hashes.
#[inline]
pub(crate) fn combine(parts: &[u64]) -> u64 {
    let mut buf = Buf::new();
    for &x in parts {
        buf.extend_from_slice(&x.to_le_bytes());
    }
    tagged(COMBINE, &buf)
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
    let mut buf = Buf::new();
    buf.extend_from_slice(addr.as_bytes());
    buf.push(0xff);
    buf.extend_from_slice(&port.to_le_bytes());
    tagged(DST, &buf)
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
        let got = [
            int_hash(42),
            val_hash(&Val::Str("web".into())),
            val_hash(&Val::Bool(true)),
            combine(&[1, 2]),
            group_hash(&[(Field::Identity, "web".into())]),
            host_seed("host-a", 7),
            dst_hash("::1", 443),
        ];
        let want: [u64; 7] = [
            0x3ad8_83d7_a4c0_423a,
            0xd268_3453_f1b7_3e49,
            0x1583_70b3_5500_ad54,
            0xba5c_ddb4_2349_70f8,
            0x1386_5d73_3c33_9102,
            0xeee5_f2c6_5160_c1cd,
            0x5111_06bc_9930_33d9,
        ];
        assert_eq!(got, want, "{got:#018x?}");
    }
}
