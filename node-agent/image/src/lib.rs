//! berth-image: the node's content-addressed image store, OCI/Docker archive import and
//! export, the registry client, and layer unpacking into overlay snapshots.
//!
//! Map: [`digest`] and [`reference`] are pure parsing; [`store`] owns blobs and ingests;
//! [`manifest`] reads manifests, indexes and configs; [`images`] keeps the name → manifest
//! records; [`registry`] speaks the distribution API and pulls/pushes through the store.

pub mod digest;
mod fsutil;
pub mod gc;
pub mod images;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod store;

pub use digest::{Digest, DigestError};
pub use images::{Image, ImageRecord};
pub use manifest::{Manifest, Platform, media_types};
pub use reference::{Reference, ReferenceError};
pub use store::{Ingest, Lease, Store, StoreError};
