//! Stages 1 and 2 of loading: the sources parsed (bytes and YAML, bounded) and their documents
//! read for their top-level shape (lists, rules by id, tests, overrides).

use super::*;

/// Parses a duration (`1s`, `500ms`, `90days`) into ns (at most `u64::MAX`, 584 years).
pub(crate) fn duration(n: &Node) -> Result<u64, PosError> {
    let s = n.as_scalar_string()?;
    crate::input::value::duration_ns(&s).map_err(|m| PosError::new(&n.pos, m))
}

/// A rule as written: its id and its mapping (as overrides left it: then owned).
pub(crate) struct RawRule<'a> {
    /// Unique id.
    pub(crate) id: String,
    /// The rule's mapping.
    pub(crate) node: Cow<'a, Node>,
}

pub(super) const RULE_KEYS: &[&str] = &[
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
pub(super) const CORR_KEYS: &[&str] = &[
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

/// Parses every source (bounded by [`crate::input::RULES`] each, and
/// [`crate::input::RULES_TOTAL_BYTES`] and [`crate::input::RULES_TOTAL_NODES`] together); a
/// source that fails is reported and left out, so that the other files' problems are reported
/// too.
pub(crate) fn parse_sources(sources: &[(String, String)], errs: &mut Vec<PosError>) -> Vec<Node> {
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
pub(crate) struct Collected<'a> {
    /// Named lists.
    pub(crate) lists: Lists,
    /// Rules by id, in file order.
    pub(crate) raws: Vec<RawRule<'a>>,
    /// `tests:` sections.
    pub(crate) tests: Vec<&'a Node>,
    /// `overrides:` sections, in file order.
    pub(crate) overrides: Vec<&'a Node>,
}

/// Reads the top-level shape of every document: `lists`, `rules` (each with a unique `id`,
/// unknown keys reported), `tests` and `overrides`.
pub(crate) fn collect<'a>(docs: &'a [Node], errs: &mut Vec<PosError>) -> Collected<'a> {
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
            collect_lists(l, &mut lists, errs);
        }
        if let Some(r) = f.get("rules") {
            collect_rules(r, &mut ids, &mut raws, errs);
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

/// A document's `lists` into `lists` (a name defined twice is reported).
fn collect_lists(l: &Node, lists: &mut Lists, errs: &mut Vec<PosError>) {
    match l.as_map() {
        Ok(m) => {
            for (name, kn, v) in m {
                match v.as_seq() {
                    Ok(items) => {
                        if !lists.insert(name.to_string(), &kn.pos, items.to_vec()) {
                            errs.push(PosError::new(&kn.pos, format!("duplicate list `{name}`")));
                        }
                    }
                    Err(e) => errs.push(e),
                }
            }
        }
        Err(e) => errs.push(e),
    }
}

/// A document's `rules` into `raws`, each under its own id (`ids`: where each id seen so far
/// is; a duplicate is reported).
fn collect_rules<'a>(
    r: &'a Node,
    ids: &mut HashMap<String, Pos>,
    raws: &mut Vec<RawRule<'a>>,
    errs: &mut Vec<PosError>,
) {
    let items = match r.as_seq() {
        Ok(items) => items,
        Err(e) => {
            errs.push(e);
            return;
        }
    };
    for it in items {
        let id = it
            .fields_collect(RULE_KEYS, errs)
            .and_then(|f| f.req("id").and_then(|i| i.as_str().map(str::to_string)));
        match id {
            Ok(id) => match ids.get(&id) {
                Some(first) => errs.push(PosError::new(
                    &it.pos,
                    format!(
                        "duplicate rule id {} (first defined at {first}); to change a rule \
                         defined elsewhere, use `overrides:`",
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
