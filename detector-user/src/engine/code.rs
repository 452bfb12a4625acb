//! 64-bit codes of counted values and destinations.
//!
//! Window entries count values and destinations by a 64-bit code. The common ones, an IPv4
//! address, an IPv4 `addr:port` destination and a small non-negative integer (a port, a uid),
//! are coded *reversibly*: the code carries the value itself under a tag in its top 16 bits,
//! so an alert renders them from the code and groups keep no display string for them (a
//! fan-out group otherwise adds and drops a name, in a map of its own, with almost every
//! connect). Every other value is coded by its hash, moved out of the tag space; its display
//! string is kept by the group as before.
//!
//! Codes only need to be equal exactly when values are: a reversible code is injective, and a
//! hashed value meets another value's code only on a 64-bit hash collision, as group keys do.

use std::net::{IpAddr, Ipv4Addr};

use super::fields::{dst_string, Val};
use crate::event::Event;

/// Tag (top 16 bits) of an IPv4 address value: the address in the low 32 bits.
const V4: u64 = 0xfff1;
/// Tag of an IPv4 destination: the port in bits 32..48, the address in the low 32 bits.
const DST4: u64 = 0xfff2;
/// Tag of an integer value in `0..2^48`: the integer in the low 48 bits.
const INT: u64 = 0xfff3;

const LOW48: u64 = (1 << 48) - 1;

/// Keeps hashes out of the tag space (flipping bit 63 maps `0xfff0..` to `0x7ff0..`) and away
/// from 0, which means "no value".
fn hashed(h: u64) -> u64 {
    let h = if (h >> 48) >= 0xfff0 {
        h ^ (1 << 63)
    } else {
        h
    };
    h.max(1)
}

/// An IPv4 address written canonically (what `Ipv4Addr` prints, so rendering gives the very
/// string back): the parser already rejects leading zeros and other forms.
fn v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// Code of a counted value; `hash` gives the hash of values that are not coded reversibly.
pub(crate) fn val(v: &Val<'_>, hash: impl FnOnce() -> u64) -> u64 {
    match v {
        Val::Str(s) => match v4(s) {
            Some(a) => V4 << 48 | u64::from(u32::from(a)),
            None => hashed(hash()),
        },
        Val::Int(n) if (0..=LOW48 as i64).contains(n) => INT << 48 | *n as u64,
        _ => hashed(hash()),
    }
}

/// Code of an event's destination (the tests' shorthand for [`dst_at`]) (`addr`, `port`); 0 when it has none.
#[cfg(test)]
pub(crate) fn dst(ev: &Event) -> u64 {
    dst_at(
        ev,
        ev.net
            .as_ref()
            .and_then(|n| v4(&n.dst_addr))
            .map(IpAddr::V4),
    )
}

/// The code of an event's destination, its address parsed already (`ip`: `net.dst_addr` parsed).
pub(crate) fn dst_at(ev: &Event, ip: Option<IpAddr>) -> u64 {
    ev.net.as_ref().map_or(0, |n| match ip {
        // Only a canonically written address is coded reversibly (rendering must give the
        // very text back); the parser rejects other IPv4 forms, so parsed means canonical.
        Some(IpAddr::V4(a)) => DST4 << 48 | u64::from(n.dst_port) << 32 | u64::from(u32::from(a)),
        _ => hashed(super::keys::dst_hash(&n.dst_addr, n.dst_port)),
    })
}

/// The address-value code of an IPv4 destination's code (what [`val`] gives for its
/// `net.dst_addr`), without parsing the address again.
pub(crate) fn addr_of_dst(code: u64) -> Option<u64> {
    (code >> 48 == DST4).then_some(V4 << 48 | (code & 0xffff_ffff))
}

/// True when the code carries its value (no display string needs keeping).
pub(crate) fn describes(code: u64) -> bool {
    matches!(code >> 48, V4 | DST4 | INT)
}

/// The display string of a reversible code: what the value's or destination's own rendering
/// gives.
pub(crate) fn render(code: u64) -> Option<String> {
    let addr = || Ipv4Addr::from((code & 0xffff_ffff) as u32).to_string();
    match code >> 48 {
        V4 => Some(addr()),
        DST4 => Some(dst_string(&addr(), ((code >> 32) & 0xffff) as u16)),
        INT => Some((code & LOW48).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Direction, NetInfo, Outcome, Protocol};
    use std::borrow::Cow;

    fn connect(addr: &str, port: u16) -> Event {
        Event {
            ts: 1,
            kind: crate::event::Kind::Connect,
            process: None,
            exec: None,
            fork: None,
            exit: None,
            net: Some(NetInfo {
                protocol: Protocol::Tcp,
                family: 4,
                direction: Direction::Outbound,
                src_addr: "0.0.0.0".into(),
                src_port: 0,
                dst_addr: addr.into(),
                dst_port: port,
                outcome: Outcome::InProgress,
                error: None,
                conn: 1,
                dst_name: None,
                off_host: None,
                service: None,
            }),
            file: None,
            loss: None,
        }
    }

    #[test]
    fn reversible_codes_render_as_the_value_itself() {
        for s in ["10.0.0.1", "0.0.0.0", "255.255.255.255", "169.254.169.254"] {
            let c = val(&Val::Str(Cow::Borrowed(s)), || 7);
            assert!(describes(c));
            assert_eq!(render(c).as_deref(), Some(s));
        }
        for n in [0i64, 22, 65_535, (1 << 48) - 1] {
            let c = val(&Val::Int(n), || 7);
            assert!(describes(c));
            assert_eq!(render(c), Some(n.to_string()));
        }
        let d = dst(&connect("10.1.2.3", 5432));
        assert!(describes(d));
        assert_eq!(render(d).as_deref(), Some("10.1.2.3:5432"));
    }

    #[test]
    fn other_values_are_hashed_outside_the_tag_space() {
        // Non-canonical IPv4 forms keep their own identity (and their own display string).
        for s in ["010.0.0.1", "10.0.0.1 ", "10.0.0", "::1", "payments-db"] {
            let c = val(&Val::Str(Cow::Borrowed(s)), || 0xfff1_0000_0a00_0001);
            assert!(!describes(c), "{s}");
            assert_ne!(c, val(&Val::Str(Cow::Borrowed("10.0.0.1")), || 0));
        }
        assert!(!describes(val(&Val::Int(-1), || 5)));
        assert!(!describes(val(&Val::Int(1 << 48), || 5)));
        assert_eq!(val(&Val::Int(-1), || 0), 1, "never 0 (no value)");
        let d6 = dst(&connect("fd00::1", 443));
        assert!(!describes(d6) && d6 != 0);
        assert!(render(d6).is_none());
        assert_eq!(
            dst(&Event {
                net: None,
                ..connect("10.0.0.1", 1)
            }),
            0
        );
    }

    #[test]
    fn codes_are_equal_exactly_when_values_are() {
        let a = dst(&connect("10.0.0.1", 443));
        assert_eq!(a, dst(&connect("10.0.0.1", 443)));
        assert_ne!(a, dst(&connect("10.0.0.1", 444)));
        assert_ne!(a, dst(&connect("10.0.0.2", 443)));
        let ip = val(&Val::Str(Cow::Borrowed("10.0.0.1")), || 0);
        assert_eq!(
            addr_of_dst(a),
            Some(ip),
            "the same code as the address itself"
        );
        assert_eq!(addr_of_dst(ip), None);
        let int = val(&Val::Int(0x0a00_0001), || 0);
        assert_ne!(ip, int, "an address and the integer of its bits differ");
    }
}
