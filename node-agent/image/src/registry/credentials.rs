//! Registry credentials on disk, in Docker's `config.json` format.
//!
//! berth keeps its own file (`$BERTH_CONFIG/config.json`, default `~/.berth/config.json`),
//! written atomically with mode 0600, and also reads Docker's
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`) so an existing
//! `docker login` works. Only `auths.<host>.auth` (base64 `user:pass`) is understood;
//! credential helpers (`credsStore`, `credHelpers`) are not run. It never writes Docker's file
//! and never touches the network.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

/// The key Docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid config file: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no home directory: set HOME or BERTH_CONFIG")]
    NoHome,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where credentials are read from and written to.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    /// berth's own file: read first, the only one written.
    pub path: PathBuf,
    /// Docker's file, read when berth's has nothing for a registry.
    pub docker_path: Option<PathBuf>,
}

impl CredentialStore {
    /// Paths from `BERTH_CONFIG`, `DOCKER_CONFIG` and `HOME`.
    pub fn from_env() -> Result<Self, CredentialsError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let berth_dir = match std::env::var_os("BERTH_CONFIG") {
            Some(dir) => PathBuf::from(dir),
            None => home
                .as_ref()
                .ok_or(CredentialsError::NoHome)?
                .join(".berth"),
        };
        let docker_dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".docker")));
        Ok(Self {
            path: berth_dir.join("config.json"),
            docker_path: docker_dir.map(|d| d.join("config.json")),
        })
    }

    /// Credentials for `registry` (as named in references, e.g. `docker.io`, `host:5000`).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, CredentialsError> {
        if let Some(found) = lookup(&read_config(&self.path)?, &self.path, registry)? {
            return Ok(Some(found));
        }
        match &self.docker_path {
            Some(path) => lookup(&read_config(path)?, path, registry),
            None => Ok(None),
        }
    }

    /// Saves credentials for `registry` in berth's file (mode 0600, atomic replace), keeping
    /// every other key in it.
    pub fn save(&self, registry: &str, credentials: &Credentials) -> Result<(), CredentialsError> {
        let mut config = read_config(&self.path)?;
        let auths = auths_mut(&mut config, &self.path)?;
        // Drop older spellings of the same registry so one entry answers for it.
        auths.retain(|key, _| normalize_key(key) != normalize_key(registry));
        let raw = format!("{}:{}", credentials.username, credentials.password);
        let mut entry = Map::new();
        entry.insert(
            "auth".to_string(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
        );
        auths.insert(config_key(registry), Value::Object(entry));
        write_atomic(&self.path, &config)
    }

    /// Removes `registry` from berth's file; tells whether there was anything to remove.
    pub fn remove(&self, registry: &str) -> Result<bool, CredentialsError> {
        let mut config = read_config(&self.path)?;
        let auths = auths_mut(&mut config, &self.path)?;
        let before = auths.len();
        auths.retain(|key, _| normalize_key(key) != normalize_key(registry));
        if auths.len() == before {
            return Ok(false);
        }
        write_atomic(&self.path, &config)?;
        Ok(true)
    }
}

/// The `auths` key Docker uses for a registry.
pub fn config_key(registry: &str) -> String {
    let normalized = normalize_key(registry);
    if normalized == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        normalized
    }
}

/// Reduces every spelling of a registry to one form: no scheme, no path, Docker Hub's
/// aliases to `docker.io`.
fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

fn read_config(path: &Path) -> Result<Value, CredentialsError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Value::Object(Map::new()));
        }
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_json::from_slice(&text).map_err(|e| CredentialsError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(CredentialsError::Parse {
            path: path.to_path_buf(),
            reason: "top level is not an object".to_string(),
        });
    }
    Ok(value)
}

fn auths_mut<'a>(
    config: &'a mut Value,
    path: &Path,
) -> Result<&'a mut Map<String, Value>, CredentialsError> {
    let root = config
        .as_object_mut()
        .ok_or_else(|| CredentialsError::Parse {
            path: path.to_path_buf(),
            reason: "top level is not an object".to_string(),
        })?;
    root.entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| CredentialsError::Parse {
            path: path.to_path_buf(),
            reason: "`auths` is not an object".to_string(),
        })
}

fn lookup(
    config: &Value,
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, CredentialsError> {
    let Some(auths) = config.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let wanted = normalize_key(registry);
    for (key, entry) in auths {
        if normalize_key(key) != wanted {
            continue;
        }
        let parse_error = |reason: &str| CredentialsError::Parse {
            path: path.to_path_buf(),
            reason: format!("auths.{key}.auth: {reason}"),
        };
        let Some(encoded) = entry.get("auth").and_then(Value::as_str) else {
            continue;
        };
        if encoded.is_empty() {
            continue;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| parse_error("not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| parse_error("not UTF-8"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| parse_error("expected user:password"))?;
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    Ok(None)
}

/// Writes to a 0600 temp file beside `path`, syncs it, renames it over `path` and syncs the
/// directory: a crash leaves either the old file or the new one, never half of one, and the
/// secret is never readable by others even for a moment.
fn write_atomic(path: &Path, config: &Value) -> Result<(), CredentialsError> {
    let write_err = |source| CredentialsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(write_err)?;
    let mut text = serde_json::to_vec_pretty(config).expect("a JSON value always serializes");
    text.push(b'\n');
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config.json"),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // `mode` is filtered by the umask and ignored for an existing file: set it explicitly.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(&text)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> CredentialStore {
        CredentialStore {
            path: dir.join("berth").join("config.json"),
            docker_path: Some(dir.join("docker").join("config.json")),
        }
    }

    fn creds(user: &str, pass: &str) -> Credentials {
        Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        }
    }

    #[test]
    fn save_writes_docker_format_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store
            .save("127.0.0.1:5000", &creds("alice", "pa:ss"))
            .unwrap();
        let meta = fs::metadata(&store.path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let json: Value = serde_json::from_slice(&fs::read(&store.path).unwrap()).unwrap();
        assert_eq!(json["auths"]["127.0.0.1:5000"]["auth"], "YWxpY2U6cGE6c3M=");
        assert_eq!(
            store.get("127.0.0.1:5000").unwrap(),
            Some(creds("alice", "pa:ss"))
        );
        // No temp file is left beside it.
        let names: Vec<_> = fs::read_dir(store.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);
    }

    #[test]
    fn save_tightens_an_existing_world_readable_file_and_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        fs::create_dir_all(store.path.parent().unwrap()).unwrap();
        fs::write(
            &store.path,
            r#"{"auths":{"other.example":{"auth":"eDp5"}},"psFormat":"table"}"#,
        )
        .unwrap();
        fs::set_permissions(&store.path, fs::Permissions::from_mode(0o644)).unwrap();
        store.save("docker.io", &creds("bob", "pw")).unwrap();
        assert_eq!(
            fs::metadata(&store.path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let json: Value = serde_json::from_slice(&fs::read(&store.path).unwrap()).unwrap();
        assert_eq!(json["psFormat"], "table");
        assert_eq!(json["auths"]["other.example"]["auth"], "eDp5");
        assert!(json["auths"][DOCKER_HUB_KEY]["auth"].is_string());
        assert_eq!(store.get("other.example").unwrap(), Some(creds("x", "y")));
    }

    #[test]
    fn docker_hub_aliases_share_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store.save("index.docker.io", &creds("u", "p")).unwrap();
        for alias in ["docker.io", "registry-1.docker.io", DOCKER_HUB_KEY] {
            assert_eq!(store.get(alias).unwrap(), Some(creds("u", "p")), "{alias}");
        }
        assert!(store.remove("docker.io").unwrap());
        assert_eq!(store.get("docker.io").unwrap(), None);
        assert!(!store.remove("docker.io").unwrap());
    }

    #[test]
    fn falls_back_to_docker_config_and_prefers_berth() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let docker = store.docker_path.clone().unwrap();
        fs::create_dir_all(docker.parent().unwrap()).unwrap();
        // Docker writes keys with a scheme for some registries.
        fs::write(
            &docker,
            r#"{"auths":{"https://reg.example:5000":{"auth":"ZG9jazpwdw=="}},"credsStore":"desktop"}"#,
        )
        .unwrap();
        assert_eq!(
            store.get("reg.example:5000").unwrap(),
            Some(creds("dock", "pw"))
        );
        store
            .save("reg.example:5000", &creds("mine", "pw2"))
            .unwrap();
        assert_eq!(
            store.get("reg.example:5000").unwrap(),
            Some(creds("mine", "pw2"))
        );
        // Docker's file is never written.
        assert!(
            fs::read_to_string(&docker)
                .unwrap()
                .contains("ZG9jazpwdw==")
        );
        assert_eq!(store.get("unknown.example").unwrap(), None);
    }

    #[test]
    fn corrupt_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        fs::create_dir_all(store.path.parent().unwrap()).unwrap();
        fs::write(&store.path, "{not json").unwrap();
        let err = store.get("x").unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("not a valid"),
            "{err}"
        );
        fs::write(&store.path, r#"{"auths":{"x":{"auth":"!!!"}}}"#).unwrap();
        let err = store.get("x").unwrap_err().to_string();
        assert!(err.contains("auths.x.auth: not base64"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let text = format!("{:?}", creds("u", "hunter2"));
        assert!(!text.contains("hunter2"));
    }
}
