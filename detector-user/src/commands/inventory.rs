//! `detector inventory`: the credential ledger, read-only (the agent may be writing it).
//!
//! - `detector inventory [FILTERS]`: every credential passing the filters; a table on a
//!   terminal, NDJSON (one record per line, docs/ledger.md) otherwise or with `--json`.
//! - `detector inventory show PATH|ID`: one credential's whole story (who owns it, who used it
//!   with which programs, what it reached, every rotation and who wrote it): who depends on it
//!   before it is rotated. Text on a terminal, JSON otherwise.
//! - `detector inventory graph -o FILE.svg [FILTERS]`: identity → credential → destination.

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};

use crate::{
    config::AgentConfig,
    ledger::{
        self,
        query::{glob, CredentialRecord, Filter, Records},
        store,
    },
};

/// Which ledger to read.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Source {
    /// The ledger file [default: the config's `ledger.path`, else `<state dir>/ledger.db`].
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) db: Option<PathBuf>,
    /// The agent's state dir [default: the config's `run.state_dir`, else /var/lib/detector].
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) state_dir: Option<PathBuf>,
    /// The agent's config (for `ledger.path` and `run.state_dir`).
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// NDJSON (JSON for `show`) even on a terminal.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// Filters (all given must hold).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct FilterArgs {
    /// Used by two or more identities (here or through a copy of its content).
    #[arg(long)]
    pub(crate) shared: bool,
    /// No owner known (none declared, none derivable).
    #[arg(long)]
    pub(crate) unowned: bool,
    /// Used by an identity that does not own it.
    #[arg(long)]
    pub(crate) non_owner: bool,
    /// Not rotated (nor modified) for at least DAYS.
    #[arg(long, value_name = "DAYS")]
    pub(crate) stale: Option<u64>,
    /// Not used for at least DAYS (since first seen when never used).
    #[arg(long, value_name = "DAYS")]
    pub(crate) unused: Option<u64>,
    /// Content a rotation replaced, still read from a copy.
    #[arg(long)]
    pub(crate) stale_copy: bool,
    /// Used by an identity matching this glob (`exe:*@alice`, `unit:payments.service`).
    #[arg(long, value_name = "ID")]
    pub(crate) identity: Option<String>,
    /// Path (or another name it was reached by) matching this glob.
    #[arg(long, value_name = "PATH")]
    pub(crate) credential: Option<String>,
    /// Of this category (`ssh_key`, `cloud`, `kube`, `k8s_token`, `token`, `secret`, `shadow`).
    #[arg(long)]
    pub(crate) category: Option<String>,
    /// Include credentials no longer on the host.
    #[arg(long)]
    pub(crate) gone: bool,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            shared: self.shared,
            unowned: self.unowned,
            non_owner: self.non_owner,
            stale_days: self.stale,
            unused_days: self.unused,
            stale_copy: self.stale_copy,
            identity: self.identity.as_deref().map(glob),
            credential: self.credential.as_deref().map(glob),
            category: self.category.clone(),
            include_gone: self.gone,
        }
    }
}

/// Arguments of `detector inventory`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct InventoryArgs {
    /// `show` or `graph`; none: the list.
    #[command(subcommand)]
    pub(crate) cmd: Option<InventoryCmd>,
    /// Where the ledger is, output format.
    #[command(flatten)]
    pub(crate) source: Source,
    /// Filters of the list.
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum InventoryCmd {
    /// One credential's whole story (by path, another name it was reached by, or ledger id).
    Show {
        /// Path or id.
        key: String,
    },
    /// Identity → credential → destination as SVG.
    Graph {
        /// The SVG file to write.
        #[arg(short = 'o', long = "output", value_name = "FILE.svg")]
        output: PathBuf,
        /// Which credentials to draw.
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// The ledger file: `--db`, else the config's `ledger.path`, else `<state dir>/ledger.db`.
fn ledger_path(s: &Source) -> anyhow::Result<PathBuf> {
    if let Some(p) = &s.db {
        return Ok(p.clone());
    }
    let cfg = match &s.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    if let Some(p) = cfg.ledger.path {
        return Ok(p);
    }
    let dir = s
        .state_dir
        .clone()
        .or(cfg.run.state_dir)
        .unwrap_or_else(|| PathBuf::from("/var/lib/detector"));
    Ok(ledger::default_path(&dir))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs `detector inventory`. A reader that goes away (`| head`) ends it quietly.
pub(crate) fn run(args: InventoryArgs) -> anyhow::Result<ExitCode> {
    match inventory(args) {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .map(|e| e.kind())
                .or_else(|| {
                    e.downcast_ref::<serde_json::Error>()
                        .and_then(|e| e.io_error_kind())
                })
                == Some(std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

fn inventory(args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let path = ledger_path(&args.source)?;
    let conn = store::open_read_only(&path)?;
    let model = store::load(&conn, &path)?;
    let policy = store::load_policy(&conn);
    drop(conn);
    let now = now_ns();
    let recs = Records::new(&model, &policy, now);
    let terminal = std::io::stdout().is_terminal() && !args.source.json;
    let mut out = std::io::stdout().lock();
    match args.cmd {
        None => {
            let list = recs.list(&args.filter.filter());
            if terminal {
                writeln!(out, "{}", table(&list, now))?;
                writeln!(
                    out,
                    "{} credentials ({} in the ledger) — `detector inventory show PATH|ID` for one",
                    list.len(),
                    model.credentials.len()
                )?;
            } else {
                for r in &list {
                    serde_json::to_writer(&mut out, r)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        Some(InventoryCmd::Show { key }) => {
            let Some(r) = recs.show(&key) else {
                anyhow::bail!("{}: no credential {key:?} in the ledger", path.display());
            };
            if terminal {
                out.write_all(story(&r, now).as_bytes())?;
            } else {
                serde_json::to_writer_pretty(&mut out, &r)?;
                out.write_all(b"\n")?;
            }
        }
        Some(InventoryCmd::Graph { output, filter }) => {
            let list = recs.list(&filter.filter());
            let svg = ledger::graph::svg(&list);
            std::fs::write(&output, svg).with_context(|| format!("{}", output.display()))?;
            writeln!(
                out,
                "{}: {} credentials drawn",
                output.display(),
                list.len().min(ledger::graph::MAX_NODES)
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// "3d ago", "5h ago", "never".
fn ago(ts: Option<u64>, now: u64) -> String {
    let Some(ts) = ts else {
        return "never".into();
    };
    let d = now.saturating_sub(ts) / 1_000_000_000;
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86_400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// A date (UTC, seconds).
fn date(ts: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ts)).to_string()
}

fn flags(r: &CredentialRecord) -> String {
    let f = &r.flags;
    let mut v = Vec::new();
    for (on, name) in [
        (f.shared, "shared"),
        (f.non_owner, "non-owner"),
        (f.unowned, "unowned"),
        (f.past_rotation, "past-rotation"),
        (f.stale_copy, "stale-copy"),
        (f.unused, "unused"),
        (!r.present, "gone"),
    ] {
        if on {
            v.push(name);
        }
    }
    v.join(", ")
}

fn table(list: &[CredentialRecord], now: u64) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(vec![
            "ID",
            "CREDENTIAL",
            "CATEGORY",
            "OWNER",
            "AGE",
            "USED BY",
            "LAST USE",
            "REACHES",
            "FLAGS",
        ]);
    for r in list {
        let users = match r.identities.len() {
            0 => "-".to_string(),
            1 => r.identities[0].identity.clone(),
            n => format!("{} (+{})", r.identities[0].identity, n - 1),
        };
        let mut dests: Vec<(&str, u16)> =
            r.reach.iter().map(|x| (x.addr.as_str(), x.port)).collect();
        dests.sort_unstable();
        dests.dedup();
        t.add_row(vec![
            r.id.to_string(),
            r.path.clone(),
            r.category.clone(),
            r.owner.clone().unwrap_or_else(|| "-".into()),
            r.age_days.map_or("-".into(), |a| format!("{a}d")),
            users,
            ago(r.last_used, now),
            dests.len().to_string(),
            flags(r),
        ]);
    }
    t
}

/// One credential's story, for a person.
fn story(r: &CredentialRecord, now: u64) -> String {
    let mut s = String::new();
    let line = |s: &mut String, t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line(
        &mut s,
        format!(
            "{}  (ledger id {}, {}, dev {} inode {}, {})",
            r.path,
            r.id,
            r.category,
            r.dev,
            r.ino,
            if r.present {
                "present"
            } else {
                "GONE from the host"
            }
        ),
    );
    if !r.names.is_empty() {
        line(&mut s, format!("  also reached as: {}", r.names.join(", ")));
    }
    let src = r
        .owner_source
        .map(|o| o.as_str().to_string())
        .unwrap_or_default();
    line(
        &mut s,
        format!(
            "  owner: {}{}{}",
            r.owner.as_deref().unwrap_or("unknown"),
            if src.is_empty() {
                String::new()
            } else {
                format!(" ({src})")
            },
            r.contact
                .as_deref()
                .map(|c| format!("   contact: {c}"))
                .unwrap_or_default()
        ),
    );
    line(
        &mut s,
        format!(
            "  modified: {}   age {} (rotation policy {} days)",
            r.mtime.map_or("unknown".into(), date),
            r.age_days.map_or("unknown".into(), |a| format!("{a} days")),
            r.rotation_policy_days
        ),
    );
    line(
        &mut s,
        format!(
            "  fingerprint: {} ({} seen)   rotations: {}{}   opened for writing: {}",
            r.fingerprint.as_deref().unwrap_or("not read yet"),
            r.fingerprints.len(),
            r.rotations,
            r.last_rotation
                .map(|t| format!(", last {}", date(t)))
                .unwrap_or_default(),
            r.writes
        ),
    );
    let f = flags(r);
    if !f.is_empty() {
        line(&mut s, format!("  findings: {f}"));
    }
    line(
        &mut s,
        format!(
            "  used by {} identities, {} uses, last {}{}:",
            r.identities.len(),
            r.uses,
            ago(r.last_used, now),
            if r.dropped_uses > 0 {
                format!(" ({} older uses kept as a count only)", r.dropped_uses)
            } else {
                String::new()
            }
        ),
    );
    for u in &r.identities {
        let owner = match u.owner {
            Some(true) => "owner",
            Some(false) => "NOT OWNER",
            None => "ownership unknown",
        };
        line(
            &mut s,
            format!(
                "    {}  [{owner}]  {} uses, {} → {}; last: pid {} {}{}",
                u.identity,
                u.count,
                date(u.first_seen),
                date(u.last_seen),
                u.last_process.tgid,
                u.last_process.exe,
                u.last_process
                    .user
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_else(|| format!(" (uid {})", u.last_process.uid))
            ),
        );
        for p in &u.programs {
            line(
                &mut s,
                format!(
                    "      {}{}  ×{}",
                    p.parent
                        .as_deref()
                        .map(|x| format!("{x} → "))
                        .unwrap_or_default(),
                    p.exe,
                    p.count
                ),
            );
        }
    }
    if !r.reach.is_empty() || r.dropped_reach > 0 {
        line(&mut s, "  reaches (connections right after a use):".into());
        for x in &r.reach {
            line(
                &mut s,
                format!(
                    "    {}{}  by {}  ×{}, last {}",
                    crate::engine::fields::dst_string(&x.addr, x.port),
                    x.name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    x.identity,
                    x.count,
                    date(x.last_seen)
                ),
            );
        }
        if r.dropped_reach > 0 {
            line(
                &mut s,
                format!(
                    "    … and {} older contacts kept as a count only",
                    r.dropped_reach
                ),
            );
        }
    }
    if !r.changes.is_empty() {
        line(&mut s, "  rotations observed:".into());
        for c in &r.changes {
            let by = c
                .writer
                .as_ref()
                .map(|w| format!(" by {} ({}, uid {})", w.identity, w.exe, w.uid))
                .unwrap_or_else(|| " (writer not seen)".into());
            line(
                &mut s,
                format!("    {} {}{by}", date(c.ts), c.kind.as_str()),
            );
        }
    }
    if let Some(w) = &r.last_write {
        line(
            &mut s,
            format!(
                "  last opened for writing {} by {} ({}, uid {}), no new content read since",
                date(w.ts),
                w.identity,
                w.exe,
                w.uid
            ),
        );
    }
    s
}
