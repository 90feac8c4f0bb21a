//! The cluster CA end to end on real files and real certificates: init, persistence with
//! private modes, reload, issuance from a CSR and with a fresh key, what the certificates say,
//! and the renewal rule on issued certificates.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use berth_cluster::{
    CaError, ClusterCa, JoinSecrets, NodeCertRequest, NodeCredentials, NodeId, NodeIdentity,
    NodeKey, Role,
};
use x509_parser::prelude::{FromDer, X509Certificate};

const DAY: Duration = Duration::from_secs(86_400);

fn request(id: &str, role: Role, addrs: &[&str]) -> NodeCertRequest {
    NodeCertRequest {
        node_id: NodeId::new(id).unwrap(),
        role,
        addresses: addrs.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect(),
    }
}

#[test]
fn init_persists_the_ca_privately_and_load_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let now = SystemTime::now();
    let ca = ClusterCa::init(&ca_dir, now).unwrap();

    let mode = |name: &str| {
        fs::metadata(ca_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ca.key"), 0o600);
    assert_eq!(mode("ca.crt"), 0o644);
    assert_eq!(
        fs::metadata(&ca_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let loaded = ClusterCa::load(&ca_dir).unwrap();
    assert_eq!(loaded.cert_der(), ca.cert_der());
    assert_eq!(loaded.fingerprint(), ca.fingerprint());

    // The root is a real CA certificate, self-signed, P-256.
    let (_, root) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert!(root.is_ca());
    assert_eq!(root.subject(), root.issuer());
    assert_eq!(
        root.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "an EC public key"
    );

    // A second init over it is refused instead of silently replacing the cluster's identity.
    let err = ClusterCa::init(&ca_dir, now).unwrap_err();
    assert!(matches!(err, CaError::AlreadyInitialized { .. }), "{err}");
    assert_eq!(
        ClusterCa::load(&ca_dir).unwrap().fingerprint(),
        ca.fingerprint()
    );
}

#[test]
fn load_reports_missing_and_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = ClusterCa::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("cannot read") && err.contains("ca.crt"),
        "{err}"
    );

    ClusterCa::init(dir.path(), SystemTime::now()).unwrap();
    fs::write(dir.path().join("ca.key"), "not a key").unwrap();
    let err = ClusterCa::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("ca.key") && err.contains("not a valid PEM private key"),
        "{err}"
    );
}

#[test]
fn a_reloaded_ca_issues_certificates_that_chain_to_the_original_root() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let original = ClusterCa::init(dir.path(), now).unwrap();
    let reloaded = ClusterCa::load(dir.path()).unwrap();
    let creds = reloaded
        .issue_with_new_key(&request("node-a", Role::Worker, &[]), now)
        .unwrap();
    let (_, root) = X509Certificate::from_der(original.cert_der()).unwrap();
    let (_, leaf) = X509Certificate::from_der(&creds.cert.der).unwrap();
    assert_eq!(leaf.issuer(), root.subject());
    leaf.verify_signature(Some(root.public_key())).unwrap();
    assert_eq!(creds.ca_der, *original.cert_der());
}

#[test]
fn node_certificates_carry_id_role_addresses_and_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = ClusterCa::init(dir.path(), now).unwrap();
    let creds = ca
        .issue_with_new_key(
            &request("mgr-1", Role::Manager, &["10.1.2.3", "fd00::7"]),
            now,
        )
        .unwrap();

    let id = &creds.cert.identity;
    assert_eq!(id.node_id.as_str(), "mgr-1");
    assert_eq!(id.role, Role::Manager);
    let want: Vec<IpAddr> = vec!["10.1.2.3".parse().unwrap(), "fd00::7".parse().unwrap()];
    assert_eq!(id.addresses, want);
    let lifetime = id.not_after.duration_since(now).unwrap();
    assert!(
        lifetime.abs_diff(90 * DAY) < Duration::from_secs(2),
        "{lifetime:?}"
    );

    let (_, leaf) = X509Certificate::from_der(&creds.cert.der).unwrap();
    assert!(!leaf.is_ca());
    let ou: Vec<_> = leaf
        .subject()
        .iter_organizational_unit()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(ou, ["manager"]);
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    for want in ["berth://node/mgr-1", "berth://role/manager", "mgr-1"] {
        assert!(
            names.iter().any(|n| n.contains(want)),
            "{want} in {names:?}"
        );
    }
    let ips: Vec<&[u8]> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::IPAddress(ip) => Some(*ip),
            _ => None,
        })
        .collect();
    assert_eq!(ips.len(), 2, "{names:?}");
    assert_eq!(ips[0], [10, 1, 2, 3]);
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);

    // Serials are random: two certificates for the same request differ.
    let again = ca
        .issue_with_new_key(&request("mgr-1", Role::Manager, &[]), now)
        .unwrap();
    let (_, leaf2) = X509Certificate::from_der(&again.cert.der).unwrap();
    assert_ne!(leaf.serial, leaf2.serial);
}

#[test]
fn lifetime_is_configurable_and_drives_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = ClusterCa::init(dir.path(), now)
        .unwrap()
        .with_node_cert_lifetime(30 * DAY)
        .unwrap();
    assert_eq!(ca.node_cert_lifetime(), 30 * DAY);
    let creds = ca
        .issue_with_new_key(&request("w1", Role::Worker, &["10.0.0.1"]), now)
        .unwrap();
    let lifetime = creds.cert.identity.not_after.duration_since(now).unwrap();
    assert!(
        lifetime.abs_diff(30 * DAY) < Duration::from_secs(2),
        "{lifetime:?}"
    );

    assert!(!creds.cert.needs_renewal(now));
    assert!(!creds.cert.needs_renewal(now + 19 * DAY));
    assert!(creds.cert.needs_renewal(now + 21 * DAY));

    // Renewal: a new key, the same identity, a fresh window.
    let later = now + 21 * DAY;
    let key = NodeKey::generate().unwrap();
    let csr = key.csr(&creds.cert.identity.node_id).unwrap();
    let renewed = ca
        .issue_for_csr(&csr, &creds.cert.identity.renewal_request(), later)
        .unwrap();
    assert_eq!(renewed.identity.node_id, creds.cert.identity.node_id);
    assert_eq!(renewed.identity.role, creds.cert.identity.role);
    assert_eq!(renewed.identity.addresses, creds.cert.identity.addresses);
    assert!(renewed.identity.not_after > creds.cert.identity.not_after);
    assert!(!renewed.needs_renewal(later));
    assert!(creds.cert.needs_renewal(now + 31 * DAY));

    let err = ClusterCa::load(dir.path())
        .unwrap()
        .with_node_cert_lifetime(Duration::from_secs(5))
        .unwrap_err();
    assert!(matches!(err, CaError::LifetimeTooShort));
}

#[test]
fn csr_issuance_keeps_the_nodes_key_and_the_managers_decision() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = ClusterCa::init(dir.path(), now).unwrap();

    // The joining node makes its key and CSR; it even asks to be "evil" — the manager's
    // request decides the names and role.
    let key = NodeKey::generate().unwrap();
    let csr = key.csr(&NodeId::new("evil").unwrap()).unwrap();
    let cert = ca
        .issue_for_csr(
            &csr,
            &request("worker-7", Role::Worker, &["192.0.2.9"]),
            now,
        )
        .unwrap();
    assert_eq!(cert.identity.node_id.as_str(), "worker-7");
    assert_eq!(cert.identity.role, Role::Worker);

    let (_, leaf) = X509Certificate::from_der(&cert.der).unwrap();
    let (_, key_in_csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr).unwrap();
    assert_eq!(
        leaf.public_key().raw,
        key_in_csr.certification_request_info.subject_pki.raw,
        "the certificate is for the node's own key"
    );

    let err = ca
        .issue_for_csr(
            &b"garbage".to_vec().into(),
            &request("w", Role::Worker, &[]),
            now,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("read the CSR"), "{err}");
}

#[test]
fn node_credentials_round_trip_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = ClusterCa::init(&dir.path().join("ca"), now).unwrap();
    let creds = ca
        .issue_with_new_key(&request("n1", Role::Worker, &["127.0.0.1"]), now)
        .unwrap();
    let node_dir = dir.path().join("node");
    creds.save(&node_dir).unwrap();
    let mode = fs::metadata(node_dir.join("node.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = NodeCredentials::load(&node_dir).unwrap();
    assert_eq!(loaded.ca_der, creds.ca_der);
    assert_eq!(loaded.cert.der, creds.cert.der);
    assert_eq!(loaded.cert.identity, creds.cert.identity);
    assert_eq!(loaded.key.to_pem(), creds.key.to_pem());
}

#[test]
fn joining_node_verifies_the_ca_against_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = ClusterCa::init(&dir.path().join("real"), now).unwrap();
    let impostor = ClusterCa::init(&dir.path().join("impostor"), now).unwrap();
    let secrets = JoinSecrets::generate().unwrap();
    let text = secrets.token(Role::Worker, ca.fingerprint()).to_string();

    // What a joining node does with the token text and the CA a manager shows it.
    let token: berth_cluster::JoinToken = text.parse().unwrap();
    token.verify_ca(ca.cert_der()).unwrap();
    let err = token
        .verify_ca(impostor.cert_der())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&ca.fingerprint().to_string()), "{err}");
    assert!(err.contains(&impostor.fingerprint().to_string()), "{err}");

    // What the manager does with the token the node presents.
    assert_eq!(
        secrets.role_for(&token, ca.fingerprint()).unwrap(),
        Role::Worker
    );
    assert!(secrets.role_for(&token, impostor.fingerprint()).is_err());
}

#[test]
fn identity_parsing_rejects_foreign_certificates() {
    // A certificate without berth's SAN URIs (here: the CA root itself) has no node identity.
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::init(dir.path(), SystemTime::now()).unwrap();
    let err = NodeIdentity::from_cert_der(ca.cert_der())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no subject alternative name") || err.contains("no node URI"),
        "{err}"
    );
    let err = NodeIdentity::from_cert_der(b"junk")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be parsed"), "{err}");
}

#[test]
fn load_refuses_a_key_that_is_not_the_roots() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    ClusterCa::init(&dir.path().join("a"), now).unwrap();
    ClusterCa::init(&dir.path().join("b"), now).unwrap();
    fs::copy(dir.path().join("b/ca.key"), dir.path().join("a/ca.key")).unwrap();
    let err = ClusterCa::load(&dir.path().join("a")).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch), "{err}");
}
