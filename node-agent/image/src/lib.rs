//! berth-image: the node's content-addressed image store, OCI/Docker archive import and
//! export, the registry client, and layer unpacking into overlay snapshots.

pub mod registry;
