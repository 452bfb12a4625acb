//! `detector rules check|test [PATH…]`: load rules and report every problem with its
//! position; run the tests shipped beside the rules.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::engine::fields::Policy;
use crate::engine::load::{load_rules, LoadError};
use crate::engine::testing::{self, Status};
use crate::engine::{Engine, EngineOptions};

/// `detector rules …`
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Load rules (the embedded pack plus PATHs) and report every problem as file:line:col.
    Check(RulesArgs),
    /// Run every rule test (the embedded pack's and those in PATHs); non-zero on failure.
    Test(RulesArgs),
}

/// Arguments shared by `check` and `test`.
#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// Rule files or directories, added to the embedded default pack.
    pub paths: Vec<PathBuf>,
    /// Leave out the embedded default pack.
    #[arg(long)]
    pub no_default_rules: bool,
}

/// Runs `detector rules …`.
pub fn run(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    let (args, test) = match cmd {
        RulesCommand::Check(a) => (a, false),
        RulesCommand::Test(a) => (a, true),
    };
    let rules = match load_rules(&args.paths, args.no_default_rules) {
        Ok(r) => r,
        Err(LoadError::Invalid(errs)) => {
            for e in &errs {
                eprintln!("{e}");
            }
            eprintln!("{} problem(s); no rules loaded", errs.len());
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
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
        println!(
            "{} rule(s){disabled}, {} override(s), {} test case(s): OK",
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
