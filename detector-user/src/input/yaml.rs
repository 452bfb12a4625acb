//! A YAML tree that remembers where every node came from, so that semantic errors (unknown
//! field, bad regex, unknown list) name `file:line:col` and not only syntax errors do.
//!
//! Built on yaml-rust2's marked event stream, pulled one event at a time so that the first
//! limit crossed stops the parse; plain scalars are typed with YAML 1.2 core rules (`true`,
//! `12`, `1.5`, `null`), quoted scalars are always strings. Bounds: [`super::Limits`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

/// A position in a source file (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    /// File name as given by the caller (`<embedded>/rules/x.yaml`, a path…).
    pub(crate) file: Arc<str>,
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column.
    pub(crate) col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// An error at a position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {msg}")]
pub struct PosError {
    /// Where.
    pub(crate) pos: Pos,
    /// What.
    pub(crate) msg: String,
}

impl PosError {
    /// Error `msg` at `pos`.
    pub(crate) fn new(pos: &Pos, msg: impl Into<String>) -> Self {
        PosError {
            pos: pos.clone(),
            msg: msg.into(),
        }
    }
}

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// `null`, `~` or empty.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Floating point.
    Float(f64),
    /// String (quoted, or plain and not another type).
    Str(String),
    /// Sequence.
    Seq(Vec<Node>),
    /// Mapping, in source order.
    Map(Vec<(Node, Node)>),
}

/// A value with its position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    /// The value.
    pub(crate) value: Value,
    /// Where it starts.
    pub(crate) pos: Pos,
}

impl Node {
    /// Short name of the node's type, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "mapping",
        }
    }

    fn err(&self, want: &str) -> PosError {
        PosError::new(
            &self.pos,
            format!("expected {want}, found {}", self.type_name()),
        )
    }

    /// The string, or an error.
    pub(crate) fn as_str(&self) -> Result<&str, PosError> {
        match &self.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.err("a string")),
        }
    }

    /// The scalar rendered as a string (numbers and booleans included), or an error.
    pub(crate) fn as_scalar_string(&self) -> Result<String, PosError> {
        match &self.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.err("a scalar")),
        }
    }

    /// The integer, or an error.
    pub(crate) fn as_i64(&self) -> Result<i64, PosError> {
        match &self.value {
            Value::Int(i) => Ok(*i),
            _ => Err(self.err("an integer")),
        }
    }

    /// The boolean, or an error.
    pub(crate) fn as_bool(&self) -> Result<bool, PosError> {
        match &self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.err("a boolean")),
        }
    }

    /// The sequence items, or an error.
    pub(crate) fn as_seq(&self) -> Result<&[Node], PosError> {
        match &self.value {
            Value::Seq(s) => Ok(s),
            _ => Err(self.err("a sequence")),
        }
    }

    /// A sequence, or a single item taken as a one-item sequence (`tags: T1046`).
    pub(crate) fn as_seq_or_one(&self) -> Vec<&Node> {
        match &self.value {
            Value::Seq(s) => s.iter().collect(),
            _ => vec![self],
        }
    }

    /// The mapping entries with string keys, or an error.
    pub(crate) fn as_map(&self) -> Result<Vec<(&str, &Node, &Node)>, PosError> {
        match &self.value {
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| Ok((k.as_str()?, k, v)))
                .collect::<Result<Vec<_>, PosError>>(),
            _ => Err(self.err("a mapping")),
        }
    }

    /// Checks that a mapping has only `allowed` keys (and each at most once) and returns a
    /// lookup of its values. Unknown keys are errors at the key's position.
    pub(crate) fn fields(&self, allowed: &[&str]) -> Result<Fields<'_>, PosError> {
        let mut map = HashMap::new();
        let mut keys = Vec::new();
        for (k, kn, v) in self.as_map()? {
            if !allowed.contains(&k) {
                return Err(PosError::new(
                    &kn.pos,
                    format!(
                        "unknown field {} (expected one of: {})",
                        super::excerpt(k),
                        allowed.join(", ")
                    ),
                ));
            }
            if map.insert(k, v).is_some() {
                return Err(PosError::new(&kn.pos, format!("duplicate field `{k}`")));
            }
            keys.push(k);
        }
        Ok(Fields {
            map,
            pos: self.pos.clone(),
        })
    }

    /// Like [`Node::fields`], but records unknown and duplicate keys in `errs` and goes on
    /// with the known ones, so that one run reports every problem.
    pub(crate) fn fields_collect(
        &self,
        allowed: &[&str],
        errs: &mut Vec<PosError>,
    ) -> Result<Fields<'_>, PosError> {
        let mut map = HashMap::new();
        for (k, kn, v) in self.as_map()? {
            if !allowed.contains(&k) {
                errs.push(PosError::new(
                    &kn.pos,
                    format!(
                        "unknown field {} (expected one of: {})",
                        super::excerpt(k),
                        allowed.join(", ")
                    ),
                ));
            } else if map.insert(k, v).is_some() {
                errs.push(PosError::new(&kn.pos, format!("duplicate field `{k}`")));
            }
        }
        Ok(Fields {
            map,
            pos: self.pos.clone(),
        })
    }

    /// Converts to JSON (for test events, which are deserialized into `Event`).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(s) => J::Array(s.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| {
                        let key = k.as_scalar_string().unwrap_or_default();
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }
}

/// The checked fields of a mapping.
pub(crate) struct Fields<'a> {
    map: HashMap<&'a str, &'a Node>,
    /// Position of the mapping.
    pub(crate) pos: Pos,
}

impl<'a> Fields<'a> {
    /// An optional field.
    pub(crate) fn get(&self, k: &str) -> Option<&'a Node> {
        self.map.get(k).copied()
    }

    /// A required field.
    pub(crate) fn req(&self, k: &str) -> Result<&'a Node, PosError> {
        self.get(k)
            .ok_or_else(|| PosError::new(&self.pos, format!("missing required field `{k}`")))
    }
}

/// Parses every document of `src` with the rule files' limits ([`super::RULES`]).
#[cfg(test)]
pub(crate) fn parse(file: &str, src: &str) -> Result<Vec<Node>, PosError> {
    parse_with(file, src, &super::RULES)
}

/// Parses every document of `src` within `limits`. The first problem stops the parse (so a
/// hostile document costs no more than the limits allow) and is returned with its position:
/// syntax, a character YAML does not allow, too deep, too many nodes in the file (aliases count
/// the nodes they stand for), too many items, too long a scalar, a duplicate or non-scalar
/// key, a tag other than `!!str`.
pub(crate) fn parse_with(
    file: &str,
    src: &str,
    limits: &super::Limits,
) -> Result<Vec<Node>, PosError> {
    let mut budget = Budget {
        left: limits.max_nodes,
        of: "the file",
    };
    parse_within(file, src, limits, &mut budget)
}

/// Nodes a group of files may still hold (a rule set of many files), and what it bounds (for
/// the message).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// Nodes left.
    pub(crate) left: usize,
    /// What the budget is for (`the rule set`).
    pub(crate) of: &'static str,
}

/// As [`parse_with`], with the file's nodes also taken from `budget`, shared with other files
/// (each file keeps its own `limits.max_nodes` too).
pub(crate) fn parse_within(
    file: &str,
    src: &str,
    limits: &super::Limits,
    budget: &mut Budget,
) -> Result<Vec<Node>, PosError> {
    let file: Arc<str> = Arc::from(file);
    // Text from a file went through `check_text` already; text from elsewhere (the embedded
    // pack, rule tests) gets the same checks here: the parser takes a NUL for the end.
    super::check_str(&file, src, limits)?;
    let mut b = Builder {
        file: file.clone(),
        limits: *limits,
        docs: Vec::new(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        max: limits.max_nodes.min(budget.left),
        of: if budget.left < limits.max_nodes {
            budget.of
        } else {
            "the file"
        },
    };
    let mut parser = Parser::new_from_str(src);
    let mut run = || -> Result<(), PosError> {
        loop {
            let (ev, mark) = parser.next_token().map_err(|e| {
                let m = e.marker();
                PosError {
                    pos: Pos {
                        file: file.clone(),
                        line: m.line(),
                        col: m.col() + 1,
                    },
                    msg: format!("YAML syntax: {}", e.info()),
                }
            })?;
            if ev == Event::StreamEnd {
                return Ok(());
            }
            b.on_event(ev, mark)?;
        }
    };
    let r = run();
    // A file that failed spent its nodes too: the next one does not get them again.
    budget.left -= b.nodes.min(budget.left);
    r.map(|()| b.docs)
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        /// Nodes counted when it started (its size, aliases included, is the difference).
        nodes_at: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        nodes_at: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// Keys seen (canonical text) and where.
        seen: HashMap<String, (usize, usize)>,
    },
}

struct Builder {
    file: Arc<str>,
    limits: super::Limits,
    docs: Vec<Node>,
    stack: Vec<Frame>,
    /// Anchored nodes and how many nodes each stands for.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes in the file so far, alias expansions included.
    nodes: usize,
    /// Most nodes this file may have, and what that bound is (`the file`, `the rule set`).
    max: usize,
    of: &'static str,
}

/// The text a scalar key is compared by: `1` and `"1"` are the same key to every reader of
/// these files (they read keys as strings).
fn key_text(k: &Node) -> Option<String> {
    k.as_scalar_string()
        .ok()
        .or_else(|| matches!(k.value, Value::Null).then(String::new))
}

impl Builder {
    fn pos(&self, m: Marker) -> Pos {
        // yaml-rust2 lines are 1-based, columns 0-based.
        Pos {
            file: self.file.clone(),
            line: m.line(),
            col: m.col() + 1,
        }
    }

    /// Counts `n` more nodes of the file.
    fn count(&mut self, n: usize, pos: &Pos, what: &str) -> Result<(), PosError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.max {
            let max = if self.of == "the file" {
                self.limits.max_nodes
            } else {
                self.max
            };
            return Err(PosError::new(
                pos,
                format!("too large: more than {max} nodes in {}{what}", self.of),
            ));
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), PosError> {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let max_items = self.limits.max_items;
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => {
                if items.len() >= max_items {
                    return Err(PosError::new(
                        &node.pos,
                        format!("sequence too long: more than {max_items} items"),
                    ));
                }
                items.push(node);
            }
            Some(Frame::Map {
                entries, key, seen, ..
            }) => match key.take() {
                None => {
                    let Some(text) = key_text(&node) else {
                        return Err(PosError::new(
                            &node.pos,
                            format!("a mapping key must be a scalar, not a {}", node.type_name()),
                        ));
                    };
                    if entries.len() >= max_items {
                        return Err(PosError::new(
                            &node.pos,
                            format!("mapping too large: more than {max_items} entries"),
                        ));
                    }
                    if let Some((l, c)) = seen.get(&text) {
                        return Err(PosError::new(
                            &node.pos,
                            format!(
                                "duplicate key {} (first at line {l}, column {c})",
                                super::excerpt(&text)
                            ),
                        ));
                    }
                    seen.insert(text, (node.pos.line, node.pos.col));
                    *key = Some(node);
                }
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }

    fn open(&mut self, pos: Pos, anchor: usize, map: bool) -> Result<(), PosError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(PosError::new(
                &pos,
                format!(
                    "nested too deep: more than {} levels",
                    self.limits.max_depth
                ),
            ));
        }
        self.count(1, &pos, "")?;
        let nodes_at = self.nodes;
        self.stack.push(if map {
            Frame::Map {
                pos,
                anchor,
                nodes_at,
                entries: Vec::new(),
                key: None,
                seen: HashMap::new(),
            }
        } else {
            Frame::Seq {
                pos,
                anchor,
                nodes_at,
                items: Vec::new(),
            }
        });
        Ok(())
    }

    fn on_event(&mut self, ev: Event, mark: Marker) -> Result<(), PosError> {
        let pos = self.pos(mark);
        match ev {
            // Anchors are per document; the node budget is per file (a file of many small
            // alias bombs would otherwise get a budget per document).
            Event::DocumentStart => self.anchors.clear(),
            Event::Scalar(s, style, anchor, tag) => {
                if s.len() > self.limits.max_scalar {
                    return Err(PosError::new(
                        &pos,
                        format!(
                            "scalar too long: {} bytes, at most {}",
                            s.len(),
                            super::human_bytes(self.limits.max_scalar as u64)
                        ),
                    ));
                }
                let forced_str = match &tag {
                    None => false,
                    Some(t) if is_str_tag(t) => true,
                    Some(t) => return Err(unsupported_tag(&pos, t)),
                };
                self.count(1, &pos, "")?;
                let value = if style == TScalarStyle::Plain && !forced_str {
                    match Yaml::from_str(&s) {
                        Yaml::Null => Value::Null,
                        Yaml::Boolean(b) => Value::Bool(b),
                        Yaml::Integer(i) => Value::Int(i),
                        Yaml::Real(r) => r.parse().map_or(Value::Str(s), Value::Float),
                        _ => Value::Str(s),
                    }
                } else {
                    Value::Str(s)
                };
                self.push(Node { value, pos }, anchor, 1)?;
            }
            Event::SequenceStart(anchor, tag) => {
                if let Some(t) = tag {
                    return Err(unsupported_tag(&pos, &t));
                }
                self.open(pos, anchor, false)?;
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(t) = tag {
                    return Err(unsupported_tag(&pos, &t));
                }
                self.open(pos, anchor, true)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, nodes_at) = match self.stack.pop() {
                    Some(Frame::Seq {
                        pos,
                        anchor,
                        nodes_at,
                        items,
                    }) => (
                        Node {
                            value: Value::Seq(items),
                            pos,
                        },
                        anchor,
                        nodes_at,
                    ),
                    Some(Frame::Map {
                        pos,
                        anchor,
                        nodes_at,
                        entries,
                        ..
                    }) => (
                        Node {
                            // A block mapping's start mark is one column past its first key;
                            // the mapping is where that key is.
                            pos: match entries.first() {
                                Some((k, _)) if (k.pos.line, k.pos.col) < (pos.line, pos.col) => {
                                    k.pos.clone()
                                }
                                _ => pos,
                            },
                            value: Value::Map(entries),
                        },
                        anchor,
                        nodes_at,
                    ),
                    None => return Ok(()),
                };
                let size = self.nodes - nodes_at + 1;
                self.push(node, anchor, size)?;
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    return Err(PosError::new(&pos, "unknown alias"));
                };
                // Counted before anything is copied: an alias bomb stops here.
                self.count(size, &pos, " (aliases count the nodes they repeat)")?;
                self.push(node, 0, size)?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn is_str_tag(t: &Tag) -> bool {
    t.suffix == "str" && matches!(t.handle.as_str(), "!!" | "tag:yaml.org,2002:")
}

fn unsupported_tag(pos: &Pos, t: &Tag) -> PosError {
    PosError::new(
        pos,
        format!(
            "YAML tag {} is not supported (only `!!str` on a scalar)",
            super::excerpt(&format!(
                "{}{}",
                match t.handle.as_str() {
                    "tag:yaml.org,2002:" => "!!",
                    h => h,
                },
                t.suffix
            ))
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let docs = parse("f.yaml", "a: 1\nb:\n  - 'x'\n  - true\n  - 2.5\n").unwrap();
        let m = docs[0].as_map().unwrap();
        assert_eq!(m[0].0, "a");
        assert_eq!(m[0].2.as_i64().unwrap(), 1);
        assert_eq!((m[0].1.pos.line, m[0].1.pos.col), (1, 1));
        let seq = m[1].2.as_seq().unwrap();
        assert_eq!(seq[0].as_str().unwrap(), "x");
        assert_eq!((seq[0].pos.line, seq[0].pos.col), (3, 5));
        assert!(seq[1].as_bool().unwrap());
        assert_eq!(seq[2].value, Value::Float(2.5));
    }

    #[test]
    fn unknown_field_is_positioned() {
        let docs = parse("f.yaml", "a: 1\nzz: 2\n").unwrap();
        let e = docs[0].fields(&["a"]).err().unwrap();
        assert_eq!(e.to_string().split(": ").next().unwrap(), "f.yaml:2:1");
        assert!(e.msg.contains("unknown field `zz`"));
    }

    #[test]
    fn syntax_error_is_positioned() {
        let e = parse("f.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.msg.starts_with("YAML syntax"));
        assert_eq!(&*e.pos.file, "f.yaml");
    }

    fn err(src: &str) -> String {
        parse("f.yaml", src).unwrap_err().to_string()
    }

    /// The alias bomb (389 bytes, 4 GB before): refused at the alias that crosses the
    /// node budget, before anything is copied.
    #[test]
    fn alias_bomb_is_refused() {
        let mut src = String::from("a0: &a0 [\"lol\"]\n");
        for i in 1..=9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            src.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let t = std::time::Instant::now();
        let e = err(&src);
        assert!(
            e.contains("more than 1000000 nodes in the file (aliases count"),
            "{e}"
        );
        assert!(e.starts_with("f.yaml:7:"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        // The budget is per file: many documents, each under it, do not add up past it.
        let doc = "a0: &a0 [x]\na1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\na2: [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n";
        let many = vec![doc; 10_000].join("---\n");
        let e = err(&many);
        assert!(e.contains("nodes in the file"), "{e}");
        // Aliases within the budget still work.
        let docs = parse("f", "a: &x [1, 2]\nb: [*x, *x]\n").unwrap();
        assert_eq!(docs[0].as_map().unwrap()[1].2.as_seq().unwrap().len(), 2);
    }

    #[test]
    fn duplicate_keys_at_every_level() {
        assert_eq!(
            err("rules:\n  - id: a\n    condition:\n      kind: cred_open\n      kind: exec\n"),
            "f.yaml:5:7: duplicate key `kind` (first at line 4, column 7)"
        );
        assert!(err("a: 1\na: 2\n").starts_with("f.yaml:2:1: duplicate key `a`"));
        assert!(err("x: {a: 1, a: 2}\n").starts_with("f.yaml:1:11: duplicate key"));
        // `1` and `"1"` are the same key to readers of these files.
        assert!(err("1: a\n'1': b\n").contains("duplicate key `1`"));
        assert!(err("? [a]\n: 1\n").contains("key must be a scalar"));
    }

    #[test]
    fn sizes_are_bounded() {
        let lim = crate::input::Limits {
            max_bytes: 1 << 20,
            max_depth: 4,
            max_nodes: 100,
            max_items: 10,
            max_scalar: 8,
        };
        let e = |s: &str| parse_with("f", s, &lim).unwrap_err().to_string();
        assert!(e("a: [[[[1]]]]").contains("nested too deep"));
        assert!(
            e("a: - - - - - 1").contains("nested too deep")
                || e("- - - - - 1").contains("nested too deep")
        );
        assert!(e(&format!("[{}]", ["1"; 11].join(","))).contains("sequence too long"));
        assert!(e("a: 123456789").contains("scalar too long"));
        assert!(e(&format!(
            "{{{}}}",
            (0..11)
                .map(|i| format!("k{i}: 1"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .contains("mapping too large"));
        // The config's 200 k `[` (45 s before): stopped at the depth limit.
        let t = std::time::Instant::now();
        let e = parse_with(
            "c",
            &format!("sinks: {}", "[".repeat(200_000)),
            &crate::input::CONFIG,
        )
        .unwrap_err();
        assert!(
            e.msg.contains("nested too deep") || e.msg.contains("recursion limit"),
            "{e}"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn nul_tags_and_unknown_aliases() {
        assert!(err("rules:\n  - id: t1\n\0\n  - id: t2\n").starts_with("f.yaml:3:1: NUL byte"));
        let e = err("a: !!binary aGk=\n");
        assert!(e.contains("binary` is not supported"), "{e}");
        assert!(err("a: !foo {}\n").contains("not supported"));
        assert_eq!(
            parse("f", "a: !!str 12\n").unwrap()[0].as_map().unwrap()[0]
                .2
                .as_str()
                .unwrap(),
            "12"
        );
        assert!(
            err("a: *nope\n").contains("unknown anchor")
                || err("a: *nope\n").contains("unknown alias")
        );
    }

    #[test]
    fn quoted_numbers_stay_strings_and_aliases_resolve() {
        let docs = parse("f", "a: &x '22'\nb: *x\n").unwrap();
        let m = docs[0].as_map().unwrap();
        assert_eq!(m[1].2.as_str().unwrap(), "22");
    }
}
