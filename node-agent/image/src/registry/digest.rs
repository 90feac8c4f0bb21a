//! sha256 digests as the distribution API writes them (`sha256:<64 hex>`): computing them
//! over bytes or a stream, and recognising digest references. Pure; no I/O.

use sha2::{Digest as _, Sha256};

/// A finished sha256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// Incremental hashing of a blob as it streams past.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> Sha256Digest {
        Sha256Digest(self.0.finalize().into())
    }
}

/// Is `reference` a digest (`algorithm:hex`) rather than a tag?
pub fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

/// Is `digest` a well-formed sha256 digest, the only algorithm berth accepts?
pub fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The 12-hex-digit short form Docker prints (`a3ed95caeb02`).
pub fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            Sha256Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Hasher::default();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), Sha256Digest::of(b"abc"));
    }

    #[test]
    fn recognises_digests() {
        let d = Sha256Digest::of(b"x").to_string();
        assert!(is_digest(&d) && is_sha256(&d));
        assert!(!is_digest("latest"));
        assert!(!is_sha256("sha256:abc"));
        assert!(!is_sha256("sha512:00"));
        assert_eq!(short(&d).len(), 12);
        assert_eq!(short("abc"), "abc");
    }
}
