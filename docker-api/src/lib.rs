//! berth's Docker Engine API: the REST API the docker CLI, docker-compose, the Docker SDKs
//! and the tools built on them speak, served over a unix socket and mapped onto berth's own
//! objects — the node agent's containers and volumes, the image store and registry client,
//! and berth's bridge networks. Containers made through it are ordinary berth containers.
//!
//! [`serve`] runs the server on a listener; [`Backend::open`] opens the objects of one data
//! root. `berthd` hosts it (`--docker-host`, a unix socket or TCP with mutual TLS); the `berth-docker-api` binary runs it alone.
//! This crate holds no container, image or network logic of its own: only the translation
//! between Docker's JSON and berth's types, streaming, and connection hijacking.

// `json!` of `/info` is deep
#![recursion_limit = "256"]

mod archive;
mod attach;
mod backend;
mod build;
mod containers;
mod create;
mod error;
mod events;
mod exec;
mod filters;
mod health;
mod hijack;
mod http;
mod images;
mod networks;
mod server;
mod system;
mod time;
mod tls;
mod volumes;

pub use backend::{Backend, OpenError};
pub use error::ApiError;
pub use http::{API_VERSION, MIN_API_VERSION};
pub use server::{serve, serve_io};
pub use tls::{Listen, TlsError, TlsFiles, TlsListener, parse_listen, server_config};
