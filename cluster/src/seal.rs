//! The managers' key: seals the CA key and the join secrets before they enter the replicated
//! store. Every node replicates the Raft log (workers as learners), so what only managers may
//! read travels sealed with AES-256-GCM under a key that only managers hold — made at
//! `cluster init`, handed to a manager when it joins or is promoted, kept in
//! `<dir>/manager.key` (0600).
//!
//! This module seals and opens bytes; what is sealed and where the key travels is the
//! daemon's business.

use std::fs;
use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::files::{private_dir, write_with_mode};

const KEY_FILE: &str = "manager.key";
const KEY_LEN: usize = 32;
/// Bound to every sealed value, so a ciphertext made for something else never opens here.
const AAD: &[u8] = b"berth cluster secrets v1";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the system random number generator failed")]
    Random,
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the managers' key is malformed ({reason})")]
    BadKey { reason: String },
    #[error("the sealed cluster secrets are malformed")]
    Malformed,
    #[error("the sealed cluster secrets do not open with this node's managers' key")]
    WrongKey,
}

/// The key shared by the managers of one cluster.
#[derive(Clone)]
pub struct ManagerKey([u8; KEY_LEN]);

impl ManagerKey {
    pub fn generate() -> Result<Self, SealError> {
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SealError::Random)?;
        Ok(ManagerKey(key))
    }

    /// The key as text (base64), for the wire between managers.
    pub fn to_text(&self) -> String {
        BASE64.encode(&self.0)
    }

    pub fn from_text(text: &str) -> Result<Self, SealError> {
        let bytes = BASE64
            .decode(text.trim().as_bytes())
            .map_err(|e| SealError::BadKey {
                reason: e.to_string(),
            })?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| SealError::BadKey {
            reason: format!("{} bytes, expected {KEY_LEN}", b.len()),
        })?;
        Ok(ManagerKey(key))
    }

    /// Writes `dir/manager.key` (0600; `dir` made 0700).
    pub fn save(&self, dir: &Path) -> Result<(), SealError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| SealError::Io {
                action,
                path,
                source,
            }
        };
        private_dir(dir).map_err(io("create", dir))?;
        let path = dir.join(KEY_FILE);
        write_with_mode(&path, self.to_text().as_bytes(), 0o600).map_err(io("write", &path))
    }

    /// Reads `dir/manager.key`; `None` when this node holds no key (a worker).
    pub fn load(dir: &Path) -> Result<Option<Self>, SealError> {
        let path = dir.join(KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Self::from_text(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SealError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Removes `dir/manager.key` (a demoted manager or a node leaving).
    pub fn forget(dir: &Path) -> Result<(), SealError> {
        let path = dir.join(KEY_FILE);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SealError::Io {
                action: "remove",
                path,
                source,
            }),
        }
    }

    fn key(&self) -> LessSafeKey {
        // A 32-byte key is always valid for AES-256-GCM.
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &self.0)
                .unwrap_or_else(|_| unreachable!("AES-256-GCM takes any 32-byte key")),
        )
    }

    /// `base64(nonce || ciphertext || tag)` with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut data = plaintext.to_vec();
        self.key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut data,
            )
            .map_err(|_| SealError::Malformed)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(BASE64.encode(&out))
    }

    /// Opens what [`ManagerKey::seal`] made with the same key.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let bytes = BASE64
            .decode(sealed.trim().as_bytes())
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let mut data = rest.to_vec();
        let plain = self
            .key()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut data,
            )
            .map_err(|_| SealError::WrongKey)?;
        Ok(plain.to_vec())
    }
}

impl std::fmt::Debug for ManagerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagerKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let key = ManagerKey::generate().unwrap();
        let sealed = key.seal(b"ca key and secrets").unwrap();
        assert!(!sealed.contains("secrets"));
        assert_eq!(key.open(&sealed).unwrap(), b"ca key and secrets");
        let other = ManagerKey::generate().unwrap();
        assert!(matches!(other.open(&sealed), Err(SealError::WrongKey)));
        assert!(matches!(key.open("!!"), Err(SealError::Malformed)));
        // Two seals of the same text differ (fresh nonces).
        assert_ne!(key.seal(b"x").unwrap(), key.seal(b"x").unwrap());
    }

    #[test]
    fn the_key_round_trips_through_text_and_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ManagerKey::load(dir.path()).unwrap().is_none());
        let key = ManagerKey::generate().unwrap();
        key.save(dir.path()).unwrap();
        let loaded = ManagerKey::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.open(&key.seal(b"a").unwrap()).unwrap(), b"a");
        let again = ManagerKey::from_text(&key.to_text()).unwrap();
        assert_eq!(again.0, key.0);
        assert!(ManagerKey::from_text("AAAA").is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        ManagerKey::forget(dir.path()).unwrap();
        assert!(ManagerKey::load(dir.path()).unwrap().is_none());
        assert!(!format!("{key:?}").contains(&key.to_text()));
    }
}
