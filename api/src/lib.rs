//! berthd's client API: the `berth.v1` protobuf messages and the tonic clients and servers
//! generated from `proto/berth/v1/*.proto` at build time (protox, no `protoc`), plus
//! [`connect`], which opens a channel to a daemon at a `unix://` or `tcp://` endpoint (the
//! latter only over mutual TLS, [`tls`]).
//!
//! This crate holds no behaviour of the daemon: the services are implemented in
//! `berth-daemon`, the callers live in the CLI.

pub mod endpoint;
pub mod tls;

/// The generated `berth.v1` package.
pub mod v1 {
    #![allow(clippy::all, missing_docs, rust_2018_idioms)]
    tonic::include_proto!("berth.v1");
}

pub use endpoint::{DEFAULT_HOST, Endpoint, EndpointError, connect};
pub use tls::{CERT_PATH_ENV, ClientTls, TlsError};

/// The API version spoken by this crate, answered by `System.Ping`.
pub const API_VERSION: &str = "1";
