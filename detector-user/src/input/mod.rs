//! Untrusted input: rule files, identities, the baseline and the agent config come from people
//! and pipelines (a ConfigMap, a rules repository, an edit followed by SIGHUP). Everything
//! here is bounded and positioned:
//!
//! 1. [`read_source`] / [`check_text`]: size, invalid UTF-8, NUL and other characters YAML
//!    does not allow are errors at `file:line:col`, before any parsing (a NUL used to end a
//!    rule file silently).
//! 2. [`yaml`]: one YAML front-end for all of them, with limits on nesting depth, nodes
//!    (alias expansion included), items per sequence or mapping and scalar length, and
//!    duplicate keys rejected at every level.
//! 3. [`de`]: the agent config is deserialized (serde) from that tree, so that its errors,
//!    semantic ones included, keep their positions.
//! 4. [`value`]: durations, URLs, addresses, ports and sizes parsed into typed values with
//!    ranges.
//!
//! Messages quote user input through [`excerpt`], so a 50 MB pattern is not echoed whole.

pub(crate) mod de;
pub(crate) mod value;
pub(crate) mod yaml;

use std::path::Path;
use std::sync::Arc;

pub use yaml::{Pos, PosError};

/// Bounds on one kind of input file. Every one is checked with a positioned error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per file.
    pub(crate) max_bytes: usize,
    /// Nesting depth of sequences and mappings.
    pub(crate) max_depth: usize,
    /// Nodes per file (all its documents), each alias counting the nodes it stands for.
    pub(crate) max_nodes: usize,
    /// Items in one sequence, entries in one mapping.
    pub(crate) max_items: usize,
    /// Bytes in one scalar.
    pub(crate) max_scalar: usize,
}

/// Rule files (each; a rule set as a whole is bounded by [`RULES_TOTAL_BYTES`]).
pub const RULES: Limits = Limits {
    max_bytes: 16 << 20,
    max_depth: 64,
    max_nodes: 1_000_000,
    max_items: 100_000,
    max_scalar: 64 << 10,
};

/// All rule sources of one rule set together (embedded pack included).
pub(crate) const RULES_TOTAL_BYTES: usize = 64 << 20;

/// Nodes of all rule sources of one rule set together (aliases expanded): each file has its
/// own [`Limits::max_nodes`], and a directory of many files shares this.
pub(crate) const RULES_TOTAL_NODES: usize = 2_000_000;

/// The identities file.
pub const IDENTITIES: Limits = RULES;

/// The baseline (`detector learn` writes one entry per identity and peer).
pub const BASELINE: Limits = Limits {
    max_bytes: 64 << 20,
    max_depth: 8,
    max_nodes: 4_000_000,
    max_items: 1_000_000,
    max_scalar: 4 << 10,
};

/// The agent config.
pub const CONFIG: Limits = Limits {
    max_bytes: 1 << 20,
    max_depth: 32,
    max_nodes: 100_000,
    max_items: 10_000,
    max_scalar: 64 << 10,
};

/// A file that could not be read or is not acceptable text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The file could not be read (the cause is part of the message, printed once).
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// Why (not a `source`: the message already says it, and chains print it again).
        error: std::io::Error,
    },
    /// Too large, not UTF-8, or a character YAML does not allow.
    #[error("{0}")]
    Invalid(PosError),
}

/// Reads `path` as text, bounded by `limits.max_bytes` (never more is read) and checked by
/// [`check_text`].
pub(crate) fn read_source(path: &Path, limits: &Limits) -> Result<String, SourceError> {
    use std::io::Read as _;
    let name = path.display().to_string();
    let io = |error| SourceError::Io {
        path: name.clone(),
        error,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    if f.metadata().map_err(io)?.is_dir() {
        return Err(io(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
    }
    let mut bytes = Vec::new();
    // One byte more than allowed tells "too large" without reading a huge file.
    f.take(limits.max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    check_text(&name, bytes, limits).map_err(SourceError::Invalid)
}

/// Checks bytes of a file named `file` and returns them as text: at most `limits.max_bytes`,
/// valid UTF-8, and only characters YAML allows (no NUL, no other C0/C1 control but tab,
/// line feed, carriage return and NEL). Errors name the first offending `line:col`.
pub fn check_text(file: &str, bytes: Vec<u8>, limits: &Limits) -> Result<String, PosError> {
    let name: Arc<str> = Arc::from(file);
    if bytes.len() > limits.max_bytes {
        return Err(too_large(&name, limits));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            // The prefix is valid UTF-8 by definition of `valid_up_to`.
            let prefix = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
            let bad: Vec<String> = bytes[at..]
                .iter()
                .take(4)
                .map(|b| format!("{b:#04x}"))
                .collect();
            return Err(PosError {
                pos: pos_at(&name, prefix, prefix.len()),
                msg: format!("invalid UTF-8 (bytes {})", bad.join(" ")),
            });
        }
    };
    check_str(&name, &text, limits)?;
    Ok(text)
}

/// The checks of [`check_text`] on text already known to be UTF-8.
pub(crate) fn check_str(file: &Arc<str>, text: &str, limits: &Limits) -> Result<(), PosError> {
    if text.len() > limits.max_bytes {
        return Err(too_large(file, limits));
    }
    if let Some((i, c)) = text.char_indices().find(|&(_, c)| !yaml_printable(c)) {
        let what = if c == '\0' {
            "NUL byte".to_string()
        } else {
            format!("control character U+{:04X}", c as u32)
        };
        return Err(PosError {
            pos: pos_at(file, text, i),
            msg: format!("{what}: not allowed in YAML (is this a text file?)"),
        });
    }
    Ok(())
}

fn too_large(file: &Arc<str>, limits: &Limits) -> PosError {
    PosError {
        pos: Pos {
            file: file.clone(),
            line: 1,
            col: 1,
        },
        msg: format!(
            "file larger than {} (the limit for this kind of file)",
            human_bytes(limits.max_bytes as u64)
        ),
    }
}

/// YAML 1.2 `c-printable` (tab, LF, CR, NEL and the printable ranges).
fn yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{85}' | ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// The 1-based line and column (in characters) of byte offset `at` of `text`.
fn pos_at(file: &Arc<str>, text: &str, at: usize) -> Pos {
    let before = &text[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        file: file.clone(),
        line,
        col: before[start..].chars().count() + 1,
    }
}

/// `s` as a YAML double-quoted scalar that reads back as `s` through [`yaml`]: quotes,
/// backslashes, line breaks and every character [`check_text`] refuses in a file are escaped.
pub(crate) fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if !yaml_printable(c)
                || c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') =>
            {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How many bytes, for messages (`16 MiB`).
pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Longest stretch of user input a message quotes.
pub(crate) const EXCERPT_CHARS: usize = 60;

/// User input quoted for a message: whole when short, else its start and its length
/// (`` `abc…` (52428800 bytes) ``), without line breaks so that every problem stays on one line.
pub(crate) fn excerpt(s: &str) -> String {
    let one_line = |t: &str| t.replace('\n', "\\n").replace('\r', "\\r");
    if s.chars().count() <= EXCERPT_CHARS {
        return format!("`{}`", one_line(s));
    }
    let head: String = s.chars().take(EXCERPT_CHARS).collect();
    format!("`{}…` ({} bytes)", one_line(&head), s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(bytes: &[u8]) -> String {
        check_text("f.yaml", bytes.to_vec(), &RULES)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn nul_and_controls_are_positioned() {
        assert_eq!(
            err(b"rules:\n  - id: t1\n\x00\n"),
            "f.yaml:3:1: NUL byte: not allowed in YAML (is this a text file?)"
        );
        assert!(err(b"\x00rules: 5").starts_with("f.yaml:1:1: NUL byte"));
        assert!(err("a: é\x07".as_bytes()).starts_with("f.yaml:1:5: control character U+0007"));
        assert!(check_text("f", "a:\tb\r\n\u{85}é".into(), &RULES).is_ok());
    }

    #[test]
    fn invalid_utf8_is_positioned_once() {
        let e = err(b"a: 1\nbb: \xff\xfe\n");
        assert_eq!(e, "f.yaml:2:5: invalid UTF-8 (bytes 0xff 0xfe 0x0a)");
        // Column in characters, as the parser counts them.
        assert!(err("é: \u{e9}"
            .as_bytes()
            .iter()
            .copied()
            .chain([0xc3])
            .collect::<Vec<_>>()
            .as_slice())
        .starts_with("f.yaml:1:5:"));
    }

    #[test]
    fn size_is_bounded() {
        let big = vec![b' '; CONFIG.max_bytes + 1];
        let e = check_text("c.yaml", big, &CONFIG).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:1:1: file larger than 1 MiB (the limit for this kind of file)"
        );
    }

    #[test]
    fn quoted_strings_read_back() {
        for v in [
            "plain",
            "a \"b\" \\c",
            "tab\there\nline",
            "\u{7}\u{85}\u{9f}\u{2028}\u{fffe}\u{feff}é😀",
            "",
        ] {
            let doc = format!("k: {}\n", yaml_quote(v));
            let n = &yaml::parse("q", &doc).unwrap()[0];
            assert_eq!(n.as_map().unwrap()[0].2.as_str().unwrap(), v, "{doc}");
        }
    }

    #[test]
    fn excerpts_are_short_and_one_line() {
        assert_eq!(excerpt("a\nb"), "`a\\nb`");
        let long = "x".repeat(10_000);
        let e = excerpt(&long);
        assert!(e.len() < 100 && e.ends_with("(10000 bytes)"), "{e}");
    }
}
