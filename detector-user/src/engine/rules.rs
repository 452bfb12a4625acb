//! Loading a rule set: parse (YAML with positions) → resolve (lists, rule references) →
//! compile (regexes, globs, CIDRs once) → index by event kind. Every problem is collected
//! with its `file:line:col`; a set with any problem is rejected whole, so a bad edit never
//! half-replaces working rules.
//!
//! Rule language: `docs/rules.md`.

use std::borrow::Cow;
use std::collections::HashMap;

use super::alert::Severity;
use super::cond::{self, CmpOp, Cond, Lists};
use super::fields::Field;
use super::index::LiteralIndex;
use super::overrides;
use crate::input::yaml::{self, Node, Pos, PosError};
use crate::event::Kind;
use crate::input::excerpt;

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
pub const MAX_STEPS: usize = 255;

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
    pub step_group_by: Vec<Vec<Field>>,
    /// Sigma `generate`: the referenced rules also raise their own alerts.
    pub generate: bool,
    /// Sliding window length (ns). An event exactly `timespan` after another is in its window.
    pub timespan: u64,
    /// Field counted distinctly.
    pub field: Option<Field>,
    /// Condition on the count (ANDed).
    pub condition: Vec<(CmpOp, i64)>,
    /// Machine speed: every gap between consecutive counted events must be ≤ this (ns).
    pub max_gap: Option<u64>,
    /// When the group's identity has a configured `fan_out_budget`, it replaces the threshold
    /// (`gt budget`).
    pub budget: bool,
    /// Adding events can only turn the condition from false to true (`gt`/`gte`, or a
    /// budget): it may then fire on the event that completes it.
    pub monotone: bool,
    /// The counted field is a network one (`net.…`): display names are kept per value.
    pub net_field: bool,
    /// Its groups can share events (`process.tree` grouping of a temporal type: an event
    /// joins the group of every ancestor's tree), so firings of several groups can be one
    /// incident.
    pub merges: bool,
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
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// ATT&CK technique ids.
    pub attack: Vec<String>,
    /// Whether matches raise alerts (false for building blocks used by correlations).
    pub alert: bool,
    /// Suppression interval (ns) per group key.
    pub suppress: u64,
    /// Suppression/group key fields of an event rule's alerts.
    pub group_by: Vec<Field>,
    /// Where it was defined.
    pub pos: Pos,
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
    pub expect: usize,
    /// Events (JSON, ready to deserialize), with their positions for messages.
    pub events: Vec<(Pos, serde_json::Value)>,
    /// Where the case is.
    pub pos: Pos,
    /// Identities config for this test (`identities:` beside `rule:`), as YAML.
    pub identities: Option<Node>,
    /// Baseline for this test, as YAML (`baseline:` mapping identity → peers).
    pub baseline: Option<Node>,
    /// The rule is disabled (here): the case is not run.
    pub disabled: Option<Pos>,
    /// An override in another file than the test's changes the rule (here): the case was
    /// written for the rule without it, so a different outcome is that override's effect
    /// (reported, not a failure).
    pub changed_by: Option<Pos>,
}

/// A loaded rule set.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Rules, event rules and correlations.
    pub rules: Vec<Rule>,
    /// Event rules per kind (index = `Kind as usize`), then rules for any kind.
    pub by_kind: Vec<Vec<usize>>,
    /// For each rule, the correlations consuming it: (correlation index, step).
    pub consumers: Vec<Vec<(usize, usize)>>,
    /// Tests found beside the rules.
    pub tests: Vec<TestCase>,
    /// Event rules by kind and literal, so an event evaluates only the conditions that can
    /// hold for it.
    pub index: LiteralIndex,
    /// Rules defined but disabled (by their own `enabled: false` or an override), with where,
    /// sorted by id: validated, then left out of `rules`.
    pub disabled: Vec<(String, Pos)>,
    /// Overrides applied (`overrides:` entries over all files).
    pub overrides: usize,
}

/// All kinds, in declaration order (their index is `Kind as usize`).
pub const KINDS: [Kind; 10] = [
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

fn kind_of(s: &str) -> Option<Kind> {
    KINDS.iter().copied().find(|k| k.as_str() == s)
}

/// Parses a duration (`1s`, `500ms`, `90days`) into ns (at most `u64::MAX`, 584 years).
pub fn duration(n: &Node) -> Result<u64, PosError> {
    let s = n.as_scalar_string()?;
    crate::input::value::duration_ns(&s).map_err(|m| PosError::new(&n.pos, m))
}

/// A rule as written: its id and its mapping (as overrides left it: then owned).
pub struct RawRule<'a> {
    /// Unique id.
    pub id: String,
    /// The rule's mapping.
    pub node: Cow<'a, Node>,
}

const RULE_KEYS: &[&str] = &[
    "id",
    "enabled",
    "title",
    "description",
    "severity",
    "attack",
    "condition",
    "exceptions",
    "correlation",
    "alert",
    "group-by",
    "suppress",
];
const CORR_KEYS: &[&str] = &[
    "type",
    "rules",
    "group-by",
    "timespan",
    "field",
    "condition",
    "max_gap",
    "budget",
    "aliases",
    "generate",
];

fn fields_list(n: &Node) -> Result<Vec<Field>, PosError> {
    n.as_seq_or_one()
        .into_iter()
        .map(|f| cond::field(f, f.as_str()?))
        .collect()
}

/// Compiles `exceptions` into a condition that is true when any exception tuple matches.
fn exceptions(n: &Node, lists: &Lists) -> Result<Cond, PosError> {
    let mut any = Vec::new();
    for ex in n.as_seq()? {
        let f = ex.fields(&["name", "fields", "comps", "values"])?;
        let fl = f.req("fields")?.as_seq()?;
        let fields = fl
            .iter()
            .map(|x| cond::field(x, x.as_str()?))
            .collect::<Result<Vec<_>, _>>()?;
        let comps: Vec<String> = match f.get("comps") {
            Some(c) => c
                .as_seq()?
                .iter()
                .map(|x| x.as_scalar_string())
                .collect::<Result<_, _>>()?,
            None => vec!["=".into(); fields.len()],
        };
        if comps.len() != fields.len() {
            return Err(PosError::new(
                &f.pos,
                "`comps` must have one entry per field",
            ));
        }
        for tuple in f.req("values")?.as_seq()? {
            let vals = tuple.as_seq()?;
            if vals.len() != fields.len() {
                return Err(PosError::new(
                    &tuple.pos,
                    format!("exception tuple needs {} values", fields.len()),
                ));
            }
            let mut all = Vec::new();
            for ((field, comp), v) in fields.iter().zip(&comps).zip(vals) {
                let op = match comp.as_str() {
                    "=" => "eq",
                    "in" | "glob" | "prefix" | "suffix" | "contains" | "cidr" | "regex" => {
                        comp.as_str()
                    }
                    other => {
                        return Err(PosError::new(
                            &tuple.pos,
                            format!("unknown exception comparison {}", excerpt(other)),
                        ))
                    }
                };
                // Reuse the condition compiler so exceptions get the same checks and positions.
                let key = Node {
                    value: yaml::Value::Str(field.path().into()),
                    pos: v.pos.clone(),
                };
                let opk = Node {
                    value: yaml::Value::Str(op.into()),
                    pos: v.pos.clone(),
                };
                let inner = Node {
                    value: yaml::Value::Map(vec![(opk, v.clone())]),
                    pos: v.pos.clone(),
                };
                let map = Node {
                    value: yaml::Value::Map(vec![(key, inner)]),
                    pos: v.pos.clone(),
                };
                all.push(cond::compile(&map, lists)?);
            }
            any.push(Cond::All(all));
        }
    }
    Ok(Cond::Any(any))
}

/// Parses every source (bounded by [`crate::input::RULES`] each, and
/// [`crate::input::RULES_TOTAL_BYTES`] and [`crate::input::RULES_TOTAL_NODES`] together); a
/// source that fails is reported and left out, so that the other files' problems are reported
/// too.
pub fn parse_sources(sources: &[(String, String)], errs: &mut Vec<PosError>) -> Vec<Node> {
    let mut docs = Vec::new();
    let mut total = 0usize;
    let mut budget = yaml::Budget {
        left: crate::input::RULES_TOTAL_NODES,
        of: "the rule set (all files)",
    };
    for (name, text) in sources {
        total = total.saturating_add(text.len());
        if total > crate::input::RULES_TOTAL_BYTES {
            errs.push(PosError {
                pos: Pos {
                    file: std::sync::Arc::from(name.as_str()),
                    line: 1,
                    col: 1,
                },
                msg: format!(
                    "rule files larger than {} together (the limit for one rule set)",
                    crate::input::human_bytes(crate::input::RULES_TOTAL_BYTES as u64)
                ),
            });
            break;
        }
        match yaml::parse_within(name, text, &crate::input::RULES, &mut budget) {
            Ok(d) => docs.extend(d),
            Err(e) => errs.push(e),
        }
    }
    docs
}

/// A rule set's documents read for their top-level shape, nothing compiled yet.
pub struct Collected<'a> {
    /// Named lists.
    pub lists: Lists,
    /// Rules by id, in file order.
    pub raws: Vec<RawRule<'a>>,
    /// `tests:` sections.
    pub tests: Vec<&'a Node>,
    /// `overrides:` sections, in file order.
    pub overrides: Vec<&'a Node>,
}

/// Reads the top-level shape of every document: `lists`, `rules` (each with a unique `id`,
/// unknown keys reported), `tests` and `overrides`.
pub fn collect<'a>(docs: &'a [Node], errs: &mut Vec<PosError>) -> Collected<'a> {
    let mut lists = Lists::default();
    // Ids seen (a linear search per rule was quadratic in the size of the set).
    let mut ids: HashMap<String, Pos> = HashMap::new();
    let mut raws: Vec<RawRule> = Vec::new();
    let mut test_nodes = Vec::new();
    let mut override_nodes = Vec::new();
    for d in docs {
        if d.value == yaml::Value::Null {
            continue;
        }
        let f = match d.fields(&["lists", "rules", "tests", "overrides"]) {
            Ok(f) => f,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        if let Some(l) = f.get("lists") {
            match l.as_map() {
                Ok(m) => {
                    for (name, kn, v) in m {
                        match v.as_seq() {
                            Ok(items) => {
                                if !lists.insert(name.to_string(), items.to_vec()) {
                                    errs.push(PosError::new(
                                        &kn.pos,
                                        format!("duplicate list `{name}`"),
                                    ));
                                }
                            }
                            Err(e) => errs.push(e),
                        }
                    }
                }
                Err(e) => errs.push(e),
            }
        }
        if let Some(r) = f.get("rules") {
            match r.as_seq() {
                Ok(items) => {
                    for it in items {
                        let id = it
                            .fields_collect(RULE_KEYS, errs)
                            .and_then(|f| f.req("id").and_then(|i| i.as_str().map(str::to_string)));
                        match id {
                            Ok(id) => match ids.get(&id) {
                                Some(first) => errs.push(PosError::new(
                                    &it.pos,
                                    format!(
                                        "duplicate rule id {} (first defined at {first}); to \
                                         change a rule defined elsewhere, use `overrides:`",
                                        excerpt(&id)
                                    ),
                                )),
                                None => {
                                    ids.insert(id.clone(), it.pos.clone());
                                    raws.push(RawRule {
                                        id,
                                        node: Cow::Borrowed(it),
                                    });
                                }
                            },
                            Err(e) => errs.push(e),
                        }
                    }
                }
                Err(e) => errs.push(e),
            }
        }
        if let Some(t) = f.get("tests") {
            test_nodes.push(t);
        }
        if let Some(o) = f.get("overrides") {
            override_nodes.push(o);
        }
    }
    Collected {
        lists,
        raws,
        tests: test_nodes,
        overrides: override_nodes,
    }
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
        let mut compiled = Vec::with_capacity(raws.len());
        for raw in &raws {
            match compile_rule(raw, &lists, &index, &raws, &mut errs) {
                Ok(r) => compiled.push(r),
                Err(e) => errs.push(e),
            }
        }
        let mut set = RuleSet {
            overrides: applied.count,
            ..RuleSet::default()
        };
        if errs.is_empty() {
            // Leave the disabled rules out; correlation steps follow their rules' new places
            // (no enabled correlation references a disabled rule: `overrides::apply` checked).
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
            apply_generate(&mut set.rules, &kept_raws, &mut errs);
        }
        for t in test_nodes {
            if let Err(e) = parse_tests(t, &index, &applied, &mut set.tests) {
                errs.push(e);
            }
        }
        if !errs.is_empty() {
            errs.sort_by(|a, b| {
                (&a.pos.file, a.pos.line, a.pos.col).cmp(&(&b.pos.file, b.pos.line, b.pos.col))
            });
            return Err(errs);
        }
        set.disabled = applied.disabled.into_iter().collect();
        set.disabled.sort_by(|a, b| a.0.cmp(&b.0));
        // Stage 4: index.
        set.build_index();
        Ok(set)
    }

    /// Indexes the rules by kind and literal, and each rule's consumers.
    fn build_index(&mut self) {
        self.by_kind = vec![Vec::new(); KINDS.len() + 1];
        self.consumers = vec![Vec::new(); self.rules.len()];
        for (i, r) in self.rules.iter().enumerate() {
            match &r.body {
                Body::Event {
                    kinds: Some(ks), ..
                } => {
                    for k in ks {
                        self.by_kind[*k as usize].push(i);
                    }
                }
                Body::Event { kinds: None, .. } => self.by_kind[KINDS.len()].push(i),
                Body::Correlation(c) => {
                    for (step, &s) in c.steps.iter().enumerate() {
                        self.consumers[s].push((i, step));
                    }
                }
            }
        }
        let conds: Vec<Option<&Cond>> = self
            .rules
            .iter()
            .map(|r| match &r.body {
                Body::Event { cond, .. } => Some(cond),
                Body::Correlation(_) => None,
            })
            .collect();
        self.index = LiteralIndex::build(&conds, &self.by_kind);
    }

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
    pub fn candidates(&self, kind: Kind) -> impl Iterator<Item = usize> + '_ {
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
    pub fn max_timespan(&self) -> u64 {
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

fn compile_rule(
    raw: &RawRule<'_>,
    lists: &Lists,
    index: &HashMap<&str, usize>,
    raws: &[RawRule<'_>],
    errs: &mut Vec<PosError>,
) -> Result<Rule, PosError> {
    // Unknown keys were reported when the rule was first read.
    let f = raw.node.fields_collect(RULE_KEYS, &mut Vec::new())?;
    let title = f.req("title")?.as_str()?.to_string();
    if let Some(d) = f.get("description") {
        d.as_str()?;
    }
    let sev_node = f.req("severity")?;
    let severity = Severity::parse(sev_node.as_str()?).ok_or_else(|| {
        PosError::new(
            &sev_node.pos,
            "severity must be info, low, medium, high or critical",
        )
    })?;
    let mut attack = Vec::new();
    for a in f
        .get("attack")
        .map(|n| n.as_seq_or_one())
        .unwrap_or_default()
    {
        let s = a.as_str()?;
        let ok = s.len() >= 5
            && s.starts_with('T')
            && s[1..]
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(PosError::new(
                &a.pos,
                format!(
                    "{} is not an ATT&CK technique id (T1234 or T1234.001)",
                    excerpt(s)
                ),
            ));
        }
        attack.push(s.to_string());
    }
    if let Some(e) = f.get("enabled") {
        e.as_bool()?;
    }
    let alert = f
        .get("alert")
        .map(|n| n.as_bool())
        .transpose()?
        .unwrap_or(true);
    let suppress = f
        .get("suppress")
        .map(duration)
        .transpose()?
        .unwrap_or(300 * 1_000_000_000);
    let group_by = match f.get("group-by") {
        Some(n) => fields_list(n)?,
        None => vec![Field::Identity, Field::Exe],
    };
    let body = match (f.get("condition"), f.get("correlation")) {
        (Some(c), None) => {
            let mut cerrs = Vec::new();
            let compiled = cond::compile_collect(c, lists, &mut cerrs);
            let mut cond = match compiled {
                Some(c) if cerrs.is_empty() => c,
                _ => {
                    let first = if cerrs.is_empty() {
                        PosError::new(&c.pos, "invalid condition")
                    } else {
                        cerrs.remove(0)
                    };
                    errs.extend(cerrs);
                    return Err(first);
                }
            };
            let kinds = match cond.kinds() {
                Some(ks) => Some(
                    ks.iter()
                        .map(|k| {
                            kind_of(k)
                                .ok_or_else(|| PosError::new(&c.pos, format!("unknown kind `{k}`")))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                None => None,
            };
            if kinds.is_some() {
                cond = cond.without_index_kind();
            }
            if let Some(ex) = f.get("exceptions") {
                cond = Cond::All(vec![cond, Cond::Not(Box::new(exceptions(ex, lists)?))]);
            }
            Body::Event { cond, kinds }
        }
        (None, Some(c)) => {
            if f.get("exceptions").is_some() {
                return Err(PosError::new(
                    &f.pos,
                    "exceptions belong on the event rules a correlation references",
                ));
            }
            Body::Correlation(compile_corr(c, index, raws)?)
        }
        (Some(_), Some(_)) => {
            return Err(PosError::new(
                &f.pos,
                "a rule has either `condition` or `correlation`, not both",
            ))
        }
        (None, None) => {
            return Err(PosError::new(
                &f.pos,
                "a rule needs `condition` or `correlation`",
            ))
        }
    };
    Ok(Rule {
        id: raw.id.clone(),
        title,
        severity,
        attack,
        alert,
        suppress,
        group_by,
        pos: raw.node.pos.clone(),
        body,
    })
}

fn compile_corr(
    n: &Node,
    index: &HashMap<&str, usize>,
    raws: &[RawRule<'_>],
) -> Result<Correlation, PosError> {
    let f = n.fields(CORR_KEYS)?;
    let tn = f.req("type")?;
    let ty = match tn.as_str()? {
        "event_count" => CorrType::EventCount,
        "value_count" => CorrType::ValueCount,
        "temporal" => CorrType::Temporal,
        "temporal_ordered" => CorrType::TemporalOrdered,
        t @ ("value_sum" | "value_avg" | "value_percentile") => {
            return Err(PosError::new(
                &tn.pos,
                format!("correlation type `{t}` is not supported"),
            ))
        }
        t => {
            return Err(PosError::new(
                &tn.pos,
                format!("unknown correlation type {}", excerpt(t)),
            ))
        }
    };
    let mut steps = Vec::new();
    for r in f.req("rules")?.as_seq_or_one() {
        let id = r.as_str()?;
        let &i = index
            .get(id)
            .ok_or_else(|| PosError::new(&r.pos, format!("unknown rule {}", excerpt(id))))?;
        let is_corr = raws[i]
            .node
            .fields_collect(RULE_KEYS, &mut Vec::new())
            .is_ok_and(|ff| ff.get("correlation").is_some());
        if is_corr {
            // Sigma allows chaining; we reject what we cannot honour rather than degrade it.
            return Err(PosError::new(
                &r.pos,
                format!("`{id}` is a correlation: chaining correlations is not supported"),
            ));
        }
        steps.push(i);
    }
    if steps.is_empty() {
        return Err(PosError::new(&f.pos, "`rules` is empty"));
    }
    // Window entries keep their step in a byte.
    if steps.len() > MAX_STEPS {
        return Err(PosError::new(
            &f.pos,
            format!(
                "`rules` lists {} rules; a correlation takes at most {MAX_STEPS}",
                steps.len()
            ),
        ));
    }
    if matches!(ty, CorrType::Temporal | CorrType::TemporalOrdered) && steps.len() < 2 {
        return Err(PosError::new(
            &f.pos,
            "temporal correlations need at least two rules",
        ));
    }
    let aliases = match f.get("aliases") {
        Some(a) => compile_aliases(a, &steps, raws)?,
        None => HashMap::new(),
    };
    let mut step_group_by = vec![Vec::new(); steps.len()];
    let mut used = std::collections::HashSet::new();
    if let Some(g) = f.get("group-by") {
        for gn in g.as_seq_or_one() {
            let name = gn.as_str()?;
            match aliases.get(name) {
                Some(per_step) => {
                    used.insert(name);
                    for (s, &fld) in per_step.iter().enumerate() {
                        step_group_by[s].push(fld);
                    }
                }
                None => {
                    let fld = cond::field(gn, name)?;
                    for s in &mut step_group_by {
                        s.push(fld);
                    }
                }
            }
        }
    }
    if let Some(a) = f.get("aliases") {
        for (name, kn, _) in a.as_map()? {
            if !used.contains(name) {
                return Err(PosError::new(
                    &kn.pos,
                    format!("alias `{name}` is not used in `group-by`"),
                ));
            }
        }
    }
    let group_by = step_group_by.first().cloned().unwrap_or_default();
    let generate = f
        .get("generate")
        .map(|b| b.as_bool())
        .transpose()?
        .unwrap_or(false);
    let tsn = f.req("timespan")?;
    let timespan = duration(tsn)?;
    if timespan == 0 {
        return Err(PosError::new(&tsn.pos, "timespan must be positive"));
    }
    let field = f
        .get("field")
        .map(|x| cond::field(x, x.as_str()?))
        .transpose()?;
    if ty == CorrType::ValueCount && field.is_none() {
        return Err(PosError::new(&f.pos, "value_count needs `field`"));
    }
    let mut condition = Vec::new();
    if let Some(c) = f.get("condition") {
        for (k, kn, v) in c.as_map()? {
            let op = CmpOp::parse(k).ok_or_else(|| {
                PosError::new(
                    &kn.pos,
                    format!(
                        "unknown condition {} (gt, gte, lt, lte, eq, neq)",
                        excerpt(k)
                    ),
                )
            })?;
            condition.push((op, v.as_i64()?));
        }
    }
    if condition.is_empty() {
        condition.push(match ty {
            CorrType::Temporal if field.is_none() => (CmpOp::Gte, steps.len() as i64),
            _ => (CmpOp::Gte, 1),
        });
    }
    let max_gap = f.get("max_gap").map(duration).transpose()?;
    let budget = f
        .get("budget")
        .map(|b| b.as_bool())
        .transpose()?
        .unwrap_or(false);
    let monotone = budget
        || condition
            .iter()
            .all(|(op, _)| matches!(op, CmpOp::Gt | CmpOp::Gte));
    let net_field = field.is_some_and(|f| f.path().starts_with("net."));
    let merges = matches!(ty, CorrType::Temporal | CorrType::TemporalOrdered)
        && group_by.contains(&Field::Tree);
    Ok(Correlation {
        ty,
        steps,
        group_by,
        step_group_by,
        generate,
        timespan,
        field,
        condition,
        max_gap,
        budget,
        monotone,
        net_field,
        merges,
    })
}

/// Sigma `generate`: a rule referenced by correlations raises its own alerts only when one of
/// them says `generate: true` (Sigma's default is false), unless the rule sets `alert`
/// itself. `alert: false` on a rule that a `generate: true` correlation references is a
/// contradiction and an error. `rules` and `raws` are index-aligned (all rules compiled).
fn apply_generate(rules: &mut [Rule], raws: &[&RawRule<'_>], errs: &mut Vec<PosError>) {
    let mut wanted: Vec<Option<(bool, Pos)>> = vec![None; rules.len()];
    for r in rules.iter() {
        let Body::Correlation(c) = &r.body else {
            continue;
        };
        for &s in &c.steps {
            let w = &mut wanted[s];
            match w {
                Some((g, _)) if *g || !c.generate => {}
                _ => *w = Some((c.generate, r.pos.clone())),
            }
        }
    }
    for (i, w) in wanted.into_iter().enumerate() {
        let Some((generate, pos)) = w else { continue };
        let explicit = raws[i]
            .node
            .fields_collect(RULE_KEYS, &mut Vec::new())
            .ok()
            .and_then(|f| f.get("alert").map(|n| n.as_bool()));
        match explicit {
            Some(Ok(false)) if generate => errs.push(PosError::new(
                &pos,
                format!(
                    "`generate: true` but the referenced rule `{}` says `alert: false`",
                    rules[i].id
                ),
            )),
            Some(_) => {}
            None => rules[i].alert = generate,
        }
    }
}

/// Sigma `aliases`: `alias: {rule-id: field, …}` with one field per referenced rule, all of the
/// same type, so one group key can join e.g. the source address of one rule with the
/// destination address of another. Returns alias → field per step.
fn compile_aliases<'n>(
    n: &'n Node,
    steps: &[usize],
    raws: &[RawRule<'_>],
) -> Result<HashMap<&'n str, Vec<Field>>, PosError> {
    let mut out = HashMap::new();
    for (name, kn, m) in n.as_map()? {
        if cond::field(kn, name).is_ok() {
            return Err(PosError::new(
                &kn.pos,
                format!("alias `{name}` hides the event field of the same name; pick another name"),
            ));
        }
        let mut per_step: Vec<Option<Field>> = vec![None; steps.len()];
        for (rid, rn, fnode) in m.as_map()? {
            let Some(s) = steps.iter().position(|&i| raws[i].id == rid) else {
                return Err(PosError::new(
                    &rn.pos,
                    format!("alias `{name}`: `{rid}` is not one of this correlation's rules"),
                ));
            };
            per_step[s] = Some(cond::field(fnode, fnode.as_str()?)?);
        }
        let mut fields = Vec::with_capacity(steps.len());
        for (s, f) in per_step.into_iter().enumerate() {
            let Some(f) = f else {
                return Err(PosError::new(
                    &m.pos,
                    format!(
                        "alias `{name}` names no field for rule `{}`",
                        raws[steps[s]].id
                    ),
                ));
            };
            if f == Field::Tree {
                return Err(PosError::new(
                    &m.pos,
                    format!("alias `{name}`: `process.tree` cannot be aliased"),
                ));
            }
            if let Some(first) = fields.first() {
                let first: &Field = first;
                if first.ty() != f.ty() {
                    return Err(PosError::new(
                        &m.pos,
                        format!(
                            "alias `{name}`: `{}` and `{}` have different types",
                            first.path(),
                            f.path()
                        ),
                    ));
                }
            }
            fields.push(f);
        }
        out.insert(name, fields);
    }
    Ok(out)
}

fn parse_tests(
    n: &Node,
    index: &HashMap<&str, usize>,
    applied: &overrides::Applied,
    out: &mut Vec<TestCase>,
) -> Result<(), PosError> {
    for t in n.as_seq()? {
        let f = t.fields(&[
            "rule",
            "processes",
            "defaults",
            "cases",
            "identities",
            "baseline",
        ])?;
        let defaults = f
            .get("defaults")
            .map(Node::to_json)
            .unwrap_or(serde_json::Value::Null);
        let identities = f.get("identities").cloned();
        if let Some(i) = &identities {
            crate::policy::identities::IdentityConfig::from_node(i)?;
        }
        let baseline = f.get("baseline").map(|b| {
            let key = Node {
                value: yaml::Value::Str("baseline".into()),
                pos: b.pos.clone(),
            };
            Node {
                value: yaml::Value::Map(vec![(key, b.clone())]),
                pos: b.pos.clone(),
            }
        });
        if let Some(b) = &baseline {
            crate::policy::identities::Baseline::from_node(b)?;
        }
        let rn = f.req("rule")?;
        let rule = rn.as_str()?.to_string();
        if !index.contains_key(rule.as_str()) {
            return Err(PosError::new(
                &rn.pos,
                format!("test for unknown rule {}", excerpt(&rule)),
            ));
        }
        let disabled = applied.disabled.get(rule.as_str()).cloned();
        let changed_by = applied
            .changed
            .get(rule.as_str())
            .and_then(|ps| ps.iter().find(|p| p.file != rn.pos.file))
            .cloned();
        let mut procs: HashMap<String, serde_json::Value> = HashMap::new();
        if let Some(p) = f.get("processes") {
            for (name, _, v) in p.as_map()? {
                procs.insert(name.to_string(), v.to_json());
            }
        }
        for c in f.req("cases")?.as_seq()? {
            let cf = c.fields(&["name", "expect", "events"])?;
            let name = cf.req("name")?.as_str()?.to_string();
            let en = cf.req("expect")?;
            let expect = usize::try_from(en.as_i64()?)
                .map_err(|_| PosError::new(&en.pos, "expect must be ≥ 0"))?;
            let mut events = Vec::new();
            for e in cf.req("events")?.as_seq()? {
                let mut j = e.to_json();
                expand_event(&mut j, &procs, &defaults).map_err(|m| PosError::new(&e.pos, m))?;
                events.push((e.pos.clone(), j));
            }
            out.push(TestCase {
                rule: rule.clone(),
                name,
                expect,
                events,
                pos: c.pos.clone(),
                identities: identities.clone(),
                baseline: baseline.clone(),
                disabled: disabled.clone(),
                changed_by: changed_by.clone(),
            });
        }
    }
    Ok(())
}

/// Test events may say `process: name` (a template from `processes`) or
/// `process: {template: name, …overrides}`, and `ts: 1.5s` (a duration from 0); `net` and
/// `file` mappings are laid over the block's `defaults.net` / `defaults.file`.
fn expand_event(
    j: &mut serde_json::Value,
    procs: &HashMap<String, serde_json::Value>,
    defaults: &serde_json::Value,
) -> Result<(), String> {
    let obj = j.as_object_mut().ok_or("a test event must be a mapping")?;
    for key in ["net", "file"] {
        if let (Some(serde_json::Value::Object(over)), Some(serde_json::Value::Object(base))) =
            (obj.get(key), defaults.get(key))
        {
            let mut merged = base.clone();
            for (k, v) in over {
                merged.insert(k.clone(), v.clone());
            }
            obj.insert(key.into(), serde_json::Value::Object(merged));
        }
    }
    if let Some(serde_json::Value::String(s)) = obj.get("ts") {
        // As rule durations are read: a value past u64 ns is refused, not truncated.
        let ns = crate::input::value::duration_ns(s).map_err(|e| format!("ts: {e}"))?;
        obj.insert("ts".into(), serde_json::Value::from(ns));
    }
    let template = match obj.get("process") {
        Some(serde_json::Value::String(name)) => Some((name.clone(), serde_json::Map::new())),
        Some(serde_json::Value::Object(m)) => match m.get("template") {
            Some(serde_json::Value::String(name)) => {
                let mut over = m.clone();
                over.remove("template");
                Some((name.clone(), over))
            }
            _ => None,
        },
        _ => None,
    };
    if let Some((name, over)) = template {
        let mut base = procs
            .get(&name)
            .cloned()
            .ok_or_else(|| format!("unknown process template {}", excerpt(&name)))?;
        if let Some(b) = base.as_object_mut() {
            for (k, v) in over {
                b.insert(k, v);
            }
        }
        obj.insert("process".into(), base);
    }
    Ok(())
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
