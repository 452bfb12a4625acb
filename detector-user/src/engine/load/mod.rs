//! Loading a rule set, in stages over the whole set, each its own module:
//!
//! 1. [`parse`]: the sources' bytes and YAML, bounded ([`parse_sources`]);
//! 2. [`parse`]: the documents' top-level shape — lists, rules by id, tests, overrides
//!    ([`collect`]);
//! 3. [`overrides`]: rules rewritten as their overrides say;
//! 4. [`compile`]: references to lists and rules resolved, conditions and correlations
//!    compiled (regexes, globs, CIDRs once), disabled rules too (then left out);
//! 5. [`index`]: rules by event kind and literal, each rule's consumers;
//!
//! and [`warnings`] over the result (an unused list, a building block nothing references, an
//! exception that can never match), [`cases`] for the `tests:` sections. Every problem is
//! collected with its `file:line:col`; a set with any problem is rejected whole, so a bad edit
//! never half-replaces working rules. Rule language: `docs/rules.md`.
//!
//! Also here: the rule files and the embedded default pack read from disk (the only part of
//! the engine that touches the file system, and only at construction).

mod cases;
mod compile;
mod index;
pub(crate) mod overrides;
mod parse;
mod warnings;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir};

use super::alert::Severity;
use super::cond::{self, CmpOp, Cond, Lists};
use super::fields::{Field, Policy};
use super::rules::{
    kind_of, Body, CorrType, Correlation, Rule, RuleSet, TestCase, KINDS, MAX_STEPS,
};
use crate::event::Kind;
use crate::input::yaml::{self, Node, Pos, PosError};
use crate::input::{self, excerpt, Limits, SourceError};
use crate::policy::identities::{Baseline, IdentityConfig};
use cases::parse_tests;
use compile::{apply_generate, compile_rule};
pub(crate) use parse::{collect, duration, parse_sources, Collected, RawRule};
use parse::{CORR_KEYS, RULE_KEYS};

/// How the embedded pack's files are named in positions.
const EMBEDDED: &str = "<embedded>/rules/";

/// The shipped rule pack (`rules/` at the workspace root), with its tests.
pub(crate) static DEFAULT_PACK: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../rules");

/// Errors while loading rules or configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read (the cause is part of the message, printed once).
    #[error("{path}: {error}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        error: std::io::Error,
    },
    /// Problems in rule or config files, each positioned.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<PosError>),
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// The embedded pack as `(name, text)` sources, in a stable order.
pub fn embedded_sources() -> Vec<(String, String)> {
    fn walk(d: &Dir<'static>, out: &mut Vec<(String, String)>) {
        for f in d.files() {
            if is_yaml(f.path()) {
                if let Some(t) = f.contents_utf8() {
                    out.push((format!("{EMBEDDED}{}", f.path().display()), t.to_string()));
                }
            }
        }
        for s in d.dirs() {
            walk(s, out);
        }
    }
    let mut out = Vec::new();
    walk(&DEFAULT_PACK, &mut out);
    out.sort();
    out
}

impl From<SourceError> for LoadError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Io { path, error } => LoadError::Io { path, error },
            SourceError::Invalid(e) => LoadError::Invalid(vec![e]),
        }
    }
}

/// Reads one file of a kind bounded by `limits` (see [`crate::input::read_source`]).
fn read(p: &Path, limits: &Limits) -> Result<String, LoadError> {
    Ok(input::read_source(p, limits)?)
}

/// Reads rule files: each path is a YAML file or a directory searched recursively for
/// `*.yaml`/`*.yml`. Each file is bounded by [`input::RULES`]; problems with the bytes of
/// several files are all reported.
pub(crate) fn file_sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, LoadError> {
    fn walk(
        p: &Path,
        top: bool,
        out: &mut Vec<(String, String)>,
        errs: &mut Vec<PosError>,
    ) -> Result<(), LoadError> {
        let io = |error| LoadError::Io {
            path: p.display().to_string(),
            error,
        };
        let meta = std::fs::metadata(p).map_err(io)?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, false, out, errs)?;
            }
        } else if top || is_yaml(p) {
            match read(p, &input::RULES) {
                Ok(text) => out.push((p.display().to_string(), text)),
                Err(LoadError::Invalid(e)) => errs.extend(e),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for p in paths {
        walk(p, true, &mut out, &mut errs)?;
    }
    if !errs.is_empty() {
        return Err(LoadError::Invalid(errs));
    }
    Ok(out)
}

/// Loads the embedded pack (unless `without_defaults`) plus `extra` rule paths.
pub fn load_rules(extra: &[PathBuf], without_defaults: bool) -> Result<RuleSet, LoadError> {
    let mut sources = if without_defaults {
        Vec::new()
    } else {
        embedded_sources()
    };
    sources.extend(file_sources(extra)?);
    RuleSet::load(&sources).map_err(LoadError::Invalid)
}

/// Reads an identities file (for [`crate::policy::identities::IdentityResolver::new`]; the
/// engine's [`Policy`] keeps its own copy from [`load_policy`]).
pub(crate) fn load_identities(path: &Path) -> Result<IdentityConfig, LoadError> {
    let text = read(path, &input::IDENTITIES)?;
    IdentityConfig::parse(&path.display().to_string(), &text)
        .map_err(|e| LoadError::Invalid(vec![e]))
}

/// Loads the identities config and baseline (either optional) into a [`Policy`].
pub(crate) fn load_policy(
    identities: Option<&Path>,
    baseline: Option<&Path>,
) -> Result<Policy, LoadError> {
    let mut pol = Policy::default();
    if let Some(p) = identities {
        pol.identities = load_identities(p)?;
    }
    if let Some(p) = baseline {
        pol.baseline = Baseline::parse(&p.display().to_string(), &read(p, &input::BASELINE)?)
            .map_err(|e| LoadError::Invalid(vec![e]))?;
    }
    Ok(pol)
}

impl RuleSet {
    /// Loads rules (and tests) from `(file name, text)` sources. On any problem returns all
    /// problems found, each positioned.
    ///
    /// Stages, each over the whole set: [`parse_sources`] (bytes and YAML, bounded) →
    /// [`collect`] (top-level shape: lists, rules by id, tests, overrides) →
    /// [`overrides::apply`] (rules rewritten as their overrides say) → compile (references
    /// resolved; regexes, globs, CIDRs built once; disabled rules too, then left out) → index.
    pub fn load(sources: &[(String, String)]) -> Result<RuleSet, Vec<PosError>> {
        let mut errs = Vec::new();
        let docs = parse_sources(sources, &mut errs);
        let Collected {
            lists,
            mut raws,
            tests: test_nodes,
            overrides: override_nodes,
        } = collect(&docs, &mut errs);
        let applied = overrides::apply(&mut raws, &override_nodes, &mut errs);
        let index: HashMap<&str, usize> = raws
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        // Resolve references and compile, disabled rules included (a rule someone may enable
        // later is checked now).
        let mut warns = Vec::new();
        let mut compiled = Vec::with_capacity(raws.len());
        for raw in &raws {
            match compile_rule(raw, &lists, &index, &raws, &mut errs, &mut warns) {
                Ok(r) => compiled.push(r),
                Err(e) => errs.push(e),
            }
        }
        warnings::unused_lists(&lists, &mut warns);
        let mut set = RuleSet {
            overrides: applied.count,
            ..RuleSet::default()
        };
        if errs.is_empty() {
            let kept_raws = keep_enabled(&mut set, compiled, &raws, &applied);
            apply_generate(&mut set.rules, &kept_raws, &mut errs);
        }
        for t in test_nodes {
            if let Err(e) = parse_tests(t, &index, &applied, &mut set.tests) {
                errs.push(e);
            }
        }
        if !errs.is_empty() {
            sort_positioned(&mut errs);
            return Err(errs);
        }
        set.disabled = applied.disabled.into_iter().collect();
        set.disabled.sort_by(|a, b| a.0.cmp(&b.0));
        // Stage 4: index.
        set.build_index();
        warnings::idle_rules(&set, &mut warns);
        sort_positioned(&mut warns);
        set.warnings = warns;
        Ok(set)
    }
}

/// Puts the enabled rules of `compiled` (aligned with `raws`) into `set`, leaving the
/// disabled ones out; correlation steps follow their rules' new places (no enabled correlation
/// references a disabled rule: `overrides::apply` checked). Returns the kept rules' raw forms,
/// aligned with `set.rules`.
fn keep_enabled<'r, 'a>(
    set: &mut RuleSet,
    compiled: Vec<Rule>,
    raws: &'r [RawRule<'a>],
    applied: &overrides::Applied,
) -> Vec<&'r RawRule<'a>> {
    let keep: Vec<bool> = raws
        .iter()
        .map(|r| !applied.disabled.contains_key(&r.id))
        .collect();
    let mut new_at = vec![usize::MAX; raws.len()];
    let mut n = 0;
    for (i, &k) in keep.iter().enumerate() {
        if k {
            new_at[i] = n;
            n += 1;
        }
    }
    let kept_raws: Vec<&RawRule<'_>> = raws
        .iter()
        .zip(&keep)
        .filter_map(|(r, &k)| k.then_some(r))
        .collect();
    for (mut r, k) in compiled.into_iter().zip(&keep) {
        if !k {
            continue;
        }
        if let Body::Correlation(c) = &mut r.body {
            for s in &mut c.steps {
                *s = new_at[*s];
            }
        }
        set.rules.push(r);
    }
    kept_raws
}

/// Sorts problems by file and position.
fn sort_positioned(v: &mut [PosError]) {
    v.sort_by(|a, b| {
        (&a.pos.file, a.pos.line, a.pos.col).cmp(&(&b.pos.file, b.pos.line, b.pos.col))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<RuleSet, Vec<PosError>> {
        RuleSet::load(&[("r.yaml".to_string(), src.to_string())])
    }

    #[test]
    fn loads_and_indexes() {
        let s = load(
            "rules:\n  - id: a\n    title: A\n    severity: low\n    alert: false\n    condition: {kind: connect}\n  - id: b\n    title: B\n    severity: high\n    attack: [T1046]\n    correlation: {type: value_count, rules: [a], field: net.dst_port, timespan: 10s, condition: {gte: 3}}\n",
        )
        .unwrap();
        assert_eq!(s.candidates(Kind::Connect).collect::<Vec<_>>(), vec![0]);
        assert_eq!(s.candidates(Kind::Exec).count(), 0);
        assert_eq!(s.consumers[0], vec![(1, 0)]);
        assert_eq!(s.max_timespan(), 10_000_000_000);
    }

    #[test]
    fn every_error_is_reported_with_position() {
        let errs = load(
            "rules:\n  - id: a\n    title: A\n    severity: loud\n    condition: {kind: connect}\n  - id: b\n    title: B\n    severity: high\n    correlation: {type: value_count, rules: [zz], field: net.dst_port, timespan: 10s}\n  - id: c\n    title: C\n    severity: high\n    bogus: 1\n    condition: {}\n  - id: d\n    title: D\n    severity: high\n    correlation: {type: event_count, rules: [a], timespan: soon}\n",
        )
        .unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(msgs[0].starts_with("r.yaml:4:15: severity"), "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("r.yaml:9:") && m.contains("unknown rule `zz`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("r.yaml:13:5: unknown field `bogus`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("bad duration `soon`")),
            "{msgs:?}"
        );
        // Several problems in one rule are all reported.
        let errs = load("rules:\n  - id: a\n    title: A\n    severity: low\n    colour: red\n    condition:\n      net.dst_addr: {cidr: 10.0.0.0/99}\n      process.exe: {regex: '(('}\n      any: [{process.exe: {in: ['@nolist']}}]\n").unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(
            msgs[0].starts_with("r.yaml:5:5: unknown field `colour`"),
            "{msgs:?}"
        );
        assert!(msgs[1].starts_with("r.yaml:7:28: bad CIDR"), "{msgs:?}");
        assert!(msgs[2].starts_with("r.yaml:8:28: bad regex"), "{msgs:?}");
        assert!(
            msgs[3].starts_with("r.yaml:9:33: unknown list `nolist`"),
            "{msgs:?}"
        );
    }

    /// A directory of many small alias bombs: each file under its own limit, the set bounded
    /// by the shared node budget.
    #[test]
    fn many_files_share_one_node_budget() {
        let bomb = "a0: &a0 [x]\na1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\na2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\na3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\na4: [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n";
        let sources: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("f{i}.yaml"), bomb.to_string()))
            .collect();
        let errs = RuleSet::load(&sources).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.msg.contains("nodes in the rule set (all files)")),
            "{errs:?}"
        );
    }

    #[test]
    fn rejects_unsupported_features() {
        let e = load("rules:\n  - id: a\n    title: A\n    severity: low\n    correlation: {type: value_sum, rules: [a], timespan: 1s}\n").unwrap_err();
        assert!(e[0].msg.contains("not supported"));
        let e = load("rules:\n  - id: a\n    title: A\n    severity: low\n    condition: {kind: connect}\n  - id: b\n    title: B\n    severity: low\n    correlation: {type: event_count, rules: [a], timespan: 1s}\n  - id: c\n    title: C\n    severity: low\n    correlation: {type: event_count, rules: [b], timespan: 1s}\n").unwrap_err();
        assert!(e[0].msg.contains("chaining"));
        // A step is kept in a byte: more rules than that are refused, not wrapped around.
        let refs = vec!["a"; MAX_STEPS + 1].join(", ");
        let e = load(&format!("rules:\n  - id: a\n    title: A\n    severity: low\n    condition: {{kind: connect}}\n  - id: b\n    title: B\n    severity: low\n    correlation: {{type: temporal_ordered, rules: [{refs}], timespan: 1s}}\n")).unwrap_err();
        assert!(
            e[0].msg.contains("at most 255") && e[0].to_string().starts_with("r.yaml:9:"),
            "{e:?}"
        );
        let refs = vec!["a"; MAX_STEPS].join(", ");
        assert!(load(&format!("rules:\n  - id: a\n    title: A\n    severity: low\n    condition: {{kind: connect}}\n  - id: b\n    title: B\n    severity: low\n    correlation: {{type: temporal_ordered, rules: [{refs}], timespan: 1s}}\n")).is_ok());
    }

    #[test]
    fn alias_errors_are_positioned() {
        let base = "rules:\n  - id: a\n    title: A\n    severity: low\n    condition: {kind: connect}\n  - id: b\n    title: B\n    severity: low\n    condition: {kind: accept}\n  - id: c\n    title: C\n    severity: low\n    correlation:\n      type: temporal\n      rules: [a, b]\n      timespan: 1s\n";
        let cases = [
            ("      group-by: [peer]\n      aliases:\n        peer: {a: net.dst_addr}\n", "names no field for rule `b`", 19),
            ("      group-by: [peer]\n      aliases:\n        peer: {a: net.dst_addr, b: net.src_port}\n", "different types", 19),
            ("      group-by: [peer]\n      aliases:\n        peer: {a: net.dst_addr, zz: net.src_addr}\n", "`zz` is not one of", 19),
            ("      group-by: [process.identity]\n      aliases:\n        peer: {a: net.dst_addr, b: net.src_addr}\n", "not used in `group-by`", 19),
            ("      group-by: [net.dst_addr]\n      aliases:\n        net.dst_addr: {a: net.dst_addr, b: net.src_addr}\n", "hides the event field", 19),
        ];
        for (tail, want, line) in cases {
            let e = load(&format!("{base}{tail}")).unwrap_err();
            assert!(e[0].msg.contains(want), "{want}: {e:?}");
            assert_eq!(e[0].pos.line, line, "{want}: {e:?}");
        }
    }
}
