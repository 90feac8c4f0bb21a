//! Image references — `[registry[:port]/]repository[:tag][@digest]` — parsed and validated
//! against the distribution reference grammar, with Docker Hub normalization
//! (`busybox` → `docker.io/library/busybox:latest`).
//!
//! Pure parsing and formatting; it must not resolve names against any store or registry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};

/// The registry that short names refer to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The tag assumed when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Why an image reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: empty reference")]
    Empty,
    #[error("invalid reference format {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    #[error("invalid reference format {input:?}: bad repository name component {component:?}")]
    BadComponent { input: String, component: String },
    #[error("invalid reference format {input:?}: bad registry host {domain:?}")]
    BadDomain { input: String, domain: String },
    #[error("invalid reference format {input:?}: bad tag {tag:?}")]
    BadTag { input: String, tag: String },
    #[error("invalid reference format {input:?}: {source}")]
    BadDigest { input: String, source: DigestError },
    #[error(
        "invalid reference format {input:?}: repository name longer than {NAME_MAX} characters"
    )]
    TooLong { input: String },
    #[error(
        "invalid reference format {input:?}: a repository name cannot be a 64-character hex string (that is an image id)"
    )]
    LooksLikeId { input: String },
}

/// A fully normalized image reference. Always has a registry domain and a repository path;
/// has a tag, a digest, or both (a reference parsed with neither gets the `latest` tag).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference as `docker pull` would.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let mut reference = Self::parse_name_only(input)?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(reference)
    }

    /// Parses like [`Reference::parse`] but does not add the default tag: `busybox` stays
    /// without tag or digest (useful for `docker.io/library/busybox` as a repository name).
    pub fn parse_name_only(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|source| ReferenceError::BadDigest {
                    input: input.to_owned(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::BadTag {
                    input: input.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if name.len() > NAME_MAX {
            return Err(ReferenceError::TooLong {
                input: input.to_owned(),
            });
        }
        let (domain, remainder) = split_domain(name);
        if !valid_domain(&domain) {
            return Err(ReferenceError::BadDomain {
                input: input.to_owned(),
                domain,
            });
        }
        let repository = if domain == DOCKER_HUB && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder.to_owned()
        };
        if remainder.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: input.to_owned(),
            });
        }
        for component in remainder.split('/') {
            if !valid_path_component(component) {
                return Err(ReferenceError::BadComponent {
                    input: input.to_owned(),
                    component: component.to_owned(),
                });
            }
        }
        if domain == DOCKER_HUB
            && remainder.len() == 64
            && remainder.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(ReferenceError::LooksLikeId {
                input: input.to_owned(),
            });
        }
        if domain.len() + 1 + repository.len() > NAME_MAX {
            return Err(ReferenceError::TooLong {
                input: input.to_owned(),
            });
        }
        Ok(Self {
            domain,
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// Registry domain as written in the reference (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The host (and port) to contact for the registry API: `docker.io` is served from
    /// `registry-1.docker.io`; every other domain is its own host.
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.domain
        }
    }

    /// Whether the registry is on this machine (`localhost`, `127.0.0.0/8`, `[::1]`), the
    /// only registries berth talks plain HTTP to without being told to.
    pub fn is_loopback_registry(&self) -> bool {
        let host = match self.domain.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                host
            }
            _ => self.domain.as_str(),
        };
        host == "localhost" || host == "[::1]" || host.starts_with("127.")
    }

    /// Repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `domain/repository` without tag or digest (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::BadTag {
                input: self.to_string(),
                tag: tag.to_owned(),
            });
        }
        Ok(Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to a digest, without tag (`name@sha256:…`).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The short form Docker shows: `busybox:latest`, `user/app:1`, `localhost:5000/x:tag`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        self.push_suffix(&mut out);
        out
    }

    /// The short repository name without tag or digest (`busybox`, `user/app`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            self.name()
        }
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

/// Splits `name` into registry domain and remainder following Docker's rule: the first
/// component is a domain only if it contains `.` or `:`, is `localhost`, or has uppercase.
fn split_domain(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            let domain = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            (domain.to_owned(), rest)
        }
        _ => (DOCKER_HUB.to_owned(), name),
    }
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !bytes.is_empty()
        && bytes.len() <= TAG_MAX
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `alpha-numeric (separator alpha-numeric)*`, separator = `[_.]|__|[-]+`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        if expect_alnum {
            if !alnum(bytes[i]) {
                return false;
            }
            while i < bytes.len() && alnum(bytes[i]) {
                i += 1;
            }
            expect_alnum = false;
        } else {
            let start = i;
            match bytes[i] {
                b'.' => i += 1,
                b'_' => {
                    i += 1;
                    if i < bytes.len() && bytes[i] == b'_' {
                        i += 1;
                    }
                }
                b'-' => {
                    while i < bytes.len() && bytes[i] == b'-' {
                        i += 1;
                    }
                }
                _ => return false,
            }
            debug_assert!(i > start);
            expect_alnum = true;
        }
    }
    !bytes.is_empty() && !expect_alnum
}

/// `host[:port]`, host = domain-name | IPv4 | `[IPv6]`.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("x", port),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, port),
            None => (domain, "0"),
        }
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_suffix(&mut out);
        f.write_str(&out)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalizes_like_docker() {
        let d = format!("sha256:{HEX}");
        // input, full form, familiar form, domain, repository, tag, digest?
        type Case<'a> = (
            String,
            String,
            String,
            &'a str,
            &'a str,
            Option<&'a str>,
            bool,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "busybox".into(),
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
            ),
            (
                "busybox:1.36".into(),
                "docker.io/library/busybox:1.36".into(),
                "busybox:1.36".into(),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                false,
            ),
            (
                "user/app".into(),
                "docker.io/user/app:latest".into(),
                "user/app:latest".into(),
                "docker.io",
                "user/app",
                Some("latest"),
                false,
            ),
            (
                "index.docker.io/library/redis:7".into(),
                "docker.io/library/redis:7".into(),
                "redis:7".into(),
                "docker.io",
                "library/redis",
                Some("7"),
                false,
            ),
            (
                "localhost:5000/x".into(),
                "localhost:5000/x:latest".into(),
                "localhost:5000/x:latest".into(),
                "localhost:5000",
                "x",
                Some("latest"),
                false,
            ),
            (
                "localhost/x".into(),
                "localhost/x:latest".into(),
                "localhost/x:latest".into(),
                "localhost",
                "x",
                Some("latest"),
                false,
            ),
            (
                format!("127.0.0.1:5000/x:tag@{d}"),
                format!("127.0.0.1:5000/x:tag@{d}"),
                format!("127.0.0.1:5000/x:tag@{d}"),
                "127.0.0.1:5000",
                "x",
                Some("tag"),
                true,
            ),
            (
                format!("busybox@{d}"),
                format!("docker.io/library/busybox@{d}"),
                format!("busybox@{d}"),
                "docker.io",
                "library/busybox",
                None,
                true,
            ),
            (
                "ghcr.io/org/team/tool:v1.2.3-rc_1".into(),
                "ghcr.io/org/team/tool:v1.2.3-rc_1".into(),
                "ghcr.io/org/team/tool:v1.2.3-rc_1".into(),
                "ghcr.io",
                "org/team/tool",
                Some("v1.2.3-rc_1"),
                false,
            ),
            (
                "[::1]:5000/a__b.c--d:x".into(),
                "[::1]:5000/a__b.c--d:x".into(),
                "[::1]:5000/a__b.c--d:x".into(),
                "[::1]:5000",
                "a__b.c--d",
                Some("x"),
                false,
            ),
            (
                "Registry/app".into(),
                "Registry/app:latest".into(),
                "Registry/app:latest".into(),
                "Registry",
                "app",
                Some("latest"),
                false,
            ),
        ];
        for (input, full, familiar, domain, repo, tag, has_digest) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(r.domain(), domain, "{input}");
            assert_eq!(r.repository(), repo, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest().is_some(), has_digest, "{input}");
            // The normalized form parses back to itself.
            assert_eq!(Reference::parse(&full).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn rejects_invalid_references() {
        let long = format!("a/{}", "b".repeat(300));
        let hex_name = HEX.to_owned();
        let cases: Vec<(&str, &str)> = vec![
            ("", "Empty"),
            (":tag", "Empty"),
            ("Busybox", "Uppercase"),
            ("user/App", "Uppercase"),
            ("busybox:", "BadTag"),
            ("busybox:-x", "BadTag"),
            ("busybox:a+b", "BadTag"),
            ("busybox@sha256:abc", "BadDigest"),
            ("busybox@md5:abc", "BadDigest"),
            ("a//b", "BadComponent"),
            ("a/-b", "BadComponent"),
            ("a/b-", "BadComponent"),
            ("a/b___c", "BadComponent"),
            ("a/b..c", "BadComponent"),
            ("host:port/x", "BadDomain"),
            ("-bad.io/x", "BadDomain"),
            ("bad-.io/x", "BadDomain"),
            (&long, "TooLong"),
            (&hex_name, "LooksLikeId"),
        ];
        for (input, kind) in cases {
            let err = Reference::parse(input).unwrap_err();
            assert!(format!("{err:?}").starts_with(kind), "{input:?}: {err:?}");
        }
        let too_long_tag = format!("busybox:{}", "a".repeat(129));
        assert!(matches!(
            Reference::parse(&too_long_tag),
            Err(ReferenceError::BadTag { .. })
        ));
    }

    #[test]
    fn accessors_and_helpers() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.familiar_name(), "busybox");
        assert!(!r.is_loopback_registry());
        let t = r.with_tag("musl").unwrap();
        assert_eq!(t.to_string(), "docker.io/library/busybox:musl");
        let d = r.with_digest(Digest::of(b""));
        assert_eq!(d.tag(), None);
        assert_eq!(
            d.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        assert!(
            Reference::parse("localhost:5000/x")
                .unwrap()
                .is_loopback_registry()
        );
        assert!(
            Reference::parse("127.0.0.1:5000/x")
                .unwrap()
                .is_loopback_registry()
        );
        assert!(
            Reference::parse("[::1]:5000/x")
                .unwrap()
                .is_loopback_registry()
        );
        assert_eq!(
            Reference::parse("127.0.0.1:5000/x").unwrap().api_host(),
            "127.0.0.1:5000"
        );
        let bare = Reference::parse_name_only("busybox").unwrap();
        assert_eq!(bare.tag(), None);
        assert_eq!(bare.to_string(), "docker.io/library/busybox");
    }

    #[test]
    fn serde_uses_the_normalized_string() {
        let r = Reference::parse("busybox").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/busybox:latest\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    }
}
