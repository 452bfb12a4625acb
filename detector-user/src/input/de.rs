//! serde deserialization from a parsed [`Node`] tree, so that a typed config keeps the parse's
//! limits and positions: every error (wrong type, unknown or missing field, a value refused by
//! a `deserialize_with` check) is placed at the innermost node being read when it happened.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, EnumAccess, Error as _, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::yaml::{Node, Pos, PosError, Value};

/// A deserialization error, positioned once the node it concerns is known.
#[derive(Debug)]
pub(crate) struct Error {
    pos: Option<Pos>,
    msg: String,
}

impl Error {
    /// Places the error at `n` unless a deeper node already placed it.
    fn at(mut self, n: &Node) -> Self {
        if self.pos.is_none() {
            self.pos = Some(n.pos.clone());
        }
        self
    }

    /// As a positioned error (`fallback` when nothing placed it).
    pub(crate) fn into_pos_error(self, fallback: &Node) -> PosError {
        PosError {
            pos: self.pos.unwrap_or_else(|| fallback.pos.clone()),
            msg: self.msg,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{p}: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            pos: None,
            msg: msg.to_string(),
        }
    }
}

/// Deserializes a `T` from `node`.
pub(crate) fn from_node<'a, T: serde::Deserialize<'a>>(node: &'a Node) -> Result<T, PosError> {
    T::deserialize(De(node)).map_err(|e| e.into_pos_error(node))
}

/// Parses `text` (one document, within `limits`) and deserializes a `T` from it.
#[cfg(test)]
pub(crate) fn from_str<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    limits: &super::Limits,
) -> Result<T, PosError> {
    let docs = super::yaml::parse_with(file, text, limits)?;
    let null = Node {
        value: Value::Null,
        pos: Pos {
            file: std::sync::Arc::from(file),
            line: 1,
            col: 1,
        },
    };
    from_node(docs.first().unwrap_or(&null))
}

/// A deserializer over one node.
#[derive(Clone, Copy)]
pub(crate) struct De<'a>(pub &'a Node);

impl<'a> De<'a> {
    fn invalid(&self, want: &str) -> Error {
        Error {
            pos: Some(self.0.pos.clone()),
            msg: format!("expected {want}, found {}", self.0.type_name()),
        }
    }
}

impl<'de> de::Deserializer<'de> for De<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let n = self.0;
        let r = match &n.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Int(i) => v.visit_i64(*i),
            Value::Float(f) => v.visit_f64(*f),
            Value::Str(s) => v.visit_borrowed_str(s),
            Value::Seq(items) => v.visit_seq(Seq {
                items: items.iter(),
            }),
            Value::Map(entries) => v.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e| e.at(n))
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let n = self.0;
        match &n.value {
            Value::Str(s) => v.visit_borrowed_str(s),
            // A plain scalar that YAML typed (`name: 12`) is still what the person wrote.
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => v.visit_string(
                n.as_scalar_string()
                    .map_err(|e| Error::custom(e.msg).at(n))?,
            ),
            _ => Err(self.invalid("a string")),
        }
        .map_err(|e| e.at(n))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0.value {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
        .map_err(|e| e.at(self.0))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.0.value {
            Value::Seq(_) => self.deserialize_any(v),
            _ => Err(self.invalid("a sequence")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.0.value {
            Value::Map(_) => self.deserialize_any(v),
            _ => Err(self.invalid("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self).map_err(|e| e.at(self.0))
    }

    /// Externally tagged: `variant` (a unit variant) or `{variant: content}` (one entry).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let n = self.0;
        let r = match &n.value {
            Value::Str(s) => v.visit_enum(s.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => {
                let (k, val) = &entries[0];
                v.visit_enum(Enum { key: k, value: val })
            }
            Value::Map(_) => Err(Error::custom(
                "expected a mapping with exactly one key (the kind)",
            )),
            _ => Err(self.invalid("a name or a one-key mapping")),
        };
        r.map_err(|e| e.at(n))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct tuple tuple_struct
    }
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(n) => seed.deserialize(De(n)).map(Some).map_err(|e| e.at(n)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(De(k)).map(Some).map_err(|e| e.at(k))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let Some(v) = self.value.take() else {
            return Err(Error::custom("a value without a key"));
        };
        seed.deserialize(De(v)).map_err(|e| e.at(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Enum<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de> EnumAccess<'de> for Enum<'de> {
    type Error = Error;
    type Variant = De<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, De<'de>), Error> {
        let v = seed.deserialize(De(self.key)).map_err(|e| e.at(self.key))?;
        Ok((v, De(self.value)))
    }
}

impl<'de> VariantAccess<'de> for De<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0.value {
            Value::Null => Ok(()),
            _ => Err(self.invalid("nothing")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self).map_err(|e| e.at(self.0))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, v)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::yaml;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct S {
        a: u16,
        #[serde(default)]
        b: Option<String>,
        #[serde(default)]
        k: Vec<K>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum K {
        Plain,
        With { x: u8 },
    }

    fn de(src: &str) -> Result<S, String> {
        let docs = yaml::parse("f.yaml", src).map_err(|e| e.to_string())?;
        from_node(&docs[0]).map_err(|e| e.to_string())
    }

    #[test]
    fn values_and_errors_are_positioned() {
        assert_eq!(
            de("a: 5\nb: x\nk: [plain, {with: {x: 1}}]\n").unwrap(),
            S {
                a: 5,
                b: Some("x".into()),
                k: vec![K::Plain, K::With { x: 1 }]
            }
        );
        let e = de("a: 5\nk:\n  - with: {x: 300}\n").unwrap_err();
        assert!(
            e.starts_with("f.yaml:3:15: invalid value: integer `300`"),
            "{e}"
        );
        let e = de("a: 5\nzz: 1\n").unwrap_err();
        assert!(e.starts_with("f.yaml:2:1: unknown field `zz`"), "{e}");
        let e = de("b: x\n").unwrap_err();
        assert!(e.starts_with("f.yaml:1:1: missing field `a`"), "{e}");
        let e = de("a: 5\nk: [kafka]\n").unwrap_err();
        assert!(e.starts_with("f.yaml:2:5: unknown variant `kafka`"), "{e}");
        let e = de("a: [1]\n").unwrap_err();
        assert!(e.starts_with("f.yaml:1:4: invalid type: sequence"), "{e}");
    }
}
