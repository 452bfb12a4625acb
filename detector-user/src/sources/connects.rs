//! Pairs a TCP connect's outcome with its attempt, and a connected UDP socket's first
//! datagram with its association.
//!
//! The outcome (`CONNECT_RESULT`) usually happens in softirq, where the current task is
//! unrelated, so the kernel record carries the socket but no process. Keeping the connecting
//! process per socket in a kernel map until the outcome cost a hash insert, lookup and delete
//! on every connect; here it costs nothing in the kernel. The attempt is always in the ring
//! before its outcome (the outcome is produced after the attempt was submitted), so the pairing
//! never waits.

use std::num::NonZeroUsize;

use detector_common::{kind, Header, NetEvent};

/// Connects in flight whose outcome has not been seen yet: SYNs to silent hosts stay here until
/// the kernel gives up (about two minutes), so the table is bounded and forgets the oldest.
pub(crate) const DEFAULT_CAPACITY: usize = 65_536;

/// TCP attempts waiting for their outcome, by kernel socket; UDP associations waiting for
/// their first datagram, by socket cookie.
pub(crate) struct PendingConnects {
    by_sock: lru::LruCache<u64, Header>,
    /// Most associations never send (resolvers' address probes): bounded the same way.
    udp: lru::LruCache<u64, Header>,
    /// Outcomes dropped because their attempt was not seen (the agent's own connects, an
    /// attempt lost in the kernel or forgotten at capacity).
    pub(crate) unpaired: u64,
}

impl Default for PendingConnects {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl PendingConnects {
    /// A table holding at most `cap` attempts (at least one).
    pub(crate) fn with_capacity(cap: usize) -> Self {
        let cap = NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN);
        Self {
            by_sock: lru::LruCache::new(cap),
            udp: lru::LruCache::new(cap),
            unpaired: 0,
        }
    }

    /// Remembers a TCP attempt, or gives an outcome the process of its attempt. Returns
    /// false when the record must be dropped: an outcome whose attempt was never seen.
    pub(crate) fn pair(&mut self, n: &mut NetEvent) -> bool {
        match n.hdr.kind {
            kind::CONNECT if n.protocol == libc::IPPROTO_TCP as u16 => {
                self.by_sock.put(n.sock, n.hdr);
                true
            }
            kind::CONNECT
                if n.protocol == libc::IPPROTO_UDP as u16
                    && n.outcome == detector_common::outcome::ASSOCIATED =>
            {
                self.udp.put(n.sock, n.hdr);
                true
            }
            kind::UDP_SEND => match self.udp.pop(&n.sock) {
                Some(assoc) => {
                    n.hdr = Header {
                        kind: n.hdr.kind,
                        cpu: n.hdr.cpu,
                        ts_ns: n.hdr.ts_ns,
                        seq: n.hdr.seq,
                        ..assoc
                    };
                    true
                }
                None => {
                    self.unpaired += 1;
                    false
                }
            },
            kind::CONNECT_RESULT => match self.by_sock.pop(&n.sock) {
                Some(attempt) => {
                    // The process is the attempt's; time, CPU and sequence are the outcome's.
                    n.hdr = Header {
                        kind: n.hdr.kind,
                        cpu: n.hdr.cpu,
                        ts_ns: n.hdr.ts_ns,
                        seq: n.hdr.seq,
                        ..attempt
                    };
                    true
                }
                None => {
                    self.unpaired += 1;
                    false
                }
            },
            _ => true,
        }
    }

    /// Attempts waiting for their outcome.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_sock.len()
    }

    /// No attempt is waiting.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_sock.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detector_common::outcome;

    fn net(k: u32, sock: u64, tgid: u32, ts: u64, protocol: u16) -> NetEvent {
        // SAFETY: NetEvent is plain old data; all-zero is a valid value.
        let mut n: NetEvent = unsafe { std::mem::zeroed() };
        n.hdr.kind = k;
        n.hdr.tgid = tgid;
        n.hdr.pid = tgid;
        n.hdr.uid = if tgid == 0 { 0 } else { 1000 };
        n.hdr.start_ns = if tgid == 0 { 0 } else { 42 };
        n.hdr.comm[..4].copy_from_slice(b"curl");
        n.hdr.ts_ns = ts;
        n.hdr.cpu = 1;
        n.hdr.seq = ts;
        n.sock = sock;
        n.protocol = protocol;
        n.outcome = if k == kind::CONNECT {
            outcome::IN_PROGRESS
        } else {
            outcome::ESTABLISHED
        };
        n
    }

    #[test]
    fn an_outcome_gets_the_process_of_its_attempt() {
        let mut p = PendingConnects::default();
        assert!(p.pair(&mut net(kind::CONNECT, 0xa, 77, 10, 6)));
        assert_eq!(p.len(), 1);
        let mut r = net(kind::CONNECT_RESULT, 0xa, 0, 20, 6);
        assert!(p.pair(&mut r));
        assert_eq!((r.hdr.tgid, r.hdr.uid, r.hdr.start_ns), (77, 1000, 42));
        assert_eq!(
            (r.hdr.kind, r.hdr.ts_ns, r.hdr.seq),
            (kind::CONNECT_RESULT, 20, 20)
        );
        assert!(p.is_empty(), "the attempt is forgotten once paired");
        // A second outcome for the same socket has nothing to pair with.
        assert!(!p.pair(&mut net(kind::CONNECT_RESULT, 0xa, 0, 30, 6)));
        assert_eq!(p.unpaired, 1);
    }

    #[test]
    fn an_outcome_without_an_attempt_is_dropped_and_counted() {
        let mut p = PendingConnects::default();
        assert!(!p.pair(&mut net(kind::CONNECT_RESULT, 0xb, 0, 5, 6)));
        assert_eq!(p.unpaired, 1);
    }

    #[test]
    fn accepts_and_unconnected_sends_pass_through_untouched() {
        let mut p = PendingConnects::default();
        let mut sent = net(kind::CONNECT, 0, 5, 1, 17);
        sent.outcome = outcome::SENT;
        assert!(p.pair(&mut sent));
        assert_eq!(sent.hdr.tgid, 5);
        let mut acc = net(kind::ACCEPT, 0xc, 6, 2, 6);
        assert!(p.pair(&mut acc));
        assert_eq!(acc.hdr.tgid, 6);
        assert!(p.is_empty());
    }

    #[test]
    fn a_first_datagram_gets_the_process_of_its_association() {
        let mut p = PendingConnects::default();
        let mut assoc = net(kind::CONNECT, 0x51, 88, 10, 17);
        assoc.outcome = outcome::ASSOCIATED;
        assert!(p.pair(&mut assoc));
        let mut send = net(kind::UDP_SEND, 0x51, 0, 20, 17);
        assert!(p.pair(&mut send));
        assert_eq!(
            (send.hdr.tgid, send.hdr.kind, send.hdr.ts_ns),
            (88, kind::UDP_SEND, 20)
        );
        // The kernel reports one first datagram per association; another has nothing to pair.
        assert!(!p.pair(&mut net(kind::UDP_SEND, 0x51, 0, 30, 17)));
        assert_eq!(p.unpaired, 1);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest_attempt() {
        let mut p = PendingConnects::with_capacity(2);
        for sock in 1..=3u64 {
            assert!(p.pair(&mut net(kind::CONNECT, sock, 100 + sock as u32, sock, 6)));
        }
        assert_eq!(p.len(), 2);
        assert!(!p.pair(&mut net(kind::CONNECT_RESULT, 1, 0, 9, 6)));
        let mut r = net(kind::CONNECT_RESULT, 3, 0, 9, 6);
        assert!(p.pair(&mut r));
        assert_eq!(r.hdr.tgid, 103);
    }
}
