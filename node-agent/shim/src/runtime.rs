//! Invoking the OCI runtime through the runc command-line contract — `create`, `start`,
//! `kill`, `delete`, with the global `--root` and `--log`/`--log-format json` flags — and
//! nothing else, so that any runc-compatible runtime can sit under the shim. It does not
//! reap: every command is waited for by pid before it returns.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors of a runtime invocation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot run {runtime}: {source}")]
    Spawn {
        runtime: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{runtime} {command} {id} failed: {message}")]
    Failed {
        runtime: PathBuf,
        command: &'static str,
        id: String,
        message: String,
    },
}

/// One OCI runtime binary with its state root, for one container.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub path: PathBuf,
    pub root: PathBuf,
    /// Where the runtime logs (JSON lines); errors are read back from it.
    pub log: PathBuf,
    pub id: String,
}

impl Runtime {
    /// A command with the global flags set; stdio is the caller's to choose.
    pub fn command(&self, sub: &str) -> Command {
        let mut c = Command::new(&self.path);
        c.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json")
            .arg(sub);
        c
    }

    pub fn start(&self) -> Result<(), RuntimeError> {
        let mut c = self.command("start");
        c.arg(&self.id);
        self.run(c, "start")
    }

    pub fn kill(&self, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let mut c = self.command("kill");
        if all {
            c.arg("--all");
        }
        c.arg(&self.id).arg(signal.to_string());
        self.run(c, "kill")
    }

    pub fn delete(&self, force: bool) -> Result<(), RuntimeError> {
        let mut c = self.command("delete");
        if force {
            c.arg("--force");
        }
        c.arg(&self.id);
        self.run(c, "delete")
    }

    fn run(&self, mut c: Command, command: &'static str) -> Result<(), RuntimeError> {
        let out = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                runtime: self.path.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.failure(command, &String::from_utf8_lossy(&out.stderr)))
    }

    /// Builds the error of a failed command from what it printed, or else from the last
    /// error line of its log.
    pub fn failure(&self, command: &'static str, stderr: &str) -> RuntimeError {
        let mut message = stderr.trim().lines().last().unwrap_or("").to_string();
        if message.is_empty() {
            message = last_logged_error(&self.log).unwrap_or_else(|| "no message".into());
        }
        RuntimeError::Failed {
            runtime: self.path.clone(),
            command,
            id: self.id.clone(),
            message,
        }
    }
}

/// The `msg` of the last `"level":"error"` line of a runtime's JSON log.
fn last_logged_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        if v.get("level")?.as_str()? == "error" {
            Some(v.get("msg")?.as_str()?.to_string())
        } else {
            None
        }
    })
}
