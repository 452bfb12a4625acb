//! Stage 4 of loading: rules compiled, references to lists and rules resolved (regexes, globs,
//! CIDRs built once), Sigma `generate` and `aliases` applied.

use super::*;

fn fields_list(n: &Node) -> Result<Vec<Field>, PosError> {
    n.as_seq_or_one()
        .into_iter()
        .map(|f| cond::field(f, f.as_str()?))
        .collect()
}

/// Compiles `exceptions` into a condition that is true when any exception tuple matches.
fn exceptions(
    n: &Node,
    lists: &Lists,
    kinds: Option<&[Kind]>,
    warns: &mut Vec<PosError>,
) -> Result<Cond, PosError> {
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
        let tuples = f.req("values")?.as_seq()?;
        let at: Vec<(Field, &Pos)> = fields
            .iter()
            .copied()
            .zip(fl.iter().map(|x| &x.pos))
            .collect();
        warnings::exception(&at, tuples.len(), &f.pos, kinds, warns);
        for tuple in tuples {
            let vals = tuple.as_seq()?;
            if vals.len() != fields.len() {
                return Err(PosError::new(
                    &tuple.pos,
                    format!("exception tuple needs {} values", fields.len()),
                ));
            }
            let mut all = Vec::new();
            for ((&field, comp), v) in fields.iter().zip(&comps).zip(vals) {
                all.push(exception_value(field, comp, v, &tuple.pos, lists)?);
            }
            any.push(Cond::All(all));
        }
    }
    Ok(Cond::Any(any))
}

/// One value of an exception tuple (`field comp v`) as a condition; `tuple` is where the
/// tuple is.
fn exception_value(
    field: Field,
    comp: &str,
    v: &Node,
    tuple: &Pos,
    lists: &Lists,
) -> Result<Cond, PosError> {
    let op = match comp {
        "=" => "eq",
        "in" | "glob" | "prefix" | "suffix" | "contains" | "cidr" | "regex" => comp,
        other => {
            return Err(PosError::new(
                tuple,
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
    cond::compile(&map, lists)
}

/// Compiles one rule (its references to lists and other rules resolved); problems in its
/// condition beyond the first go to `errs`, warnings to `warns`.
pub(super) fn compile_rule(
    raw: &RawRule<'_>,
    lists: &Lists,
    index: &HashMap<&str, usize>,
    raws: &[RawRule<'_>],
    errs: &mut Vec<PosError>,
    warns: &mut Vec<PosError>,
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
    let attack = attack_ids(&f)?;
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
    let body = rule_body(&f, lists, index, raws, errs, warns)?;
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

/// A rule's body from its fields `f`: an event rule's condition or a correlation.
fn rule_body(
    f: &yaml::Fields<'_>,
    lists: &Lists,
    index: &HashMap<&str, usize>,
    raws: &[RawRule<'_>],
    errs: &mut Vec<PosError>,
    warns: &mut Vec<PosError>,
) -> Result<Body, PosError> {
    Ok(match (f.get("condition"), f.get("correlation")) {
        (Some(c), None) => event_body(c, f, lists, errs, warns)?,
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
    })
}

/// A rule's `attack` technique ids (T1234 or T1234.001).
fn attack_ids(f: &yaml::Fields<'_>) -> Result<Vec<String>, PosError> {
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
    Ok(attack)
}

/// An event rule's body: its condition `c` (every problem in it goes to `errs`, the first
/// is returned), the kinds it is limited to, and its exceptions (from the rule's fields `f`).
fn event_body(
    c: &Node,
    f: &yaml::Fields<'_>,
    lists: &Lists,
    errs: &mut Vec<PosError>,
    warns: &mut Vec<PosError>,
) -> Result<Body, PosError> {
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
                    kind_of(k).ok_or_else(|| PosError::new(&c.pos, format!("unknown kind `{k}`")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    if kinds.is_some() {
        cond = cond.without_index_kind();
    }
    if let Some(ex) = f.get("exceptions") {
        let ex = exceptions(ex, lists, kinds.as_deref(), warns)?;
        cond = Cond::All(vec![cond, Cond::Not(Box::new(ex))]);
    }
    Ok(Body::Event { cond, kinds })
}

fn compile_corr(
    n: &Node,
    index: &HashMap<&str, usize>,
    raws: &[RawRule<'_>],
) -> Result<Correlation, PosError> {
    let f = n.fields(CORR_KEYS)?;
    let ty = corr_type(f.req("type")?)?;
    let steps = corr_steps(&f, ty, index, raws)?;
    let step_group_by = step_group_by(&f, &steps, raws)?;
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
    let condition = corr_condition(&f, ty, field, steps.len())?;
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

/// A correlation's `type` (the node).
fn corr_type(tn: &Node) -> Result<CorrType, PosError> {
    Ok(match tn.as_str()? {
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
    })
}

/// A correlation's `rules`, as indices in `raws`: event rules, as many as its type needs and
/// a window entry can number.
fn corr_steps(
    f: &yaml::Fields<'_>,
    ty: CorrType,
    index: &HashMap<&str, usize>,
    raws: &[RawRule<'_>],
) -> Result<Vec<usize>, PosError> {
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
    Ok(steps)
}

/// A correlation's grouping per step: its `group-by` fields, an alias standing for each
/// step's own field. Every alias must be used.
fn step_group_by(
    f: &yaml::Fields<'_>,
    steps: &[usize],
    raws: &[RawRule<'_>],
) -> Result<Vec<Vec<Field>>, PosError> {
    let aliases = match f.get("aliases") {
        Some(a) => compile_aliases(a, steps, raws)?,
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
    Ok(step_group_by)
}

/// A correlation's `condition` (by default: every step for `temporal` without a field, else
/// at least one event).
fn corr_condition(
    f: &yaml::Fields<'_>,
    ty: CorrType,
    field: Option<Field>,
    steps: usize,
) -> Result<Vec<(CmpOp, i64)>, PosError> {
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
            CorrType::Temporal if field.is_none() => (CmpOp::Gte, steps as i64),
            _ => (CmpOp::Gte, 1),
        });
    }
    Ok(condition)
}

/// Sigma `generate`: a rule referenced by correlations raises its own alerts only when one of
/// them says `generate: true` (Sigma's default is false), unless the rule sets `alert`
/// itself. `alert: false` on a rule that a `generate: true` correlation references is a
/// contradiction and an error. `rules` and `raws` are index-aligned (all rules compiled).
pub(super) fn apply_generate(rules: &mut [Rule], raws: &[&RawRule<'_>], errs: &mut Vec<PosError>) {
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
