//! The registry client: speaking the OCI distribution API to any registry (Docker Hub, GHCR,
//! a private or local registry), with authentication, credentials and the rules for plain
//! HTTP. Pull and push glue the client to the content store; the CLI renders their progress.
//!
//! Layout: [`transport`] (which scheme, which host), [`auth`] (challenges, tokens),
//! [`credentials`] (config.json), [`client`] (the wire protocol), [`digest`] (sha256 strings),
//! [`pull`] and [`push`] (registry ↔ store), [`progress`] (events for the CLI).

pub mod auth;
pub mod client;
pub mod credentials;
pub mod digest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod transport;

pub use client::{ClientOptions, RegistryClient, RegistryError, UploadMode};
pub use credentials::{CredentialStore, Credentials};
pub use transport::TransportPolicy;
