//! A tiny token server for the bearer flow, as distribution's `auth: token` expects: it
//! checks basic credentials, grants the requested scopes (pull only when anonymous) and signs
//! an ES256 JWT whose `x5c` holds a self-signed certificate the registry trusts through its
//! `rootcertbundle`. Runs on its own thread and runtime; stopped on Drop.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

pub const SERVICE: &str = "berth-test-registry";
pub const ISSUER: &str = "berth-test-issuer";

/// One request the token server saw.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub service: Option<String>,
    pub scopes: Vec<String>,
    pub user: Option<String>,
    pub granted: bool,
}

pub struct TokenServer {
    pub addr: SocketAddr,
    pub cert_pem: String,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Signer {
    key: EcdsaKeyPair,
    cert_der_b64: String,
    user: String,
    password: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("generate a P-256 key");
        let params = rcgen::CertificateParams::new(vec!["berth-test-token".to_string()])
            .expect("certificate parameters");
        let cert = params.self_signed(&key).expect("self-sign");
        let rng = SystemRandom::new();
        let signing =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
                .expect("load key into ring");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let signer = Arc::new(Signer {
            key: signing,
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(cert.der()),
            user: user.to_string(),
            password: password.to_string(),
            seen: seen.clone(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let signer = signer.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| {
                                    let signer = signer.clone();
                                    async move { Ok::<_, Infallible>(signer.handle(req)) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        Self {
            addr,
            cert_pem: cert.pem(),
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let query = req.uri().query().unwrap_or_default().to_string();
        let mut service = None;
        let mut scopes = Vec::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "service" => service = Some(v.into_owned()),
                "scope" => scopes.push(v.into_owned()),
                _ => {}
            }
        }
        let user = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|raw| String::from_utf8(raw).ok());
        let (authenticated, user_name, bad_password) = match user {
            None => (false, None, false),
            Some(pair) => {
                let (u, p) = pair.split_once(':').unwrap_or((&pair, ""));
                let ok = u == self.user && p == self.password;
                (ok, Some(u.to_string()), !ok)
            }
        };
        self.seen.lock().unwrap().push(SeenRequest {
            service: service.clone(),
            scopes: scopes.clone(),
            user: user_name.clone(),
            granted: !bad_password,
        });
        if bad_password {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .body(Full::new(Bytes::from_static(
                    b"{\"details\":\"invalid credentials\"}",
                )))
                .unwrap();
        }
        // Anonymous clients may pull, authenticated ones may do what they ask.
        let mut access: HashMap<String, Vec<String>> = HashMap::new();
        for scope in &scopes {
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if kind != "repository" {
                continue;
            }
            let granted: Vec<String> = actions
                .split(',')
                .filter(|a| authenticated || *a == "pull")
                .map(str::to_string)
                .collect();
            access.entry(name.to_string()).or_default().extend(granted);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header =
            serde_json::json!({ "alg": "ES256", "typ": "JWT", "x5c": [self.cert_der_b64] });
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": user_name.unwrap_or_default(),
            "aud": service.unwrap_or_default(),
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", rand_suffix()),
            "access": access.into_iter().map(|(name, actions)| serde_json::json!({
                "type": "repository", "name": name, "actions": actions,
            })).collect::<Vec<_>>(),
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("sign");
        let token = format!("{signing_input}.{}", b64url(signature.as_ref()));
        let body = serde_json::json!({ "token": token, "expires_in": 300 }).to_string();
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }
}

fn rand_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes).unwrap();
    u64::from_le_bytes(bytes)
}
