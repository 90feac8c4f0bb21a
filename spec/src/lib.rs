//! berth-spec: reads Compose files exactly as Docker Compose reads them and produces one
//! canonical, validated `App` for the rest of berth.
//!
//! Pure library: no network, no root, no processes. File reads happen only in the loader.

pub mod error;
pub mod graph;

pub use error::{Error, Location, Result, Warning};
pub use graph::{DependencyGraph, Edge, EdgeKind};
