//! The loaded rule set as Sigma rules (`detector rules export --sigma DIR`, `docs/sigma.md`).
//!
//! Generated from the compiled rules, not from their YAML, so whatever the loader accepts
//! (lists expanded, exceptions folded in, `generate` applied) is what is translated:
//!
//! - an event rule becomes a Sigma detection rule whose `detection` holds one selection per
//!   field test and a `condition` that rebuilds the rule's `all`/`any`/`not` tree;
//! - a correlation becomes a Sigma correlation rule (`event_count`, `value_count`, `temporal`,
//!   `temporal_ordered`) with the same `group-by`, `aliases`, `timespan`, `condition`, `field`
//!   and `generate`, and its suppression interval as the custom attribute `rsigma.suppress`.
//!
//! The Sigma rules read the *event document* ([`event_document`]): the event's fields by their
//! dotted rule paths in one flat JSON object, with the derived fields that depend on the event
//! alone (`net.dst`, `net.dst_host`, `net.contact`, `net.off_host`, `file.age_days`,
//! `file.home_user`, `process.tree`) already computed. What needs the agent's own state or
//! semantics that Sigma lacks is not translated, and [`Export::skipped`] says why for each
//! rule ([`Reason`]).

use std::fmt::Write as _;

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

use super::alert::Severity;
use super::cond::{CmpOp, Cond, Op};
use super::fields::{self, Field, FieldType, Policy, Val};
use super::rules::{Body, CorrType, Correlation, Rule, RuleSet};
use crate::event::Event;

/// How the export writes times.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Nanoseconds per Sigma second. 1 s for real Sigma; the differential test writes
    /// milliseconds as Sigma seconds (Sigma engines count whole seconds) to compare windows at
    /// the resolution our rules use.
    pub tick: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            tick: 1_000_000_000,
        }
    }
}

/// Whether a Sigma document is a detection or a correlation rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// A Sigma detection rule (from an event rule).
    Detection,
    /// A Sigma correlation rule.
    Correlation,
}

/// One translated rule.
#[derive(Clone, Debug)]
pub struct Document {
    /// Our rule id (the Sigma `name`, by which correlations reference rules).
    pub rule: String,
    /// The Sigma `id`: a UUID derived from the rule id, stable across exports.
    pub sigma_id: String,
    /// Detection or correlation.
    pub kind: DocKind,
    /// The Sigma YAML (one document).
    pub(crate) yaml: String,
    /// Where the translation is exact only under a stated assumption (also written into the
    /// rule's `description`).
    pub(crate) notes: Vec<String>,
}

/// Why a rule does not translate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A field whose value comes from the agent's configuration or learned state.
    AgentField(Field),
    /// `group-by: process.tree`: a process-tree join, not an equality of values.
    TreeJoin,
    /// `max_gap`: a gap condition between counted events.
    MaxGap,
    /// `temporal_ordered` counting the last step's matches (`field` or a condition other
    /// than the default `gte: 1`), or `temporal` with `field` (distinct values of the last
    /// rule's matches).
    OrderedCount,
    /// A duration that is not a whole number of Sigma seconds.
    Duration(&'static str, u64),
    /// A glob using more than Sigma's wildcards (`*`, `?`).
    Glob(String),
    /// `eq_field`/`neq_field` or `group-by`/`field` on a list field (argv).
    ListField(Field),
    /// A referenced rule that does not translate.
    Step(String),
    /// A building block (`alert: false`) that no translated correlation references: as a
    /// Sigma detection rule it would raise alerts it never raises here.
    UnusedBlock,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::AgentField(x) => write!(f, "`{}` {}", x.path(), agent_field_why(*x)),
            Reason::TreeJoin => f.write_str(
                "`group-by: process.tree` is a process-tree join (a later step joins a group \
                 whose root is the process, its parent or an ancestor); Sigma groups by equal \
                 values only",
            ),
            Reason::MaxGap => f.write_str("`max_gap` (machine speed) has no Sigma equivalent"),
            Reason::OrderedCount => f.write_str(
                "this correlation counts the last rule's matches (a `temporal_ordered` after \
                 its chain, or a `temporal` with `field`); Sigma's temporal types count rules \
                 only",
            ),
            Reason::Duration(what, ns) => write!(
                f,
                "`{what}` of {ns} ns is not a whole number of Sigma seconds"
            ),
            Reason::Glob(p) => write!(f, "glob `{p}` uses more than Sigma's wildcards `*` and `?`"),
            Reason::ListField(x) => write!(
                f,
                "`{}` is a list; Sigma compares or groups single values",
                x.path()
            ),
            Reason::Step(id) => write!(f, "references `{id}`, which does not translate"),
            Reason::UnusedBlock => f.write_str(
                "a building block (`alert: false`) no translated correlation uses: Sigma would \
                 alert on it",
            ),
        }
    }
}

fn agent_field_why(f: Field) -> &'static str {
    match f {
        Field::Service => "names the destination from identities.yaml `services`, agent configuration",
        Field::PeerAllowed | Field::Novel => {
            "compares the destination with the identity's declared peers (identities.yaml) and learned baseline, agent state"
        }
        Field::Owned => {
            "is the agent's ownership judgement (identities.yaml `credentials`, else the home directory's user or the token's pod)"
        }
        _ => "is not in the event document",
    }
}

/// A rule that does not translate.
#[derive(Clone, Debug)]
pub struct Skipped {
    /// Our rule id.
    pub rule: String,
    /// Every reason found (at least one).
    pub reasons: Vec<Reason>,
}

/// The translation of a rule set.
#[derive(Clone, Debug, Default)]
pub struct Export {
    /// Translated rules, in rule-set order.
    pub documents: Vec<Document>,
    /// Rules left out, with why.
    pub skipped: Vec<Skipped>,
}

impl Export {
    /// Every document as one multi-document YAML stream (`---` between documents).
    pub fn yaml_stream(&self) -> String {
        let mut s = String::new();
        for d in &self.documents {
            s.push_str(&d.yaml);
        }
        s
    }

    /// Whether rule `id` was translated.
    pub fn translated(&self, id: &str) -> bool {
        self.documents.iter().any(|d| d.rule == id)
    }
}

/// Fields whose values come from the agent's configuration or state: not in the event
/// document, so rules that read them do not translate.
pub(crate) const AGENT_FIELDS: &[Field] = &[
    Field::Service,
    Field::PeerAllowed,
    Field::Novel,
    Field::Owned,
];

/// The event document the Sigma rules read: every field the event has (rule paths as keys,
/// one flat object), derived ones included except [`AGENT_FIELDS`]. Integers are JSON
/// numbers, booleans JSON booleans, argv a list of strings.
pub fn event_document(ev: &Event) -> serde_json::Map<String, serde_json::Value> {
    // No identities or baseline: the agent fields are left out below anyway, and nothing else
    // reads the policy.
    let pol = Policy::default();
    let mut m = serde_json::Map::new();
    for &(path, f) in Field::ALL {
        if AGENT_FIELDS.contains(&f) {
            continue;
        }
        let Some(v) = fields::get(f, ev, &pol) else {
            continue;
        };
        let j = match v {
            Val::Str(s) => serde_json::Value::String(s.into_owned()),
            Val::Int(i) => serde_json::Value::from(i),
            Val::Bool(b) => serde_json::Value::Bool(b),
            Val::List(l) => serde_json::Value::from(l.to_vec()),
        };
        m.insert(path.to_string(), j);
    }
    m
}

/// The Sigma `id` of rule `id`: a UUID built from a SHA-256 of the id (stable, so a SIEM
/// keeps a rule's history across exports).
pub(crate) fn sigma_id(id: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("detector rule {id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_sha1_bytes(b).into_uuid().to_string()
}

/// A rule's translation, or why there is none.
type Translated<T> = Result<T, Vec<Reason>>;

/// A correlation's Sigma document and its notes.
type Noted = (Yaml, Vec<String>);

/// Translates a loaded rule set.
pub fn export(set: &RuleSet, opts: &ExportOptions) -> Export {
    let tick = opts.tick.max(1);
    // Event rules first (correlations need to know which of their steps translate).
    let mut detections: Vec<Option<Translated<Yaml>>> = Vec::new();
    for r in &set.rules {
        detections.push(match &r.body {
            Body::Event { cond, kinds } => Some(detection(r, cond, kinds.as_deref())),
            Body::Correlation(_) => None,
        });
    }
    let mut corrs: Vec<Option<Translated<Noted>>> = Vec::new();
    for r in &set.rules {
        corrs.push(match &r.body {
            Body::Correlation(c) => Some(correlation(set, r, c, &detections, tick)),
            Body::Event { .. } => None,
        });
    }
    // Steps used by translated correlations.
    let mut used = vec![false; set.rules.len()];
    for (r, c) in set.rules.iter().zip(&corrs) {
        if let (Body::Correlation(c), Some(Ok(_))) = (&r.body, c) {
            for &s in &c.steps {
                used[s] = true;
            }
        }
    }
    let mut out = Export::default();
    for (i, r) in set.rules.iter().enumerate() {
        let result = match (&detections[i], &corrs[i]) {
            (Some(Ok(_)), _) if !r.alert && !used[i] => Err(vec![Reason::UnusedBlock]),
            (Some(Ok(y)), _) => Ok((DocKind::Detection, y.clone(), Vec::new())),
            (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e.clone()),
            (_, Some(Ok((y, notes)))) => Ok((DocKind::Correlation, y.clone(), notes.clone())),
            (None, None) => continue,
        };
        match result {
            Ok((kind, y, notes)) => out.documents.push(Document {
                rule: r.id.clone(),
                sigma_id: sigma_id(&r.id),
                kind,
                yaml: emit(&y),
                notes,
            }),
            Err(reasons) => out.skipped.push(Skipped {
                rule: r.id.clone(),
                reasons,
            }),
        }
    }
    out
}

fn emit(y: &Yaml) -> String {
    let mut s = String::new();
    let mut e = YamlEmitter::new(&mut s);
    // A YAML tree built here has only strings, integers, booleans, lists and maps: the
    // emitter cannot fail on it (its errors are for a failing writer, and a String's never
    // fails).
    let _ = e.dump(y);
    s.push('\n');
    s
}

fn ystr(s: &str) -> Yaml {
    Yaml::String(s.to_string())
}

fn map(entries: Vec<(&str, Yaml)>) -> Yaml {
    let mut h = Hash::new();
    for (k, v) in entries {
        h.insert(ystr(k), v);
    }
    Yaml::Hash(h)
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Info => "informational",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Fields common to both kinds of document.
fn header(r: &Rule, notes: &[String]) -> Vec<(&'static str, Yaml)> {
    let mut description = format!("detector rule `{}`", r.id);
    for n in notes {
        let _ = write!(description, ". {n}");
    }
    let mut h = vec![
        ("title", ystr(&r.title)),
        ("id", ystr(&sigma_id(&r.id))),
        ("name", ystr(&r.id)),
        ("status", ystr("experimental")),
        ("description", ystr(&description)),
    ];
    if !r.attack.is_empty() {
        h.push((
            "tags",
            Yaml::Array(
                r.attack
                    .iter()
                    .map(|t| ystr(&format!("attack.{}", t.to_ascii_lowercase())))
                    .collect(),
            ),
        ));
    }
    h
}

/// Escapes Sigma's wildcard and escape characters in a literal string value.
fn literal(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Builds the selections and the condition expression of an event rule.
struct Detection {
    selections: Vec<(String, Yaml)>,
    reasons: Vec<Reason>,
}

impl Detection {
    /// Adds a selection `{key: value}`; returns its name.
    fn sel(&mut self, key: String, value: Yaml) -> String {
        let name = format!("s{}", self.selections.len());
        let mut h = Hash::new();
        h.insert(Yaml::String(key), value);
        self.selections.push((name.clone(), Yaml::Hash(h)));
        name
    }

    fn check_field(&mut self, f: Field) {
        if AGENT_FIELDS.contains(&f) {
            let r = Reason::AgentField(f);
            if !self.reasons.contains(&r) {
                self.reasons.push(r);
            }
        }
    }

    /// The condition expression for `c` (fully parenthesised).
    fn expr(&mut self, c: &Cond) -> String {
        match c {
            // `kind` is present in every event: an always-true selection.
            Cond::True => self.sel("kind|exists".into(), Yaml::Boolean(true)),
            Cond::All(cs) if cs.is_empty() => self.expr(&Cond::True),
            Cond::Any(cs) if cs.is_empty() => {
                let s = self.expr(&Cond::True);
                format!("not {s}")
            }
            Cond::All(cs) => self.join(cs, " and "),
            Cond::Any(cs) => self.join(cs, " or "),
            Cond::Not(c) => format!("not {}", self.expr(c)),
            Cond::Test(f, op) => self.test(*f, op),
        }
    }

    fn join(&mut self, cs: &[Cond], sep: &str) -> String {
        let parts: Vec<String> = cs.iter().map(|c| self.expr(c)).collect();
        if parts.len() == 1 {
            return parts.into_iter().next().unwrap_or_default();
        }
        format!("({})", parts.join(sep))
    }

    fn strings(v: &[String]) -> Yaml {
        let mut items: Vec<Yaml> = v.iter().map(|s| ystr(&literal(s))).collect();
        match items.len() {
            1 => items.pop().unwrap_or(Yaml::Null),
            _ => Yaml::Array(items),
        }
    }

    fn test(&mut self, f: Field, op: &Op) -> String {
        self.check_field(f);
        let p = f.path();
        match op {
            Op::StrIn(set) => {
                let mut v = set.items();
                v.sort();
                self.sel(format!("{p}|cased"), Self::strings(&v))
            }
            Op::IntIn(set) => {
                let mut v = set.items();
                v.sort_unstable();
                let mut items: Vec<Yaml> = v.into_iter().map(Yaml::Integer).collect();
                let y = if items.len() == 1 {
                    items.pop().unwrap_or(Yaml::Null)
                } else {
                    Yaml::Array(items)
                };
                self.sel(p.to_string(), y)
            }
            Op::BoolEq(b) => self.sel(p.to_string(), Yaml::Boolean(*b)),
            Op::Glob(_, patterns) => self.glob(p, patterns),
            Op::Prefix(v) => self.sel(format!("{p}|startswith|cased"), Self::strings(v)),
            Op::Suffix(v) => self.sel(format!("{p}|endswith|cased"), Self::strings(v)),
            Op::Contains(v) => self.sel(format!("{p}|contains|cased"), Self::strings(v)),
            Op::Cidr(nets) => {
                let items: Vec<Yaml> = nets.networks().map(|n| ystr(&n.to_string())).collect();
                self.sel(format!("{p}|cidr"), Yaml::Array(items))
            }
            Op::Regex(r) => self.sel(format!("{p}|re"), ystr(r.as_str())),
            Op::Cmp(c, n) => {
                let m = match c {
                    CmpOp::Gt => "gt",
                    CmpOp::Gte => "gte",
                    CmpOp::Lt => "lt",
                    CmpOp::Lte => "lte",
                    // Only gt/gte/lt/lte compile to `Cmp` (eq/neq are memberships).
                    CmpOp::Eq => return self.test(f, &Op::IntIn(super::cond::Set::new(vec![*n]))),
                    CmpOp::Neq => {
                        let s = self.test(f, &Op::IntIn(super::cond::Set::new(vec![*n])));
                        return format!("not {s}");
                    }
                };
                self.sel(format!("{p}|{m}"), Yaml::Integer(*n))
            }
            Op::Exists(b) => self.sel(format!("{p}|exists"), Yaml::Boolean(*b)),
            Op::EqField(o) => self.field_ref(f, *o, true),
            Op::NeqField(o) => self.field_ref(f, *o, false),
        }
    }

    /// Glob patterns of `p`: Sigma's `*` and `?` are globset's (whose `*` also crosses `/`);
    /// the alternatives `{a,b}` become a list of values (Sigma's lists are ORs); anything else
    /// (classes, nested alternatives, escapes) is not Sigma's.
    fn glob(&mut self, p: &str, patterns: &[String]) -> String {
        let mut expanded = Vec::new();
        for pat in patterns {
            match expand_alternatives(pat) {
                Some(v) if !v.iter().any(|x| x.contains(['[', ']', '{', '}', '\\'])) => {
                    expanded.extend(v)
                }
                _ => self.reasons.push(Reason::Glob(pat.clone())),
            }
        }
        expanded.dedup();
        let items: Vec<Yaml> = expanded.iter().map(|s| ystr(s)).collect();
        self.sel(format!("{p}|cased"), Yaml::Array(items))
    }

    /// `f` equal (`eq`) or not to field `o`.
    fn field_ref(&mut self, f: Field, o: Field, eq: bool) -> String {
        self.check_field(o);
        for x in [f, o] {
            if x.ty() == FieldType::StrList {
                self.reasons.push(Reason::ListField(x));
            }
        }
        let p = f.path();
        let is = self.sel(format!("{p}|fieldref"), ystr(o.path()));
        if eq {
            return is;
        }
        // Ours holds when both fields are present and differ.
        let a = self.sel(format!("{p}|exists"), Yaml::Boolean(true));
        let b = self.sel(format!("{}|exists", o.path()), Yaml::Boolean(true));
        format!("({a} and {b} and not {is})")
    }
}

fn detection(r: &Rule, cond: &Cond, kinds: Option<&[crate::event::Kind]>) -> Translated<Yaml> {
    let mut d = Detection {
        selections: Vec::new(),
        reasons: Vec::new(),
    };
    let mut parts = Vec::new();
    if let Some(ks) = kinds {
        let mut names: Vec<String> = ks.iter().map(|k| k.as_str().to_string()).collect();
        names.sort();
        parts.push(d.sel("kind|cased".into(), Detection::strings(&names)));
    }
    if !matches!(cond, Cond::True) || parts.is_empty() {
        parts.push(d.expr(cond));
    }
    if !d.reasons.is_empty() {
        return Err(d.reasons);
    }
    let condition = parts.join(" and ");
    let mut det = Hash::new();
    for (name, s) in d.selections {
        det.insert(Yaml::String(name), s);
    }
    det.insert(ystr("condition"), Yaml::String(condition));
    let mut entries = header(r, &[]);
    entries.push((
        "logsource",
        map(vec![
            ("product", ystr("linux")),
            ("service", ystr("detector")),
        ]),
    ));
    entries.push(("detection", Yaml::Hash(det)));
    entries.push(("level", ystr(level(r.severity))));
    Ok(map(entries))
}

/// A duration in Sigma's notation, in the largest unit that divides it.
fn timespan(ns: u64, tick: u64, what: &'static str) -> Result<String, Reason> {
    if !ns.is_multiple_of(tick) {
        return Err(Reason::Duration(what, ns));
    }
    let s = ns / tick;
    Ok(match s {
        0 => "0s".to_string(),
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    })
}

/// A correlation rule in Sigma (its steps' detections already translated, or not).
fn correlation(
    set: &RuleSet,
    r: &Rule,
    c: &Correlation,
    detections: &[Option<Translated<Yaml>>],
    tick: u64,
) -> Translated<Noted> {
    let mut reasons = untranslatable(set, c, detections);
    let mut notes = Vec::new();
    let span = timespan(c.timespan, tick, "timespan").map_err(|e| reasons.push(e));
    let suppress = timespan(r.suppress, tick, "suppress").map_err(|e| reasons.push(e));
    if c.budget {
        notes.push(format!(
            "Exact for identities without a `fan_out_budget` in identities.yaml: detector \
             replaces the threshold by an identity's budget (`gt`), Sigma keeps {}",
            condition_text(&c.condition)
        ));
    }
    let (Ok(span), Ok(suppress)) = (span, suppress) else {
        return Err(reasons);
    };
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let ty = match c.ty {
        CorrType::EventCount => "event_count",
        CorrType::ValueCount => "value_count",
        CorrType::Temporal => "temporal",
        CorrType::TemporalOrdered => "temporal_ordered",
    };
    let steps: Vec<&Rule> = c.steps.iter().map(|&s| &set.rules[s]).collect();
    let (group_by, aliases) = sigma_group_by(c, &steps);
    let mut corr = vec![
        ("type", ystr(ty)),
        (
            "rules",
            Yaml::Array(steps.iter().map(|s| ystr(&s.id)).collect()),
        ),
    ];
    if !group_by.is_empty() {
        corr.push(("group-by", Yaml::Array(group_by)));
    }
    if !aliases.is_empty() {
        corr.push(("aliases", Yaml::Hash(aliases)));
    }
    corr.push(("timespan", Yaml::String(span)));
    // Sigma's temporal types default to "all rules"; ours says so explicitly only when
    // written, and the Sigma condition counts rules the same way.
    corr.push(("condition", Yaml::Hash(sigma_condition(c, steps.len()))));
    corr.push(("generate", Yaml::Boolean(c.generate)));
    let mut entries = header(r, &notes);
    entries.push(("correlation", map(corr)));
    entries.push(("level", ystr(level(r.severity))));
    entries.push((
        "custom_attributes",
        map(vec![("rsigma.suppress", Yaml::String(suppress))]),
    ));
    Ok((map(entries), notes))
}

/// Why a correlation has no exact Sigma equivalent (empty: it has one, durations aside).
fn untranslatable(
    set: &RuleSet,
    c: &Correlation,
    detections: &[Option<Translated<Yaml>>],
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    for &s in &c.steps {
        if !matches!(detections.get(s), Some(Some(Ok(_)))) {
            reasons.push(Reason::Step(set.rules[s].id.clone()));
        }
    }
    let all_fields = c.step_group_by.iter().flatten().chain(c.field.iter());
    for &f in all_fields {
        if f == Field::Tree {
            if !reasons.contains(&Reason::TreeJoin) {
                reasons.push(Reason::TreeJoin);
            }
        } else if AGENT_FIELDS.contains(&f) {
            reasons.push(Reason::AgentField(f));
        } else if f.ty() == FieldType::StrList {
            reasons.push(Reason::ListField(f));
        }
    }
    if c.max_gap.is_some() {
        reasons.push(Reason::MaxGap);
    }
    // A `temporal` with `field` counts distinct values of the last rule's matches too.
    if (c.ty == CorrType::TemporalOrdered
        && (c.field.is_some() || c.condition != [(CmpOp::Gte, 1)]))
        || (c.ty == CorrType::Temporal && c.field.is_some())
    {
        reasons.push(Reason::OrderedCount);
    }
    reasons
}

/// Group-by: a field every step reads alike is written as itself; one that differs between
/// steps is a Sigma alias named after the first step's field. Returns (group-by, aliases).
fn sigma_group_by(c: &Correlation, steps: &[&Rule]) -> (Vec<Yaml>, Hash) {
    let mut group_by = Vec::new();
    let mut aliases = Hash::new();
    for (k, f) in c.group_by.iter().enumerate() {
        let same = c.step_group_by.iter().all(|g| g.get(k) == Some(f));
        if same {
            group_by.push(ystr(f.path()));
        } else {
            let alias = format!("{}_alias", f.path().replace('.', "_"));
            let mut m = Hash::new();
            for (st, g) in steps.iter().zip(&c.step_group_by) {
                if let Some(x) = g.get(k) {
                    m.insert(ystr(&st.id), ystr(x.path()));
                }
            }
            aliases.insert(ystr(&alias), Yaml::Hash(m));
            group_by.push(Yaml::String(alias));
        }
    }
    (group_by, aliases)
}

/// A correlation's Sigma `condition` (`steps`: how many rules it references).
fn sigma_condition(c: &Correlation, steps: usize) -> Hash {
    let mut cond = Hash::new();
    if c.ty == CorrType::TemporalOrdered {
        // Ours (checked above: `gte: 1` of the last step after a complete chain) is Sigma's
        // "every rule, in order".
        cond.insert(ystr("gte"), Yaml::Integer(steps as i64));
    } else {
        for (op, v) in &c.condition {
            cond.insert(ystr(cmp_name(*op)), Yaml::Integer(*v));
        }
    }
    if let Some(f) = c.field {
        if c.ty == CorrType::ValueCount {
            cond.insert(ystr("field"), ystr(f.path()));
        }
    }
    cond
}

fn cmp_name(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Gt => "gt",
        CmpOp::Gte => "gte",
        CmpOp::Lt => "lt",
        CmpOp::Lte => "lte",
        CmpOp::Eq => "eq",
        CmpOp::Neq => "neq",
    }
}

fn condition_text(c: &[(CmpOp, i64)]) -> String {
    c.iter()
        .map(|(op, v)| format!("{}: {v}", cmp_name(*op)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Expands a glob's alternatives (`/usr/{bin,sbin}/x` → `/usr/bin/x`, `/usr/sbin/x`), each
/// group un-nested and without escapes; None when a group is nested, unclosed, or the product
/// exceeds 256 patterns.
fn expand_alternatives(pat: &str) -> Option<Vec<String>> {
    if pat.contains('\\') {
        return None;
    }
    let mut out = vec![String::new()];
    let mut rest = pat;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}')?;
        let body = &rest[open + 1..close];
        if body.contains('{') {
            return None;
        }
        let head = &rest[..open];
        let mut next = Vec::new();
        for o in &out {
            for alt in body.split(',') {
                next.push(format!("{o}{head}{alt}"));
            }
        }
        if next.len() > 256 {
            return None;
        }
        out = next;
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return None;
    }
    Some(out.into_iter().map(|o| o + rest).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::load::load_rules;

    fn one(src: &str) -> Export {
        let set = RuleSet::load(&[("t.yaml".into(), src.into())]).expect("loads");
        export(&set, &ExportOptions::default())
    }

    #[test]
    fn literals_escape_sigma_wildcards() {
        assert_eq!(literal(r"/proc/*/environ?\x"), r"/proc/\*/environ\?\\x");
        let e = one("rules:\n  - id: e\n    title: e\n    severity: low\n    condition: {kind: cred_open, file.watched: '/proc/*/environ'}\n");
        assert!(
            e.documents[0].yaml.contains(r"/proc/\\*/environ"),
            "{}",
            e.documents[0].yaml
        );
    }

    #[test]
    fn what_does_not_translate_says_why() {
        let pack = load_rules(&[], false).expect("pack loads");
        let e = export(&pack, &ExportOptions::default());
        let reasons = |id: &str| {
            e.skipped
                .iter()
                .find(|s| s.rule == id)
                .map(|s| s.reasons.clone())
                .unwrap_or_default()
        };
        let ms = reasons("machine-speed-credential-reuse");
        assert!(
            ms.contains(&Reason::TreeJoin) && ms.contains(&Reason::OrderedCount),
            "{ms:?}"
        );
        assert_eq!(
            reasons("bb-k8s-token-read-non-owner"),
            vec![Reason::AgentField(Field::Owned)]
        );
        // Alternatives are lists of values.
        assert!(e.translated("shadow-read-unexpected"));
        assert_eq!(
            expand_alternatives("{/usr/sbin,/sbin}/{pwck,grpck}"),
            Some(vec![
                "/usr/sbin/pwck".to_string(),
                "/usr/sbin/grpck".into(),
                "/sbin/pwck".into(),
                "/sbin/grpck".into()
            ])
        );
        assert_eq!(expand_alternatives("/a/{b,{c,d}}"), None);
        assert_eq!(expand_alternatives("/a/{b,c"), None);
        assert!(e.translated("port-sweep"));
        let fan = e
            .documents
            .iter()
            .find(|d| d.rule == "service-fan-out-burst");
        assert!(
            fan.is_some_and(|d| d.notes.len() == 1),
            "the budget is noted"
        );
        let e = one("rules:\n  - id: g\n    title: g\n    severity: low\n    condition: {process.exe: {glob: '/usr/[bs]bin/x'}}\n  - id: c\n    title: c\n    severity: info\n    alert: false\n    condition: {kind: connect}\n  - id: k\n    title: k\n    severity: low\n    correlation: {type: event_count, rules: [c], group-by: [net.dst_addr], timespan: 1500ms, condition: {gte: 2}}\n");
        assert!(
            matches!(&e.skipped[0].reasons[0], Reason::Glob(_)),
            "{:?}",
            e.skipped
        );
        // In rule-set order: the building block goes with the correlation that uses it.
        assert_eq!(
            e.skipped[1].reasons,
            vec![Reason::UnusedBlock],
            "{:?}",
            e.skipped
        );
        assert!(matches!(
            e.skipped[2].reasons[0],
            Reason::Duration("timespan", _)
        ));
    }

    #[test]
    fn aliases_and_sigma_ids() {
        let e = one("rules:\n  - id: a\n    title: a\n    severity: info\n    alert: false\n    condition: {kind: connect}\n  - id: b\n    title: b\n    severity: info\n    alert: false\n    condition: {kind: accept}\n  - id: t\n    title: t\n    severity: low\n    correlation: {type: temporal, rules: [a, b], group-by: [peer], aliases: {peer: {a: net.dst_addr, b: net.src_addr}}, timespan: 30s}\n");
        let t = &e.documents[2].yaml;
        assert!(
            t.contains("net_dst_addr_alias:") && t.contains("b: net.src_addr"),
            "{t}"
        );
        assert_eq!(sigma_id("t"), sigma_id("t"));
        assert_ne!(sigma_id("t"), sigma_id("u"));
    }
}
