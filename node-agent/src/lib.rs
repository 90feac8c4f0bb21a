//! The berth node agent: reconciles the tasks assigned to this node against what runs here,
//! using the local runtime stack — the image store (`berth-image`), the OCI runtime and shim
//! (`berth-runtime`) and bridge networking (`berth-network`).
//!
//! The agent never depends on the controller; it talks to it through the API types only.
