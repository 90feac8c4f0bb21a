//! berth-spec: reads Compose files exactly as Docker Compose reads them and produces one
//! canonical, validated `App` for the rest of berth.
//!
//! Pure library: no network, no root, no processes. File reads happen only in the loader.

pub mod discovery;
pub mod env;
pub mod error;
pub mod extends;
pub mod graph;
pub mod include;
pub mod interpolate;
pub mod loader;
pub mod merge;
pub mod model;
pub mod normalize;
pub mod path;
pub mod profiles;
pub mod rebase;
pub mod snippet;
pub mod source_map;
pub mod validate;
pub mod yaml;

pub use error::{Error, Location, Result, Warning};
pub use graph::{DependencyGraph, Edge, EdgeKind};
pub use loader::{LoadOptions, Loaded, RawProject, load, load_document};
pub use model::App;
pub use path::PathSeg;
pub use source_map::SourceMap;
