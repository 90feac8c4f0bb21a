//! Which scheme a registry is spoken to with: HTTPS always, and plain HTTP as a fallback only
//! for loopback registries (127.0.0.0/8, ::1, `localhost`) or registries the user explicitly
//! marked insecure (`--insecure-registry`, `BERTH_INSECURE_REGISTRIES`).
//!
//! Rules only; it must not open connections. Docker Hub's API endpoint mapping and the
//! per-registry CA directories (`certs.d`) live here too: they also answer "how do we reach
//! this registry".

use std::net::IpAddr;
use std::path::PathBuf;

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

    /// Base URLs of the registry API (`scheme://host[:port]/`) to try, in order, for a
    /// registry name as it appears in references: HTTPS, then plain HTTP where allowed (as
    /// Docker does for loopback and insecure registries).
    pub fn endpoints(&self, registry: &str) -> Result<Vec<reqwest::Url>, url::ParseError> {
        let api_host = if registry == DOCKER_HUB || registry == "index.docker.io" {
            DOCKER_HUB_API
        } else {
            registry
        };
        let mut out = vec![reqwest::Url::parse(&format!("https://{api_host}/"))?];
        if self.allows_plain_http(api_host) {
            out.push(reqwest::Url::parse(&format!("http://{api_host}/"))?);
        }
        Ok(out)
    }
}

/// Directories holding extra CA certificates per registry, Docker's `certs.d` layout
/// (`<dir>/<host[:port]>/*.crt`): berth's own (`$BERTH_CONFIG/certs.d`, default
/// `~/.berth/certs.d`, and `/etc/berth/certs.d`), then Docker's `/etc/docker/certs.d`.
pub fn default_certs_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("BERTH_CONFIG") {
        dirs.push(PathBuf::from(dir).join("certs.d"));
    } else if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".berth/certs.d"));
    }
    dirs.push(PathBuf::from("/etc/berth/certs.d"));
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    dirs
}

/// The PEM files (`*.crt`) under `<dir>/<host>/` for each of `dirs`, sorted.
pub fn ca_files(dirs: &[PathBuf], host: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(host)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|ext| ext == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
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
    fn endpoints_try_https_then_plain_http_where_allowed() {
        let policy = TransportPolicy::new(["reg.lan"]);
        let urls = |r: &str| -> Vec<String> {
            policy
                .endpoints(r)
                .unwrap()
                .iter()
                .map(|u| u.to_string())
                .collect()
        };
        assert_eq!(urls("docker.io"), ["https://registry-1.docker.io/"]);
        assert_eq!(
            urls("127.0.0.1:5000"),
            ["https://127.0.0.1:5000/", "http://127.0.0.1:5000/"]
        );
        assert_eq!(urls("reg.lan"), ["https://reg.lan/", "http://reg.lan/"]);
        assert_eq!(urls("ghcr.io"), ["https://ghcr.io/"]);
    }

    #[test]
    fn ca_files_follow_the_certs_d_layout() {
        let dir = tempfile::tempdir().unwrap();
        let host_dir = dir.path().join("reg.lan:5000");
        std::fs::create_dir_all(&host_dir).unwrap();
        for name in ["b.crt", "a.crt", "client.key", "client.cert"] {
            std::fs::write(host_dir.join(name), "x").unwrap();
        }
        let dirs = vec![dir.path().to_path_buf(), dir.path().join("missing")];
        assert_eq!(
            ca_files(&dirs, "reg.lan:5000"),
            vec![host_dir.join("a.crt"), host_dir.join("b.crt")]
        );
        assert!(ca_files(&dirs, "other").is_empty());
    }
}
