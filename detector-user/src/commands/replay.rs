//! `detector replay FILE`: runs the rules over a recording (events NDJSON, as written by
//! `detector record`) and prints alerts as NDJSON. Deterministic: alert ids derive from the
//! recording's header unless `--random-ids`. Malformed or truncated lines are reported with
//! their line number on stderr and skipped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::engine::IdMode;
use crate::event::{Event, RecordingHeader};

/// Arguments of `detector replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// Recording to replay (`-` for stdin).
    pub(crate) file: PathBuf,
    /// Rules, identities, baseline, tolerance (as for `detector run`).
    #[command(flatten)]
    pub(crate) detect: super::detect_opts::DetectArgs,
    /// Random (UUID v4) alert ids instead of ids derived from the recording.
    #[arg(long)]
    pub(crate) random_ids: bool,
    /// Print engine counters on stderr at the end.
    #[arg(long)]
    pub(crate) stats: bool,
}

/// Longest line of a recording (an event is a few KiB; argv and paths are bounded by the
/// kernel records). A longer one is skipped without being held in memory.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// One line of a recording, decoded.
#[derive(Debug)]
pub enum Line {
    /// Blank.
    Empty,
    /// The header (only the first line may be one).
    Header(RecordingHeader),
    /// An event.
    Event(Box<Event>),
    /// Not a header or an event: why, for the message.
    Bad(String),
}

/// Decodes line `line_no` (1-based) of a recording, without its line break.
pub fn decode_line(line: &[u8], line_no: u64) -> Line {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Line::Empty;
    }
    match serde_json::from_slice::<Event>(line) {
        Ok(ev) => Line::Event(Box::new(ev)),
        Err(e) => {
            if line_no == 1 {
                if let Ok(h) = serde_json::from_slice::<RecordingHeader>(line) {
                    if h.format == "detector-recording" {
                        return Line::Header(h);
                    }
                }
            }
            Line::Bad(e.to_string())
        }
    }
}

/// Reads up to and including the next `\n` into `buf`, keeping at most `max` bytes (the rest
/// of a longer line is read and dropped). Returns the bytes the line had (0 at the end) and
/// whether it was cut.
fn read_line_bounded(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<(usize, bool)> {
    let mut total = 0;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok((total, total > max));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        total += take;
        r.consume(take);
        if done {
            return Ok((total, total > max));
        }
    }
}

/// Reads a recording line by line: calls `on_header` for a header line, `on_event` for each
/// event; a line that does not parse, or is longer than [`MAX_LINE`], is reported (with its
/// number) on stderr and skipped. Returns the number of skipped lines.
pub(crate) fn read_recording(
    path: &Path,
    mut on_header: impl FnMut(RecordingHeader),
    mut on_event: impl FnMut(Event) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let (reader, size): (Box<dyn Read>, u64) = if path == Path::new("-") {
        (Box::new(io::stdin()), 0)
    } else {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(f), size)
    };
    // A progress bar only for a person watching a large file.
    let bar = (io::stderr().is_terminal() && size > 64 << 20).then(|| {
        let b = indicatif::ProgressBar::new(size);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ) {
            b.set_style(style);
        }
        b
    });
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let mut buf = Vec::new();
    let (mut line_no, mut skipped) = (0u64, 0u64);
    loop {
        buf.clear();
        let (n, cut) = read_line_bounded(&mut r, &mut buf, MAX_LINE)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
        if cut {
            skipped += 1;
            eprintln!(
                "{}:{line_no}: skipped: line of {n} bytes, longer than {}",
                path.display(),
                crate::input::human_bytes(MAX_LINE as u64)
            );
            continue;
        }
        match decode_line(&buf, line_no) {
            Line::Empty => {}
            Line::Header(h) => on_header(h),
            Line::Event(ev) => on_event(*ev)?,
            Line::Bad(e) => {
                skipped += 1;
                eprintln!("{}:{line_no}: skipped: {e}", path.display());
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(skipped)
}

/// Runs `detector replay`.
pub(crate) fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let (skipped, stats) = replay(&args, &mut out)?;
    out.flush()?;
    if args.stats {
        eprintln!("{}", serde_json::to_string(&stats)?);
    }
    if skipped > 0 {
        eprintln!(
            "{}: {skipped} malformed line(s) skipped",
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays `args.file`, writing alerts as NDJSON to `out`; returns the number of skipped
/// lines and the engine's counters.
pub(crate) fn replay(
    args: &ReplayArgs,
    out: &mut impl Write,
) -> anyhow::Result<(u64, crate::engine::Stats)> {
    let ids = if args.random_ids {
        IdMode::Random
    } else {
        IdMode::Derived(0)
    };
    let (mut engine, resolver) = args.detect.build(ids, "")?;
    let mut alerts = Vec::new();
    let write =
        |alerts: &mut Vec<crate::engine::Alert>, out: &mut dyn Write| -> anyhow::Result<()> {
            for a in alerts.drain(..) {
                serde_json::to_writer(&mut *out, &a)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        };
    // Both callbacks need the header: the first line sets it, events read it.
    let header = std::cell::RefCell::new(None);
    let skipped = read_recording(
        &args.file,
        |h| *header.borrow_mut() = Some(h),
        |mut ev| {
            if let (Some(h), true) = (&*header.borrow(), engine.stats().events == 0) {
                engine.set_host(&h.host, h.started, args.random_ids);
            }
            if let Some(p) = ev.process.as_mut() {
                resolver.apply(p);
            }
            engine.process_owned(ev, &mut alerts);
            write(&mut alerts, out)
        },
    )?;
    engine.finish(&mut alerts);
    write(&mut alerts, out)?;
    Ok((skipped, engine.stats().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: &str) -> ReplayArgs {
        ReplayArgs {
            file: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/engine/testdata/"))
                .join(file),
            detect: crate::commands::detect_opts::DetectArgs {
                rules: vec![],
                no_default_rules: false,
                identities: None,
                baseline: None,
                tolerance: std::time::Duration::from_millis(500),
            },
            random_ids: false,
            stats: false,
        }
    }

    /// A line longer than the bound is skipped (and counted) without being held; the lines
    /// around it are read as usual.
    #[test]
    fn long_lines_are_skipped_bounded() {
        let mut input = b"a\n".to_vec();
        input.extend(vec![b'x'; 3000]);
        input.extend(b"\nb\nlast-without-newline");
        let mut r = io::BufReader::with_capacity(64, &input[..]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        loop {
            buf.clear();
            let (n, cut) = read_line_bounded(&mut r, &mut buf, 100).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf.len() <= 100);
            lines.push((n, cut, String::from_utf8_lossy(&buf).trim().to_string()));
        }
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[1].0, 3001);
        assert!(lines[1].1 && !lines[0].1 && !lines[2].1);
        assert_eq!(lines[3].2, "last-without-newline");
        assert!(matches!(decode_line(b"  \r", 3), Line::Empty));
        assert!(matches!(decode_line(b"{\"ts\": 1}", 2), Line::Bad(_)));
        assert!(matches!(decode_line(b"\xff\xfe", 2), Line::Bad(_)));
    }

    /// Golden replay: the recorded attack raises exactly the expected alerts, with the
    /// expected contents, deterministically; malformed lines are skipped and counted.
    #[test]
    fn golden_attack_recording() {
        let mut out = Vec::new();
        let (skipped, stats) = replay(&args("attack.ndjson"), &mut out).unwrap();
        assert_eq!(skipped, 2);
        let text = String::from_utf8(out).unwrap();
        let alerts: Vec<crate::engine::Alert> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ids: Vec<&str> = alerts.iter().map(|a| a.rule.id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["machine-speed-credential-reuse", "ssh-key-then-ssh-fanout"],
            "{text}"
        );
        let a = &alerts[0];
        assert_eq!(a.host, "web-1");
        assert_eq!(a.destination_count, 3);
        assert_eq!(a.destinations, vec!["10.0.0.10", "10.0.0.11", "10.0.0.12"]);
        // The recording's loss record (stamped 100.25 s) arrives after the connect at 100.4 s;
        // the alert went out at the 100.3 s connect that completed it, before the loss was
        // known. (Live, loss records are stamped when the counters are read, after the events
        // drained before them, so they do not arrive "in the past" like this one.)
        assert!(!a.loss_overlap, "the loss record arrived after the alert");
        let cred = a.credential.as_ref().unwrap();
        assert_eq!(cred.watched, "/root/.ssh/id_ed25519");
        assert_eq!(
            cred.fingerprint.as_deref(),
            Some("hmac-sha256:00112233445566778899aabbccddeeff")
        );
        assert_eq!(
            a.identity.as_deref(),
            Some("exe:/usr/bin/ssh@root"),
            "derived identity"
        );
        assert!(a
            .evidence
            .iter()
            .any(|e| e.kind == crate::event::Kind::CredOpen));
        let py = a
            .evidence
            .iter()
            .find_map(|e| e.process.as_ref().filter(|p| p.tgid == 2001))
            .unwrap();
        assert_eq!(py.argv, vec!["python3", "worm.py", "--token=[REDACTED]"]);
        assert!(!text.contains("abc123"), "secrets never reach the output");
        assert_eq!(stats.alerts, 2);
        // Golden ids (derived from the recording's header, the rule, key and window through
        // the stable hashes of `engine::keys`): a toolchain or hash change must not move them.
        let got: Vec<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "3f3c1b9b-494b-8085-9351-9e30c6827915",
                "7f7647fd-dd73-8584-bdd3-08b49f2cc9f7"
            ]
        );
        // Deterministic: same output again.
        let mut again = Vec::new();
        replay(&args("attack.ndjson"), &mut again).unwrap();
        assert_eq!(String::from_utf8(again).unwrap(), text);
    }
}
