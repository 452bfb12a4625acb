//! Typed values with ranges: what a config or rule file says is parsed once, here, and a value
//! outside its range is refused with the range in the message, so that every accepted value
//! behaves as documented (a 1 ns retry delay used to spin a core; a 0 s timeout redelivered the
//! same batch nine times).

use std::time::Duration;

use super::excerpt;

/// Parses a humantime duration (`500ms`, `10s`, `1h 30m`).
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("bad duration {}: {e}", excerpt(s)))
}

/// A duration within `[min, max]`.
pub(crate) fn duration_in(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < min || d > max {
        return Err(format!(
            "{} is out of range: {} ..= {}",
            excerpt(s),
            show(min),
            show(max)
        ));
    }
    Ok(d)
}

/// A duration as people write it (`10ms`, `1h`, `0s`).
pub(crate) fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// A duration in ns as the engine keeps time, with no more than `u64::MAX` ns (584 years).
pub(crate) fn duration_ns(s: &str) -> Result<u64, String> {
    let d = duration(s)?;
    u64::try_from(d.as_nanos()).map_err(|_| {
        format!(
            "duration {} too large (at most {})",
            excerpt(s),
            show(Duration::from_nanos(u64::MAX))
        )
    })
}

/// An integer within `[min, max]`.
pub(crate) fn int_in<T>(v: T, min: T, max: T) -> Result<T, String>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if v < min || v > max {
        return Err(format!("{v} is out of range: {min} ..= {max}"));
    }
    Ok(v)
}

/// An HTTP(S) endpoint: `http://` or `https://`, a host, a valid port, no credentials (they
/// would end up in logs; the token comes from `token_file`).
pub(crate) fn http_url(s: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(s).map_err(|e| format!("bad URL {}: {e}", excerpt(s)))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "URL {} must start with https:// or http://",
            excerpt(s)
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL {} has no host", excerpt(s)));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "URL {} carries credentials; put the token in `token_file`",
            excerpt(s)
        ));
    }
    Ok(u)
}

/// A TCP/UDP destination `host:port`: an IPv4 address, an IPv6 address in brackets or a DNS
/// name, and a port from 1 to 65535.
pub(crate) fn host_port(s: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| format!("bad address {}: {why}", excerpt(s));
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("want host:port (IPv6 as [addr]:port)"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| bad("the port must be 1 ..= 65535"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    // The URL parser validates hosts strictly (IPv6 only in brackets, domain names by IDNA).
    let u =
        reqwest::Url::parse(&format!("http://{host}/")).map_err(|e| bad(&format!("host: {e}")))?;
    match u.host_str() {
        Some(h) if !h.is_empty() && u.port().is_none() && u.username().is_empty() => {
            Ok((host.to_string(), port))
        }
        _ => Err(bad("want host:port (IPv6 as [addr]:port)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_ranges() {
        let ms = Duration::from_millis;
        assert_eq!(duration_in("20ms", ms(10), ms(100)), Ok(ms(20)));
        assert_eq!(
            duration_in("1ns", ms(10), Duration::from_secs(3600)).unwrap_err(),
            "`1ns` is out of range: 10ms ..= 1h"
        );
        assert!(duration_in("600000years", ms(0), Duration::from_secs(3600)).is_err());
        assert!(duration_ns("585years").unwrap_err().contains("too large"));
        assert_eq!(duration_ns("1s"), Ok(1_000_000_000));
        assert!(duration("soon")
            .unwrap_err()
            .starts_with("bad duration `soon`"));
    }

    #[test]
    fn urls() {
        assert!(http_url("https://siem.example:8088/x").is_ok());
        assert!(http_url("http://[::1]:80/").is_ok());
        for bad in [
            "http://",
            "http://[::1",
            "http://a:99999/",
            "ftp://x/",
            "http://u:p@h/",
            "x",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports() {
        assert_eq!(host_port("127.0.0.1:514").unwrap().1, 514);
        assert_eq!(host_port("[::1]:514").unwrap().0, "[::1]");
        assert_eq!(host_port("syslog.example:6514").unwrap().1, 6514);
        for bad in [
            "::::", "h:99999", "h:0", ":514", "h", "::1:514", "a b:1", "h:1/x", "u@h:1",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }
}
