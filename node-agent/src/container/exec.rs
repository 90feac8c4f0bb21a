//! `exec`: a new process in a running container, through the runtime's `exec` (which joins
//! the container's namespaces and cgroup and applies its security settings). The caller
//! runs the returned command with its own stdio, so exec'd processes talk to the terminal
//! directly and their exit code is the command's.

use std::process::Command;

use super::record::Status;
use super::{ContainerError, Containers, user};

/// What `exec` runs and how.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
}

impl Containers {
    /// The runtime command that runs `opts` in container `query`.
    pub fn exec_command(&self, query: &str, opts: &ExecOptions) -> Result<Command, ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        if record.state.status != Status::Running {
            return Err(ContainerError::State {
                id: record.short_id().into(),
                state: "not running",
                hint: "start it before exec",
            });
        }
        if opts.args.is_empty() {
            return Err(ContainerError::NoCommand);
        }
        let mut cmd = Command::new(&self.config.runtime);
        cmd.arg("--root").arg(&self.config.run_root).arg("exec");
        if opts.tty {
            cmd.arg("--tty");
        }
        for e in &opts.env {
            cmd.arg("--env").arg(e);
        }
        if let Some(w) = &opts.workdir {
            cmd.arg("--cwd").arg(w);
        }
        if let Some(u) = &opts.user {
            let rootfs = self.rootfs_of(&record.id)?;
            let (uid, gid, _) = user::resolve(&rootfs, Some(u))?;
            cmd.arg("--user").arg(format!("{uid}:{gid}"));
        }
        cmd.arg(&record.id).args(&opts.args);
        Ok(cmd)
    }
}
