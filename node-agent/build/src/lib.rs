//! berth-build: Dockerfile builds on berth's own image store and runtime, without a daemon.
//!
//! Map: [`dockerfile`] parses (pure); [`ignore`] applies `.dockerignore` rules (pure);

pub mod dockerfile;
