//! Warnings over a rule set that loaded: things that are valid but do nothing, most likely a
//! mistake — an unused list, a building block (`alert: false`) no correlation references, an
//! exception that can never match. They do not reject the set; `detector rules check` prints
//! them and the agent logs them at start and reload, positioned like errors.

use super::*;

/// The kinds whose events carry field `f` (every kind but `loss` has a process).
fn kinds_with(f: Field) -> &'static [Kind] {
    match f.path().split('.').next().unwrap_or_default() {
        "exec" => &[Kind::Exec],
        "fork" => &[Kind::Fork],
        "exit" => &[Kind::Exit],
        "net" => &[Kind::Connect, Kind::ConnectResult, Kind::Accept],
        "file" | "credential" => &[Kind::CredOpen, Kind::CredRead, Kind::CredWrite],
        "loss" => &[Kind::Loss],
        _ => &[
            Kind::Exec,
            Kind::Fork,
            Kind::Exit,
            Kind::Connect,
            Kind::ConnectResult,
            Kind::Accept,
            Kind::CredOpen,
            Kind::CredRead,
            Kind::CredWrite,
        ],
    }
}

/// One exception entry (`fields` at `fields_at`, `n_values` tuples at `at`) of a rule over
/// `kinds`: a warning for each reason it can never match.
pub(super) fn exception(
    fields: &[(Field, &Pos)],
    n_values: usize,
    at: &Pos,
    kinds: Option<&[Kind]>,
    warns: &mut Vec<PosError>,
) {
    if n_values == 0 {
        warns.push(PosError::new(
            at,
            "exception with an empty `values` list: it never matches",
        ));
    }
    let Some(kinds) = kinds else { return };
    for &(f, pos) in fields {
        if !kinds_with(f).iter().any(|k| kinds.contains(k)) {
            let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            warns.push(PosError::new(
                pos,
                format!(
                    "exception on `{}`, which {} events never have: it never matches",
                    f.path(),
                    names.join("/")
                ),
            ));
        }
    }
}

/// Lists nothing used while compiling. The embedded pack's lists are exempt: they are also a
/// library for the operator's own rule files (`@ssh_clients`), unused by the pack itself.
pub(super) fn unused_lists(lists: &Lists, warns: &mut Vec<PosError>) {
    for (name, pos) in lists.unused() {
        if pos.file.starts_with(EMBEDDED) {
            continue;
        }
        warns.push(PosError::new(
            pos,
            format!("list `{name}` is not used by any rule"),
        ));
    }
}

/// Rules that raise no alert and feed no correlation (indexed set: `consumers` filled).
pub(super) fn idle_rules(set: &RuleSet, warns: &mut Vec<PosError>) {
    for (r, consumers) in set.rules.iter().zip(&set.consumers) {
        if !r.alert && consumers.is_empty() {
            warns.push(PosError::new(
                &r.pos,
                format!(
                    "rule `{}` raises no alert (`alert: false`) and no correlation references it: it has no effect",
                    r.id
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(src: &str) -> Vec<String> {
        let set = RuleSet::load(&[("w.yaml".to_string(), src.to_string())])
            .unwrap_or_else(|e| panic!("{e:?}"));
        set.warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn unused_list_is_warned_at_its_name() {
        let w = warnings(
            "lists:\n  used: [/usr/bin/ssh]\n  spare: [/bin/true]\nrules:\n  - id: a\n    title: A\n    severity: low\n    condition: {kind: exec, process.exe: {in: ['@used']}}\n",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("w.yaml:3:3"), "{w:?}");
        assert!(w[0].contains("list `spare` is not used"), "{w:?}");
    }

    #[test]
    fn idle_building_block_is_warned() {
        let w = warnings(
            "rules:\n  - id: used\n    title: U\n    severity: low\n    alert: false\n    condition: {kind: connect}\n  - id: idle\n    title: I\n    severity: low\n    alert: false\n    condition: {kind: connect}\n  - id: c\n    title: C\n    severity: high\n    correlation: {type: event_count, rules: [used], timespan: 10s, condition: {gte: 2}}\n",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("w.yaml:7:5"), "{w:?}");
        assert!(w[0].contains("rule `idle` raises no alert"), "{w:?}");
    }

    #[test]
    fn exceptions_that_never_match_are_warned() {
        let w = warnings(
            "rules:\n  - id: a\n    title: A\n    severity: low\n    condition: {kind: connect}\n    exceptions:\n      - name: wrong-kind\n        fields: [file.path, process.exe]\n        values: [[/etc/x, /bin/y]]\n      - name: empty\n        fields: [net.dst_port]\n        values: []\n      - name: fine\n        fields: [net.dst_port]\n        values: [[443]]\n",
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("w.yaml:8:18"), "{w:?}");
        assert!(
            w[0].contains("exception on `file.path`, which connect events never have"),
            "{w:?}"
        );
        assert!(w[1].starts_with("w.yaml:10:9"), "{w:?}");
        assert!(w[1].contains("empty `values`"), "{w:?}");
    }

    #[test]
    fn the_shipped_pack_has_no_warnings() {
        let set = RuleSet::load(&embedded_sources()).unwrap_or_else(|e| panic!("{e:?}"));
        let w: Vec<String> = set.warnings.iter().map(|w| w.to_string()).collect();
        assert!(w.is_empty(), "{w:#?}");
    }
}
