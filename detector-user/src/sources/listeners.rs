//! Seeds the kernel's `LISTENERS` map with TCP listeners that existed before the agent, so that
//! inbound connections to them are attributed too (the kernel learns newer ones itself).

use std::{collections::HashMap, os::unix::fs::MetadataExt};

use detector_common::{Header, ListenKey, COMM_LEN};

const TCP_LISTEN: &str = "0A";

/// Parses `/proc/net/tcp{,6}` text: (local port, socket inode) of listening sockets.
pub(crate) fn parse_proc_net_tcp(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || f[3] != TCP_LISTEN {
                return None;
            }
            let port = u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok()?;
            let inode = f[9].parse::<u64>().ok()?;
            Some((port, inode))
        })
        .collect()
}

/// socket inode → pid, from /proc/*/fd.
fn socket_owners() -> HashMap<u64, u32> {
    let mut m = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return m;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                if let Ok(ino) = n.parse::<u64>() {
                    m.entry(ino).or_insert(pid);
                }
            }
        }
    }
    m
}

/// Listeners of the agent's network namespace with a minimal header (tgid, uid, comm); the
/// enricher fills in the rest from its process table.
pub(crate) fn scan() -> Vec<(ListenKey, Header)> {
    let netns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0);
    let mut socks = Vec::new();
    for (file, family) in [("/proc/net/tcp", 2u16), ("/proc/net/tcp6", 10u16)] {
        if let Ok(t) = std::fs::read_to_string(file) {
            socks.extend(
                parse_proc_net_tcp(&t)
                    .into_iter()
                    .map(|(p, i)| (p, i, family)),
            );
        }
    }
    if socks.is_empty() {
        return Vec::new();
    }
    let owners = socket_owners();
    let mut out = Vec::new();
    for (port, inode, family) in socks {
        let Some(&pid) = owners.get(&inode) else {
            continue;
        };
        let mut h = Header {
            tgid: pid,
            pid,
            netns,
            ..Default::default()
        };
        if let Ok(md) = std::fs::metadata(format!("/proc/{pid}")) {
            h.uid = md.uid();
            h.gid = md.gid();
        }
        if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            let c = c.trim_end().as_bytes();
            let n = c.len().min(COMM_LEN - 1);
            h.comm[..n].copy_from_slice(&c[..n]);
        }
        out.push((
            ListenKey {
                family,
                port,
                netns,
            },
            h,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_sockets_only() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0 100 0 0 10 0\n\
   garbage line\n";
        assert_eq!(parse_proc_net_tcp(t), vec![(22, 12345)]);
    }
}
