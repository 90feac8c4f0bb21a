//! What a berth node certificate says about its holder: the node id, the role (`manager` or
//! `worker`) and the validity window, and the rule deciding when it is time to renew.
//!
//! The encoding (shared by issuance in [`crate::ca`] and extraction in [`crate::tls`]):
//! subject CN = node id, subject OU = role, SAN URIs `berth://node/<id>` and
//! `berth://role/<role>`, a SAN DNS name = node id (the TLS server name), and the node's
//! advertise addresses as IP SANs. Extraction trusts only the SAN URIs, and requires the CN and
//! OU to agree with them. This module parses certificates; it never verifies signatures — only
//! call it on a certificate a TLS verifier (or the CA itself) has already vouched for.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;

use crate::ca::NodeCertRequest;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Prefix of the SAN URI naming a node.
pub const NODE_URI_PREFIX: &str = "berth://node/";
/// Prefix of the SAN URI naming a node's role.
pub const ROLE_URI_PREFIX: &str = "berth://role/";

/// Errors reading an identity out of a certificate or validating a node id.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "invalid node id {id:?}: use 1 to 63 lowercase letters, digits or '-', not starting or ending with '-', not only digits"
    )]
    InvalidNodeId { id: String },
    #[error("unknown node role {role:?}: expected manager or worker")]
    UnknownRole { role: String },
    #[error("certificate cannot be parsed: {reason}")]
    Unparsable { reason: String },
    #[error("certificate carries no {what}")]
    Missing { what: &'static str },
    #[error("certificate carries more than one {what}")]
    Ambiguous { what: &'static str },
    #[error("certificate subject {field} {subject:?} disagrees with its SAN {san:?}")]
    SubjectMismatch {
        field: &'static str,
        subject: String,
        san: String,
    },
    #[error("node {node} has role {actual}, but this call needs a {required}")]
    RoleDenied {
        node: NodeId,
        actual: Role,
        required: Role,
    },
}

/// A node's role in the cluster. Managers hold the replicated controller; workers only run
/// tasks. A manager may do everything a worker may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Manager, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }

    /// Whether a holder of this role may call an API that requires `required`.
    pub fn permits(self, required: Role) -> bool {
        self == Role::Manager || required == Role::Worker
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manager" => Ok(Role::Manager),
            "worker" => Ok(Role::Worker),
            other => Err(IdentityError::UnknownRole {
                role: other.to_owned(),
            }),
        }
    }
}

/// A node id. Restricted to one DNS label so that it doubles as the TLS server name and fits
/// in a URI path without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(id: impl Into<String>) -> Result<Self, IdentityError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 63
            && !id.starts_with('-')
            && !id.ends_with('-')
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            // An all-digit name is not a valid DNS name for TLS (it reads like an address).
            && !id.bytes().all(|b| b.is_ascii_digit());
        if valid {
            Ok(NodeId(id))
        } else {
            Err(IdentityError::InvalidNodeId { id })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::new(s)
    }
}

/// The identity carried by a node certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: NodeId,
    pub role: Role,
    /// The advertise addresses (IP SANs).
    pub addresses: Vec<IpAddr>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl NodeIdentity {
    /// Reads the identity out of a DER certificate (see the module doc for the encoding).
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable {
            reason: e.to_string(),
        })?;
        let mut node: Option<&str> = None;
        let mut role: Option<&str> = None;
        let mut addresses = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Unparsable {
                reason: e.to_string(),
            })?
            .ok_or(IdentityError::Missing {
                what: "subject alternative name",
            })?;
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => {
                    if let Some(id) = uri.strip_prefix(NODE_URI_PREFIX) {
                        set_once(&mut node, id, "node URI")?;
                    } else if let Some(r) = uri.strip_prefix(ROLE_URI_PREFIX) {
                        set_once(&mut role, r, "role URI")?;
                    }
                }
                GeneralName::IPAddress(bytes) => addresses.push(ip_from_san(bytes)?),
                _ => {}
            }
        }
        let node_id = NodeId::new(node.ok_or(IdentityError::Missing { what: "node URI" })?)?;
        let role: Role = role
            .ok_or(IdentityError::Missing { what: "role URI" })?
            .parse()?;

        let cn = cert.subject().iter_common_name().next();
        let cn = cn.and_then(|a| a.as_str().ok()).unwrap_or_default();
        if cn != node_id.as_str() {
            return Err(IdentityError::SubjectMismatch {
                field: "CN",
                subject: cn.to_owned(),
                san: node_id.to_string(),
            });
        }
        let ou = cert.subject().iter_organizational_unit().next();
        let ou = ou.and_then(|a| a.as_str().ok()).unwrap_or_default();
        if ou != role.as_str() {
            return Err(IdentityError::SubjectMismatch {
                field: "OU",
                subject: ou.to_owned(),
                san: role.to_string(),
            });
        }

        let validity = cert.validity();
        Ok(NodeIdentity {
            node_id,
            role,
            addresses,
            not_before: unix_to_system(validity.not_before.timestamp()),
            not_after: unix_to_system(validity.not_after.timestamp()),
        })
    }

    /// Refuses the call unless this identity's role permits `required`.
    pub fn require_role(&self, required: Role) -> Result<(), IdentityError> {
        if self.role.permits(required) {
            Ok(())
        } else {
            Err(IdentityError::RoleDenied {
                node: self.node_id.clone(),
                actual: self.role,
                required,
            })
        }
    }

    /// The request that renews this certificate unchanged (same id, role and addresses). A
    /// manager handling a renewal takes the identity from the caller's verified certificate,
    /// never from the CSR.
    pub fn renewal_request(&self) -> NodeCertRequest {
        NodeCertRequest {
            node_id: self.node_id.clone(),
            role: self.role,
            addresses: self.addresses.clone(),
        }
    }

    /// See [`needs_renewal`].
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        needs_renewal(self.not_before, self.not_after, now)
    }
}

/// The renewal rule: renew once less than a third of the certificate's lifetime is left (so a
/// 90-day certificate renews after 60 days, leaving 30 days to retry through outages). An
/// expired certificate, or a nonsensical window, always needs renewal.
pub fn needs_renewal(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return true;
    };
    match not_after.duration_since(now) {
        Ok(left) => left < lifetime / 3,
        Err(_) => true,
    }
}

fn set_once<'a>(
    slot: &mut Option<&'a str>,
    value: &'a str,
    what: &'static str,
) -> Result<(), IdentityError> {
    if slot.replace(value).is_some() {
        return Err(IdentityError::Ambiguous { what });
    }
    Ok(())
}

fn ip_from_san(bytes: &[u8]) -> Result<IpAddr, IdentityError> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::from(v6))
    } else {
        Err(IdentityError::Unparsable {
            reason: format!("an IP address SAN of {} bytes", bytes.len()),
        })
    }
}

fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn node_ids_are_dns_labels() {
        assert!(NodeId::new("node-1").is_ok());
        assert!(NodeId::new("a").is_ok());
        for bad in ["", "-a", "a-", "Node", "a.b", "a/b", "123", &"x".repeat(64)] {
            let err = NodeId::new(bad).unwrap_err();
            assert!(err.to_string().contains("invalid node id"), "{bad}: {err}");
        }
    }

    #[test]
    fn roles_parse_and_permit() {
        assert_eq!("manager".parse::<Role>().unwrap(), Role::Manager);
        assert_eq!("worker".parse::<Role>().unwrap(), Role::Worker);
        assert!("admin".parse::<Role>().is_err());
        assert!(Role::Manager.permits(Role::Manager));
        assert!(Role::Manager.permits(Role::Worker));
        assert!(Role::Worker.permits(Role::Worker));
        assert!(!Role::Worker.permits(Role::Manager));
    }

    #[test]
    fn renewal_starts_when_a_third_of_the_lifetime_is_left() {
        let start = UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        assert!(!needs_renewal(start, end, start));
        assert!(!needs_renewal(start, end, start + 59 * DAY));
        assert!(!needs_renewal(start, end, start + 60 * DAY));
        assert!(needs_renewal(
            start,
            end,
            start + 60 * DAY + Duration::from_secs(1)
        ));
        assert!(needs_renewal(start, end, end));
        assert!(needs_renewal(start, end, end + DAY));
        assert!(needs_renewal(end, start, start), "inverted window");
    }
}
