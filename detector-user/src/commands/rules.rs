//! `detector rules check|test|export [PATH…]`: load rules and report every problem with its
//! position; run the tests shipped beside the rules; write the rule set as Sigma rules.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::engine::fields::Policy;
use crate::engine::load::{load_rules, LoadError};
use crate::engine::rules::RuleSet;
use crate::engine::testing::{self, Status};
use crate::engine::{sigma, Engine, EngineOptions};

/// `detector rules …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RulesCommand {
    /// Load rules (the embedded pack plus PATHs) and report every problem as file:line:col.
    Check(RulesArgs),
    /// Run every rule test (the embedded pack's and those in PATHs); non-zero on failure.
    Test(RulesArgs),
    /// Write the loaded rule set as Sigma rules, one file per rule, and list what does not
    /// translate and why (docs/sigma.md).
    Export(ExportArgs),
}

/// Arguments of `export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// Directory to write the Sigma rules to (created if missing; existing `.yml` files of
    /// the same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub(crate) sigma: PathBuf,
    #[command(flatten)]
    pub(crate) rules: RulesArgs,
}

/// Arguments shared by `check` and `test`.
#[derive(Debug, clap::Args)]
pub(crate) struct RulesArgs {
    /// Rule files or directories, added to the embedded default pack.
    pub(crate) paths: Vec<PathBuf>,
    /// Leave out the embedded default pack.
    #[arg(long)]
    pub(crate) no_default_rules: bool,
}

fn load(args: &RulesArgs) -> anyhow::Result<Option<RuleSet>> {
    match load_rules(&args.paths, args.no_default_rules) {
        Ok(r) => {
            // Warnings do not reject the set: printed like errors, on stderr.
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            Ok(Some(r))
        }
        Err(LoadError::Invalid(errs)) => {
            for e in &errs {
                eprintln!("{e}");
            }
            eprintln!("{} problem(s); no rules loaded", errs.len());
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// `detector rules export --sigma DIR`: one `<rule id>.yml` per translated rule; the rules
/// that do not translate are listed with their reasons on stdout (not an error: the pack
/// uses features Sigma lacks on purpose).
fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let Some(rules) = load(&a.rules)? else {
        return Ok(ExitCode::FAILURE);
    };
    let out = sigma::export(&rules, &sigma::ExportOptions::default());
    std::fs::create_dir_all(&a.sigma).with_context(|| format!("creating {}", a.sigma.display()))?;
    for d in &out.documents {
        // Rule ids come from rule files: one that is not a plain file name (a separator, a
        // leading dot) is written under its Sigma id instead of escaping DIR.
        let plain = !d.rule.starts_with('.')
            && d.rule
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let stem = if plain { &d.rule } else { &d.sigma_id };
        let path = a.sigma.join(format!("{stem}.yml"));
        std::fs::write(&path, &d.yaml).with_context(|| format!("writing {}", path.display()))?;
        let kind = match d.kind {
            sigma::DocKind::Detection => "detection",
            sigma::DocKind::Correlation => "correlation",
        };
        println!("wrote {} ({kind})", path.display());
        for n in &d.notes {
            println!("  note: {n}");
        }
    }
    for s in &out.skipped {
        println!("not translated: {}", s.rule);
        for r in &s.reasons {
            println!("  {r}");
        }
    }
    println!(
        "{} rule(s) translated, {} not translated",
        out.documents.len(),
        out.skipped.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `detector rules …`.
pub(crate) fn run(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    let (args, test) = match cmd {
        RulesCommand::Check(a) => (a, false),
        RulesCommand::Test(a) => (a, true),
        RulesCommand::Export(a) => return export(a),
    };
    let Some(rules) = load(&args)? else {
        return Ok(ExitCode::FAILURE);
    };
    if !test {
        let disabled = if rules.disabled.is_empty() {
            String::new()
        } else {
            format!(
                " ({} disabled: {})",
                rules.disabled.len(),
                rules
                    .disabled
                    .iter()
                    .map(|(id, at)| format!("{id} at {at}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let warnings = match rules.warnings.len() {
            0 => String::new(),
            n => format!(", {n} warning(s)"),
        };
        println!(
            "{} rule(s){disabled}, {} override(s), {} test case(s){warnings}: OK",
            rules.rules.len(),
            rules.overrides,
            rules.tests.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let ids: Vec<String> = rules
        .rules
        .iter()
        .filter(|r| r.alert)
        .map(|r| r.id.clone())
        .collect();
    let mut engine = Engine::new(rules, Policy::default(), EngineOptions::default());
    let results = testing::run_all(&mut engine);
    let (mut passed, mut failed, mut changed, mut skipped) = (0, 0, 0, 0);
    for r in &results {
        match &r.status {
            Status::Pass => {
                passed += 1;
                println!("PASS {} / {}", r.rule, r.case);
            }
            Status::Fail(why) => {
                failed += 1;
                println!("FAIL {} / {}: {why}", r.rule, r.case);
            }
            Status::Changed(why) => {
                changed += 1;
                println!("CHANGED {} / {}: {why}", r.rule, r.case);
            }
            Status::Skipped(why) => {
                skipped += 1;
                println!("SKIP {} / {}: {why}", r.rule, r.case);
            }
        }
    }
    let untested: Vec<&String> = ids
        .iter()
        .filter(|id| !results.iter().any(|r| &r.rule == *id))
        .collect();
    for id in &untested {
        println!("UNTESTED {id}");
    }
    // Changed and skipped cases are what the overrides do, not failures; they are counted
    // only when there are any, so that a run without overrides reads as before.
    let mut summary = format!("{passed} passed, {failed} failed");
    if changed > 0 {
        summary.push_str(&format!(", {changed} changed by overrides"));
    }
    if skipped > 0 {
        summary.push_str(&format!(", {skipped} skipped (rule disabled)"));
    }
    println!("{summary}");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
