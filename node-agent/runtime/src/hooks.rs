//! OCI hooks: runs each hook with the container state JSON on stdin, its args and env,
//! and its timeout. Where a hook runs (which namespace) is the caller's choice.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::state::HookState;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{stage} hook {path}: {detail}")]
    Failed {
        stage: &'static str,
        path: String,
        detail: String,
    },
}

/// Runs `hooks` in order; the first failure stops the rest.
pub fn run(
    stage: &'static str,
    hooks: Option<&Vec<Hook>>,
    state: &HookState,
) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    let input = serde_json::to_vec(state).unwrap_or_default();
    for h in hooks {
        run_one(stage, h, &input)?;
    }
    Ok(())
}

fn run_one(stage: &'static str, h: &Hook, input: &[u8]) -> Result<(), HookError> {
    let path = h.path().display().to_string();
    let fail = |detail: String| HookError::Failed {
        stage,
        path: path.clone(),
        detail,
    };
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some((first, rest)) = args.split_first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not make us fail.
        let _ = stdin.write_all(input);
    }
    let deadline = h
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    loop {
        match child.try_wait().map_err(|e| fail(e.to_string()))? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(fail(format!("{st}: {}", err.trim())));
            }
            None => {}
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail("timed out".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Status;
    use oci_spec::runtime::HookBuilder;

    fn state() -> HookState {
        HookState {
            oci_version: "1.0.2".into(),
            id: "h".into(),
            status: Status::Created,
            pid: 1,
            bundle: "/b".into(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn hook_gets_state_on_stdin() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let h = HookBuilder::default()
            .path("/bin/sh")
            .args(vec![
                "sh".into(),
                "-c".into(),
                format!("cat > {}", out.display()),
            ])
            .build()
            .unwrap();
        run("poststart", Some(&vec![h]), &state()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
        assert_eq!(v["id"], "h");
        assert_eq!(v["status"], "created");
    }

    #[test]
    fn failure_and_timeout_are_errors() {
        let f = HookBuilder::default().path("/bin/false").build().unwrap();
        assert!(run("prestart", Some(&vec![f]), &state()).is_err());
        let slow = HookBuilder::default()
            .path("/bin/sleep")
            .args(vec!["sleep".into(), "5".into()])
            .timeout(1i64)
            .build()
            .unwrap();
        let t = Instant::now();
        assert!(run("prestart", Some(&vec![slow]), &state()).is_err());
        assert!(t.elapsed() < Duration::from_secs(4));
    }
}
