//! A path into a Compose document (`services.web.ports[0]`), shared by the loader's source
//! map and the model's error locations. Plain data: no parsing, no I/O.

/// One step of a path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}
