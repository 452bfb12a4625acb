//! The `tests:` sections beside the rules, read into test cases (their events expanded from
//! templates and defaults).

use super::*;

/// Reads the test blocks of a `tests:` section into `out`, one test case per case.
pub(super) fn parse_tests(
    n: &Node,
    index: &HashMap<&str, usize>,
    applied: &overrides::Applied,
    out: &mut Vec<TestCase>,
) -> Result<(), PosError> {
    for t in n.as_seq()? {
        parse_block(t, index, applied, out)?;
    }
    Ok(())
}

/// One test block: a rule's cases, with the processes, defaults, identities and baseline they
/// share.
fn parse_block(
    t: &Node,
    index: &HashMap<&str, usize>,
    applied: &overrides::Applied,
    out: &mut Vec<TestCase>,
) -> Result<(), PosError> {
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
    let baseline = f.get("baseline").map(baseline_doc);
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
        let Case {
            name,
            expect,
            events,
        } = parse_case(c, &procs, &defaults)?;
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
    Ok(())
}

/// A block's `baseline` as a baseline document (`baseline: …`).
fn baseline_doc(b: &Node) -> Node {
    let key = Node {
        value: yaml::Value::Str("baseline".into()),
        pos: b.pos.clone(),
    };
    Node {
        value: yaml::Value::Map(vec![(key, b.clone())]),
        pos: b.pos.clone(),
    }
}

/// What a case says (the rest of its [`TestCase`] is its block's).
struct Case {
    name: String,
    expect: usize,
    events: Vec<(Pos, serde_json::Value)>,
}

/// One case: its name, expected alert count and events (expanded from the block's templates
/// and defaults).
fn parse_case(
    c: &Node,
    procs: &HashMap<String, serde_json::Value>,
    defaults: &serde_json::Value,
) -> Result<Case, PosError> {
    let cf = c.fields(&["name", "expect", "events"])?;
    let name = cf.req("name")?.as_str()?.to_string();
    let en = cf.req("expect")?;
    let expect =
        usize::try_from(en.as_i64()?).map_err(|_| PosError::new(&en.pos, "expect must be ≥ 0"))?;
    let mut events = Vec::new();
    for e in cf.req("events")?.as_seq()? {
        let mut j = e.to_json();
        expand_event(&mut j, procs, defaults).map_err(|m| PosError::new(&e.pos, m))?;
        events.push((e.pos.clone(), j));
    }
    Ok(Case {
        name,
        expect,
        events,
    })
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
