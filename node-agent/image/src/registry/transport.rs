//! Which scheme a registry is spoken to with: HTTPS always, plain HTTP only for loopback
//! registries (127.0.0.0/8, ::1, `localhost`) or registries the user explicitly marked
//! insecure (`--insecure-registry`, `BERTH_INSECURE_REGISTRIES`).
//!
//! Pure rules only; it must not open connections. Docker Hub's API endpoint mapping lives here
//! too because it is also a question of "which URL do we talk to for this registry name".

use std::net::IpAddr;

/// The registry name references use for Docker Hub, and the host its API really lives on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Environment variable holding extra insecure registries, comma separated.
pub const INSECURE_ENV: &str = "BERTH_INSECURE_REGISTRIES";

#[derive(Debug, Clone, Default)]
pub struct TransportPolicy {
    insecure: Vec<String>,
}

impl TransportPolicy {
    /// A policy with the given insecure registries (`host` or `host:port`).
    pub fn new<I, S>(insecure: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            insecure: insecure
                .into_iter()
                .map(|s| s.into().trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// The given registries plus those named in `BERTH_INSECURE_REGISTRIES`.
    pub fn from_env_and<I, S>(extra: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut all: Vec<String> = extra.into_iter().map(Into::into).collect();
        if let Ok(value) = std::env::var(INSECURE_ENV) {
            all.extend(value.split(',').map(str::to_string));
        }
        Self::new(all)
    }

    /// May `host` (`name`, `name:port`, `[v6]:port`) be spoken to over plain HTTP?
    pub fn allows_plain_http(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if is_loopback(&host) {
            return true;
        }
        let bare = strip_port(&host);
        self.insecure
            .iter()
            .any(|entry| *entry == host || *entry == bare)
    }

    /// Base URL of the registry API (`scheme://host[:port]`), for a registry name as it
    /// appears in references.
    pub fn base_url(&self, registry: &str) -> Result<reqwest::Url, url::ParseError> {
        let api_host = if registry == DOCKER_HUB || registry == "index.docker.io" {
            DOCKER_HUB_API
        } else {
            registry
        };
        let scheme = if self.allows_plain_http(api_host) {
            "http"
        } else {
            "https"
        };
        reqwest::Url::parse(&format!("{scheme}://{api_host}/"))
    }
}

/// `host[:port]` of a URL, the way registries are named.
pub fn host_port(url: &reqwest::Url) -> Option<String> {
    let host = match url.host()? {
        url::Host::Ipv6(addr) => format!("[{addr}]"),
        other => other.to_string(),
    };
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // Exactly one colon: `name:port`. More than one without brackets is a bare IPv6.
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = strip_port(host);
    bare == "localhost"
        || bare.ends_with(".localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_may_use_plain_http() {
        let policy = TransportPolicy::default();
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(policy.allows_plain_http(host), "{host}");
        }
        for host in [
            "registry.example",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example",
        ] {
            assert!(!policy.allows_plain_http(host), "{host}");
        }
    }

    #[test]
    fn insecure_entries_match_host_or_host_and_port() {
        let policy = TransportPolicy::new(["reg.lan", "10.0.0.1:5000"]);
        assert!(policy.allows_plain_http("reg.lan"));
        assert!(policy.allows_plain_http("reg.lan:8080"));
        assert!(policy.allows_plain_http("10.0.0.1:5000"));
        assert!(!policy.allows_plain_http("10.0.0.1:5001"));
        assert!(!policy.allows_plain_http("other.lan"));
    }

    #[test]
    fn base_url_picks_scheme_and_maps_docker_hub() {
        let policy = TransportPolicy::new(["reg.lan"]);
        assert_eq!(
            policy.base_url("docker.io").unwrap().as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(
            policy.base_url("127.0.0.1:5000").unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(
            policy.base_url("reg.lan").unwrap().as_str(),
            "http://reg.lan/"
        );
        assert_eq!(
            policy.base_url("ghcr.io").unwrap().as_str(),
            "https://ghcr.io/"
        );
    }
}
