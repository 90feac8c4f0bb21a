//! Registry authentication: parsing `WWW-Authenticate` challenges and the bearer-token flow.
//!
//! Owns the pure challenge grammar (RFC 7235: several challenges in one header, quoted
//! strings with commas and escapes) and the token request against a challenge's realm
//! (distribution's token spec: `GET realm?service=…&scope=…`, basic credentials when we have
//! them, `token` or `access_token` in the answer, `expires_in`). It must not decide which
//! registry to talk to or when to retry a request: that is the client's job.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::credentials::Credentials;
use super::transport::{self, TransportPolicy};

/// The shortest lifetime the token spec allows a server to imply (`expires_in` absent).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Renew a token a little before it expires so a request never carries a stale one.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("malformed WWW-Authenticate header {header:?}: {reason}")]
    MalformedChallenge {
        header: String,
        reason: &'static str,
    },
    #[error("bearer challenge from {registry} has no realm")]
    MissingRealm { registry: String },
    #[error("invalid token realm {realm:?}: {reason}")]
    BadRealm { realm: String, reason: String },
    #[error("token request to {realm} failed: {reason}")]
    TokenRequest { realm: String, reason: String },
    #[error("token server {realm} refused the credentials (HTTP {status}): {body}")]
    TokenDenied {
        realm: String,
        status: u16,
        body: String,
    },
    #[error("token server {realm} answered without a token: {reason}")]
    BadTokenResponse { realm: String, reason: String },
}

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer(BearerChallenge),
    /// A scheme we do not speak (e.g. `Negotiate`); kept so the caller can name it.
    Other {
        scheme: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Parses every challenge in one `WWW-Authenticate` header value.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, AuthError> {
    let malformed = |reason| AuthError::MalformedChallenge {
        header: header.to_string(),
        reason,
    };
    let mut lexer = Lexer::new(header);
    let mut challenges = Vec::new();
    loop {
        lexer.skip_separators();
        if lexer.at_end() {
            break;
        }
        let scheme = lexer
            .token()
            .ok_or_else(|| malformed("expected an auth scheme"))?;
        let mut params: Vec<(String, String)> = Vec::new();
        // Right after the scheme and a space comes either a token68 credential (which we have
        // no use for) or the first `name=value`.
        if lexer.skip_spaces() && !lexer.at_end() && lexer.peek() != Some(',') {
            let name = lexer
                .token()
                .ok_or_else(|| malformed("expected a parameter"))?;
            lexer.skip_spaces();
            if lexer.eat('=') {
                if matches!(lexer.peek(), None | Some('=' | ',')) {
                    lexer.skip_token68_padding();
                } else {
                    params.push((name.to_ascii_lowercase(), lexer.value().map_err(malformed)?));
                }
            }
        }
        // Further parameters follow commas; a token not followed by `=` starts a new challenge.
        loop {
            lexer.skip_spaces();
            if lexer.at_end() {
                break;
            }
            if !lexer.eat(',') {
                return Err(malformed("expected `,` between parameters"));
            }
            lexer.skip_separators();
            let mark = lexer.pos;
            let Some(name) = lexer.token() else {
                if lexer.at_end() {
                    break;
                }
                return Err(malformed("expected a parameter name"));
            };
            lexer.skip_spaces();
            if !lexer.eat('=') {
                lexer.pos = mark;
                break;
            }
            params.push((name.to_ascii_lowercase(), lexer.value().map_err(malformed)?));
        }
        challenges.push(build_challenge(&scheme, params));
    }
    if challenges.is_empty() {
        return Err(malformed("no challenge"));
    }
    Ok(challenges)
}

fn build_challenge(scheme: &str, params: Vec<(String, String)>) -> Challenge {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Challenge::Basic {
            realm: get("realm"),
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Challenge::Bearer(BearerChallenge {
            realm: get("realm").unwrap_or_default(),
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        Challenge::Other {
            scheme: scheme.to_string(),
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }
    /// Skips blanks; tells whether there were any.
    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        self.pos > start
    }
    /// A parameter value after `=`: a quoted string or a token.
    fn value(&mut self) -> Result<String, &'static str> {
        self.skip_spaces();
        if self.peek() == Some('"') {
            self.quoted().ok_or("unterminated quoted string")
        } else {
            self.token().ok_or("expected a parameter value")
        }
    }
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | ',')) {
            self.pos += 1;
        }
    }
    fn skip_token68_padding(&mut self) {
        while self.eat('=') {}
    }
    /// RFC 7230 `token`, plus the token68 characters `/` that some servers put unquoted.
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/:".contains(c);
            if !ok {
                break;
            }
            self.pos += 1;
        }
        (self.pos > start).then(|| self.text[start..self.pos].to_string())
    }
    fn quoted(&mut self) -> Option<String> {
        if !self.eat('"') {
            return None;
        }
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.pos += c.len_utf8();
            match c {
                '"' => return Some(out),
                '\\' => {
                    let escaped = self.peek()?;
                    self.pos += escaped.len_utf8();
                    out.push(escaped);
                }
                _ => out.push(c),
            }
        }
    }
}

/// A bearer token and when it stops being usable.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: String,
    pub expires_at: Instant,
}

impl Token {
    pub fn is_fresh(&self) -> bool {
        Instant::now() + EXPIRY_MARGIN < self.expires_at
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Parses a token server's JSON answer; pure so it can be tested without a server.
pub fn parse_token_response(realm: &str, body: &[u8]) -> Result<Token, AuthError> {
    let bad = |reason: String| AuthError::BadTokenResponse {
        realm: realm.to_string(),
        reason,
    };
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| bad("neither `token` nor `access_token` is set".to_string()))?;
    // The spec's minimum is 60 s; a smaller value is treated as 60 like Docker does.
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .filter(|d| *d >= DEFAULT_TOKEN_LIFETIME)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok(Token {
        value,
        expires_at: Instant::now() + lifetime,
    })
}

/// `Authorization` value for basic credentials.
pub fn basic_header(credentials: &Credentials) -> String {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Runs the token flow: `GET realm?service=…&scope=…` with basic credentials when present.
/// An empty `scopes` asks for a token without access, which is how `login` checks a password.
pub async fn fetch_token(
    http: &reqwest::Client,
    policy: &TransportPolicy,
    challenge: &BearerChallenge,
    scopes: &[String],
    credentials: Option<&Credentials>,
) -> Result<Token, AuthError> {
    let realm = &challenge.realm;
    let mut url = reqwest::Url::parse(realm).map_err(|e| AuthError::BadRealm {
        realm: realm.clone(),
        reason: e.to_string(),
    })?;
    let host = transport::host_port(&url).ok_or_else(|| AuthError::BadRealm {
        realm: realm.clone(),
        reason: "no host".to_string(),
    })?;
    // Credentials travel to the realm: never over plain HTTP to a host the user did not allow.
    match url.scheme() {
        "https" => {}
        "http" if policy.allows_plain_http(&host) => {}
        other => {
            return Err(AuthError::BadRealm {
                realm: realm.clone(),
                reason: format!("scheme {other:?} is not allowed for {host} (https required)"),
            });
        }
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = &challenge.service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
        if let Some(c) = credentials {
            query.append_pair("account", &c.username);
        }
    }
    let mut request = http.get(url);
    if let Some(c) = credentials {
        request = request.header(reqwest::header::AUTHORIZATION, basic_header(c));
    }
    let response = request.send().await.map_err(|e| AuthError::TokenRequest {
        realm: realm.clone(),
        reason: super::client::describe_http_error(&e),
    })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| AuthError::TokenRequest {
            realm: realm.clone(),
            reason: super::client::describe_http_error(&e),
        })?;
    if !status.is_success() {
        return Err(AuthError::TokenDenied {
            realm: realm.clone(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).chars().take(200).collect(),
        });
    }
    parse_token_response(realm, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer(BearerChallenge {
            realm: realm.to_string(),
            service: service.map(str::to_string),
            scope: scope.map(str::to_string),
        })
    }

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_challenges(header).unwrap(),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/busybox:pull")
            )]
        );
    }

    #[test]
    fn parses_basic_challenge_case_insensitively() {
        assert_eq!(
            parse_challenges(r#"basic REALM="Registry Realm""#).unwrap(),
            vec![Challenge::Basic {
                realm: Some("Registry Realm".to_string())
            }]
        );
        assert_eq!(
            parse_challenges("Basic").unwrap(),
            vec![Challenge::Basic { realm: None }]
        );
    }

    #[test]
    fn quoted_commas_and_escapes_stay_inside_the_value() {
        let header = r#"Bearer realm="https://a.example/token",scope="repository:x/y:pull,push repository:z:pull",service="say \"hi\"""#;
        assert_eq!(
            parse_challenges(header).unwrap(),
            vec![bearer(
                "https://a.example/token",
                Some(r#"say "hi""#),
                Some("repository:x/y:pull,push repository:z:pull")
            )]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let header = r#"Negotiate abc123==, Basic realm="r1", Bearer realm="https://t/token", service=reg , scope="a:b:pull""#;
        assert_eq!(
            parse_challenges(header).unwrap(),
            vec![
                Challenge::Other {
                    scheme: "Negotiate".to_string()
                },
                Challenge::Basic {
                    realm: Some("r1".to_string())
                },
                bearer("https://t/token", Some("reg"), Some("a:b:pull")),
            ]
        );
    }

    #[test]
    fn unquoted_values_and_spaces_around_equals() {
        assert_eq!(
            parse_challenges("Bearer realm = https://t/token , service=reg").unwrap(),
            vec![bearer("https://t/token", Some("reg"), None)]
        );
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        for header in [
            "",
            "   ",
            r#"Bearer realm="unterminated"#,
            "Bearer a=b c",
            "=x",
            r#"Bearer realm="x" extra"#,
        ] {
            assert!(
                parse_challenges(header).is_err(),
                "{header:?} should not parse"
            );
        }
    }

    #[test]
    fn bearer_without_realm_parses_with_empty_realm() {
        assert_eq!(
            parse_challenges(r#"Bearer service="x""#).unwrap(),
            vec![bearer("", Some("x"), None)]
        );
    }

    #[test]
    fn token_response_accepts_token_or_access_token() {
        let t = parse_token_response("r", br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.value, "abc");
        assert!(t.expires_at > Instant::now() + Duration::from_secs(250));
        let t = parse_token_response("r", br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.value, "xyz");
        // Too short a lifetime is raised to the spec's minimum of 60 s.
        let t = parse_token_response("r", br#"{"token":"abc","expires_in":3}"#).unwrap();
        assert!(t.expires_at > Instant::now() + Duration::from_secs(50));
        assert!(t.is_fresh());
    }

    #[test]
    fn token_response_without_token_is_an_error() {
        assert!(matches!(
            parse_token_response("r", br#"{"token":""}"#),
            Err(AuthError::BadTokenResponse { .. })
        ));
        assert!(matches!(
            parse_token_response("r", b"not json"),
            Err(AuthError::BadTokenResponse { .. })
        ));
    }

    #[test]
    fn basic_header_encodes_user_and_password() {
        let c = Credentials {
            username: "alice".to_string(),
            password: "s3cret:x".to_string(),
        };
        assert_eq!(basic_header(&c), "Basic YWxpY2U6czNjcmV0Ong=");
    }
}
