//! berth-build: Dockerfile builds on berth's own image store and runtime, without a daemon.
//!
//! Map: [`dockerfile`] parses (pure); [`ignore`] applies `.dockerignore` rules and path
//! globs (pure); [`copy`] plans and writes `COPY`/`ADD` layers; [`run`] executes a `RUN`
//! in a berth-runc container on an overlay of the build state; [`layer`] stores layers and
//! their snapshots; [`mount`] owns overlay mounts; [`cache`] keeps step results keyed
//! BuildKit-style; [`builder`] walks the stages (in parallel where independent) and writes
//! the final OCI image; [`compose`] builds the `build:` services of a Compose app.
//!
//! Entry points: [`build`] (one Dockerfile, like `docker build`) and
//! [`compose::build_services`] (what `berth build` and `up --build` call).

pub mod builder;
pub mod cache;
pub mod compose;
pub mod copy;
pub mod dockerfile;
pub mod ignore;
pub mod layer;
pub mod mount;
pub mod run;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use builder::build;
pub use compose::{BuiltImage, build_services};
pub use run::BuildNetwork;

/// Errors of a build. Those about an instruction name the Dockerfile and the line.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] dockerfile::ParseError),
    #[error("{file}:{line}: {message}")]
    Instruction {
        file: String,
        line: usize,
        message: String,
    },
    #[error(
        "{file}:{line}: step {step} `{instruction}` failed: the command returned a non-zero code: {code}"
    )]
    RunFailed {
        file: String,
        line: usize,
        step: String,
        instruction: String,
        code: i32,
    },
    #[error("{file}:{line}: {inner}")]
    At {
        file: String,
        line: usize,
        inner: Box<BuildError>,
    },
    #[error(
        "COPY/ADD source {source_path:?} not found in the build context (or excluded by .dockerignore)"
    )]
    SourceMissing { source_path: String },
    #[error("with more than one source the destination {dest:?} must be a directory ending in /")]
    DestNotDir { dest: String },
    #[error("ADD {url}: cannot download: {reason}")]
    Download { url: String, reason: String },
    #[error(
        "base image {image} not found locally; `berth pull` it or load it (or build with --pull)"
    )]
    BaseImageMissing { image: String },
    #[error("pulling {image}: {reason}")]
    Pull { image: String, reason: String },
    #[error("target stage {0:?} not found in the Dockerfile")]
    NoSuchTarget(String),
    #[error("invalid user {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("too many layers ({layers}) for one overlay mount")]
    TooManyLayers { layers: usize },
    #[error("path {path} cannot be used in an overlay mount")]
    BadPath { path: PathBuf },
    #[error("mount overlay on {target}: {source}")]
    Mount { target: PathBuf, source: io::Error },
    #[error("unmount {target}: {source}")]
    Unmount { target: PathBuf, source: io::Error },
    #[error("starting {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] berth_image::StoreError),
    #[error(transparent)]
    Snapshot(#[from] berth_image::SnapshotError),
    #[error(transparent)]
    Reference(#[from] berth_image::ReferenceError),
    #[error("service {service}: {message}")]
    Service { service: String, message: String },
    #[error("{0}")]
    Internal(String),
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |source| BuildError::Io { op, path, source }
}

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A file (relative paths are relative to the context).
    Path(PathBuf),
    /// Compose's `dockerfile_inline`.
    Inline(String),
}

/// What a build reports as it goes.
pub trait Progress: Send + Sync {
    /// A step starts (`cached`: its result comes from the cache).
    fn step(&self, stage: &str, index: usize, total: usize, text: &str, cached: bool);
    /// A line of a `RUN`'s output.
    fn output(&self, stage: &str, line: &str);
    /// Something the user should know (an unused `--build-arg`, …).
    fn warning(&self, message: &str);
}

/// A [`Progress`] that reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _: &str, _: usize, _: usize, _: &str, _: bool) {}
    fn output(&self, _: &str, _: &str) {}
    fn warning(&self, _: &str) {}
}

/// Pulls an image into the store (`--pull`, or a missing base image); the CLI supplies it.
pub type PullFn = dyn Fn(&str) -> Result<(), String> + Send + Sync;

/// Where berth's pieces are: shared by every build of one invocation.
#[derive(Clone)]
pub struct Env {
    /// `/var/lib/berth`: the image store is `<data_root>/image`, the cache
    /// `<data_root>/build`.
    pub data_root: PathBuf,
    /// `berth-runc`.
    pub runtime: PathBuf,
    /// The runtime's `--root` for build containers.
    pub run_root: PathBuf,
    pub progress: Arc<dyn Progress>,
    /// How to pull a base image that is missing (or always, with `pull`).
    pub pull: Option<Arc<PullFn>>,
}

/// One build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context: PathBuf,
    pub dockerfile: DockerfileSource,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// Names for the image; none → a dangling image.
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub pull: bool,
    pub network: BuildNetwork,
    /// Bytes of `/dev/shm` in `RUN` containers.
    pub shm_size: Option<i64>,
}

impl BuildOptions {
    /// A build of `context/Dockerfile` with defaults.
    pub fn new(context: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            context: context.into(),
            dockerfile: DockerfileSource::Path(PathBuf::from("Dockerfile")),
            build_args: BTreeMap::new(),
            target: None,
            tags: Vec::new(),
            labels: BTreeMap::new(),
            no_cache: false,
            pull: false,
            network: BuildNetwork::Host,
            shm_size: None,
        }
    }
}

/// The result of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The image id (config digest).
    pub id: berth_image::Digest,
    /// The manifest digest the image records point at.
    pub manifest: berth_image::Digest,
    /// Steps executed and steps taken from the cache.
    pub executed: usize,
    pub cached: usize,
}
