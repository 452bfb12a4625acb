//! Running rule tests (`tests:` sections beside the rules): each case feeds its events to the
//! engine, reset to empty state and to the case's identities/baseline, and counts the alerts
//! of the rule under test.

use super::fields::Policy;
use super::rules::TestCase;
use super::Engine;
use crate::enrich::identity::{Baseline, IdentityConfig};
use crate::event::Event;

/// Outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// Rule id.
    pub rule: String,
    /// Case name.
    pub case: String,
    /// `None` when passed; otherwise why not.
    pub failure: Option<String>,
}

fn policy(case: &TestCase) -> Result<Policy, String> {
    let mut p = Policy::default();
    if let Some(n) = &case.identities {
        p.identities = IdentityConfig::from_node(n).map_err(|e| e.to_string())?;
    }
    if let Some(n) = &case.baseline {
        p.baseline = Baseline::from_node(n).map_err(|e| e.to_string())?;
    }
    Ok(p)
}

/// Runs one case on `engine` (state is reset first, so cases are independent).
pub fn run_case(engine: &mut Engine, case: &TestCase) -> CaseResult {
    let result = |failure| CaseResult { rule: case.rule.clone(), case: case.name.clone(), failure };
    match policy(case) {
        Ok(p) => engine.reset(p),
        Err(e) => return result(Some(e)),
    }
    let mut alerts = Vec::new();
    for (pos, j) in &case.events {
        let ev: Event = match serde_json::from_value(j.clone()) {
            Ok(e) => e,
            Err(e) => return result(Some(format!("{pos}: bad test event: {e}"))),
        };
        engine.process(&ev, &mut alerts);
    }
    engine.finish(&mut alerts);
    let n = alerts.iter().filter(|a| a.rule.id == case.rule).count();
    if n == case.expect {
        result(None)
    } else {
        result(Some(format!("{}: expected {} alert(s) of `{}`, got {n}", case.pos, case.expect, case.rule)))
    }
}

/// Runs every test case found with the engine's rules.
pub fn run_all(engine: &mut Engine) -> Vec<CaseResult> {
    let cases = engine.rules().tests.clone();
    cases.iter().map(|c| run_case(engine, c)).collect()
}
