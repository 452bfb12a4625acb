//! Ring-buffer records → typed kernel records, with bounds checks. Nothing is transmuted: the
//! kind is read as a plain integer, the length checked against the struct for that kind, and
//! the struct copied out with `read_unaligned` (all its fields accept any bit pattern).

use std::mem::size_of;

use detector_common::{
    kind, DnsEvent, ExecEvent, ExitEvent, FileEvent, ForkEvent, Header, NetEvent,
};

/// A decoded kernel record.
#[derive(Debug, Clone)]
pub enum Record {
    /// exec.
    Exec(Box<ExecEvent>),
    /// fork.
    Fork(ForkEvent),
    /// exit.
    Exit(ExitEvent),
    /// connect / connect_result / accept.
    Net(NetEvent),
    /// cred_open / cred_read.
    File(Box<FileEvent>),
    /// A DNS answer received on the host (no process).
    Dns(Box<DnsEvent>),
    /// In-band loss report built by the consumer from the per-CPU counters.
    Loss {
        /// Boot-time ns when the loss was noticed.
        ts_ns: u64,
        /// CPU.
        cpu: u32,
        /// New losses.
        count: u64,
        /// Losses since start.
        total: u64,
    },
}

impl Record {
    /// Boot-time timestamp.
    pub fn ts_ns(&self) -> u64 {
        match self {
            Record::Exec(e) => e.hdr.ts_ns,
            Record::Fork(e) => e.hdr.ts_ns,
            Record::Exit(e) => e.hdr.ts_ns,
            Record::Net(e) => e.hdr.ts_ns,
            Record::File(e) => e.hdr.ts_ns,
            Record::Dns(e) => e.hdr.ts_ns,
            Record::Loss { ts_ns, .. } => *ts_ns,
        }
    }
}

/// A record that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its kind's struct.
    #[error("record of kind {kind} is {len} bytes, needs {need}")]
    Truncated {
        /// Kind read from the header.
        kind: u32,
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Kind not known to this agent.
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

fn copy<T: Copy>(bytes: &[u8], k: u32) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Truncated {
            kind: k,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked above; T is a repr(C) plain-data struct valid for any bits;
    // read_unaligned tolerates any alignment of the ring-buffer slice.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    if bytes.len() < size_of::<Header>() {
        let k = if bytes.len() >= 4 {
            u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            0
        };
        return Err(DecodeError::Truncated {
            kind: k,
            len: bytes.len(),
            need: size_of::<Header>(),
        });
    }
    let k = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    Ok(match k {
        kind::EXEC => Record::Exec(Box::new(copy::<ExecEvent>(bytes, k)?)),
        kind::FORK => Record::Fork(copy(bytes, k)?),
        kind::EXIT => Record::Exit(copy(bytes, k)?),
        kind::CONNECT | kind::CONNECT_RESULT | kind::ACCEPT | kind::UDP_SEND => {
            Record::Net(copy(bytes, k)?)
        }
        kind::DNS_ANSWER => Record::Dns(Box::new(copy::<DnsEvent>(bytes, k)?)),
        kind::FILE_OPEN | kind::FILE_READ => Record::File(Box::new(copy::<FileEvent>(bytes, k)?)),
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

/// The bytes of a C string field up to the first NUL, lossily as UTF-8.
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Splits a NUL-separated argv area of `len` valid bytes.
pub fn argv(bytes: &[u8], len: usize) -> Vec<String> {
    let len = len.min(bytes.len());
    let mut out: Vec<String> = bytes[..len]
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    // The area ends with a NUL, which leaves one empty element.
    if out.last().is_some_and(|s| s.is_empty()) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value for the test.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
    }

    fn net(k: u32) -> NetEvent {
        NetEvent {
            hdr: Header {
                kind: k,
                tgid: 42,
                pid: 43,
                ..Default::default()
            },
            sock: 7,
            family: 2,
            protocol: 6,
            sport: 1000,
            dport: 22,
            saddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            outcome: 1,
            errno: 0,
        }
    }

    #[test]
    fn decodes_a_net_record() {
        let b = as_bytes(&net(kind::CONNECT));
        match decode(&b) {
            Ok(Record::Net(n)) => {
                assert_eq!(n.hdr.tgid, 42);
                assert_eq!(n.dport, 22);
                assert_eq!(n.daddr[..4], [10, 0, 0, 2]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn decodes_from_an_unaligned_slice() {
        let mut b = vec![0u8];
        b.extend(as_bytes(&net(kind::ACCEPT)));
        assert!(matches!(decode(&b[1..]), Ok(Record::Net(_))));
    }

    #[test]
    fn truncated_records_are_errors() {
        let b = as_bytes(&net(kind::CONNECT));
        for len in [
            0,
            3,
            4,
            size_of::<Header>() - 1,
            size_of::<Header>(),
            b.len() - 1,
        ] {
            let err = decode(&b[..len]).expect_err("truncated");
            assert!(
                matches!(err, DecodeError::Truncated { .. }),
                "{len}: {err:?}"
            );
        }
    }

    #[test]
    fn a_truncated_exec_is_an_error_not_a_short_read() {
        let mut b = as_bytes(&Header {
            kind: kind::EXEC,
            ..Default::default()
        });
        b.extend([0u8; 100]);
        assert_eq!(
            decode(&b).err(),
            Some(DecodeError::Truncated {
                kind: kind::EXEC,
                len: b.len(),
                need: size_of::<ExecEvent>()
            })
        );
    }

    #[test]
    fn garbage_kinds_are_rejected() {
        let mut b = vec![0xffu8; size_of::<FileEvent>()];
        assert_eq!(decode(&b).err(), Some(DecodeError::UnknownKind(u32::MAX)));
        b[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(decode(&b).err(), Some(DecodeError::UnknownKind(0)));
    }

    #[test]
    fn garbage_payload_of_a_known_kind_decodes_without_ub() {
        // Every field accepts any bits: random payloads must decode, not crash.
        let mut seed = 0x1234_5678_u32;
        for _ in 0..200 {
            let mut b: Vec<u8> = (0..size_of::<FileEvent>())
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            b[..4].copy_from_slice(&kind::FILE_OPEN.to_ne_bytes());
            let Ok(Record::File(f)) = decode(&b) else {
                panic!("file record expected")
            };
            let _ = cstr(&f.path);
        }
    }

    #[test]
    fn argv_splits_and_drops_trailing_empty() {
        assert_eq!(argv(b"ls\0-l\0/tmp\0", 11), vec!["ls", "-l", "/tmp"]);
        assert_eq!(argv(b"ls\0-l\0/tm", 9), vec!["ls", "-l", "/tm"]);
        assert_eq!(argv(b"", 5), Vec::<String>::new());
    }

    #[test]
    fn cstr_stops_at_nul_and_survives_invalid_utf8() {
        assert_eq!(cstr(b"abc\0def"), "abc");
        assert_eq!(cstr(&[0xff, 0xfe, 0]), "\u{fffd}\u{fffd}");
    }
}
