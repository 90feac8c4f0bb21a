//! Content digests: parsing and validating `sha256:<64 hex>` strings, and hashing readers and
//! writers that compute a digest while bytes stream through.
//!
//! Owns the one place where berth decides what a valid digest is. It must not touch the
//! filesystem: the content store builds on it.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Errors from parsing a digest string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {input:?}: expected <algorithm>:<hex>")]
    Malformed { input: String },
    #[error("unsupported digest algorithm {algorithm:?} in {input:?} (only sha256 is supported)")]
    UnsupportedAlgorithm { input: String, algorithm: String },
    #[error("invalid digest {input:?}: sha256 needs 64 lowercase hex characters")]
    BadHex { input: String },
}

/// A sha256 content digest, always stored in canonical lowercase form.
///
/// berth writes and addresses content by sha256 only; other algorithms are refused at parse
/// time with a clear error rather than half-supported.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The algorithm prefix of every digest berth produces.
    pub const ALGORITHM: &'static str = "sha256";

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(input: &str) -> Result<Self, DigestError> {
        let Some((algorithm, hex)) = input.split_once(':') else {
            return Err(DigestError::Malformed {
                input: input.to_owned(),
            });
        };
        if algorithm.is_empty() || hex.is_empty() {
            return Err(DigestError::Malformed {
                input: input.to_owned(),
            });
        }
        if algorithm != Self::ALGORITHM {
            return Err(DigestError::UnsupportedAlgorithm {
                input: input.to_owned(),
                algorithm: algorithm.to_owned(),
            });
        }
        Self::from_hex(hex).map_err(|_| DigestError::BadHex {
            input: input.to_owned(),
        })
    }

    /// Builds a digest from the 64 hex characters alone (the file name of a blob).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self {
                hex: hex.to_owned(),
            })
        } else {
            Err(DigestError::BadHex {
                input: hex.to_owned(),
            })
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_raw(&Sha256::digest(bytes))
    }

    fn from_raw(raw: &[u8]) -> Self {
        Self {
            hex: hex::encode(raw),
        }
    }

    /// The 64 hex characters, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm name (`sha256`).
    pub fn algorithm(&self) -> &'static str {
        Self::ALGORITHM
    }

    /// The first 12 hex characters, as Docker shows image ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Converts into the `oci-spec` digest type.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        // A validated sha256 digest is always accepted by oci-spec's parser.
        oci_spec::image::Digest::from_str(&self.to_string())
            .unwrap_or_else(|_| unreachable!("validated sha256 digest rejected by oci-spec"))
    }

    /// Converts from the `oci-spec` digest type (refusing non-sha256 algorithms).
    pub fn from_oci(digest: &oci_spec::image::Digest) -> Result<Self, DigestError> {
        Self::parse(digest.as_ref())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", Self::ALGORITHM, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 over a byte stream, counting the bytes seen.
#[derive(Clone, Default)]
pub struct Hasher {
    state: Sha256,
    len: u64,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.state.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything hashed so far (the hasher itself is left untouched).
    pub fn digest(&self) -> Digest {
        Digest::from_raw(&self.state.clone().finalize())
    }
}

/// A writer that hashes every byte it passes on to the inner writer.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Digest and length of what has been written so far.
    pub fn digest(&self) -> (Digest, u64) {
        (self.hasher.digest(), self.hasher.len())
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the length.
    pub fn finish(self) -> (W, Digest, u64) {
        let digest = self.hasher.digest();
        (self.inner, digest, self.hasher.len())
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes every byte read through it.
pub struct DigestReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Digest and length of what has been read so far.
    pub fn digest(&self) -> (Digest, u64) {
        (self.hasher.digest(), self.hasher.len())
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that checks, when it reaches end of input, that the bytes read match an expected
/// digest and size; a mismatch surfaces as an `InvalidData` I/O error instead of EOF, so
/// consumers (unpacking, export) never silently accept tampered content.
pub struct VerifyingReader<R> {
    inner: DigestReader<R>,
    expected: Digest,
    expected_size: Option<u64>,
    verified: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>) -> Self {
        Self {
            inner: DigestReader::new(inner),
            expected,
            expected_size,
            verified: false,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let len = self.inner.hasher.len();
        if let Some(size) = self.expected_size {
            if len > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "content of {} is longer than its size {size}",
                        self.expected
                    ),
                ));
            }
        }
        if n == 0 && !buf.is_empty() && !self.verified {
            let digest = self.inner.hasher.digest();
            if digest != self.expected || self.expected_size.is_some_and(|s| s != len) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "content verification failed: expected {} ({} bytes), got {digest} ({len} bytes)",
                        self.expected,
                        self.expected_size.map_or("?".to_owned(), |s| s.to_string()),
                    ),
                ));
            }
            self.verified = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_canonical_form() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_bad_digests() {
        let cases = [
            ("", "Malformed"),
            ("sha256", "Malformed"),
            ("sha256:", "Malformed"),
            ("md5:abcd", "UnsupportedAlgorithm"),
            ("sha512:abcd", "UnsupportedAlgorithm"),
            ("sha256:abcd", "BadHex"),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "BadHex",
            ),
            (
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85z",
                "BadHex",
            ),
        ];
        for (input, kind) in cases {
            let err = Digest::parse(input).unwrap_err();
            assert!(format!("{err:?}").starts_with(kind), "{input:?}: {err:?}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let d = Digest::of(b"hello");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn oci_conversion_round_trip() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::from_oci(&d.to_oci()).unwrap(), d);
    }

    #[test]
    fn writer_and_reader_hash_what_passes() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello world").unwrap();
        let (buf, d, n) = w.finish();
        assert_eq!(n, 11);
        assert_eq!(d, Digest::of(b"hello world"));
        let mut r = DigestReader::new(&buf[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.digest(), (d, 11));
    }

    #[test]
    fn verifying_reader_rejects_tampered_content() {
        let good = Digest::of(b"abc");
        let mut out = Vec::new();
        VerifyingReader::new(&b"abc"[..], good.clone(), Some(3))
            .read_to_end(&mut out)
            .unwrap();
        let err = VerifyingReader::new(&b"abd"[..], good.clone(), Some(3))
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = VerifyingReader::new(&b"abcd"[..], good, Some(3))
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
