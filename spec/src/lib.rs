//! berth-spec: reads Compose files exactly as Docker Compose reads them and produces one
//! canonical, validated `App` for the rest of berth.
//!
//! Pure library: no network, no root, no processes. File reads happen only in the loader.

pub mod error;
pub mod model;
pub mod normalize;
pub mod path;
pub mod validate;

pub use error::{Error, Location, Result, Warning};
pub use model::App;
pub use path::PathSeg;
