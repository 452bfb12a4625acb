//! A YAML tree that remembers where every node came from, so that semantic errors (unknown
//! field, bad regex, unknown list) name `file:line:col` and not only syntax errors do.
//!
//! Built on yaml-rust2's marked event stream; plain scalars are typed with YAML 1.2 core rules
//! (`true`, `12`, `1.5`, `null`), quoted scalars are always strings.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

/// A position in a source file (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    /// File name as given by the caller (`<embedded>/rules/x.yaml`, a path…).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
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
    pub pos: Pos,
    /// What.
    pub msg: String,
}

impl PosError {
    /// Error `msg` at `pos`.
    pub fn new(pos: &Pos, msg: impl Into<String>) -> Self {
        PosError {
            pos: pos.clone(),
            msg: msg.into(),
        }
    }
}

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
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
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts.
    pub pos: Pos,
}

impl Node {
    /// Short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
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
    pub fn as_str(&self) -> Result<&str, PosError> {
        match &self.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.err("a string")),
        }
    }

    /// The scalar rendered as a string (numbers and booleans included), or an error.
    pub fn as_scalar_string(&self) -> Result<String, PosError> {
        match &self.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.err("a scalar")),
        }
    }

    /// The integer, or an error.
    pub fn as_i64(&self) -> Result<i64, PosError> {
        match &self.value {
            Value::Int(i) => Ok(*i),
            _ => Err(self.err("an integer")),
        }
    }

    /// The boolean, or an error.
    pub fn as_bool(&self) -> Result<bool, PosError> {
        match &self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.err("a boolean")),
        }
    }

    /// The sequence items, or an error.
    pub fn as_seq(&self) -> Result<&[Node], PosError> {
        match &self.value {
            Value::Seq(s) => Ok(s),
            _ => Err(self.err("a sequence")),
        }
    }

    /// A sequence, or a single item taken as a one-item sequence (`tags: T1046`).
    pub fn as_seq_or_one(&self) -> Vec<&Node> {
        match &self.value {
            Value::Seq(s) => s.iter().collect(),
            _ => vec![self],
        }
    }

    /// The mapping entries with string keys, or an error.
    pub fn as_map(&self) -> Result<Vec<(&str, &Node, &Node)>, PosError> {
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
    pub fn fields(&self, allowed: &[&str]) -> Result<Fields<'_>, PosError> {
        let mut map = HashMap::new();
        let mut keys = Vec::new();
        for (k, kn, v) in self.as_map()? {
            if !allowed.contains(&k) {
                return Err(PosError::new(
                    &kn.pos,
                    format!(
                        "unknown field `{k}` (expected one of: {})",
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
    pub fn fields_collect(
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
                        "unknown field `{k}` (expected one of: {})",
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
    pub fn to_json(&self) -> serde_json::Value {
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
pub struct Fields<'a> {
    map: HashMap<&'a str, &'a Node>,
    /// Position of the mapping.
    pub pos: Pos,
}

impl<'a> Fields<'a> {
    /// An optional field.
    pub fn get(&self, k: &str) -> Option<&'a Node> {
        self.map.get(k).copied()
    }

    /// A required field.
    pub fn req(&self, k: &str) -> Result<&'a Node, PosError> {
        self.get(k)
            .ok_or_else(|| PosError::new(&self.pos, format!("missing required field `{k}`")))
    }
}

/// Parses every document of `src`. Syntax errors carry their position.
pub fn parse(file: &str, src: &str) -> Result<Vec<Node>, PosError> {
    let file: Arc<str> = Arc::from(file);
    let mut b = Builder {
        file: file.clone(),
        docs: Vec::new(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        error: None,
    };
    let mut parser = Parser::new_from_str(src);
    if let Err(e) = parser.load(&mut b, true) {
        let m = e.marker();
        return Err(PosError {
            pos: Pos {
                file,
                line: m.line(),
                col: m.col() + 1,
            },
            msg: format!("YAML syntax: {}", e.info()),
        });
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.docs)
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

struct Builder {
    file: Arc<str>,
    docs: Vec<Node>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    error: Option<PosError>,
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

    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = self.pos(mark);
        match ev {
            Event::Scalar(s, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain {
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
                self.push(Node { value, pos }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(pos, anchor, Vec::new(), None))
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(p, anchor, items)) => self.push(
                    Node {
                        value: Value::Seq(items),
                        pos: p,
                    },
                    anchor,
                ),
                Some(Frame::Map(p, anchor, entries, _)) => self.push(
                    Node {
                        value: Value::Map(entries),
                        pos: p,
                    },
                    anchor,
                ),
                None => {}
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push(node, 0),
                None => {
                    if self.error.is_none() {
                        self.error = Some(PosError::new(&pos, "unknown alias"));
                    }
                }
            },
            _ => {}
        }
    }
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

    #[test]
    fn quoted_numbers_stay_strings_and_aliases_resolve() {
        let docs = parse("f", "a: &x '22'\nb: *x\n").unwrap();
        let m = docs[0].as_map().unwrap();
        assert_eq!(m[1].2.as_str().unwrap(), "22");
    }
}
