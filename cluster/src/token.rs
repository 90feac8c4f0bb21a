//! Join tokens, in the spirit of Swarm's: `BERTH-1-<ca-fingerprint>-<secret>`.
//!
//! The fingerprint is the sha256 of the cluster root certificate's DER, so a joining node can
//! check the CA a manager shows it before trusting anything it says. The secret says which
//! role the holder joins as: the cluster keeps one secret per role, and rotating one replaces
//! it without touching the CA or the certificates of nodes that already joined. Both parts are
//! lowercase base32 without padding (RFC 4648 alphabet), which has no `-` and survives being
//! pasted into a shell.
//!
//! This module owns the format, parsing, secret generation, comparison and persistence; where
//! the secrets live in a cluster (the replicated store) is `berthd`'s concern.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use data_encoding::{Encoding, Specification};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::files::{private_dir, write_with_mode};
use crate::identity::Role;

const PREFIX: &str = "BERTH";
const VERSION: &str = "1";
const SECRET_LEN: usize = 20;
const SECRETS_FILE: &str = "join-secrets";

/// Errors parsing, checking or storing join tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("join token must look like BERTH-1-<fingerprint>-<secret>")]
    Malformed,
    #[error("join token format version {version} is not supported (expected {VERSION})")]
    UnsupportedVersion { version: String },
    #[error("join token {part} is not valid: {reason}")]
    BadPart { part: &'static str, reason: String },
    #[error(
        "the cluster's CA (fingerprint {found}) is not the one the join token names ({expected}): refusing to trust it"
    )]
    CaMismatch {
        expected: CaFingerprint,
        found: CaFingerprint,
    },
    #[error("join token secret is not valid for this cluster (it may have been rotated)")]
    InvalidSecret,
    #[error("the system random number generator failed")]
    Random,
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is not a join secrets file: {reason}")]
    BadSecretsFile { path: PathBuf, reason: String },
}

fn base32() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.encoding()
        .expect("a 32-symbol alphabet is a valid base32 specification")
}

fn decode_exact<const N: usize>(part: &'static str, text: &str) -> Result<[u8; N], TokenError> {
    let bytes = base32()
        .decode(text.as_bytes())
        .map_err(|e| TokenError::BadPart {
            part,
            reason: e.to_string(),
        })?;
    bytes.try_into().map_err(|b: Vec<u8>| TokenError::BadPart {
        part,
        reason: format!("{} bytes, expected {N}", b.len()),
    })
}

/// sha256 of a cluster root certificate's DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaFingerprint([u8; 32]);

impl CaFingerprint {
    pub fn of_cert(der: &[u8]) -> Self {
        CaFingerprint(Sha256::digest(der).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32().encode(&self.0))
    }
}

impl fmt::Debug for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaFingerprint({self})")
    }
}

impl FromStr for CaFingerprint {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_exact("fingerprint", s).map(CaFingerprint)
    }
}

/// The secret half of a join token.
#[derive(Clone, PartialEq, Eq)]
struct Secret([u8; SECRET_LEN]);

impl Secret {
    fn generate() -> Result<Self, TokenError> {
        let mut bytes = [0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| TokenError::Random)?;
        Ok(Secret(bytes))
    }

    fn ct_eq(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32().encode(&self.0))
    }
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    fingerprint: CaFingerprint,
    secret: Secret,
}

impl JoinToken {
    /// The CA fingerprint the token names.
    pub fn fingerprint(&self) -> CaFingerprint {
        self.fingerprint
    }

    /// Joining-node side: accepts the root certificate a manager presented only if it hashes
    /// to the fingerprint in the token.
    pub fn verify_ca(&self, ca_cert_der: &[u8]) -> Result<(), TokenError> {
        let found = CaFingerprint::of_cert(ca_cert_der);
        if found.0.ct_eq(&self.fingerprint.0).into() {
            Ok(())
        } else {
            Err(TokenError::CaMismatch {
                expected: self.fingerprint,
                found,
            })
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", self.fingerprint, self.secret)
    }
}

// Never print the secret by accident (logs, panics).
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({PREFIX}-{VERSION}-{}-…)", self.fingerprint)
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [prefix, version, fingerprint, secret] = parts[..] else {
            return Err(TokenError::Malformed);
        };
        if prefix != PREFIX {
            return Err(TokenError::Malformed);
        }
        if version != VERSION {
            return Err(TokenError::UnsupportedVersion {
                version: version.to_owned(),
            });
        }
        Ok(JoinToken {
            fingerprint: fingerprint.parse()?,
            secret: Secret(decode_exact("secret", secret)?),
        })
    }
}

/// The cluster's current join secrets, one per role.
#[derive(Clone)]
pub struct JoinSecrets {
    manager: Secret,
    worker: Secret,
}

impl JoinSecrets {
    pub fn generate() -> Result<Self, TokenError> {
        Ok(JoinSecrets {
            manager: Secret::generate()?,
            worker: Secret::generate()?,
        })
    }

    fn slot(&mut self, role: Role) -> &mut Secret {
        match role {
            Role::Manager => &mut self.manager,
            Role::Worker => &mut self.worker,
        }
    }

    /// Replaces `role`'s secret: tokens made before stop working, the other role's tokens,
    /// the CA and every issued certificate are untouched.
    pub fn rotate(&mut self, role: Role) -> Result<(), TokenError> {
        *self.slot(role) = Secret::generate()?;
        Ok(())
    }

    /// The token to hand to a node that should join as `role`.
    pub fn token(&self, role: Role, fingerprint: CaFingerprint) -> JoinToken {
        let secret = match role {
            Role::Manager => self.manager.clone(),
            Role::Worker => self.worker.clone(),
        };
        JoinToken {
            fingerprint,
            secret,
        }
    }

    /// Manager side: the role a presented token admits, if it names this cluster's CA and
    /// carries a current secret. Both secrets are always compared, in constant time, so the
    /// timing reveals neither which role matched nor how much of a secret was right.
    pub fn role_for(&self, token: &JoinToken, ca: CaFingerprint) -> Result<Role, TokenError> {
        if !bool::from(token.fingerprint.0.ct_eq(&ca.0)) {
            return Err(TokenError::CaMismatch {
                expected: token.fingerprint,
                found: ca,
            });
        }
        let manager = token.secret.ct_eq(&self.manager);
        let worker = token.secret.ct_eq(&self.worker);
        match (manager, worker) {
            (true, _) => Ok(Role::Manager),
            (false, true) => Ok(Role::Worker),
            (false, false) => Err(TokenError::InvalidSecret),
        }
    }

    /// The secrets as text (`manager <secret>\nworker <secret>\n`), for a sealed store.
    pub fn to_text(&self) -> String {
        format!("manager {}\nworker {}\n", self.manager, self.worker)
    }

    /// Reads the text form of [`JoinSecrets::to_text`]; `origin` names where it came from.
    pub fn from_text(text: &str, origin: &Path) -> Result<Self, TokenError> {
        let bad = |reason: String| TokenError::BadSecretsFile {
            path: origin.to_owned(),
            reason,
        };
        let (mut manager, mut worker) = (None, None);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (role, secret) = line
                .split_once(' ')
                .ok_or_else(|| bad(format!("line {line:?} is not `<role> <secret>`")))?;
            let role: Role = role.parse().map_err(|e| bad(format!("{e}")))?;
            let secret =
                Secret(decode_exact("secret", secret.trim()).map_err(|e| bad(e.to_string()))?);
            let slot = match role {
                Role::Manager => &mut manager,
                Role::Worker => &mut worker,
            };
            if slot.replace(secret).is_some() {
                return Err(bad(format!("{role} appears twice")));
            }
        }
        Ok(JoinSecrets {
            manager: manager.ok_or_else(|| bad("no manager secret".into()))?,
            worker: worker.ok_or_else(|| bad("no worker secret".into()))?,
        })
    }

    /// Persists the secrets in `dir/join-secrets` with mode 0600.
    pub fn save(&self, dir: &Path) -> Result<(), TokenError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| TokenError::Io {
                action,
                path,
                source,
            }
        };
        private_dir(dir).map_err(io("create", dir))?;
        let path = dir.join(SECRETS_FILE);
        write_with_mode(&path, self.to_text().as_bytes(), 0o600).map_err(io("write", &path))
    }

    /// Loads secrets [`JoinSecrets::save`] wrote.
    pub fn load(dir: &Path) -> Result<Self, TokenError> {
        let path = dir.join(SECRETS_FILE);
        let text = fs::read_to_string(&path).map_err(|source| TokenError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        Self::from_text(&text, &path)
    }
}

impl fmt::Debug for JoinSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinSecrets(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(byte: u8) -> CaFingerprint {
        CaFingerprint::of_cert(&[byte; 10])
    }

    #[test]
    fn token_round_trips_through_its_text_form() {
        let secrets = JoinSecrets::generate().unwrap();
        let token = secrets.token(Role::Worker, fp(1));
        let text = token.to_string();
        assert!(text.starts_with("BERTH-1-"), "{text}");
        assert_eq!(text.len(), "BERTH-1-".len() + 52 + 1 + 32, "{text}");
        assert!(
            text[8..]
                .bytes()
                .all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        let parsed: JoinToken = text.parse().unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.fingerprint(), fp(1));
        // Surrounding whitespace from a paste is tolerated.
        assert_eq!(format!("  {text}\n").parse::<JoinToken>().unwrap(), token);
    }

    #[test]
    fn parse_errors_are_specific() {
        let good = JoinSecrets::generate()
            .unwrap()
            .token(Role::Manager, fp(2))
            .to_string();
        let (fp_part, secret_part) = good["BERTH-1-".len()..].split_once('-').unwrap();
        let cases = [
            ("", "BERTH-1-<fingerprint>-<secret>"),
            ("SWMTKN-1-a-b", "BERTH-1-<fingerprint>-<secret>"),
            ("BERTH-1-abc", "BERTH-1-<fingerprint>-<secret>"),
            (
                &good.replace("BERTH-1-", "BERTH-2-"),
                "version 2 is not supported",
            ),
            (
                &format!("BERTH-1-{}-{secret_part}", fp_part.to_uppercase()),
                "fingerprint is not valid",
            ),
            (
                &format!("BERTH-1-{}-{secret_part}", &fp_part[..44]),
                "fingerprint is not valid",
            ),
            (
                &format!("BERTH-1-{fp_part}-{}", &secret_part[..24]),
                "secret is not valid",
            ),
            (
                &format!("BERTH-1-{fp_part}-{secret_part}-x"),
                "BERTH-1-<fingerprint>-<secret>",
            ),
        ];
        for (text, want) in cases {
            let err = text.parse::<JoinToken>().unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn each_role_has_its_own_secret() {
        let secrets = JoinSecrets::generate().unwrap();
        let manager = secrets.token(Role::Manager, fp(3));
        let worker = secrets.token(Role::Worker, fp(3));
        assert_ne!(manager.to_string(), worker.to_string());
        assert_eq!(secrets.role_for(&manager, fp(3)).unwrap(), Role::Manager);
        assert_eq!(secrets.role_for(&worker, fp(3)).unwrap(), Role::Worker);
        let other = JoinSecrets::generate().unwrap().token(Role::Manager, fp(3));
        assert!(matches!(
            secrets.role_for(&other, fp(3)),
            Err(TokenError::InvalidSecret)
        ));
        assert!(matches!(
            secrets.role_for(&manager, fp(4)),
            Err(TokenError::CaMismatch { .. })
        ));
    }

    #[test]
    fn rotation_invalidates_only_that_roles_tokens() {
        let mut secrets = JoinSecrets::generate().unwrap();
        let old_worker = secrets.token(Role::Worker, fp(5));
        let manager = secrets.token(Role::Manager, fp(5));
        secrets.rotate(Role::Worker).unwrap();
        assert!(matches!(
            secrets.role_for(&old_worker, fp(5)),
            Err(TokenError::InvalidSecret)
        ));
        let new_worker = secrets.token(Role::Worker, fp(5));
        assert_ne!(new_worker, old_worker);
        assert_eq!(secrets.role_for(&new_worker, fp(5)).unwrap(), Role::Worker);
        assert_eq!(secrets.role_for(&manager, fp(5)).unwrap(), Role::Manager);
    }

    #[test]
    fn verify_ca_accepts_only_the_named_certificate() {
        let token = JoinSecrets::generate()
            .unwrap()
            .token(Role::Worker, CaFingerprint::of_cert(b"root"));
        token.verify_ca(b"root").unwrap();
        let err = token.verify_ca(b"impostor").unwrap_err();
        assert!(err.to_string().contains("refusing to trust it"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secrets = JoinSecrets::generate().unwrap();
        let token = secrets.token(Role::Manager, fp(6));
        let secret = token.to_string().rsplit('-').next().unwrap().to_owned();
        assert!(!format!("{token:?}").contains(&secret));
        assert!(!format!("{secrets:?}").contains(&secret));
    }

    #[test]
    fn secrets_persist_privately() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secrets = JoinSecrets::generate().unwrap();
        secrets.save(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(SECRETS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = JoinSecrets::load(dir.path()).unwrap();
        let token = secrets.token(Role::Worker, fp(7));
        assert_eq!(loaded.role_for(&token, fp(7)).unwrap(), Role::Worker);
        fs::write(dir.path().join(SECRETS_FILE), "manager zzz\n").unwrap();
        let err = JoinSecrets::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a join secrets file"), "{err}");
    }
}
