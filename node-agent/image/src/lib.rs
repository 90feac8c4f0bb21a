//! berth-image: the node's content-addressed image store, OCI/Docker archive import and
//! export, the registry client, and layer unpacking into overlay snapshots.
//!
//! Map: [`digest`] and [`reference`] are pure parsing; [`store`] owns blobs and ingests;
//! [`manifest`] reads manifests, indexes and configs; [`images`] keeps the name → manifest
//! records; [`gc`] frees what nothing references; [`archive`] loads, saves and imports;
//! [`unpack`] extracts one layer safely; [`snapshot`] shares unpacked layers and mounts
//! container root filesystems; [`testing`] builds busybox images for tests;
//! [`registry`] speaks the distribution API and pulls/pushes through the store.

pub mod archive;
pub mod digest;
pub mod distribution;
mod fsutil;
pub mod gc;
pub mod images;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod testing;
pub mod unpack;

pub use archive::now_rfc3339;
pub use digest::{Digest, DigestError};
pub use gc::{GcOptions, GcReport};
pub use images::{Image, ImageRecord};
pub use manifest::{Manifest, Platform, media_types};
pub use reference::{Reference, ReferenceError};
pub use snapshot::{ContainerSnapshot, RootfsPath, SnapshotError, Snapshotter};
pub use store::{Ingest, Lease, Store, StoreError};
pub use unpack::{UnpackError, UnpackOptions};
