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
