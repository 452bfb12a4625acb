//! The compiled rule set: rules (event rules and correlations), their tests, the indexes the
//! engine looks events up in. Loading it (parse → collect → overrides → compile → index, with
//! warnings) is [`super::load`]; the rule language is `docs/rules.md`.

use super::alert::Severity;
use super::cond::{CmpOp, Cond};
use super::fields::Field;
use super::index::LiteralIndex;
use crate::event::Kind;
use crate::input::yaml::{Node, Pos, PosError};

/// Correlation types (Sigma correlation semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorrType {
    /// Number of matched events per group in the window.
    EventCount,
    /// Number of distinct values of `field` per group in the window.
    ValueCount,
    /// Referenced rules all matched within the window, any order (condition: how many); with
    /// `field`, every rule but the last matched and the condition counts distinct values of
    /// `field` among the last rule's matches.
    Temporal,
    /// Referenced rules matched in order within the window; with `field`, the condition counts
    /// distinct values of `field` among the last rule's matches after the chain.
    TemporalOrdered,
}

/// Most rules one correlation may reference.
pub(crate) const MAX_STEPS: usize = 255;

/// A compiled correlation.
#[derive(Debug)]
pub struct Correlation {
    /// Type.
    pub ty: CorrType,
    /// Indices of the referenced (event) rules, in order.
    pub steps: Vec<usize>,
    /// Group-by fields, as the first referenced rule names them (alert output uses these).
    pub group_by: Vec<Field>,
    /// Group-by fields per step (`steps[i]` → `step_group_by[i]`): equal to `group_by` unless
    /// Sigma `aliases` map one group key onto differently named fields of different rules.
    pub(crate) step_group_by: Vec<Vec<Field>>,
    /// Sigma `generate`: the referenced rules also raise their own alerts.
    pub(crate) generate: bool,
    /// Sliding window length (ns). An event exactly `timespan` after another is in its window.
    pub(crate) timespan: u64,
    /// Field counted distinctly.
    pub(crate) field: Option<Field>,
    /// Condition on the count (ANDed).
    pub(crate) condition: Vec<(CmpOp, i64)>,
    /// Machine speed: every gap between consecutive counted events must be ≤ this (ns).
    pub(crate) max_gap: Option<u64>,
    /// When the group's identity has a configured `fan_out_budget`, it replaces the threshold
    /// (`gt budget`).
    pub(crate) budget: bool,
    /// Adding events can only turn the condition from false to true (`gt`/`gte`, or a
    /// budget): it may then fire on the event that completes it.
    pub monotone: bool,
    /// The counted field is a network one (`net.…`): display names are kept per value.
    pub(crate) net_field: bool,
    /// Its groups can share events (`process.tree` grouping of a temporal type: an event
    /// joins the group of every ancestor's tree), so firings of several groups can be one
    /// incident.
    pub(crate) merges: bool,
}

/// What a rule does.
#[derive(Debug)]
pub enum Body {
    /// Matches single events.
    Event {
        /// Condition including exceptions.
        cond: Cond,
        /// Kinds it can match (`None`: any).
        kinds: Option<Vec<Kind>>,
    },
    /// Correlates matches of event rules.
    Correlation(Correlation),
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// Title.
    pub(crate) title: String,
    /// Severity.
    pub(crate) severity: Severity,
    /// ATT&CK technique ids.
    pub(crate) attack: Vec<String>,
    /// Whether matches raise alerts (false for building blocks used by correlations).
    pub alert: bool,
    /// Suppression interval (ns) per group key.
    pub suppress: u64,
    /// Suppression/group key fields of an event rule's alerts.
    pub group_by: Vec<Field>,
    /// Where it was defined.
    pub(crate) pos: Pos,
    /// Body.
    pub body: Body,
}

/// One rule test case.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// Rule under test.
    pub rule: String,
    /// Case name.
    pub name: String,
    /// Expected number of alerts of `rule`.
    pub(crate) expect: usize,
    /// Events (JSON, ready to deserialize), with their positions for messages.
    pub events: Vec<(Pos, serde_json::Value)>,
    /// Where the case is.
    pub(crate) pos: Pos,
    /// Identities config for this test (`identities:` beside `rule:`), as YAML.
    pub(crate) identities: Option<Node>,
    /// Baseline for this test, as YAML (`baseline:` mapping identity → peers).
    pub(crate) baseline: Option<Node>,
    /// The rule is disabled (here): the case is not run.
    pub(crate) disabled: Option<Pos>,
    /// An override in another file than the test's changes the rule (here): the case was
    /// written for the rule without it, so a different outcome is that override's effect
    /// (reported, not a failure).
    pub(crate) changed_by: Option<Pos>,
}

/// A loaded rule set.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Rules, event rules and correlations.
    pub rules: Vec<Rule>,
    /// Event rules per kind (index = `Kind as usize`), then rules for any kind.
    pub(crate) by_kind: Vec<Vec<usize>>,
    /// For each rule, the correlations consuming it: (correlation index, step).
    pub(crate) consumers: Vec<Vec<(usize, usize)>>,
    /// Tests found beside the rules.
    pub tests: Vec<TestCase>,
    /// Event rules by kind and literal, so an event evaluates only the conditions that can
    /// hold for it.
    pub(crate) index: LiteralIndex,
    /// Rules defined but disabled (by their own `enabled: false` or an override), with where,
    /// sorted by id: validated, then left out of `rules`.
    pub(crate) disabled: Vec<(String, Pos)>,
    /// Overrides applied (`overrides:` entries over all files).
    pub(crate) overrides: usize,
    /// Warnings: valid but ineffective parts (an unused list, a building block nothing
    /// references, an exception that can never match), positioned, sorted.
    pub(crate) warnings: Vec<PosError>,
}

/// All kinds, in declaration order (their index is `Kind as usize`).
pub(crate) const KINDS: [Kind; 10] = [
    Kind::Exec,
    Kind::Fork,
    Kind::Exit,
    Kind::Connect,
    Kind::ConnectResult,
    Kind::Accept,
    Kind::CredOpen,
    Kind::CredRead,
    Kind::CredWrite,
    Kind::Loss,
];

pub(crate) fn kind_of(s: &str) -> Option<Kind> {
    KINDS.iter().copied().find(|k| k.as_str() == s)
}

impl RuleSet {
    /// The rules `keep` accepts, plus the rules their correlations reference, re-indexed
    /// (e.g. the part of a set that translates to Sigma, to compare engines on the same
    /// rules). Tests of rules left out are dropped.
    pub fn retain(mut self, keep: impl Fn(&Rule) -> bool) -> RuleSet {
        let mut kept: Vec<bool> = self.rules.iter().map(&keep).collect();
        for (i, r) in self.rules.iter().enumerate() {
            if let (true, Body::Correlation(c)) = (kept[i], &r.body) {
                for &s in &c.steps {
                    kept[s] = true;
                }
            }
        }
        let mut new_index = vec![usize::MAX; self.rules.len()];
        let mut n = 0;
        for (i, k) in kept.iter().enumerate() {
            if *k {
                new_index[i] = n;
                n += 1;
            }
        }
        let rules = std::mem::take(&mut self.rules);
        self.rules = rules
            .into_iter()
            .zip(&kept)
            .filter(|(_, k)| **k)
            .map(|(mut r, _)| {
                if let Body::Correlation(c) = &mut r.body {
                    for s in &mut c.steps {
                        *s = new_index[*s];
                    }
                }
                r
            })
            .collect();
        let ids: std::collections::HashSet<&str> =
            self.rules.iter().map(|r| r.id.as_str()).collect();
        let tests = std::mem::take(&mut self.tests)
            .into_iter()
            .filter(|t| ids.contains(t.rule.as_str()))
            .collect();
        self.tests = tests;
        self.build_index();
        self
    }

    /// Event rules that may match `kind`.
    #[cfg(test)]
    pub(crate) fn candidates(&self, kind: Kind) -> impl Iterator<Item = usize> + '_ {
        self.by_kind[kind as usize]
            .iter()
            .chain(self.by_kind[KINDS.len()].iter())
            .copied()
    }

    /// Index of the rule with `id`.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.id == id)
    }

    /// The longest correlation window (ns), for bounding loss bookkeeping.
    pub(crate) fn max_timespan(&self) -> u64 {
        self.rules
            .iter()
            .filter_map(|r| match &r.body {
                Body::Correlation(c) => Some(c.timespan),
                Body::Event { .. } => None,
            })
            .max()
            .unwrap_or(0)
    }
}
