//! The error of a container operation: one enum wrapping each subsystem's error, plus
//! lifecycle refusals, so the CLI prints one clear line.

use crate::cgroups::CgroupError;
use crate::hooks::HookError;
use crate::namespaces::NamespaceError;
use crate::process::ProcessError;
use crate::rootfs::RootfsError;
use crate::spec::SpecError;
use crate::state::{StateError, Status};
use crate::sys::SysError;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("container {id}: {detail}")]
    Init { id: String, detail: String },
    #[error("container {id} is {status}: cannot {op}")]
    BadState {
        id: String,
        status: Status,
        op: &'static str,
    },
    /// Worded as runc words it: containerd's shim matches this text to map a kill of an
    /// exited container to "not found".
    #[error("container not running: {id}")]
    NotRunning { id: String },
    #[error("{0}")]
    Invalid(String),
}

impl ContainerError {
    pub(crate) fn init(id: &str, detail: impl std::fmt::Display) -> ContainerError {
        ContainerError::Init {
            id: id.into(),
            detail: detail.to_string(),
        }
    }
}
