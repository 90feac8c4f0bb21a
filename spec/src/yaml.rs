//! Turning the text of one Compose file into a `serde_yaml::Value` plus its source map:
//! serde_yaml builds the value under our hostile-input bounds (nesting depth, alias
//! expansion — counted while the value is built, so nothing is expanded past the bound;
//! a text with many flow openers has its depth checked before libyaml reads it), then
//! YAML merge keys (`<<`) are resolved. Several `---` documents in one file merge as
//! successive files would. Positions are indexed only if something asks for one (see
//! `source_map`). Reads no files: the caller passes the text.

use std::cell::Cell;
use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

use crate::error::{Error, Location};
use crate::merge;
use crate::source_map::{self, SourceMap};

/// One parsed file: its tree (top level always a mapping) and where its values are.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub value: Value,
    pub source_map: SourceMap,
}

/// Parses `text` (the content of `file`).
pub fn parse(text: &str, file: &Path) -> Result<Parsed, Error> {
    // A UTF-8 byte order mark is accepted (and ignored) as Compose does.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    guard_flow_depth(text, file)?;
    let nodes = Cell::new(0u64);
    let mut merged: Option<Value> = None;
    for document in serde_yaml::Deserializer::from_str(text) {
        let seed = Bounded {
            nodes: &nodes,
            depth: 0,
        };
        let mut value: Value = seed
            .deserialize(document)
            .map_err(|e| syntax(&e, file, text))?;
        apply_merge_keys(&mut value).map_err(|message| Error::Syntax {
            location: Location::file(file),
            message,
        })?;
        let value = match value {
            Value::Null => Value::Mapping(Default::default()),
            Value::Mapping(_) => value,
            _ => {
                return Err(Error::Syntax {
                    location: Location::at(file, 1, 1),
                    message: "the top level of a Compose file must be a mapping".into(),
                });
            }
        };
        merged = Some(match merged {
            None => value,
            Some(earlier) => merge::merge_documents(earlier, value).value,
        });
    }
    Ok(Parsed {
        value: merged.unwrap_or_else(|| Value::Mapping(Default::default())),
        source_map: SourceMap::lazy(text, file),
    })
}

/// Most flow openers (`[`, `{`) a text may hold before its nesting is checked ahead of
/// libyaml. libyaml rescans its stack of possible simple keys — one per open flow level —
/// at every token, so deeply nested flow input costs it depth × tokens (`{a: ` × 20 000
/// takes seconds). The flow depth can never exceed the number of openers, and below this
/// many the worst case stays within tens of milliseconds; real Compose files hold a few
/// hundred at most.
const UNCHECKED_FLOW_OPENERS: usize = 2048;

/// Rejects nesting deeper than `MAX_DEPTH` before libyaml sees a text that could hold it
/// in flow style; block nesting costs libyaml nothing extra and is bounded while the value
/// is built.
fn guard_flow_depth(text: &str, file: &Path) -> Result<(), Error> {
    let openers = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if openers <= UNCHECKED_FLOW_OPENERS {
        return Ok(());
    }
    source_map::check_depth(text, file)
}

/// Builds a `Value` exactly as serde_yaml's own `Deserialize` does (tags, duplicate keys),
/// counting every node it creates — an alias is replayed by serde_yaml, so its expansion
/// is counted node by node — and refusing past `MAX_EXPANDED_NODES` or `MAX_DEPTH`.
/// serde_yaml's own limits (recursion 128, 100 alias jumps per event) stay underneath.
#[derive(Clone, Copy)]
struct Bounded<'c> {
    nodes: &'c Cell<u64>,
    depth: usize,
}

impl Bounded<'_> {
    fn count<E: de::Error>(&self) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > source_map::MAX_EXPANDED_NODES {
            return Err(E::custom(format!(
                "YAML aliases expand to more than {} nodes (an alias bomb?); refusing to load",
                source_map::MAX_EXPANDED_NODES
            )));
        }
        Ok(())
    }

    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= source_map::MAX_DEPTH {
            return Err(E::custom(format!(
                "nesting deeper than {} levels",
                source_map::MAX_DEPTH
            )));
        }
        Ok(Bounded {
            nodes: self.nodes,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Number(u.into()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.count()?;
        let inner = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.count()?;
        let inner = self.nested()?;
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(inner)? {
            if mapping.contains_key(&key) {
                return Err(de::Error::custom(duplicate_key(&key)));
            }
            let value = map.next_value_seed(inner)?;
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // serde_yaml hands a tagged node (`!reset []`) over as an enum: tag, then value.
        let (tag, contents) = data.variant::<String>()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let value = contents.newtype_variant_seed(self.nested()?)?;
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

/// serde_yaml's message for a repeated key.
fn duplicate_key(key: &Value) -> String {
    match key {
        Value::Null => "duplicate entry with null key".into(),
        Value::Bool(b) => format!("duplicate entry with key `{b}`"),
        Value::Number(n) => format!("duplicate entry with key {n}"),
        Value::String(s) => format!("duplicate entry with key {s:?}"),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => {
            "duplicate entry in YAML map".into()
        }
    }
}

fn syntax(err: &serde_yaml::Error, file: &Path, text: &str) -> Error {
    let mut message = err.to_string();
    // serde_yaml appends " at line L column C"; the location carries that already.
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    // Our bounds need no key path in front (it would be a hundred segments long).
    for bound in ["nesting deeper than", "YAML aliases expand"] {
        if let Some(start) = message.find(bound) {
            message.drain(..start);
        }
    }
    let location = match err.location() {
        Some(l) => {
            let (line, column) = within_text(text, l.line(), l.column());
            Location::at(file, line, column)
        }
        None => Location::file(file),
    };
    Error::Syntax { location, message }
}

/// libyaml closes a last line that has no line break before it reports an error at the end
/// of the stream, one line past the text: that place is the end of the last line.
fn within_text(text: &str, line: usize, column: usize) -> (usize, usize) {
    let breaks =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    if line <= breaks + 1 {
        return (line, column);
    }
    let last = text.rsplit(['\n', '\r']).next().unwrap_or("");
    (breaks + 1, last.chars().count() + 1)
}

/// Resolves YAML merge keys (`<<: *a` and `<<: [*a, *b]`): explicit keys win, then the
/// earlier merged mapping. Merged mappings may carry their own `<<`, resolved in turn.
pub fn apply_merge_keys(root: &mut Value) -> Result<(), String> {
    let merge_key = Value::String("<<".into());
    let mut stack: Vec<&mut Value> = vec![root];
    while let Some(node) = stack.pop() {
        match node {
            Value::Mapping(mapping) => {
                let mut rounds = 0;
                while let Some(source) = mapping.remove(&merge_key) {
                    rounds += 1;
                    if rounds > 10_000 {
                        return Err("merge keys (`<<`) nest too deeply".into());
                    }
                    let sources = match source {
                        Value::Mapping(m) => vec![m],
                        Value::Sequence(items) => {
                            let mut maps = Vec::new();
                            for item in items {
                                match item {
                                    Value::Mapping(m) => maps.push(m),
                                    _ => {
                                        return Err("a merge key (`<<`) list may hold only \
                                                    mappings"
                                            .into());
                                    }
                                }
                            }
                            maps
                        }
                        _ => {
                            return Err(
                                "a merge key (`<<`) must be a mapping or a list of mappings".into(),
                            );
                        }
                    };
                    for source in sources {
                        for (k, v) in source {
                            if !mapping.contains_key(&k) {
                                mapping.insert(k, v);
                            }
                        }
                    }
                }
                stack.extend(mapping.values_mut());
            }
            Value::Sequence(items) => stack.extend(items.iter_mut()),
            Value::Tagged(tagged) => stack.push(&mut tagged.value),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Value, Error> {
        parse(text, Path::new("t.yaml")).map(|p| p.value)
    }

    #[test]
    fn merge_keys_single_list_and_nested() {
        let v = parse_str(
            "x-a: &a {image: a, restart: always}\n\
             x-b: &b {image: b, <<: *a, labels: {l: 1}}\n\
             services:\n  one: {<<: *a, image: own}\n  two: {<<: [*b, *a]}\n",
        )
        .unwrap();
        assert_eq!(v["services"]["one"]["image"], Value::from("own"));
        assert_eq!(v["services"]["one"]["restart"], Value::from("always"));
        assert_eq!(v["services"]["two"]["image"], Value::from("b"));
        assert_eq!(v["services"]["two"]["restart"], Value::from("always"));
        assert!(v["services"]["two"].get("<<").is_none());
        // x-* extensions are kept.
        assert!(v.get("x-a").is_some());
    }

    #[test]
    fn bad_merge_key() {
        let err = parse_str("a: {<<: 3}\n").unwrap_err();
        assert!(err.to_string().contains("merge key"), "{err}");
    }

    #[test]
    fn an_error_at_the_end_of_a_text_without_a_final_line_break_is_on_its_last_line() {
        // found by the `load` fuzz target: libyaml said 4:1 for this three-line text
        let err = parse("services:\n 00:8080\"\n$", Path::new("/p/c.yaml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/p/c.yaml:3:2: could not find expected ':'"
        );
        assert_eq!(within_text("a\r\nb", 2, 2), (2, 2));
        assert_eq!(within_text("a\rbc", 3, 1), (2, 3));
        assert_eq!(within_text("", 2, 1), (1, 1));
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = parse_str("services:\n  web:\n    image: \"unterminated\n").unwrap_err();
        let Error::Syntax { location, message } = err else {
            panic!()
        };
        assert_eq!(location.file, Path::new("t.yaml"));
        assert!(location.line >= 3, "{location}: {message}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_str("services: {}\nservices: {}\n").unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn top_level_must_be_mapping() {
        assert!(
            parse_str("- a\n")
                .unwrap_err()
                .to_string()
                .contains("must be a mapping")
        );
        assert_eq!(parse_str("").unwrap(), Value::Mapping(Default::default()));
    }

    #[test]
    fn several_documents_merge() {
        let v = parse_str("services: {a: {image: x}}\n---\nservices: {b: {image: y}}\n").unwrap();
        assert!(v["services"].get("a").is_some() && v["services"].get("b").is_some());
    }

    #[test]
    fn layouts_only_libyaml_accepts_still_load() {
        let text = "services:\n  web:\n    image: a\n    healthcheck:\n      test: [\n          \"CMD\",\n          \"true\"\n      ]\n      interval: 30s\n";
        let p = parse(text, Path::new("t.yaml")).unwrap();
        assert_eq!(
            p.value["services"]["web"]["healthcheck"]["interval"],
            Value::from("30s")
        );
        // Positions read before the indexer stopped are kept.
        let at = p.source_map.locate(&[
            crate::path::PathSeg::Key("services".into()),
            crate::path::PathSeg::Key("web".into()),
            crate::path::PathSeg::Key("image".into()),
        ]);
        assert_eq!(at.line, 3);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let v = parse_str("\u{feff}services:\n  a: {image: x}\n\nvolumes:\n  v:\n").unwrap();
        assert!(v.get("volumes").is_some());
    }

    #[test]
    fn quoted_scalar_followed_by_text_is_an_error() {
        let err = parse_str("services:\n  a:\n    volumes:\n      - 'x':/app\n").unwrap_err();
        let Error::Syntax { location, .. } = err else {
            panic!()
        };
        assert_eq!(location.line, 4);
    }

    #[test]
    fn tags_survive_parsing() {
        let v = parse_str("services:\n  a:\n    ports: !reset []\n").unwrap();
        assert!(matches!(v["services"]["a"]["ports"], Value::Tagged(_)));
    }
}
