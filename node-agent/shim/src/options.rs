//! The shim's command line: what the agent passes to `berth-shim` and how it is parsed.
//! Kept free of any dependency so the shim stays small; the client library builds the same
//! arguments with [`ShimArgs::to_args`].

use std::ffi::OsString;
use std::path::PathBuf;

/// Everything one shim needs to supervise one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    /// Rotate `container.log` past this many bytes; 0 means never.
    pub log_max_size: u64,
    /// Log files kept, the current one included.
    pub log_max_files: u32,
    /// Give the container a pty (through the runtime's `--console-socket`).
    pub tty: bool,
    /// Keep a pipe to the container's stdin for `attach`; otherwise stdin is `/dev/null`.
    pub stdin: bool,
    /// Exit as soon as the exit is recorded instead of waiting for `delete`/`shutdown`.
    pub exit_with_container: bool,
}

pub const USAGE: &str = "usage: berth-shim --id ID --bundle DIR --state-dir DIR --runtime PATH \
--runtime-root DIR [--log-max-size BYTES] [--log-max-files N] [--tty] [--stdin] \
[--exit-with-container]";

impl ShimArgs {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut id = None;
        let mut bundle = None;
        let mut state_dir = None;
        let mut runtime = None;
        let mut runtime_root = None;
        let mut a = ShimArgs {
            id: String::new(),
            bundle: PathBuf::new(),
            state_dir: PathBuf::new(),
            runtime: PathBuf::new(),
            runtime_root: PathBuf::new(),
            log_max_size: 0,
            log_max_files: 1,
            tty: false,
            stdin: false,
            exit_with_container: false,
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let flag = flag
                .into_string()
                .map_err(|f| format!("unexpected argument {f:?}"))?;
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--id" => id = Some(value()?),
                "--bundle" => bundle = Some(PathBuf::from(value()?)),
                "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
                "--runtime" => runtime = Some(PathBuf::from(value()?)),
                "--runtime-root" => runtime_root = Some(PathBuf::from(value()?)),
                "--log-max-size" => a.log_max_size = number(&flag, value()?)?,
                "--log-max-files" => a.log_max_files = number(&flag, value()?)?,
                "--tty" => a.tty = true,
                "--stdin" => a.stdin = true,
                "--exit-with-container" => a.exit_with_container = true,
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        let missing = |name: &str| format!("missing {name}");
        a.id = id
            .ok_or_else(|| missing("--id"))?
            .into_string()
            .map_err(|_| "--id must be UTF-8".to_string())?;
        if a.id.is_empty() || a.id.contains('/') {
            return Err(format!("invalid container id {:?}", a.id));
        }
        a.bundle = bundle.ok_or_else(|| missing("--bundle"))?;
        a.state_dir = state_dir.ok_or_else(|| missing("--state-dir"))?;
        a.runtime = runtime.ok_or_else(|| missing("--runtime"))?;
        a.runtime_root = runtime_root.ok_or_else(|| missing("--runtime-root"))?;
        if a.log_max_files == 0 {
            return Err("--log-max-files must be at least 1".into());
        }
        Ok(a)
    }

    /// The command line that [`ShimArgs::parse`] reads back.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--state-dir".into(),
            self.state_dir.clone().into(),
            "--runtime".into(),
            self.runtime.clone().into(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
            "--log-max-size".into(),
            self.log_max_size.to_string().into(),
            "--log-max-files".into(),
            self.log_max_files.to_string().into(),
        ];
        for (on, flag) in [
            (self.tty, "--tty"),
            (self.stdin, "--stdin"),
            (self.exit_with_container, "--exit-with-container"),
        ] {
            if on {
                v.push(flag.into());
            }
        }
        v
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: OsString) -> Result<T, String> {
    v.to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{flag} takes a number, not {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ShimArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            state_dir: "/s".into(),
            runtime: "/usr/sbin/runc".into(),
            runtime_root: "/run/r".into(),
            log_max_size: 1000,
            log_max_files: 3,
            tty: true,
            stdin: false,
            exit_with_container: true,
        };
        assert_eq!(ShimArgs::parse(a.to_args()).unwrap(), a);
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        let e = ShimArgs::parse(["--id".into()]).unwrap_err();
        assert_eq!(e, "--id needs a value");
        let e = ShimArgs::parse(["--id".into(), "a/b".into()]).unwrap_err();
        assert!(e.starts_with("invalid container id"), "{e}");
        let e = ShimArgs::parse(["--id".into(), "a".into()]).unwrap_err();
        assert_eq!(e, "missing --bundle");
        let e = ShimArgs::parse(["--log-max-size".into(), "x".into()]).unwrap_err();
        assert!(e.contains("takes a number"), "{e}");
    }
}
