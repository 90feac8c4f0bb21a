//! Compose's merge rules, used for successive `-f` files, several documents of one file,
//! `extends` and `include`. Mappings merge recursively, the later value winning; sequences
//! append, except the attributes the Compose Specification merges by a key (ports, volumes,
//! secrets, configs, …), the key=value attributes (environment, labels, …) that merge by
//! name, and `command`/`entrypoint`/`healthcheck.test` that are replaced. `!reset` removes
//! what earlier files set; `!override` replaces instead of merging.
//!
//! Pure: values in, value out, plus a `Trace` telling the source map how paths moved.

use serde_yaml::Value;
use std::collections::HashMap;

use serde_yaml::value::{Mapping, Tag};

use crate::path::PathSeg;
use crate::source_map::SourceMap;

type Path = Vec<PathSeg>;

/// How paths moved while merging, so the source map can follow.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Earlier-side paths re-keyed (a list turned into a map).
    pub left_moves: Vec<(Path, Path)>,
    /// Later-side paths re-keyed (appended items shift by the earlier length).
    pub right_moves: Vec<(Path, Path)>,
    /// Earlier-side subtrees replaced or removed by the later side.
    pub replaced: Vec<Path>,
}

impl Trace {
    /// Updates `earlier` (the map of the merged-into side) with `later`'s places.
    pub fn apply(&self, earlier: &mut SourceMap, mut later: SourceMap) {
        earlier.apply_moves(&self.left_moves);
        earlier.remove_prefixes(&self.replaced);
        later.apply_moves(&self.right_moves);
        earlier.absorb(later);
    }
}

#[derive(Debug, Clone)]
pub struct Merged {
    pub value: Value,
    pub trace: Trace,
}

/// Merges two whole Compose documents: `right` (a later file) onto `left`.
pub fn merge_documents(left: Value, right: Value) -> Merged {
    let mut trace = Trace::default();
    let mut path = Vec::new();
    let value = merge_at(&mut path, left, right, &mut trace).unwrap_or(Value::Null);
    Merged { value, trace }
}

/// Merges one service definition onto another (`extends`): `child` onto `base`, both
/// standing at `services.<name>` so the service rules apply.
pub fn merge_service(name: &str, base: Value, child: Value) -> Merged {
    let mut trace = Trace::default();
    let mut path = vec![PathSeg::Key("services".into()), PathSeg::Key(name.into())];
    let value = merge_at(&mut path, base, child, &mut trace).unwrap_or(Value::Null);
    Merged { value, trace }
}

/// Resolves the merge tags of a value taken without an earlier side: `!reset` entries
/// vanish, `!override` unwraps, other tags are dropped keeping their value.
pub fn resolve_tags(value: Value) -> Option<Value> {
    match value {
        Value::Tagged(tagged) => {
            if is_tag(&tagged.tag, "reset") {
                None
            } else {
                resolve_tags(tagged.value)
            }
        }
        Value::Mapping(mapping) => Some(Value::Mapping(
            mapping
                .into_iter()
                .filter_map(|(k, v)| resolve_tags(v).map(|v| (k, v)))
                .collect(),
        )),
        Value::Sequence(items) => Some(Value::Sequence(
            items.into_iter().filter_map(resolve_tags).collect(),
        )),
        other => Some(other),
    }
}

/// Removes duplicates from the attributes merged by a key (ports, volumes, `dns`, …)
/// within the document itself, as Compose does after every merge, the first file
/// included: a later duplicate replaces the earlier item in its place. The trace's
/// `left_moves` re-key the source map.
pub fn enforce_unique(document: &mut Value) -> Trace {
    let mut trace = Trace::default();
    let mut path = Vec::new();
    unique_walk(document, &mut path, &mut trace);
    trace
}

fn unique_walk(value: &mut Value, path: &mut Path, trace: &mut Trace) {
    match value {
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                if !matches!(item, Value::Mapping(_) | Value::Sequence(_)) {
                    continue;
                }
                path.push(PathSeg::Key(key_text(key)));
                // Only the attributes with a uniqueness rule, and what leads to them, are
                // walked: the rest of the document cannot change here.
                if leads_to_unique(path) {
                    unique_walk(item, path, trace);
                }
                path.pop();
            }
        }
        Value::Sequence(items) => {
            let Rule::Unique(indexer) = rule_for(path) else {
                return;
            };
            let keys: Vec<Option<String>> = items.iter().map(|v| index_key(indexer, v)).collect();
            let mut seen = std::collections::HashSet::new();
            let has_duplicates = keys.iter().flatten().any(|k| !seen.insert(k.as_str()));
            if !has_duplicates {
                return;
            }
            let mut kept: Vec<Value> = Vec::with_capacity(items.len());
            let mut positions: HashMap<String, usize> = HashMap::new();
            for (i, (item, key)) in std::mem::take(items).into_iter().zip(keys).enumerate() {
                let at = match key.and_then(|k| match positions.get(&k) {
                    Some(&pos) => Some(pos),
                    None => {
                        positions.insert(k, kept.len());
                        None
                    }
                }) {
                    Some(pos) => {
                        kept[pos] = item;
                        pos
                    }
                    None => {
                        kept.push(item);
                        kept.len() - 1
                    }
                };
                if at != i {
                    let mut from = path.clone();
                    from.push(PathSeg::Index(i));
                    let mut to = path.clone();
                    to.push(PathSeg::Index(at));
                    trace.left_moves.push((from, to));
                }
            }
            *items = kept;
        }
        _ => {}
    }
}

fn is_tag(tag: &Tag, name: &str) -> bool {
    // serde_yaml compares tags ignoring the leading `!`.
    *tag == Tag::new(name)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// Mappings merge, sequences append, scalars: later wins.
    Default,
    /// Later value replaces the earlier one.
    Replace,
    /// `KEY=VALUE` list or mapping: merged by name into a mapping.
    KeyValue,
    /// Sequence items unique by a key; a later item replaces the earlier one in place.
    Unique(Indexer),
    DependsOn,
    ServiceNetworks,
    Build,
    Logging,
    Ulimit,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Indexer {
    Whole,
    Port,
    Volume,
    Tmpfs,
    Mount(&'static str),
    Device,
    EnvFile,
}

const RULES: &[(&[&str], Rule)] = &[
    (&["services", "*", "command"], Rule::Replace),
    (&["services", "*", "entrypoint"], Rule::Replace),
    (&["services", "*", "healthcheck", "test"], Rule::Replace),
    (&["services", "*", "environment"], Rule::KeyValue),
    (&["services", "*", "labels"], Rule::KeyValue),
    (&["services", "*", "annotations"], Rule::KeyValue),
    (&["services", "*", "sysctls"], Rule::KeyValue),
    (&["services", "*", "build", "args"], Rule::KeyValue),
    (&["services", "*", "build", "labels"], Rule::KeyValue),
    (
        &["services", "*", "build", "additional_contexts"],
        Rule::KeyValue,
    ),
    (&["services", "*", "deploy", "labels"], Rule::KeyValue),
    (&["networks", "*", "labels"], Rule::KeyValue),
    (&["volumes", "*", "labels"], Rule::KeyValue),
    (&["secrets", "*", "labels"], Rule::KeyValue),
    (&["configs", "*", "labels"], Rule::KeyValue),
    (&["services", "*", "ports"], Rule::Unique(Indexer::Port)),
    (&["services", "*", "volumes"], Rule::Unique(Indexer::Volume)),
    (&["services", "*", "tmpfs"], Rule::Unique(Indexer::Tmpfs)),
    (
        &["services", "*", "secrets"],
        Rule::Unique(Indexer::Mount("/run/secrets/")),
    ),
    (
        &["services", "*", "configs"],
        Rule::Unique(Indexer::Mount("/")),
    ),
    (&["services", "*", "devices"], Rule::Unique(Indexer::Device)),
    (
        &["services", "*", "env_file"],
        Rule::Unique(Indexer::EnvFile),
    ),
    (
        &["services", "*", "label_file"],
        Rule::Unique(Indexer::EnvFile),
    ),
    (&["services", "*", "expose"], Rule::Unique(Indexer::Whole)),
    (&["services", "*", "dns"], Rule::Unique(Indexer::Whole)),
    (&["services", "*", "dns_opt"], Rule::Unique(Indexer::Whole)),
    (
        &["services", "*", "dns_search"],
        Rule::Unique(Indexer::Whole),
    ),
    (&["services", "*", "cap_add"], Rule::Unique(Indexer::Whole)),
    (&["services", "*", "cap_drop"], Rule::Unique(Indexer::Whole)),
    (
        &["services", "*", "extra_hosts"],
        Rule::Unique(Indexer::Whole),
    ),
    (
        &["services", "*", "build", "extra_hosts"],
        Rule::Unique(Indexer::Whole),
    ),
    (
        &["services", "*", "build", "tags"],
        Rule::Unique(Indexer::Whole),
    ),
    (
        &["services", "*", "build", "platforms"],
        Rule::Unique(Indexer::Whole),
    ),
    (&["services", "*", "links"], Rule::Unique(Indexer::Whole)),
    (&["services", "*", "profiles"], Rule::Unique(Indexer::Whole)),
    (
        &["services", "*", "networks", "*", "aliases"],
        Rule::Unique(Indexer::Whole),
    ),
    (
        &["services", "*", "networks", "*", "link_local_ips"],
        Rule::Unique(Indexer::Whole),
    ),
    (&["services", "*", "depends_on"], Rule::DependsOn),
    (&["services", "*", "networks"], Rule::ServiceNetworks),
    (&["services", "*", "build"], Rule::Build),
    (&["services", "*", "logging"], Rule::Logging),
    (&["services", "*", "ulimits", "*"], Rule::Ulimit),
];

/// Whether `path` is, or leads to, an attribute merged by a uniqueness rule.
fn leads_to_unique(path: &[PathSeg]) -> bool {
    RULES.iter().any(|(pattern, rule)| {
        matches!(rule, Rule::Unique(_))
            && pattern.len() >= path.len()
            && pattern.iter().zip(path).all(|(p, seg)| match seg {
                PathSeg::Key(k) => *p == "*" || p == k,
                PathSeg::Index(_) => false,
            })
    })
}

fn rule_for(path: &[PathSeg]) -> Rule {
    for (pattern, rule) in RULES {
        if pattern.len() == path.len()
            && pattern.iter().zip(path).all(|(p, seg)| match seg {
                PathSeg::Key(k) => *p == "*" || p == k,
                PathSeg::Index(_) => false,
            })
        {
            return *rule;
        }
    }
    Rule::Default
}

/// Merges `right` onto `left` at `path`; `None` means the key is removed (`!reset`).
fn merge_at(path: &mut Path, left: Value, right: Value, trace: &mut Trace) -> Option<Value> {
    let right = match right {
        Value::Tagged(tagged) if is_tag(&tagged.tag, "reset") => {
            trace.replaced.push(path.clone());
            return None;
        }
        Value::Tagged(tagged) if is_tag(&tagged.tag, "override") => {
            trace.replaced.push(path.clone());
            return resolve_tags(tagged.value);
        }
        Value::Tagged(tagged) => tagged.value,
        other => other,
    };
    let left = match left {
        Value::Tagged(tagged) => tagged.value,
        other => other,
    };
    match rule_for(path) {
        Rule::Default => merge_default(path, left, right, trace),
        Rule::Replace => replace(path, right, trace),
        Rule::KeyValue => {
            let left = key_value_map(path, left, &mut trace.left_moves);
            let right = key_value_map(path, right, &mut trace.right_moves);
            merge_default(path, left, right, trace)
        }
        Rule::Unique(indexer) => {
            let left = as_sequence(left);
            let right = as_sequence(right);
            merge_unique(path, left, right, indexer, trace)
        }
        Rule::DependsOn | Rule::ServiceNetworks => {
            let default = if rule_for(path) == Rule::DependsOn {
                let mut m = Mapping::new();
                m.insert("condition".into(), "service_started".into());
                m.insert("required".into(), true.into());
                Value::Mapping(m)
            } else {
                Value::Null
            };
            if matches!((&left, &right), (Value::Sequence(_), Value::Sequence(_))) {
                return merge_unique(path, left, right, Indexer::Whole, trace);
            }
            let left = names_to_map(path, left, &default, &mut trace.left_moves);
            let right = names_to_map(path, right, &default, &mut trace.right_moves);
            merge_default(path, left, right, trace)
        }
        Rule::Build => {
            let to_map = |v: Value| match v {
                Value::String(s) => {
                    let mut m = Mapping::new();
                    m.insert("context".into(), Value::String(s));
                    Value::Mapping(m)
                }
                other => other,
            };
            if let Value::String(_) = &left {
                trace.left_moves.push((path.clone(), with(path, "context")));
            }
            if let Value::String(_) = &right {
                trace
                    .right_moves
                    .push((path.clone(), with(path, "context")));
            }
            merge_default(path, to_map(left), to_map(right), trace)
        }
        Rule::Logging => {
            let driver = |v: &Value| v.get("driver").cloned();
            match (driver(&left), driver(&right)) {
                (Some(a), Some(b)) if a != b => replace(path, right, trace),
                _ => merge_default(path, left, right, trace),
            }
        }
        Rule::Ulimit => match (&left, &right) {
            (Value::Mapping(_), Value::Mapping(_)) => merge_default(path, left, right, trace),
            _ => replace(path, right, trace),
        },
    }
}

fn with(path: &Path, key: &str) -> Path {
    let mut p = path.clone();
    p.push(PathSeg::Key(key.into()));
    p
}

fn replace(path: &Path, right: Value, trace: &mut Trace) -> Option<Value> {
    trace.replaced.push(path.clone());
    resolve_tags(right)
}

fn merge_default(path: &mut Path, left: Value, right: Value, trace: &mut Trace) -> Option<Value> {
    match (left, right) {
        (Value::Mapping(mut left), Value::Mapping(right)) => {
            for (key, value) in right {
                let seg = PathSeg::Key(key_text(&key));
                path.push(seg);
                match left.get_mut(&key) {
                    Some(slot) => {
                        // Merge in place: the key keeps its earlier position.
                        let earlier = std::mem::replace(slot, Value::Null);
                        match merge_at(path, earlier, value, trace) {
                            Some(merged) => *slot = merged,
                            None => {
                                left.shift_remove(&key);
                            }
                        }
                    }
                    None => {
                        if let Some(v) = resolve_tags(value) {
                            left.insert(key, v);
                        } else {
                            trace.replaced.push(path.clone());
                        }
                    }
                }
                path.pop();
            }
            Some(Value::Mapping(left))
        }
        (Value::Sequence(mut left), Value::Sequence(right)) => {
            for (i, item) in right.into_iter().enumerate() {
                if let Some(item) = resolve_tags(item) {
                    let mut from = path.clone();
                    from.push(PathSeg::Index(i));
                    let mut to = path.clone();
                    to.push(PathSeg::Index(left.len()));
                    trace.right_moves.push((from, to));
                    left.push(item);
                }
            }
            Some(Value::Sequence(left))
        }
        // A later `null` on a mapping keeps the mapping (`networks: {front: }`).
        (left @ Value::Mapping(_), Value::Null) => Some(left),
        (_, right) => replace(path, right, trace),
    }
}

fn merge_unique(
    path: &mut Path,
    left: Value,
    right: Value,
    indexer: Indexer,
    trace: &mut Trace,
) -> Option<Value> {
    let (Value::Sequence(mut items), Value::Sequence(right)) = (left, right) else {
        return None;
    };
    // Key -> position of its first item: a later item with the same key replaces it.
    let mut positions: HashMap<String, usize> = HashMap::new();
    for (pos, item) in items.iter().enumerate() {
        if let Some(key) = index_key(indexer, item) {
            positions.entry(key).or_insert(pos);
        }
    }
    for (i, item) in right.into_iter().enumerate() {
        let Some(item) = resolve_tags(item) else {
            continue;
        };
        let key = index_key(indexer, &item);
        let mut from = path.clone();
        from.push(PathSeg::Index(i));
        let found = key.as_ref().and_then(|k| positions.get(k).copied());
        let at = match found {
            Some(pos) => {
                items[pos] = item;
                pos
            }
            None => {
                items.push(item);
                if let Some(key) = key {
                    positions.insert(key, items.len() - 1);
                }
                items.len() - 1
            }
        };
        let mut to = path.clone();
        to.push(PathSeg::Index(at));
        if found.is_some() {
            trace.replaced.push(to.clone());
        }
        trace.right_moves.push((from, to));
    }
    Some(Value::Sequence(items))
}

fn as_sequence(value: Value) -> Value {
    match value {
        Value::Sequence(_) => value,
        Value::Null => Value::Sequence(Vec::new()),
        Value::Mapping(m) => Value::Sequence(
            m.into_iter()
                .map(|(k, v)| match v {
                    Value::Null => Value::String(key_text(&k)),
                    v => Value::String(format!("{}={}", key_text(&k), scalar_text(&v))),
                })
                .collect(),
        ),
        other => Value::Sequence(vec![other]),
    }
}

/// The text of a scalar key or value (`8080` and `"8080"` index alike).
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Tagged(t) => scalar_text(&t.value),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_string(),
    }
}

fn key_text(key: &Value) -> String {
    scalar_text(key)
}

fn index_key(indexer: Indexer, value: &Value) -> Option<String> {
    let field = |name: &str| value.get(name).map(scalar_text);
    Some(match indexer {
        Indexer::Whole => scalar_text(value),
        Indexer::Port => match value {
            // A missing host address means all addresses, as Compose indexes it.
            Value::Mapping(_) => format!(
                "{}|{}|{}|{}",
                field("host_ip").unwrap_or_else(|| "0.0.0.0".into()),
                field("published").unwrap_or_default(),
                field("target").unwrap_or_default(),
                field("protocol").unwrap_or_else(|| "tcp".into()),
            ),
            other => {
                let text = scalar_text(other);
                let (spec, protocol) = match text.rsplit_once('/') {
                    Some((s, p)) => (s.to_string(), p.to_string()),
                    None => (text.clone(), "tcp".to_string()),
                };
                let (rest, target) = match spec.rsplit_once(':') {
                    Some((r, t)) => (r.to_string(), t.to_string()),
                    None => (String::new(), spec.clone()),
                };
                let (ip, published) = match rest.rsplit_once(':') {
                    Some((ip, p)) => (ip.to_string(), p.to_string()),
                    None => ("0.0.0.0".to_string(), rest),
                };
                format!("{ip}|{published}|{target}|{protocol}")
            }
        },
        Indexer::Volume => match value {
            Value::Mapping(_) => field("target")?,
            other => {
                let text = scalar_text(other);
                let parts: Vec<&str> = text.split(':').collect();
                if parts.len() == 1 {
                    parts[0].to_string()
                } else {
                    parts[1].to_string()
                }
            }
        },
        Indexer::Tmpfs => {
            let text = scalar_text(value);
            text.split(':').next().unwrap_or_default().to_string()
        }
        Indexer::Mount(prefix) => match value {
            Value::Mapping(_) => match field("target") {
                Some(t) if t.starts_with('/') => t,
                Some(t) => format!("{prefix}{t}"),
                None => format!("{prefix}{}", field("source")?),
            },
            other => format!("{prefix}{}", scalar_text(other)),
        },
        Indexer::Device => match value {
            Value::Mapping(_) => field("target").or_else(|| field("source"))?,
            other => {
                let text = scalar_text(other);
                let parts: Vec<&str> = text.split(':').collect();
                if parts.len() == 1 {
                    parts[0].to_string()
                } else {
                    parts[1].to_string()
                }
            }
        },
        Indexer::EnvFile => match value {
            Value::Mapping(_) => field("path")?,
            other => scalar_text(other),
        },
    })
}

/// `KEY=VALUE` list (or mapping) as a mapping; `KEY` alone maps to null.
fn key_value_map(path: &Path, value: Value, moves: &mut Vec<(Path, Path)>) -> Value {
    match value {
        Value::Sequence(items) => {
            let mut map = Mapping::new();
            for (i, item) in items.into_iter().enumerate() {
                let text = scalar_text(&item);
                let (key, val) = match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
                    None => (text, Value::Null),
                };
                let mut from = path.clone();
                from.push(PathSeg::Index(i));
                moves.push((from, with(path, &key)));
                map.insert(Value::String(key), val);
            }
            Value::Mapping(map)
        }
        Value::Null => Value::Mapping(Mapping::new()),
        other => other,
    }
}

/// A list of names (`depends_on: [db]`, `networks: [front]`) as a mapping of name to
/// `default`.
fn names_to_map(
    path: &Path,
    value: Value,
    default: &Value,
    moves: &mut Vec<(Path, Path)>,
) -> Value {
    match value {
        Value::Sequence(items) => {
            let mut map = Mapping::new();
            for (i, item) in items.into_iter().enumerate() {
                let name = scalar_text(&item);
                let mut from = path.clone();
                from.push(PathSeg::Index(i));
                moves.push((from, with(path, &name)));
                map.insert(Value::String(name), default.clone());
            }
            Value::Mapping(map)
        }
        Value::Null => Value::Mapping(Mapping::new()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;

    fn y(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    fn merged(a: &str, b: &str) -> Value {
        merge_documents(y(a), y(b)).value
    }

    fn svc(v: &Value) -> &Value {
        &v["services"]["web"]
    }

    #[test]
    fn mappings_merge_later_wins() {
        let v = merged(
            "services: {web: {image: a, restart: always}}",
            "services: {web: {image: b, init: true}, db: {image: pg}}",
        );
        assert_eq!(svc(&v)["image"], Value::from("b"));
        assert_eq!(svc(&v)["restart"], Value::from("always"));
        assert_eq!(svc(&v)["init"], Value::from(true));
        assert_eq!(v["services"]["db"]["image"], Value::from("pg"));
    }

    #[test]
    fn plain_sequences_append() {
        let v = merged(
            "services: {web: {security_opt: [a], group_add: [x]}}",
            "services: {web: {security_opt: [b], group_add: [x]}}",
        );
        assert_eq!(svc(&v)["security_opt"], y("[a, b]"));
        assert_eq!(svc(&v)["group_add"], y("[x, x]"));
    }

    #[test]
    fn command_entrypoint_healthcheck_test_replace() {
        let v = merged(
            "services: {web: {command: [a, b], entrypoint: [sh], healthcheck: {test: [CMD, x], interval: 1s}}}",
            "services: {web: {command: [c], entrypoint: [bash], healthcheck: {test: [CMD, y]}}}",
        );
        assert_eq!(svc(&v)["command"], y("[c]"));
        assert_eq!(svc(&v)["entrypoint"], y("[bash]"));
        assert_eq!(svc(&v)["healthcheck"], y("{test: [CMD, y], interval: 1s}"));
    }

    #[test]
    fn key_value_attributes_merge_by_name() {
        for attr in ["environment", "labels", "annotations", "sysctls"] {
            let v = merged(
                &format!("services: {{web: {{{attr}: [A=1, B=2, C]}}}}"),
                &format!("services: {{web: {{{attr}: {{B: '3', D: '4'}}}}}}"),
            );
            assert_eq!(
                svc(&v)[attr],
                y("{A: '1', B: '3', C: null, D: '4'}"),
                "{attr}"
            );
        }
        let v = merged(
            "services: {web: {build: {context: ., args: [X=1]}}}",
            "services: {web: {build: {args: {Y: 2}}}}",
        );
        assert_eq!(svc(&v)["build"]["args"], y("{X: '1', Y: 2}"));
    }

    #[test]
    fn ports_merge_by_ip_published_target_protocol() {
        let v = merged(
            "services: {web: {ports: ['80:80', '127.0.0.1:53:53/udp', '9000']}}",
            "services: {web: {ports: [{target: 80, published: '80', mode: host}, '53:53/udp', '9000']}}",
        );
        assert_eq!(
            svc(&v)["ports"],
            y(
                "[{target: 80, published: '80', mode: host}, '127.0.0.1:53:53/udp', '9000', '53:53/udp']"
            )
        );
    }

    #[test]
    fn ports_without_host_ip_mean_all_addresses() {
        let v = merged(
            "services: {web: {ports: ['80:80', '[::1]:53:53']}}",
            "services: {web: {ports: [{host_ip: 0.0.0.0, target: 80, published: '80'}, {host_ip: '[::1]', target: 53, published: 53}]}}",
        );
        assert_eq!(
            svc(&v)["ports"],
            y(
                "[{host_ip: 0.0.0.0, target: 80, published: '80'}, {host_ip: '[::1]', target: 53, published: 53}]"
            )
        );
    }

    #[test]
    fn volumes_tmpfs_secrets_configs_devices_by_target() {
        let v = merged(
            "services: {web: {volumes: ['./a:/data', 'cache:/cache:ro'], tmpfs: /run, secrets: [s1], configs: [c1], devices: ['/dev/a:/dev/x']}}",
            "services: {web: {volumes: [{type: bind, source: ./b, target: /data}, '/logs'], tmpfs: ['/run:size=1m', /tmp], secrets: [{source: s1, target: /run/secrets/s1, mode: 0400}, s2], configs: [{source: c1, target: /c1}], devices: ['/dev/b:/dev/x']}}",
        );
        let s = svc(&v);
        assert_eq!(
            s["volumes"],
            y("[{type: bind, source: ./b, target: /data}, 'cache:/cache:ro', /logs]")
        );
        assert_eq!(s["tmpfs"], y("['/run:size=1m', /tmp]"));
        assert_eq!(
            s["secrets"],
            y("[{source: s1, target: /run/secrets/s1, mode: 0400}, s2]")
        );
        assert_eq!(s["configs"], y("[{source: c1, target: /c1}]"));
        assert_eq!(s["devices"], y("['/dev/b:/dev/x']"));
    }

    #[test]
    fn unique_lists_append_without_duplicates() {
        let v = merged(
            "services: {web: {dns: 8.8.8.8, dns_search: [a], expose: [80], cap_add: [NET_ADMIN], extra_hosts: ['h:1.2.3.4'], profiles: [p]}}",
            "services: {web: {dns: [8.8.8.8, 1.1.1.1], dns_search: [a, b], expose: ['80', 81], cap_add: [NET_ADMIN, SYS_TIME], extra_hosts: ['h:1.2.3.4', 'g:5.6.7.8'], profiles: [p, q]}}",
        );
        let s = svc(&v);
        assert_eq!(s["dns"], y("[8.8.8.8, 1.1.1.1]"));
        assert_eq!(s["dns_search"], y("[a, b]"));
        assert_eq!(s["expose"], y("['80', 81]"));
        assert_eq!(s["cap_add"], y("[NET_ADMIN, SYS_TIME]"));
        assert_eq!(s["extra_hosts"], y("['h:1.2.3.4', 'g:5.6.7.8']"));
        assert_eq!(s["profiles"], y("[p, q]"));
    }

    #[test]
    fn depends_on_networks_by_name() {
        let v = merged(
            "services: {web: {depends_on: [db], networks: [front]}}",
            "services: {web: {depends_on: {cache: {condition: service_healthy}}, networks: {back: {aliases: [b]}, front: }}}",
        );
        let s = svc(&v);
        assert_eq!(
            s["depends_on"],
            y(
                "{db: {condition: service_started, required: true}, cache: {condition: service_healthy}}"
            )
        );
        assert_eq!(s["networks"], y("{front: null, back: {aliases: [b]}}"));
        let v = merged(
            "services: {web: {depends_on: [db]}}",
            "services: {web: {depends_on: [db, mq]}}",
        );
        assert_eq!(svc(&v)["depends_on"], y("[db, mq]"));
    }

    #[test]
    fn build_logging_ulimits() {
        let v = merged(
            "services: {web: {build: ., logging: {driver: json-file, options: {max-size: 1m}}, ulimits: {nofile: {soft: 1, hard: 2}, nproc: 10}}}",
            "services: {web: {build: {dockerfile: D}, logging: {driver: syslog}, ulimits: {nofile: 5, nproc: {soft: 1, hard: 1}}}}",
        );
        let s = svc(&v);
        assert_eq!(s["build"], y("{context: ., dockerfile: D}"));
        assert_eq!(s["logging"], y("{driver: syslog}"));
        assert_eq!(s["ulimits"], y("{nofile: 5, nproc: {soft: 1, hard: 1}}"));
        let v = merged(
            "services: {web: {logging: {driver: json-file, options: {max-size: 1m}}}}",
            "services: {web: {logging: {options: {max-file: '3'}}}}",
        );
        assert_eq!(
            svc(&v)["logging"],
            y("{driver: json-file, options: {max-size: 1m, max-file: '3'}}")
        );
    }

    #[test]
    fn reset_and_override_tags() {
        let v = merged(
            "services: {web: {ports: ['80:80'], environment: {A: '1', B: '2'}, command: x}}",
            "services: {web: {ports: !reset [], environment: !override {C: '3'}, command: !reset null, new: !override {a: 1}}}",
        );
        let s = svc(&v);
        assert!(s.get("ports").is_none());
        assert!(s.get("command").is_none());
        assert_eq!(s["environment"], y("{C: '3'}"));
        assert_eq!(s["new"], y("{a: 1}"));
        // Tags in a value without an earlier side.
        assert_eq!(
            resolve_tags(y("{a: !reset 1, b: !override [2]}")),
            Some(y("{b: [2]}"))
        );
    }

    #[test]
    fn duplicates_within_one_document_collapse() {
        let mut v = y(
            "services: {web: {ports: ['80:80', '81:81', {target: 80, published: '80'}], dns: [a, b, a], networks: {n: {aliases: [x, x]}}, security_opt: [s, s]}}",
        );
        let trace = enforce_unique(&mut v);
        assert_eq!(
            svc(&v)["ports"],
            y("[{target: 80, published: '80'}, '81:81']")
        );
        assert_eq!(svc(&v)["dns"], y("[a, b]"));
        assert_eq!(svc(&v)["networks"]["n"]["aliases"], y("[x]"));
        // Plain sequences keep their duplicates.
        assert_eq!(svc(&v)["security_opt"], y("[s, s]"));
        let ports = |i| {
            vec![
                PathSeg::Key("services".into()),
                PathSeg::Key("web".into()),
                PathSeg::Key("ports".into()),
                PathSeg::Index(i),
            ]
        };
        let mut map = SourceMap::new("a.yaml");
        map.insert(ports(0), Location::at("a.yaml", 1, 1));
        map.insert(ports(2), Location::at("a.yaml", 3, 1));
        trace.apply(&mut map, SourceMap::new("a.yaml"));
        assert_eq!(map.locate(&ports(0)).line, 3);
    }

    #[test]
    fn trace_moves_source_places() {
        let a = y("services: {web: {ports: ['1:1']}}");
        let b = y("services: {web: {ports: ['2:2']}}");
        let m = merge_documents(a, b);
        let mut left = SourceMap::new("a.yaml");
        let ports = |i| {
            vec![
                PathSeg::Key("services".into()),
                PathSeg::Key("web".into()),
                PathSeg::Key("ports".into()),
                PathSeg::Index(i),
            ]
        };
        left.insert(ports(0), Location::at("a.yaml", 3, 1));
        let mut right = SourceMap::new("b.yaml");
        right.insert(ports(0), Location::at("b.yaml", 7, 1));
        m.trace.apply(&mut left, right);
        assert_eq!(left.locate(&ports(0)), Location::at("a.yaml", 3, 1));
        assert_eq!(left.locate(&ports(1)), Location::at("b.yaml", 7, 1));
    }
}
