//! A serde `Deserializer` over an interpolated `serde_yaml::Value` that behaves like Compose:
//! it remembers the key path of every value (so errors can be located), and it accepts the
//! string forms of numbers and booleans (`"3"`, `"true"`) where a number or boolean is
//! expected, because interpolated values always arrive as strings.
//!
//! It must not know anything about the Compose model itself.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use serde_yaml::Value;

use crate::path::PathSeg;

/// A deserialization failure with the path where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// Path of the offending value; `None` until the error leaves the value that raised it.
    pub path: Option<Vec<PathSeg>>,
    pub kind: DeErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeErrorKind {
    /// A key that the schema does not allow at this place (`path` is its parent).
    UnknownKey(String),
    Message(String),
}

impl DeError {
    pub fn msg(message: impl Into<String>) -> Self {
        DeError {
            path: None,
            kind: DeErrorKind::Message(message.into()),
        }
    }

    fn or_path(mut self, path: impl FnOnce() -> Vec<PathSeg>) -> Self {
        if self.path.is_none() {
            self.path = Some(path());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeErrorKind::UnknownKey(k) => write!(f, "unknown key `{k}`"),
            DeErrorKind::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::msg(msg.to_string())
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        DeError {
            path: None,
            kind: DeErrorKind::UnknownKey(field.to_string()),
        }
    }
}

/// The path of the value being read, as a chain of borrowed links (no allocation per level).
#[derive(Clone, Copy)]
enum Trail<'t> {
    Root(&'t [PathSeg]),
    Key(&'t Trail<'t>, &'t str),
    Index(&'t Trail<'t>, usize),
}

impl Trail<'_> {
    fn to_vec(self) -> Vec<PathSeg> {
        let mut out = Vec::new();
        self.push_into(&mut out);
        out
    }

    fn push_into(self, out: &mut Vec<PathSeg>) {
        match self {
            Trail::Root(base) => out.extend_from_slice(base),
            Trail::Key(parent, k) => {
                parent.push_into(out);
                out.push(PathSeg::Key(k.to_string()));
            }
            Trail::Index(parent, i) => {
                parent.push_into(out);
                out.push(PathSeg::Index(i));
            }
        }
    }
}

/// Deserializes `T` from `value`, which sits at `base` in the document.
pub fn from_value<T: de::DeserializeOwned>(value: &Value, base: &[PathSeg]) -> Result<T, DeError> {
    T::deserialize(ValueDe {
        value,
        trail: Trail::Root(base),
    })
    .map_err(|e| e.or_path(|| base.to_vec()))
}

pub struct ValueDe<'v, 't> {
    value: &'v Value,
    trail: Trail<'t>,
}

/// Strips YAML tags (`!reset`, `!override` were handled by the loader) to the plain value.
fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

fn unexpected(v: &Value) -> Unexpected<'_> {
    match untag(v) {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Unexpected::Unsigned(u)
            } else if let Some(i) = n.as_i64() {
                Unexpected::Signed(i)
            } else {
                Unexpected::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => Unexpected::Str(s),
        Value::Sequence(_) => Unexpected::Seq,
        Value::Mapping(_) => Unexpected::Map,
        Value::Tagged(_) => Unexpected::Other("tagged value"),
    }
}

/// `strconv.ParseBool`, which is what Compose applies to string booleans.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Renders a scalar as the string Compose would see.
pub fn scalar_to_string(v: &Value) -> Option<String> {
    match untag(v) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl<'v, 't> ValueDe<'v, 't> {
    fn invalid<V: Visitor<'static>>(&self, visitor: &V) -> DeError {
        de::Error::invalid_type(unexpected(self.value), visitor)
    }
}

macro_rules! int_method {
    ($method:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match untag(self.value) {
                Value::Number(n) => {
                    if let Some(u) = n.as_u64() {
                        visitor.visit_u64(u)
                    } else if let Some(i) = n.as_i64() {
                        visitor.visit_i64(i)
                    } else {
                        Err(DeError::msg(format!("expected an integer, found {n}")))
                    }
                }
                Value::String(s) => {
                    let t = s.trim();
                    if let Ok(u) = t.parse::<u64>() {
                        visitor.visit_u64(u)
                    } else if let Ok(i) = t.parse::<i64>() {
                        visitor.visit_i64(i)
                    } else {
                        Err(DeError::msg(format!("expected an integer, found \"{s}\"")))
                    }
                }
                other => Err(DeError::msg(format!(
                    "expected an integer, found {}",
                    describe(other)
                ))),
            }
        }
    };
}

macro_rules! float_method {
    ($method:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match untag(self.value) {
                Value::Number(n) => match n.as_f64() {
                    Some(f) => visitor.visit_f64(f),
                    None => Err(DeError::msg(format!("expected a number, found {n}"))),
                },
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(f) if f.is_finite() => visitor.visit_f64(f),
                    _ => Err(DeError::msg(format!("expected a number, found \"{s}\""))),
                },
                other => Err(DeError::msg(format!(
                    "expected a number, found {}",
                    describe(other)
                ))),
            }
        }
    };
}

/// A short description of a value's kind for messages.
pub fn describe(v: &Value) -> String {
    match untag(v) {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string \"{s}\""),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match untag(self.value) {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Sequence(seq) => visitor.visit_seq(SeqDe {
                items: seq,
                next: 0,
                trail: self.trail,
            }),
            Value::Mapping(map) => visitor.visit_map(MapDe::new(map, self.trail)?),
            Value::Tagged(_) => unreachable!("untag removes tags"),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match untag(self.value) {
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::String(s) => match parse_bool(s.trim()) {
                Some(b) => visitor.visit_bool(b),
                None => Err(DeError::msg(format!("expected a boolean, found \"{s}\""))),
            },
            other => Err(DeError::msg(format!(
                "expected a boolean, found {}",
                describe(other)
            ))),
        }
    }

    int_method!(deserialize_i8);
    int_method!(deserialize_i16);
    int_method!(deserialize_i32);
    int_method!(deserialize_i64);
    int_method!(deserialize_u8);
    int_method!(deserialize_u16);
    int_method!(deserialize_u32);
    int_method!(deserialize_u64);
    float_method!(deserialize_f32);
    float_method!(deserialize_f64);

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match untag(self.value) {
            Value::String(s) => visitor.visit_str(s),
            Value::Number(n) => visitor.visit_string(n.to_string()),
            Value::Bool(b) => visitor.visit_str(if *b { "true" } else { "false" }),
            other => Err(DeError::msg(format!(
                "expected a string, found {}",
                describe(other)
            ))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match untag(self.value) {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match untag(self.value) {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.invalid(&UnitExpected)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match untag(self.value) {
            Value::Sequence(seq) => visitor.visit_seq(SeqDe {
                items: seq,
                next: 0,
                trail: self.trail,
            }),
            other => Err(DeError::msg(format!(
                "expected a list, found {}",
                describe(other)
            ))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match untag(self.value) {
            Value::Mapping(map) => visitor.visit_map(MapDe::new(map, self.trail)?),
            other => Err(DeError::msg(format!(
                "expected a mapping, found {}",
                describe(other)
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match untag(self.value) {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(DeError::msg(format!(
                "expected a string, found {}",
                describe(other)
            ))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct UnitExpected;

impl Visitor<'_> for UnitExpected {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null")
    }
}

struct SeqDe<'v, 't> {
    items: &'v [Value],
    next: usize,
    trail: Trail<'t>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.get(self.next) else {
            return Ok(None);
        };
        let index = self.next;
        self.next += 1;
        let trail = Trail::Index(&self.trail, index);
        seed.deserialize(ValueDe { value: item, trail })
            .map(Some)
            .map_err(|e| e.or_path(|| trail.to_vec()))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct MapDe<'v, 't> {
    entries: Vec<(String, &'v Value)>,
    next: usize,
    trail: Trail<'t>,
}

impl<'v, 't> MapDe<'v, 't> {
    fn new(map: &'v serde_yaml::Mapping, trail: Trail<'t>) -> Result<Self, DeError> {
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map {
            let key = scalar_to_string(k).ok_or_else(|| DeError {
                path: Some(trail.to_vec()),
                kind: DeErrorKind::Message(format!(
                    "a key must be a string, found {}",
                    describe(k)
                )),
            })?;
            entries.push((key, v));
        }
        Ok(MapDe {
            entries,
            next: 0,
            trail,
        })
    }
}

impl<'de> de::MapAccess<'de> for MapDe<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        let de: de::value::StrDeserializer<'_, DeError> = key.as_str().into_deserializer();
        seed.deserialize(de).map(Some).map_err(|e| {
            let parent = self.trail.to_vec();
            match e.kind {
                // The derive reports the unknown key itself; the location is its parent.
                DeErrorKind::UnknownKey(_) => e.or_path(|| parent),
                _ => e.or_path(|| {
                    let mut p = parent;
                    p.push(PathSeg::Key(key.clone()));
                    p
                }),
            }
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.entries.get(self.next) else {
            return Err(DeError::msg("value requested before key"));
        };
        self.next += 1;
        let trail = Trail::Key(&self.trail, key);
        seed.deserialize(ValueDe { value, trail })
            .map_err(|e| e.or_path(|| trail.to_vec()))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        n: u16,
        b: bool,
        f: f32,
        s: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        items: Vec<Inner>,
    }

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn accepts_string_forms_of_numbers_and_booleans() {
        let v = yaml("items: [{n: '3', b: 'true', f: '0.5', s: 8080}]");
        let o: Outer = from_value(&v, &[]).unwrap();
        assert_eq!(
            o.items[0],
            Inner {
                n: 3,
                b: true,
                f: 0.5,
                s: "8080".into()
            }
        );
    }

    #[test]
    fn errors_carry_the_path() {
        let v = yaml("items: [{n: 1, b: true, f: 1, s: a}, {n: x, b: true, f: 1, s: a}]");
        let e = from_value::<Outer>(&v, &[]).unwrap_err();
        assert_eq!(
            e.path.unwrap(),
            vec![PathSeg::key("items"), PathSeg::Index(1), PathSeg::key("n")]
        );
        assert_eq!(
            e.kind,
            DeErrorKind::Message("expected an integer, found \"x\"".into())
        );
    }

    #[test]
    fn unknown_key_is_reported_at_its_parent() {
        let v = yaml("items: [{n: 1, b: true, f: 1, s: a, bogus: 1}]");
        let e = from_value::<Outer>(&v, &[PathSeg::key("root")]).unwrap_err();
        assert_eq!(
            e.path.unwrap(),
            vec![
                PathSeg::key("root"),
                PathSeg::key("items"),
                PathSeg::Index(0)
            ]
        );
        assert_eq!(e.kind, DeErrorKind::UnknownKey("bogus".into()));
    }

    #[test]
    fn out_of_range_number_is_an_error_at_its_path() {
        let v = yaml("items: [{n: 70000, b: true, f: 1, s: a}]");
        let e = from_value::<Outer>(&v, &[]).unwrap_err();
        assert_eq!(e.path.unwrap().len(), 3);
    }
}
