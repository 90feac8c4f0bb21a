//! berth-runtime: berth's OCI runtime (runc-compatible) and the per-container shim.
