//! Where each value of a loaded document came from: key paths (`services.web.ports[0]`)
//! mapped to `file:line:column`. serde_yaml keeps no positions, so each file is indexed
//! once by a position-aware event parser (saphyr-parser); the same pass enforces the
//! hostile-input bounds (nesting depth, alias expansion) before serde_yaml ever sees the
//! text. This module reads no files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser};

use crate::error::{Error, Location};
use crate::path::PathSeg;

/// Deepest nesting accepted. serde_yaml itself stops at 128; Compose files rarely pass 10.
pub const MAX_DEPTH: usize = 100;
/// Most nodes a document may hold once every alias is expanded ("billion laughs" bound).
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;

/// Positions of the values of one or more files, by key path.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    /// The file blamed when no path matches (the first file loaded).
    default_file: PathBuf,
    places: HashMap<Vec<PathSeg>, Location>,
}

impl SourceMap {
    pub fn new(default_file: impl Into<PathBuf>) -> Self {
        SourceMap {
            default_file: default_file.into(),
            places: HashMap::new(),
        }
    }

    pub fn default_file(&self) -> &Path {
        &self.default_file
    }

    pub fn insert(&mut self, path: Vec<PathSeg>, location: Location) {
        self.places.insert(path, location);
    }

    pub fn get(&self, path: &[PathSeg]) -> Option<&Location> {
        self.places.get(path)
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// The place of the deepest known prefix of `path`, else the default file.
    pub fn locate(&self, path: &[PathSeg]) -> Location {
        for end in (0..=path.len()).rev() {
            if let Some(location) = self.places.get(&path[..end]) {
                return location.clone();
            }
        }
        Location::file(&self.default_file)
    }

    /// Forgets every place at or under `prefix` (the value there was replaced or removed).
    pub fn remove_prefix(&mut self, prefix: &[PathSeg]) {
        self.places.retain(|path, _| !path.starts_with(prefix));
    }

    /// Re-keys places in one pass: a place under a move's `from` goes under its `to` (the
    /// longest matching `from` wins), so swaps and shifts never collide.
    pub fn apply_moves(&mut self, moves: &[(Vec<PathSeg>, Vec<PathSeg>)]) {
        if moves.is_empty() {
            return;
        }
        let places = std::mem::take(&mut self.places);
        for (path, location) in places {
            let best = moves
                .iter()
                .filter(|(from, _)| path.starts_with(from))
                .max_by_key(|(from, _)| from.len());
            let new_path = match best {
                Some((from, to)) => {
                    let mut p = to.clone();
                    p.extend_from_slice(&path[from.len()..]);
                    p
                }
                None => path,
            };
            self.places.insert(new_path, location);
        }
    }

    /// Copies the places of `other` found under `from` to sit under `to` in `self`,
    /// overwriting what `self` had there.
    pub fn copy_prefix_from(&mut self, other: &SourceMap, from: &[PathSeg], to: &[PathSeg]) {
        for (path, location) in &other.places {
            if path.starts_with(from) {
                let mut new_path = to.to_vec();
                new_path.extend_from_slice(&path[from.len()..]);
                self.places.insert(new_path, location.clone());
            }
        }
    }

    /// Takes every place of `later` (a file merged on top), later places winning.
    pub fn absorb(&mut self, later: SourceMap) {
        self.places.extend(later.places);
    }
}

enum Frame {
    Mapping {
        key: Option<String>,
        expect_key: bool,
        nodes: u64,
        anchor: usize,
    },
    Sequence {
        index: usize,
        nodes: u64,
        anchor: usize,
    },
    /// A non-scalar mapping key (`? [a, b]`): indexed as one opaque key.
    ComplexKey,
}

/// Indexes one YAML text: every mapping entry and sequence item gets the place of its key
/// or item. Rejects, with `Error::Syntax`, malformed YAML, nesting deeper than
/// `MAX_DEPTH`, and aliases expanding past `MAX_EXPANDED_NODES`.
pub fn index(text: &str, file: &Path) -> Result<SourceMap, Error> {
    let (map, error) = index_partial(text, file);
    match error {
        Some(err) => Err(err),
        None => Ok(map),
    }
}

/// Like `index`, but keeps the places read before an error, so a file that this parser
/// finds malformed yet serde_yaml accepts still gets positions for its first part.
pub fn index_partial(text: &str, file: &Path) -> (SourceMap, Option<Error>) {
    let mut map = SourceMap::new(file);
    let error = index_into(text, file, &mut map).err();
    (map, error)
}

fn index_into(text: &str, file: &Path, map: &mut SourceMap) -> Result<(), Error> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut prefix: Vec<PathSeg> = Vec::new();
    let mut anchor_sizes: HashMap<usize, u64> = HashMap::new();
    let mut total: u64 = 0;
    let at = |line: usize, col: usize| Location::at(file, line, col + 1);
    let mut complex_depth = 0usize;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| Error::Syntax {
            location: at(e.marker().line(), e.marker().col()),
            message: e.info().to_string(),
        })?;
        let here = at(span.start.line(), span.start.col());
        if complex_depth > 0 {
            match event {
                Event::SequenceStart(..) | Event::MappingStart(..) => complex_depth += 1,
                Event::SequenceEnd | Event::MappingEnd => complex_depth -= 1,
                _ => {}
            }
            if complex_depth == 0 {
                // The complex key is complete: what follows is its value.
                if let Some(Frame::ComplexKey) = stack.last() {
                    stack.pop();
                }
                if let Some(Frame::Mapping {
                    key, expect_key, ..
                }) = stack.last_mut()
                {
                    *key = Some("<complex key>".to_string());
                    *expect_key = false;
                }
            }
            continue;
        }
        // Is this event a mapping key? Then it names a path, it is not a value.
        if let Some(Frame::Mapping {
            key,
            expect_key: true,
            ..
        }) = stack.last_mut()
        {
            match &event {
                Event::Scalar(text, ..) => {
                    *key = Some(text.to_string());
                    if let Some(Frame::Mapping { expect_key, .. }) = stack.last_mut() {
                        *expect_key = false;
                    }
                    let mut path = prefix.clone();
                    path.push(PathSeg::Key(text.to_string()));
                    map.insert(path, here);
                    continue;
                }
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    complex_depth = 1;
                    stack.push(Frame::ComplexKey);
                    continue;
                }
                Event::Alias(_) => {
                    if let Some(Frame::Mapping {
                        key, expect_key, ..
                    }) = stack.last_mut()
                    {
                        *key = Some("<alias key>".to_string());
                        *expect_key = false;
                    }
                    continue;
                }
                _ => {}
            }
        }
        match event {
            Event::Scalar(_, _, anchor, _) => {
                value_seen(&mut stack, map, &prefix, here, 1);
                total += 1;
                if anchor > 0 {
                    anchor_sizes.insert(anchor, 1);
                }
            }
            Event::Alias(anchor) => {
                let size = anchor_sizes.get(&anchor).copied().unwrap_or(1);
                total = total.saturating_add(size);
                if total > MAX_EXPANDED_NODES {
                    return Err(Error::Syntax {
                        location: here,
                        message: format!(
                            "YAML aliases expand to more than {MAX_EXPANDED_NODES} nodes \
                             (an alias bomb?); refusing to load"
                        ),
                    });
                }
                value_seen(&mut stack, map, &prefix, here, size);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::Syntax {
                        location: here,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                let is_seq = matches!(event, Event::SequenceStart(..));
                // Record the container's own place, then descend into its path.
                if let Some(seg) = current_seg(&stack) {
                    let mut path = prefix.clone();
                    path.push(seg.clone());
                    if matches!(stack.last(), Some(Frame::Sequence { .. })) {
                        map.insert(path, here);
                    }
                    prefix.push(seg);
                } else if !stack.is_empty() {
                    prefix.push(PathSeg::Key(String::new()));
                }
                total += 1;
                stack.push(if is_seq {
                    Frame::Sequence {
                        index: 0,
                        nodes: 1,
                        anchor,
                    }
                } else {
                    Frame::Mapping {
                        key: None,
                        expect_key: true,
                        nodes: 1,
                        anchor,
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (nodes, anchor) = match stack.pop() {
                    Some(Frame::Mapping { nodes, anchor, .. }) => (nodes, anchor),
                    Some(Frame::Sequence { nodes, anchor, .. }) => (nodes, anchor),
                    _ => (1, 0),
                };
                if anchor > 0 {
                    anchor_sizes.insert(anchor, nodes);
                }
                if !stack.is_empty() {
                    prefix.pop();
                    advance(&mut stack, nodes);
                }
            }
            Event::DocumentStart(_) => {
                stack.clear();
                prefix.clear();
            }
            _ => {}
        }
    }
    Ok(())
}

/// The segment a value at the current position would take.
fn current_seg(stack: &[Frame]) -> Option<PathSeg> {
    match stack.last()? {
        Frame::Mapping {
            key: Some(key),
            expect_key: false,
            ..
        } => Some(PathSeg::Key(key.clone())),
        Frame::Sequence { index, .. } => Some(PathSeg::Index(*index)),
        _ => None,
    }
}

/// A scalar or alias value was read at `here`.
fn value_seen(
    stack: &mut [Frame],
    map: &mut SourceMap,
    prefix: &[PathSeg],
    here: Location,
    size: u64,
) {
    if let Some(Frame::Sequence { index, .. }) = stack.last() {
        let mut path = prefix.to_vec();
        path.push(PathSeg::Index(*index));
        map.insert(path, here);
    }
    advance(stack, size);
}

/// After a value of `size` nodes: the next mapping event is a key, the next item of a
/// sequence has the following index.
fn advance(stack: &mut [Frame], size: u64) {
    match stack.last_mut() {
        Some(Frame::Mapping {
            expect_key, nodes, ..
        }) => {
            *expect_key = true;
            *nodes = nodes.saturating_add(size);
        }
        Some(Frame::Sequence { index, nodes, .. }) => {
            *index += 1;
            *nodes = nodes.saturating_add(size);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PathSeg {
        PathSeg::Key(k.to_string())
    }

    #[test]
    fn indexes_keys_and_items() {
        let text = "services:\n  web:\n    image: nginx\n    ports:\n      - \"80:80\"\n      - target: 443\n        published: 8443\n";
        let map = index(text, Path::new("c.yaml")).unwrap();
        let l = map.locate(&[key("services"), key("web"), key("image")]);
        assert_eq!((l.line, l.column), (3, 5));
        let l = map.locate(&[key("services"), key("web"), key("ports"), PathSeg::Index(1)]);
        assert_eq!((l.line, l.column), (6, 9));
        let l = map.locate(&[
            key("services"),
            key("web"),
            key("ports"),
            PathSeg::Index(1),
            key("published"),
        ]);
        assert_eq!((l.line, l.column), (7, 9));
        // Unknown deeper path: the deepest known prefix.
        let l = map.locate(&[key("services"), key("web"), key("nope"), key("x")]);
        assert_eq!((l.line, l.column), (2, 3));
        // Nothing known: the file.
        let l = map.locate(&[key("volumes")]);
        assert_eq!((l.file.as_path(), l.line), (Path::new("c.yaml"), 0));
    }

    #[test]
    fn flow_collections_and_complex_keys() {
        let text = "a: {b: [1, {c: 2}], ? [x, y] : z, d: 3}\n";
        let map = index(text, Path::new("f")).unwrap();
        let l = map.locate(&[key("a"), key("b"), PathSeg::Index(1), key("c")]);
        assert_eq!((l.line, l.column), (1, 13));
        let l = map.locate(&[key("a"), key("d")]);
        assert_eq!((l.line, l.column), (1, 35));
    }

    #[test]
    fn malformed_yaml_is_a_syntax_error_with_place() {
        let err = index("a: [1, 2\nb: c\n", Path::new("bad.yaml")).unwrap_err();
        match err {
            Error::Syntax { location, .. } => {
                assert_eq!(location.file, Path::new("bad.yaml"));
                assert!(location.line >= 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflow() {
        let text = "[".repeat(100_000);
        let err = index(&text, Path::new("deep.yaml")).unwrap_err();
        // saphyr's scanner stops flow nesting itself; block nesting meets our own bound.
        assert!(matches!(err, Error::Syntax { .. }), "{err}");
        assert!(
            err.to_string().contains("recursion limit exceeded"),
            "{err}"
        );
        let mut block = String::new();
        for depth in 0..150 {
            block.push_str(&format!("{}k{depth}:\n", " ".repeat(depth)));
        }
        let err = index(&block, Path::new("deep.yaml")).unwrap_err();
        assert!(err.to_string().contains("nesting deeper than 100"), "{err}");
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for name in names {
            text.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            ));
            prev = name;
        }
        let started = std::time::Instant::now();
        let err = index(&text, Path::new("lol.yaml")).unwrap_err();
        assert!(err.to_string().contains("alias bomb"), "{err}");
        assert!(started.elapsed().as_secs() < 5);
    }

    #[test]
    fn move_and_copy_prefixes() {
        let mut map = SourceMap::new("a");
        map.insert(vec![key("x"), key("y")], Location::at("a", 1, 1));
        map.apply_moves(&[(vec![key("x")], vec![key("z")])]);
        assert_eq!(map.locate(&[key("z"), key("y")]).line, 1);
        assert_eq!(map.locate(&[key("x"), key("y")]).line, 0);
        let mut other = SourceMap::new("b");
        other.copy_prefix_from(&map, &[key("z")], &[key("w")]);
        assert_eq!(
            map.get(&[key("z"), key("y")]),
            other.get(&[key("w"), key("y")])
        );
    }
}
