//! An HTTP client for one registry speaking the OCI distribution API.
//!
//! Owns the wire protocol: `/v2/` ping, manifests (GET/HEAD/PUT with the right `Accept`),
//! blobs (GET with redirects and `Range` resume, HEAD), upload sessions (POST, chunked PATCH,
//! PUT `?digest=`, monolithic PUT, cross-repository mount), authentication driven by
//! `WWW-Authenticate` (see [`super::auth`]), retries with backoff on 5xx and connection
//! errors, and digest verification of everything it hands back whole. It knows nothing of the
//! content store: streamed blobs are verified by whoever consumes the stream.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use super::auth::{self, AuthError, BearerChallenge, Challenge, Token};
use super::credentials::Credentials;
use super::transport::TransportPolicy;
use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused: the spec suggests registries cap them at 4 MiB and
/// a hostile registry must not make us buffer gigabytes.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Configs and other blobs fetched whole into memory.
const MAX_INLINE_BLOB_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry address {registry:?}: {reason}")]
    Address { registry: String, reason: String },
    #[error("{method} {url}: {reason}")]
    Http {
        method: Method,
        url: String,
        reason: String,
        transient: bool,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{registry}: authentication required ({detail}); run `berth login {registry}`")]
    Unauthorized { registry: String, detail: String },
    #[error("{registry}: wrong username or password ({detail})")]
    BadCredentials { registry: String, detail: String },
    #[error("{registry}: access denied to {what} ({detail})")]
    Denied {
        registry: String,
        what: String,
        detail: String,
    },
    #[error("{what} not found in {registry} ({detail})")]
    NotFound {
        registry: String,
        what: String,
        detail: String,
    },
    #[error("{method} {url}: unexpected HTTP {status} ({detail})")]
    Status {
        method: Method,
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: {reason}")]
    BadResponse { what: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Transient failures worth another attempt at a higher level (e.g. a resumed download).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { transient, .. } => *transient,
            RegistryError::Status { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

fn http_error(method: Method, url: &str, e: &reqwest::Error) -> RegistryError {
    RegistryError::Http {
        method,
        url: url.to_string(),
        reason: describe_http_error(e),
        transient: is_transient_http(e),
    }
}

/// The useful part of a transport error: its innermost cause (`Connection refused`, a DNS
/// or TLS failure) instead of reqwest's nested "error sending request for url (…)".
pub fn describe_http_error(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let root = cause.to_string();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    if root.contains("certificate") {
        format!("{kind}: {root} (a private CA goes in ~/.berth/certs.d/<host:port>/ca.crt)")
    } else {
        format!("{kind}: {root}")
    }
}

fn is_transient_http(e: &reqwest::Error) -> bool {
    // An untrusted certificate stays untrusted however often we ask.
    (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
        && !describe_http_error(e).contains("certificate")
}

fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Backoff between attempts of one request: `base * 2^n`, capped.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// A manifest or index as the registry sent it: the exact bytes (their digest is the
/// manifest's identity) and the media type.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub media_type: String,
    pub digest: String,
    pub bytes: Bytes,
}

/// What `HEAD` on a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
}

/// A blob download in progress: the response body starts at `offset`.
pub struct BlobDownload {
    /// Where the body starts in the blob: the requested offset if the registry honoured the
    /// `Range`, 0 if it sent the whole blob instead.
    pub offset: u64,
    /// The blob's total size when the registry said so.
    pub total: Option<u64>,
    pub response: reqwest::Response,
}

impl BlobDownload {
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static {
        self.response.bytes_stream()
    }
}

/// How a blob's bytes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// One `PUT ?digest=` with the whole body.
    Monolithic,
    /// `PATCH` chunks of this many bytes, then an empty `PUT ?digest=`.
    Chunked { chunk_size: usize },
}

/// What pushing one blob took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPushOutcome {
    AlreadyExists,
    Mounted,
    Uploaded,
}

/// A callback told how many more bytes went over the wire.
pub type ByteCounter = Arc<dyn Fn(u64) + Send + Sync>;

/// One blob to push, read from a file.
#[derive(Clone)]
pub struct BlobUpload<'a> {
    pub digest: &'a str,
    pub size: u64,
    pub path: &'a Path,
    pub mode: UploadMode,
    /// Another repository of the same registry that may already hold the blob.
    pub mount_from: Option<&'a str>,
    pub counter: Option<ByteCounter>,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub policy: TransportPolicy,
    pub credentials: Option<Credentials>,
    pub retry: RetryPolicy,
    pub user_agent: String,
    /// Where to look for extra CA certificates (`<dir>/<host[:port]>/*.crt`), e.g.
    /// [`super::transport::default_certs_dirs`].
    pub certs_dirs: Vec<std::path::PathBuf>,
    /// A complete TLS configuration to use instead of the system's roots: a cluster peer's
    /// mutual-TLS client config (its CA as the only root, the node's certificate).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            policy: TransportPolicy::default(),
            credentials: None,
            retry: RetryPolicy::default(),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
            certs_dirs: Vec::new(),
            tls: None,
        }
    }
}

#[derive(Debug, Default)]
enum AuthMode {
    /// Not challenged yet: requests go out without credentials.
    #[default]
    Anonymous,
    Basic,
    Bearer(BearerChallenge),
}

#[derive(Debug, Default)]
struct AuthState {
    mode: AuthMode,
    /// Tokens by the sorted scope set they were issued for.
    tokens: HashMap<String, Token>,
}

/// A client for one registry (`host[:port]` as in references; `docker.io` for Docker Hub).
/// Cheap to share behind an `Arc`; requests may run concurrently.
pub struct RegistryClient {
    http: reqwest::Client,
    registry: String,
    /// Base URLs to try, HTTPS first; see [`TransportPolicy::endpoints`].
    endpoints: Vec<Url>,
    /// The endpoint chosen on first use.
    base: tokio::sync::OnceCell<Url>,
    options: ClientOptions,
    auth: tokio::sync::Mutex<AuthState>,
}

/// Scope strings of the token spec.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

impl RegistryClient {
    pub fn new(registry: &str, options: ClientOptions) -> Result<Self, RegistryError> {
        let address_error = |reason: String| RegistryError::Address {
            registry: registry.to_string(),
            reason,
        };
        let endpoints = options
            .policy
            .endpoints(registry)
            .map_err(|e| address_error(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(10));
        let host = super::transport::host_port(&endpoints[0]).unwrap_or_default();
        for path in super::transport::ca_files(&options.certs_dirs, &host) {
            let pem = std::fs::read(&path).map_err(|source| RegistryError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let certificate = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                address_error(format!("bad CA certificate {}: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(certificate);
        }
        if let Some(tls) = &options.tls {
            builder = builder.use_preconfigured_tls((**tls).clone());
        }
        let http = builder
            .build()
            .map_err(|e| address_error(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            http,
            registry: registry.to_string(),
            endpoints,
            base: tokio::sync::OnceCell::new(),
            options,
            auth: tokio::sync::Mutex::new(AuthState::default()),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The base URL in use: HTTPS, unless the registry may be spoken to over plain HTTP and
    /// HTTPS does not answer there (checked once, on first use).
    pub async fn endpoint(&self) -> Result<&Url, RegistryError> {
        self.base
            .get_or_try_init(|| async {
                let [https, rest @ ..] = self.endpoints.as_slice() else {
                    return Err(RegistryError::Address {
                        registry: self.registry.clone(),
                        reason: "no endpoint".to_string(),
                    });
                };
                let Some(http) = rest.first() else {
                    return Ok(https.clone());
                };
                let probe = https.join("v2/").expect("a relative path joins");
                match self
                    .http
                    .get(probe)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                {
                    // Any HTTP answer, even 401 or 404, means TLS works there.
                    Ok(_) => Ok(https.clone()),
                    // The server speaks TLS but we do not trust it: say so on every request
                    // rather than fall back to HTTP and get a puzzling 400.
                    Err(e) if describe_http_error(&e).contains("certificate") => {
                        Ok(https.clone())
                    }
                    Err(e) => {
                        tracing::debug!(registry = %self.registry, error = %e, "no HTTPS; using plain HTTP");
                        Ok(http.clone())
                    }
                }
            })
            .await
    }

    async fn url(&self, path: &str) -> Result<Url, RegistryError> {
        // The base always ends in `/` and `path` never starts with one: join cannot fail.
        Ok(self
            .endpoint()
            .await?
            .join(path)
            .expect("registry paths are relative URLs"))
    }

    /// Checks that the registry answers `/v2/` and that our credentials (if any) are good.
    /// With a bearer registry and credentials, a token without scope is requested so a wrong
    /// password is detected here rather than on first use.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.url("v2/").await?;
        let response = self
            .send(&[], true, || Ok(self.http.get(url.clone())))
            .await?;
        self.check(response, &Method::GET, "the registry API")
            .await
            .map(drop)
    }

    /// Verifies the configured credentials; used by `berth login` before saving them.
    pub async fn verify_login(&self) -> Result<(), RegistryError> {
        let url = self.url("v2/").await?;
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| http_error(Method::GET, url.as_str(), &e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            // Open registry: it takes anything, so there is nothing to verify beyond reaching it.
            return self
                .check(response, &Method::GET, "the registry API")
                .await
                .map(drop);
        }
        let challenges = challenges_of(response.headers())?;
        if let Some(bearer) = pick_bearer(&challenges) {
            auth::fetch_token(
                &self.http,
                &self.options.policy,
                &bearer,
                &[],
                self.options.credentials.as_ref(),
            )
            .await
            .map_err(|e| match e {
                AuthError::TokenDenied {
                    status: 401, body, ..
                } => RegistryError::BadCredentials {
                    registry: self.registry.clone(),
                    detail: body,
                },
                other => RegistryError::Auth(other),
            })?;
            return Ok(());
        }
        self.ping().await
    }

    /// Sends a request built by `make`, authenticating on a 401 challenge once and retrying
    /// transient failures with backoff when `retry` is set (only for requests whose repetition
    /// is harmless).
    async fn send<F>(
        &self,
        scopes: &[String],
        retry: bool,
        make: F,
    ) -> Result<reqwest::Response, RegistryError>
    where
        F: Fn() -> Result<reqwest::RequestBuilder, RegistryError>,
    {
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        loop {
            let authorization = self.authorization(scopes).await?;
            let mut builder = make()?;
            if let Some(value) = &authorization {
                builder = builder.header(header::AUTHORIZATION, value);
            }
            let request = builder.build().map_err(|e| RegistryError::BadResponse {
                what: "building a request".to_string(),
                reason: e.to_string(),
            })?;
            let (method, url) = (request.method().clone(), request.url().clone());
            let last_attempt = !retry || attempt + 1 >= self.options.retry.attempts;
            match self.http.execute(request).await {
                Ok(response)
                    if response.status() == StatusCode::UNAUTHORIZED && !reauthenticated =>
                {
                    reauthenticated = true;
                    let challenges = challenges_of(response.headers())?;
                    if !self
                        .authenticate(&challenges, scopes, authorization.is_some())
                        .await?
                    {
                        return Ok(response);
                    }
                }
                Ok(response)
                    if is_transient_status(response.status().as_u16()) && !last_attempt =>
                {
                    tracing::debug!(%url, status = %response.status(), attempt, "retrying");
                    tokio::time::sleep(self.options.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Ok(response) => return Ok(response),
                Err(source) if is_transient_http(&source) && !last_attempt => {
                    tracing::debug!(%url, error = %source, attempt, "retrying");
                    tokio::time::sleep(self.options.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(source) => {
                    return Err(http_error(method, url.as_str(), &source));
                }
            }
        }
    }

    /// The `Authorization` header for a request needing `scopes`, fetching a fresh token when
    /// the one we hold expired.
    async fn authorization(&self, scopes: &[String]) -> Result<Option<String>, RegistryError> {
        let mut state = self.auth.lock().await;
        let challenge = match &state.mode {
            AuthMode::Anonymous => return Ok(None),
            AuthMode::Basic => {
                return Ok(self.options.credentials.as_ref().map(auth::basic_header));
            }
            AuthMode::Bearer(challenge) => challenge.clone(),
        };
        let key = scope_key(scopes);
        if let Some(token) = state.tokens.get(&key).filter(|t| t.is_fresh()) {
            return Ok(Some(format!("Bearer {}", token.value)));
        }
        let token = self.token_for(&challenge, scopes).await?;
        let value = format!("Bearer {}", token.value);
        state.tokens.insert(key, token);
        Ok(Some(value))
    }

    /// Adopts the registry's challenge; tells whether the request is worth sending again.
    async fn authenticate(
        &self,
        challenges: &[Challenge],
        scopes: &[String],
        sent_credentials: bool,
    ) -> Result<bool, RegistryError> {
        let mut state = self.auth.lock().await;
        if let Some(mut bearer) = pick_bearer(challenges) {
            let mut wanted: Vec<String> = scopes.to_vec();
            // The challenge may name a scope we did not think of (e.g. a catalog request).
            if let Some(extra) = bearer.scope.take()
                && !wanted.contains(&extra)
            {
                wanted.push(extra);
            }
            let token = self.token_for(&bearer, &wanted).await?;
            state.tokens.insert(scope_key(scopes), token);
            state.mode = AuthMode::Bearer(bearer);
            return Ok(true);
        }
        if challenges
            .iter()
            .any(|c| matches!(c, Challenge::Basic { .. }))
        {
            // Refused although we sent the password: sending it again will not help.
            let refused = sent_credentials && matches!(state.mode, AuthMode::Basic);
            if self.options.credentials.is_none() || refused {
                return Ok(false);
            }
            state.mode = AuthMode::Basic;
            return Ok(true);
        }
        Ok(false)
    }

    async fn token_for(
        &self,
        challenge: &BearerChallenge,
        scopes: &[String],
    ) -> Result<Token, RegistryError> {
        if challenge.realm.is_empty() {
            return Err(AuthError::MissingRealm {
                registry: self.registry.clone(),
            }
            .into());
        }
        auth::fetch_token(
            &self.http,
            &self.options.policy,
            challenge,
            scopes,
            self.options.credentials.as_ref(),
        )
        .await
        .map_err(|e| match e {
            AuthError::TokenDenied {
                status: 401, body, ..
            } if self.options.credentials.is_some() => RegistryError::BadCredentials {
                registry: self.registry.clone(),
                detail: body,
            },
            other => other.into(),
        })
    }

    /// Turns an error status into a [`RegistryError`] naming `what` was asked for.
    async fn check(
        &self,
        response: reqwest::Response,
        method: &Method,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            return Ok(response);
        }
        let url = response.url().to_string();
        let body = response.bytes().await.unwrap_or_default();
        let detail = error_detail(status, &body);
        let registry = self.registry.clone();
        let what = what.to_string();
        let bearer = matches!(self.auth.lock().await.mode, AuthMode::Bearer(_));
        let has_credentials = self.options.credentials.is_some();
        Err(match status {
            // With a token, 401 means the token does not grant this repository.
            StatusCode::UNAUTHORIZED if bearer && has_credentials => RegistryError::Denied {
                registry,
                what,
                detail,
            },
            StatusCode::UNAUTHORIZED if has_credentials => {
                RegistryError::BadCredentials { registry, detail }
            }
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized { registry, detail },
            StatusCode::FORBIDDEN => RegistryError::Denied {
                registry,
                what,
                detail,
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                registry,
                what,
                detail,
            },
            _ => RegistryError::Status {
                method: method.clone(),
                url,
                status: status.as_u16(),
                detail,
            },
        })
    }

    // ---- manifests ----

    /// Fetches a manifest or index by tag or digest, verifying its digest.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self
            .url(&format!("v2/{repository}/manifests/{reference}"))
            .await?;
        let what = format!("manifest {repository}:{reference}");
        let scopes = [pull_scope(repository)];
        let response = self
            .send(&scopes, true, || {
                Ok(self
                    .http
                    .get(url.clone())
                    .header(header::ACCEPT, manifest_accept()))
            })
            .await?;
        let response = self.check(response, &Method::GET, &what).await?;
        let header_digest = header_str(response.headers(), "docker-content-digest");
        let content_type = header_str(response.headers(), header::CONTENT_TYPE.as_str());
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, &what).await?;
        let actual = Digest::of(&bytes).to_string();
        // A digest reference is the strongest claim; otherwise trust the header if sha256.
        // Tags cannot contain `:`, digests always do.
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected,
                actual,
            });
        }
        let media_type = content_type
            .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|ct| is_manifest_type(ct))
            .or_else(|| embedded_media_type(&bytes))
            .ok_or_else(|| RegistryError::BadResponse {
                what: what.clone(),
                reason: "unknown manifest media type".to_string(),
            })?;
        Ok(FetchedManifest {
            media_type,
            digest: actual,
            bytes,
        })
    }

    /// `HEAD` a manifest: `None` when the registry does not have it.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let url = self
            .url(&format!("v2/{repository}/manifests/{reference}"))
            .await?;
        let scopes = [pull_scope(repository)];
        let response = self
            .send(&scopes, true, || {
                Ok(self
                    .http
                    .head(url.clone())
                    .header(header::ACCEPT, manifest_accept()))
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let what = format!("manifest {repository}:{reference}");
        let response = self.check(response, &Method::HEAD, &what).await?;
        let headers = response.headers();
        Ok(Some(ManifestHead {
            digest: header_str(headers, "docker-content-digest"),
            media_type: header_str(headers, header::CONTENT_TYPE.as_str()),
            size: header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|s| s.parse().ok()),
        }))
    }

    /// Uploads a manifest under a tag or digest; returns its digest, checked against the one
    /// the registry computed.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, RegistryError> {
        let url = self
            .url(&format!("v2/{repository}/manifests/{reference}"))
            .await?;
        let what = format!("manifest {repository}:{reference}");
        let scopes = [push_scope(repository)];
        let digest = Digest::of(&bytes).to_string();
        let response = self
            .send(&scopes, true, || {
                Ok(self
                    .http
                    .put(url.clone())
                    .header(header::CONTENT_TYPE, media_type)
                    .body(bytes.clone()))
            })
            .await?;
        let response = self.check(response, &Method::PUT, &what).await?;
        if let Some(theirs) = header_str(response.headers(), "docker-content-digest")
            && theirs != digest
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest,
                actual: theirs,
            });
        }
        Ok(digest)
    }

    // ---- blobs ----

    /// `HEAD` a blob: its size when the registry has it.
    pub async fn blob_exists(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<u64>, RegistryError> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}")).await?;
        let scopes = [pull_scope(repository)];
        let response = self
            .send(&scopes, true, || Ok(self.http.head(url.clone())))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let what = format!("blob {digest}");
        let response = self.check(response, &Method::HEAD, &what).await?;
        Ok(Some(
            header_str(response.headers(), header::CONTENT_LENGTH.as_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// Starts downloading a blob at `offset` (a `Range` request when non-zero). Redirects to
    /// storage backends are followed; the body is NOT verified here.
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &str,
        offset: u64,
    ) -> Result<BlobDownload, RegistryError> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}")).await?;
        let scopes = [pull_scope(repository)];
        let response = self
            .send(&scopes, true, || {
                let mut request = self.http.get(url.clone());
                if offset > 0 {
                    request = request.header(header::RANGE, format!("bytes={offset}-"));
                }
                Ok(request)
            })
            .await?;
        if offset > 0 && response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            // We already have every byte (or more than exists): start over from zero.
            return Box::pin(self.get_blob(repository, digest, 0)).await;
        }
        let what = format!("blob {digest}");
        let response = self.check(response, &Method::GET, &what).await?;
        let length = response.content_length();
        if response.status() == StatusCode::PARTIAL_CONTENT {
            let start = header_str(response.headers(), header::CONTENT_RANGE.as_str())
                .and_then(|r| parse_content_range_start(&r));
            if start != Some(offset) {
                return Err(RegistryError::BadResponse {
                    what,
                    reason: format!("asked for bytes from {offset}, got range start {start:?}"),
                });
            }
            return Ok(BlobDownload {
                offset,
                total: length.map(|l| l + offset),
                response,
            });
        }
        Ok(BlobDownload {
            offset: 0,
            total: length,
            response,
        })
    }

    /// Fetches a small blob (an image config) whole, verifying its digest.
    pub async fn get_blob_bytes(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Bytes, RegistryError> {
        let what = format!("blob {digest}");
        let download = self.get_blob(repository, digest, 0).await?;
        let bytes = read_limited(download.response, MAX_INLINE_BLOB_BYTES as usize, &what).await?;
        let actual = Digest::of(&bytes).to_string();
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Pushes one blob into `repository`: nothing when the registry has it, a
    /// cross-repository mount when that works, otherwise an upload. A failed upload is started
    /// again from scratch a few times.
    pub async fn push_blob(
        &self,
        repository: &str,
        blob: &BlobUpload<'_>,
    ) -> Result<BlobPushOutcome, RegistryError> {
        let digest = blob.digest;
        if self.blob_exists(repository, digest).await?.is_some() {
            return Ok(BlobPushOutcome::AlreadyExists);
        }
        let mut attempt = 0;
        loop {
            let result = async {
                let session = match blob.mount_from.filter(|from| *from != repository) {
                    Some(from) => match self.mount_blob(repository, digest, from).await? {
                        None => return Ok(BlobPushOutcome::Mounted),
                        Some(location) => location,
                    },
                    None => self.start_upload(repository).await?,
                };
                match blob.mode {
                    UploadMode::Monolithic => {
                        self.upload_monolithic(repository, session, blob).await?
                    }
                    UploadMode::Chunked { chunk_size } => {
                        self.upload_chunked(repository, session, blob, chunk_size)
                            .await?
                    }
                }
                Ok::<_, RegistryError>(BlobPushOutcome::Uploaded)
            }
            .await;
            match result {
                Err(e) if e.is_transient() && attempt + 1 < self.options.retry.attempts => {
                    tokio::time::sleep(self.options.retry.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `POST …/blobs/uploads/?mount=&from=`: `None` when mounted, otherwise the upload
    /// session the registry opened instead.
    async fn mount_blob(
        &self,
        repository: &str,
        digest: &str,
        from: &str,
    ) -> Result<Option<Url>, RegistryError> {
        let mut url = self.url(&format!("v2/{repository}/blobs/uploads/")).await?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let scopes = [push_scope(repository), pull_scope(from)];
        let response = self
            .send(&scopes, true, || Ok(self.http.post(url.clone())))
            .await?;
        let what = format!("blob {digest} (mount from {from})");
        let response = self.check(response, &Method::POST, &what).await?;
        match response.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.location(&response, &what)?)),
            other => Err(RegistryError::BadResponse {
                what,
                reason: format!("unexpected HTTP {other} to a mount request"),
            }),
        }
    }

    async fn start_upload(&self, repository: &str) -> Result<Url, RegistryError> {
        let url = self.url(&format!("v2/{repository}/blobs/uploads/")).await?;
        let scopes = [push_scope(repository)];
        let response = self
            .send(&scopes, true, || Ok(self.http.post(url.clone())))
            .await?;
        let what = format!("upload to {repository}");
        let response = self.check(response, &Method::POST, &what).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(RegistryError::BadResponse {
                what,
                reason: format!("expected 202 Accepted, got {}", response.status()),
            });
        }
        self.location(&response, &what)
    }

    async fn upload_monolithic(
        &self,
        repository: &str,
        mut session: Url,
        blob: &BlobUpload<'_>,
    ) -> Result<(), RegistryError> {
        let BlobUpload {
            digest,
            size,
            path,
            counter,
            ..
        } = blob;
        session.query_pairs_mut().append_pair("digest", digest);
        let scopes = [push_scope(repository)];
        let display = path.display().to_string();
        // Never repeated blindly: a half-sent body may be in the session.
        let response = self
            .send(&scopes, false, || {
                let file = std::fs::File::open(path).map_err(|source| RegistryError::Io {
                    path: display.clone(),
                    source,
                })?;
                let stream = tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(file),
                    256 << 10,
                );
                let counter = counter.clone();
                let stream = stream.inspect_ok(move |chunk: &Bytes| {
                    if let Some(c) = &counter {
                        c(chunk.len() as u64);
                    }
                });
                Ok(self
                    .http
                    .put(session.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, *size)
                    .body(reqwest::Body::wrap_stream(stream)))
            })
            .await?;
        self.finish_upload(response, digest).await
    }

    async fn upload_chunked(
        &self,
        repository: &str,
        mut session: Url,
        blob: &BlobUpload<'_>,
        chunk_size: usize,
    ) -> Result<(), RegistryError> {
        let BlobUpload {
            digest,
            size,
            path,
            ref counter,
            ..
        } = *blob;
        let scopes = [push_scope(repository)];
        let display = path.display().to_string();
        let io_err = |source| RegistryError::Io {
            path: display.clone(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io_err)?;
        let chunk_size = chunk_size.max(1);
        let mut sent = 0u64;
        while sent < size {
            let want = chunk_size.min((size - sent) as usize);
            let mut chunk = vec![0u8; want];
            file.read_exact(&mut chunk).await.map_err(io_err)?;
            let chunk = Bytes::from(chunk);
            let end = sent + want as u64 - 1;
            let response = self
                .send(&scopes, false, || {
                    Ok(self
                        .http
                        .patch(session.clone())
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_RANGE, format!("{sent}-{end}"))
                        .header(header::CONTENT_LENGTH, want)
                        .body(chunk.clone()))
                })
                .await?;
            let what = format!("chunk {sent}-{end} of blob {digest}");
            let response = self.check(response, &Method::PATCH, &what).await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(RegistryError::BadResponse {
                    what,
                    reason: format!("expected 202 Accepted, got {}", response.status()),
                });
            }
            session = self.location(&response, &what)?;
            sent += want as u64;
            if let Some(c) = counter {
                c(want as u64);
            }
        }
        session.query_pairs_mut().append_pair("digest", digest);
        let response = self
            .send(&scopes, false, || {
                Ok(self
                    .http
                    .put(session.clone())
                    .header(header::CONTENT_LENGTH, 0))
            })
            .await?;
        self.finish_upload(response, digest).await
    }

    async fn finish_upload(
        &self,
        response: reqwest::Response,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let what = format!("upload of blob {digest}");
        let response = self.check(response, &Method::PUT, &what).await?;
        if response.status() != StatusCode::CREATED {
            return Err(RegistryError::BadResponse {
                what,
                reason: format!("expected 201 Created, got {}", response.status()),
            });
        }
        if let Some(theirs) = header_str(response.headers(), "docker-content-digest")
            && theirs != digest
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: theirs,
            });
        }
        Ok(())
    }

    /// The `Location` of an upload session, resolved against the registry (it may be relative).
    fn location(&self, response: &reqwest::Response, what: &str) -> Result<Url, RegistryError> {
        let raw = header_str(response.headers(), header::LOCATION.as_str()).ok_or_else(|| {
            RegistryError::BadResponse {
                what: what.to_string(),
                reason: "no Location header".to_string(),
            }
        })?;
        response
            .url()
            .join(&raw)
            .map_err(|e| RegistryError::BadResponse {
                what: what.to_string(),
                reason: format!("bad Location {raw:?}: {e}"),
            })
    }
}

fn scope_key(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join(" ")
}

fn pick_bearer(challenges: &[Challenge]) -> Option<BearerChallenge> {
    challenges.iter().find_map(|c| match c {
        Challenge::Bearer(b) => Some(b.clone()),
        _ => None,
    })
}

fn challenges_of(headers: &HeaderMap) -> Result<Vec<Challenge>, RegistryError> {
    let mut all = Vec::new();
    for value in headers.get_all(header::WWW_AUTHENTICATE) {
        let text = value.to_str().unwrap_or_default();
        all.extend(auth::parse_challenges(text)?);
    }
    Ok(all)
}

fn manifest_accept() -> HeaderValue {
    HeaderValue::from_static(
        "application/vnd.oci.image.index.v1+json, \
         application/vnd.oci.image.manifest.v1+json, \
         application/vnd.docker.distribution.manifest.list.v2+json, \
         application/vnd.docker.distribution.manifest.v2+json",
    )
}

pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_INDEX | OCI_MANIFEST | DOCKER_LIST | DOCKER_MANIFEST
    )
}

fn embedded_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    match probe.media_type {
        Some(t) if is_manifest_type(&t) => Some(t),
        // OCI allows leaving `mediaType` out; tell index from manifest by shape.
        None if probe.manifests.is_some() => Some(OCI_INDEX.to_string()),
        None if probe.layers.is_some() => Some(OCI_MANIFEST.to_string()),
        _ => None,
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `bytes 100-199/200` → 100.
fn parse_content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

/// The registry's own error text (`{"errors":[{"code","message"}]}`) or the status.
fn error_detail(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<Errors>(body)
        && !parsed.errors.is_empty()
    {
        return parsed
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text: String = String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(200)
        .collect();
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    }
}

async fn read_limited(
    response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Bytes, RegistryError> {
    if response.content_length().is_some_and(|l| l > limit as u64) {
        return Err(RegistryError::BadResponse {
            what: what.to_string(),
            reason: format!("larger than the {limit} byte limit"),
        });
    }
    let url = response.url().to_string();
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| http_error(Method::GET, &url, &e))?
    {
        if out.len() + chunk.len() > limit {
            return Err(RegistryError::BadResponse {
                what: what.to_string(),
                reason: format!("larger than the {limit} byte limit"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0), Duration::from_millis(200));
        assert_eq!(p.delay(1), Duration::from_millis(400));
        assert_eq!(p.delay(10), Duration::from_secs(5));
        assert_eq!(p.delay(40), Duration::from_secs(5));
    }

    #[test]
    fn content_range_start_parses() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(parse_content_range_start("items 1-2"), None);
    }

    #[test]
    fn registry_error_bodies_become_one_line() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            error_detail(StatusCode::NOT_FOUND, body),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(
            error_detail(StatusCode::BAD_GATEWAY, b""),
            "HTTP 502 Bad Gateway"
        );
    }

    #[test]
    fn media_type_is_guessed_from_shape_when_absent() {
        assert_eq!(
            embedded_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(
            embedded_media_type(br#"{"schemaVersion":2,"config":{},"layers":[]}"#).as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            embedded_media_type(format!(r#"{{"mediaType":"{DOCKER_LIST}"}}"#).as_bytes())
                .as_deref(),
            Some(DOCKER_LIST)
        );
        assert_eq!(embedded_media_type(b"[]"), None);
    }

    #[test]
    fn scope_keys_ignore_order() {
        let a = scope_key(&["b".to_string(), "a".to_string()]);
        let b = scope_key(&["a".to_string(), "b".to_string()]);
        assert_eq!(a, b);
    }
}
