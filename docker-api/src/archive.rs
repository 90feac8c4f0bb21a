//! `HEAD/GET/PUT /containers/{id}/archive?path=…` (what `docker cp` uses): a path inside
//! the container is resolved on the host — in the container's root filesystem (berth's
//! overlay mount), or in the host source of a bind or volume mounted over it — following
//! symlinks as the container would see them and never leaving that root. GET streams a tar
//! of it with Docker's `X-Docker-Container-Path-Stat` header; PUT unpacks a tar into a
//! directory. Paths under `/proc`, `/sys` or `/dev` are not reachable this way.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use berth_node_agent::container::Record;
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use crate::backend::{Backend, blocking};
use crate::error::{ApiError, ApiResult};
use crate::http::{self, Query, Reply};

const MAX_LINKS: usize = 40;

/// Resolves absolute container path `inside` under `root`, following symlinks (relative to
/// `root` for absolute targets) for every component except, unless `follow_last`, the last.
pub fn resolve_in_root(root: &Path, inside: &str, follow_last: bool) -> Option<PathBuf> {
    let mut todo: Vec<String> = Path::new(inside)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .rev()
        .collect();
    let mut parts: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        let mut p = root.to_path_buf();
        p.extend(&parts);
        p.push(&c);
        let last = todo.is_empty();
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() && (!last || follow_last) => {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = std::fs::read_link(&p).ok()?;
                if target.is_absolute() {
                    parts.clear();
                }
                for t in target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    todo.push(t);
                }
            }
            _ => parts.push(c),
        }
    }
    let mut p = root.to_path_buf();
    p.extend(&parts);
    Some(p)
}

/// The host path for container path `inside`: the mount covering it (longest destination
/// first), else the root filesystem.
fn host_path(b: &Backend, r: &Record, inside: &str, follow_last: bool) -> ApiResult<PathBuf> {
    let clean = format!("/{}", inside.trim_start_matches('/'));
    let mut mounts: Vec<_> = r.mounts.iter().collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.destination.len()));
    for m in mounts {
        let dest = m.destination.trim_end_matches('/');
        if let Some(rest) = clean.strip_prefix(dest) {
            if rest.is_empty() || rest.starts_with('/') {
                let root = PathBuf::from(&m.source);
                if root.is_file() {
                    return Ok(root);
                }
                return resolve_in_root(&root, rest, follow_last)
                    .ok_or_else(|| ApiError::bad_request("too many levels of symbolic links"));
            }
        }
    }
    let root = b.containers.rootfs_of(&r.id)?;
    resolve_in_root(&root, &clean, follow_last)
        .ok_or_else(|| ApiError::bad_request("too many levels of symbolic links"))
}

/// Go's `os.FileMode` bits, which the docker CLI decodes from the stat header.
fn go_mode(m: &std::fs::Metadata) -> u32 {
    let ft = m.file_type();
    let mut mode = m.mode() & 0o777;
    if ft.is_dir() {
        mode |= 1 << 31;
    } else if ft.is_symlink() {
        mode |= 1 << 27;
    }
    mode
}

fn stat_header(path: &Path, inside: &str) -> ApiResult<String> {
    let m = std::fs::symlink_metadata(path).map_err(|_| {
        ApiError::not_found(format!("Could not find the file {inside} in container"))
    })?;
    let name = Path::new(inside)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let link = std::fs::read_link(path)
        .map(|l| l.display().to_string())
        .unwrap_or_default();
    let mtime = m
        .modified()
        .map(berth_shim::time::format_rfc3339)
        .unwrap_or_default();
    let v = json!({"name": name, "size": m.len(), "mode": go_mode(&m), "mtime": mtime, "linkTarget": link});
    Ok(base64::engine::general_purpose::STANDARD.encode(v.to_string()))
}

async fn resolve_record(b: &Arc<Backend>, q_id: &str) -> ApiResult<Record> {
    let b2 = b.clone();
    let q = q_id.to_string();
    blocking(move || Ok(b2.containers.resolve(&q)?)).await
}

fn path_param(q: &Query) -> ApiResult<String> {
    q.get("path")
        .map(String::from)
        .ok_or_else(|| ApiError::bad_request("path is required"))
}

pub async fn stat(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve_record(b, q_id).await?;
    let inside = path_param(q)?;
    let path = host_path(b, &r, &inside, false)?;
    let header = stat_header(&path, &inside)?;
    Response::builder()
        .status(StatusCode::OK)
        .header("X-Docker-Container-Path-Stat", header)
        .body(http::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

pub async fn get(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve_record(b, q_id).await?;
    let inside = path_param(q)?;
    // `dir/.` copies the content of dir; a trailing `/` follows a final symlink
    let follow = inside.ends_with('/') || inside.ends_with("/.");
    let path = host_path(b, &r, &inside, follow)?;
    let header = stat_header(&path, &inside)?;
    let name = Path::new(inside.trim_end_matches("/.").trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    let (tx, body) = http::channel();
    tokio::task::spawn_blocking(move || {
        struct Sink(mpsc::Sender<Bytes>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(Bytes::copy_from_slice(buf))
                    .map_err(|_| std::io::Error::other("client went away"))?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(64 * 1024, Sink(tx)));
        tar.follow_symlinks(false);
        let meta = std::fs::symlink_metadata(&path);
        let res = match meta {
            Ok(m) if m.is_dir() => tar.append_dir_all(&name, &path),
            Ok(_) => tar.append_path_with_name(&path, &name),
            Err(e) => Err(e),
        };
        if res.is_ok() {
            let _ = tar.into_inner().and_then(|mut w| w.flush());
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .header("X-Docker-Container-Path-Stat", header)
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Unpacks the tar at `tar_path` into directory `path` of the container.
pub async fn put(b: &Arc<Backend>, q_id: &str, q: &Query, tar_path: PathBuf) -> ApiResult<Reply> {
    let r = resolve_record(b, q_id).await?;
    let inside = path_param(q)?;
    let dir = host_path(b, &r, &inside, true)?;
    blocking(move || {
        let result = (|| {
            if !dir.is_dir() {
                return Err(ApiError::not_found(format!(
                    "Could not find the file {inside} in container (or it is not a directory)"
                )));
            }
            let f = std::fs::File::open(&tar_path)
                .map_err(|e| ApiError::internal(format!("{}: {e}", tar_path.display())))?;
            let mut archive = tar::Archive::new(f);
            archive.set_preserve_permissions(true);
            archive.set_preserve_ownerships(true);
            archive.set_overwrite(true);
            archive
                .unpack(&dir)
                .map_err(|e| ApiError::bad_request(format!("extracting into {inside}: {e}")))
        })();
        let _ = std::fs::remove_file(&tar_path);
        result
    })
    .await?;
    Ok(http::status_only(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("etc/real")).unwrap();
        symlink("/etc/real", root.join("abs")).unwrap();
        symlink("../../../../..", root.join("etc/up")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/abs/x", false).unwrap(),
            root.join("etc/real/x")
        );
        assert_eq!(
            resolve_in_root(root, "/etc/up/passwd", false).unwrap(),
            root.join("passwd")
        );
        assert_eq!(
            resolve_in_root(root, "/../../etc", false).unwrap(),
            root.join("etc")
        );
        assert_eq!(
            resolve_in_root(root, "/abs", false).unwrap(),
            root.join("abs")
        );
        assert_eq!(
            resolve_in_root(root, "/abs", true).unwrap(),
            root.join("etc/real")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, "/loop/x", false).is_none());
    }
}
