//! Certificates and keys from PEM files an operator names (`--tlscacert`, `--tlscert`,
//! `--tlskey` and their daemon-side twins): read, parsed, and refused with the file and what
//! it should have held in the message. Shared by every listener and client that takes TLS
//! material from files; the cluster's own credentials never pass through here (they live in
//! its state directory, see [`crate::ca`]). It builds no TLS configuration.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that could not be read or did not hold what it should; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The bytes of `path`, which holds a `what` ("CA certificate", "private key").
pub fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every CERTIFICATE block of `path`, in order; at least one.
pub fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PemError::Pem {
            what,
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The trust anchors of the CA file `path`: only these, never the system roots.
pub fn ca_roots(path: &Path) -> Result<RootCertStore, PemError> {
    const WHAT: &str = "CA certificate";
    let mut roots = RootCertStore::empty();
    for c in certs(WHAT, path)? {
        roots.add(c).map_err(|e| PemError::Pem {
            what: WHAT,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The private key of `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    const WHAT: &str = "private key";
    let pem = read(WHAT, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| PemError::Pem {
        what: WHAT,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_what_it_should_hold() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let text = ca_roots(&missing).unwrap_err().to_string();
        assert!(
            text.starts_with(&format!("read CA certificate {}: ", missing.display())),
            "{text}"
        );
        let empty = dir.path().join("cert.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        assert_eq!(
            certs("certificate", &empty).unwrap_err().to_string(),
            format!("certificate {}: no CERTIFICATE block", empty.display())
        );
        assert!(
            private_key(&empty)
                .unwrap_err()
                .to_string()
                .starts_with(&format!("private key {}: ", empty.display()))
        );
    }

    #[test]
    fn a_generated_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        assert_eq!(certs("certificate", &c).unwrap().len(), 1);
        assert_eq!(ca_roots(&c).unwrap().len(), 1);
        private_key(&k).unwrap();
    }
}
