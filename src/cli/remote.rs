//! Reaching a remote berthd: the `--tlscacert/--tlscert/--tlskey` flags (or `BERTH_CERT_PATH`,
//! a directory with `ca.pem`, `cert.pem` and `key.pem`, like Docker's `DOCKER_CERT_PATH`) and
//! the one function every command connects through. A `tcp://` daemon is only reached over
//! mutual TLS; the refusal of plain TCP and the TLS itself live in `berth_api::connect`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use clap::Args;
use tonic::transport::Channel;

/// The client's mutual-TLS files, used when `-H` names a `tcp://` daemon.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsFlags {
    /// CA (PEM) the daemon's certificate must chain to (for -H tcp://)
    #[arg(long, global = true, env = "BERTH_TLSCACERT", value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// Client certificate (PEM) presented to the daemon (for -H tcp://)
    #[arg(long, global = true, env = "BERTH_TLSCERT", value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// Client private key (PEM) (for -H tcp://)
    #[arg(long, global = true, env = "BERTH_TLSKEY", value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
}

impl TlsFlags {
    /// The flags, with what they leave out taken from `BERTH_CERT_PATH`.
    pub fn client_tls(&self) -> berth_api::ClientTls {
        let dir = std::env::var_os(berth_api::CERT_PATH_ENV).map(PathBuf::from);
        berth_api::ClientTls {
            ca: self.tlscacert.clone(),
            cert: self.tlscert.clone(),
            key: self.tlskey.clone(),
        }
        .or_cert_path(dir.as_deref())
    }
}

/// Opens a channel to the daemon at `address` (the default socket when `None`).
pub async fn connect(address: Option<&str>, tls: &TlsFlags) -> anyhow::Result<Channel> {
    let address = address.unwrap_or(berth_api::DEFAULT_HOST);
    Ok(berth_api::connect(address, &tls.client_tls()).await?)
}

/// Writes a client bundle as `ca.pem`, `cert.pem` and `key.pem` (mode 0600, never over an
/// existing key) in `dir`, the layout `BERTH_CERT_PATH` expects.
pub fn write_cert_dir(
    dir: &Path,
    bundle: &berth_api::v1::ClientCertResponse,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    for (file, text, mode) in [
        ("key.pem", &bundle.key_pem, 0o600),
        ("cert.pem", &bundle.cert_pem, 0o644),
        ("ca.pem", &bundle.ca_pem, 0o644),
    ] {
        let path = dir.join(file);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        out.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The command groups that take `-H` and the TLS flags after their name.
const GROUPS: [&str; 5] = ["version", "cluster", "node", "service", "secret"];
/// Connection flags that may come before a group's name, Docker style.
const CONNECTION: [&str; 5] = ["-H", "--host", "--tlscacert", "--tlscert", "--tlskey"];
/// Other global flags that take a value (so their value is not taken for the command name).
const VALUED: [&str; 7] = [
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--project-directory",
    "--env-file",
    "--data-root",
];

/// Moves `-H ADDR` and the TLS flags given before `version`, `cluster`, `node`, `service`
/// or `secret` to just after it, where those groups read them: `berth -H tcp://… node ls`
/// works as `berth node -H tcp://… ls`. Any other command line is returned as it was.
pub fn hoist_connection_flags(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut before = Vec::new();
    let mut moved = Vec::new();
    let mut i = 1;
    while let Some(arg) = argv.get(i) {
        let Some(text) = arg.to_str() else {
            return argv;
        };
        let name = text.split_once('=').map_or(text, |(name, _)| name);
        if CONNECTION.contains(&name) {
            moved.push(arg.clone());
            if name == text {
                let Some(value) = argv.get(i + 1) else {
                    return argv;
                };
                moved.push(value.clone());
                i += 1;
            }
        } else if VALUED.contains(&text) {
            before.push(arg.clone());
            if let Some(value) = argv.get(i + 1) {
                before.push(value.clone());
            }
            i += 1;
        } else if text.starts_with('-') {
            before.push(arg.clone());
        } else {
            if moved.is_empty() || !GROUPS.contains(&text) {
                return argv;
            }
            let mut out = vec![argv[0].clone()];
            out.extend(before);
            out.push(arg.clone());
            out.extend(moved);
            out.extend(argv[i + 1..].iter().cloned());
            return out;
        }
        i += 1;
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::hoist_connection_flags;

    fn run(line: &str) -> String {
        let argv = line.split(' ').map(Into::into).collect();
        let out: Vec<String> = hoist_connection_flags(argv)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        out.join(" ")
    }

    #[test]
    fn connection_flags_move_after_the_group() {
        assert_eq!(
            run("berth -H tcp://h:1 --tlscacert=ca --data-root /d node ls"),
            "berth --data-root /d node -H tcp://h:1 --tlscacert=ca ls"
        );
        assert_eq!(
            run("berth --host tcp://h:1 --tlscert c --tlskey k version"),
            "berth version --host tcp://h:1 --tlscert c --tlskey k"
        );
        assert_eq!(
            run("berth --data-root /d -H unix:///s secret ls -q"),
            "berth --data-root /d secret -H unix:///s ls -q"
        );
        // Nothing to move, another command, or flags already in place: unchanged.
        for line in [
            "berth node ls",
            "berth -H tcp://h:1 images",
            "berth node -H tcp://h:1 ls",
            "berth -H",
        ] {
            assert_eq!(run(line), line);
        }
    }
}
