//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with
//! a free port and filesystem storage in a temp dir, optionally behind htpasswd basic auth or
//! the token (bearer) flow with an in-test token server. Killed and removed on Drop. The
//! process itself is `berth_testkit`'s registry; this module adds the auth and TLS setups.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use berth_image::registry::{ClientOptions, Credentials, RegistryClient};
use berth_testkit::Registry;
use berth_testkit::registry::{Options, htpasswd_auth};

use super::token_server::TokenServer;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";

pub enum Auth {
    None,
    Basic,
    Token,
}

pub struct TestRegistry {
    registry: Registry,
    pub addr: SocketAddr,
    pub token_server: Option<TokenServer>,
    /// With TLS: a `certs.d` directory holding the test CA for this registry's address.
    pub certs_dir: Option<PathBuf>,
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM files in `dir`;
/// returns (CA, certificate, key) paths.
fn make_tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test registry");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

impl TestRegistry {
    pub fn start(auth: Auth) -> Self {
        Self::start_with(auth, false)
    }

    /// Serves HTTPS with a certificate from a test CA (see [`TestRegistry::certs_dir`]).
    pub fn start_tls(auth: Auth) -> Self {
        Self::start_with(auth, true)
    }

    fn start_with(auth: Auth, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (sections, token_server) = match auth {
            Auth::None => (String::new(), None),
            Auth::Basic => (htpasswd_auth(dir.path(), USER, PASSWORD), None),
            Auth::Token => {
                let server = TokenServer::start(USER, PASSWORD);
                let bundle = dir.path().join("token-root.pem");
                std::fs::write(&bundle, &server.cert_pem).unwrap();
                (
                    format!(
                        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                        server.realm(),
                        super::token_server::SERVICE,
                        super::token_server::ISSUER,
                        bundle.display()
                    ),
                    Some(server),
                )
            }
        };
        let tls_files = tls.then(|| make_tls_files(dir.path()));
        let http = match &tls_files {
            Some((_, cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let registry = Registry::start_with(
            dir,
            &Options {
                http,
                sections,
                tls,
            },
        );
        let addr = registry.addr;
        let certs_dir = tls_files.as_ref().map(|(ca, _, _)| {
            let certs = registry.dir.path().join("certs.d");
            let host_dir = certs.join(addr.to_string());
            std::fs::create_dir_all(&host_dir).unwrap();
            std::fs::copy(ca, host_dir.join("ca.crt")).unwrap();
            certs
        });
        TestRegistry {
            registry,
            addr,
            token_server,
            certs_dir,
        }
    }

    /// `127.0.0.1:port`, the registry part of references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.registry
            .dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// A client of `registry` with default options, logged in as `credentials` if given.
pub fn client(registry: &TestRegistry, credentials: Option<(&str, &str)>) -> RegistryClient {
    RegistryClient::new(
        &registry.host(),
        ClientOptions {
            credentials: credentials.map(|(u, p)| Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            ..ClientOptions::default()
        },
    )
    .unwrap()
}
