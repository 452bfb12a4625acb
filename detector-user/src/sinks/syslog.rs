//! RFC 5424 syslog over a unix datagram socket, UDP, or TCP with octet-counting framing
//! (RFC 6587 3.4.1). The message is the alert document; STRUCTURED-DATA carries the alert id
//! and rule so receivers can dedup and route without parsing the JSON.
//!
//! Delivery means: the datagram was sent (unix, UDP: no acknowledgement exists) or the frame
//! was written to the TCP connection.

use std::{net::SocketAddr, path::PathBuf, time::SystemTime};

use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpStream, UdpSocket, UnixDatagram},
};

use super::{BoxFuture, Record, Sink, SinkError};
use crate::config::{facility_code, SyslogConfig, SyslogTransport};

/// Private enterprise number 32473 is reserved for documentation (RFC 5612); SD-IDs with it
/// are what RFC 5424 asks for when no number is registered.
const SD_ID: &str = "detector@32473";

/// Syslog severity for an alert severity (encoded in the native document's `rule.severity`).
fn severity_of(body: &[u8]) -> u8 {
    // The severity is not in the record; look at the document. Both formats carry it:
    // native as rule.severity, OCSF as severity_id.
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let native = v["rule"]["severity"].as_str();
    let ocsf = v["severity_id"].as_u64();
    match (native, ocsf) {
        (Some("critical"), _) | (_, Some(5..)) => 2,
        (Some("high"), _) | (_, Some(4)) => 3,
        (Some("medium"), _) | (_, Some(3)) => 4,
        (Some("low"), _) | (_, Some(2)) => 5,
        _ => 6,
    }
}

/// Rule id of a document (both formats).
fn rule_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v["rule"]["id"]
        .as_str()
        .or(v["finding_info"]["analytic"]["uid"].as_str())
        .unwrap_or("-")
        .to_string()
}

/// PRINTUSASCII without spaces, bounded (RFC 5424 header fields).
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// PARAM-VALUE escaping: `"`, `\` and `]`.
fn sd_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// One RFC 5424 message.
pub(crate) fn message(r: &Record, facility: u8, host: &str, app: &str, now: SystemTime) -> Vec<u8> {
    let pri = u16::from(facility) * 8 + u16::from(severity_of(&r.body));
    let rule = rule_of(&r.body);
    let head = format!(
        "<{pri}>1 {} {} {} {} {} [{SD_ID} id=\"{}\" rule=\"{}\"] ",
        humantime::format_rfc3339_micros(now),
        header_field(host, 255),
        header_field(app, 48),
        std::process::id(),
        header_field(&rule, 32),
        sd_escape(&r.id),
        sd_escape(&rule),
    );
    let mut m = head.into_bytes();
    m.extend_from_slice(&r.body);
    m
}

enum Conn {
    Unix(PathBuf, Option<UnixDatagram>),
    Udp(String, Option<UdpSocket>),
    Tcp(String, Option<TcpStream>),
}

/// Syslog sink.
pub(crate) struct SyslogSink {
    conn: Conn,
    facility: u8,
    host: String,
    app: String,
    buf: Vec<u8>,
}

impl SyslogSink {
    /// A sink for a config; connects lazily (and again after any error).
    pub(crate) fn new(c: &SyslogConfig, host: &str) -> Result<Self, SinkError> {
        let facility = facility_code(&c.facility)
            .ok_or_else(|| SinkError::Setup(format!("unknown facility {:?}", c.facility)))?;
        let addr = || {
            c.address
                .clone()
                .ok_or_else(|| SinkError::Setup("syslog over UDP/TCP needs an address".into()))
        };
        let conn = match c.transport {
            SyslogTransport::Unix => Conn::Unix(
                c.socket
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/dev/log")),
                None,
            ),
            SyslogTransport::Udp => Conn::Udp(addr()?, None),
            SyslogTransport::Tcp => Conn::Tcp(addr()?, None),
        };
        Ok(Self {
            conn,
            facility,
            host: host.to_string(),
            app: c.app_name.clone(),
            buf: Vec::new(),
        })
    }

    async fn send(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let now = SystemTime::now();
        let msgs: Vec<Vec<u8>> = batch
            .iter()
            .map(|r| message(r, self.facility, &self.host, &self.app, now))
            .collect();
        match &mut self.conn {
            Conn::Unix(path, sock) => {
                if sock.is_none() {
                    *sock = Some(UnixDatagram::unbound()?);
                }
                if let Some(s) = sock {
                    for m in &msgs {
                        s.send_to(m, &*path).await?;
                    }
                }
            }
            Conn::Udp(addr, sock) => {
                if sock.is_none() {
                    let target: SocketAddr =
                        tokio::net::lookup_host(addr.as_str())
                            .await?
                            .next()
                            .ok_or_else(|| SinkError::Transport(format!("{addr}: no address")))?;
                    let bind: SocketAddr = if target.is_ipv4() {
                        ([0, 0, 0, 0], 0).into()
                    } else {
                        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                    };
                    let s = UdpSocket::bind(bind).await?;
                    s.connect(target).await?;
                    *sock = Some(s);
                }
                if let Some(s) = sock {
                    for m in &msgs {
                        s.send(m).await?;
                    }
                }
            }
            Conn::Tcp(addr, stream) => {
                if stream.is_none() {
                    let s = TcpStream::connect(addr.as_str()).await?;
                    s.set_nodelay(true)?;
                    *stream = Some(s);
                }
                self.buf.clear();
                for m in &msgs {
                    self.buf
                        .extend_from_slice(format!("{} ", m.len()).as_bytes());
                    self.buf.extend_from_slice(m);
                }
                if let Some(s) = stream {
                    s.write_all(&self.buf).await?;
                    s.flush().await?;
                }
            }
        }
        Ok(())
    }
}

impl Sink for SyslogSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let r = self.send(batch).await;
            if r.is_err() {
                // Reconnect on the next attempt (the peer may have restarted).
                match &mut self.conn {
                    Conn::Unix(_, s) => *s = None,
                    Conn::Udp(_, s) => *s = None,
                    Conn::Tcp(_, s) => *s = None,
                }
            }
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_layout() {
        let a = crate::sinks::format::tests::sample_alert(7);
        let r = Record {
            id: a.id.clone(),
            body: crate::sinks::format::encode(&a, crate::config::Format::Native),
        };
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let m = String::from_utf8(message(&r, 10, "web 1", "detector", t)).unwrap();
        // authpriv (10) * 8 + err (3, high) = 83.
        let want = format!(
            "<83>1 2023-11-14T22:13:20.000000Z web1 detector {} ssh-key-then-fanout [detector@32473 id=\"{}\" rule=\"ssh-key-then-fanout\"] {{",
            std::process::id(),
            a.id
        );
        assert!(m.starts_with(&want), "{m}");
        assert!(m.ends_with('}'));
        assert_eq!(sd_escape("a\"b]c\\"), "a\\\"b\\]c\\\\");
        let o = crate::sinks::format::encode(&a, crate::config::Format::Ocsf);
        assert_eq!(severity_of(&o), 3);
        assert_eq!(rule_of(&o), "ssh-key-then-fanout");
    }
}
