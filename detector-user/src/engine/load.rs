//! Building an engine from the embedded default pack plus files: the only part of the engine
//! that touches the file system, and only at construction.

use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir};

use super::fields::Policy;
use super::rules::RuleSet;
use crate::input::yaml::PosError;
use super::{Engine, EngineOptions};
use crate::policy::identities::{Baseline, IdentityConfig};
use crate::input::{self, Limits, SourceError};

/// The shipped rule pack (`rules/` at the workspace root), with its tests.
pub static DEFAULT_PACK: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../rules");

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
                    out.push((
                        format!("<embedded>/rules/{}", f.path().display()),
                        t.to_string(),
                    ));
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
pub fn file_sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, LoadError> {
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
pub fn load_identities(path: &Path) -> Result<IdentityConfig, LoadError> {
    let text = read(path, &input::IDENTITIES)?;
    IdentityConfig::parse(&path.display().to_string(), &text)
        .map_err(|e| LoadError::Invalid(vec![e]))
}

/// Loads the identities config and baseline (either optional) into a [`Policy`].
pub fn load_policy(
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

impl Engine {
    /// The engine `detector run` uses: the embedded default pack plus `extra` rule paths,
    /// with the identities config and baseline when given. Nothing changes on error.
    pub fn from_files(
        extra: &[PathBuf],
        identities: Option<&Path>,
        baseline: Option<&Path>,
        opts: EngineOptions,
    ) -> Result<Engine, LoadError> {
        let rules = load_rules(extra, false)?;
        let policy = load_policy(identities, baseline)?;
        Ok(Engine::new(rules, policy, opts))
    }
}
