//! berth-shim: one small supervisor process per container. It starts the container through
//! the OCI runtime's command line, owns its stdio and writes it to a JSON-lines log, reaps it,
//! records its exit status, and keeps running when the agent dies.
