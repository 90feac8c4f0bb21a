//! What a node keeps on disk about its place in a cluster, under `<data-root>/cluster/`:
//! `member.json` (its Raft id, role, advertise address, the members it knew of when it
//! joined), `tls/` (CA certificate, node certificate and key) and `manager.key` on managers.
//! No `member.json` means a lone node: berthd starts exactly as it always did.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
}

/// A peer's Raft id and cluster address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub raft_id: u64,
    pub address: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub raft_id: u64,
    /// The role this node's certificate carries (`manager` or `worker`).
    pub role: String,
    pub advertise: SocketAddr,
    /// Members known at join time, so the first messages find their way before the log
    /// catches up; afterwards addresses come from the replicated node records.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// The group's configuration when this node joined (its Raft storage starts from it).
    #[serde(default)]
    pub voters: Vec<u64>,
    #[serde(default)]
    pub learners: Vec<u64>,
}

pub fn dir(data_root: &Path) -> PathBuf {
    data_root.join("cluster")
}

pub fn tls_dir(data_root: &Path) -> PathBuf {
    dir(data_root).join("tls")
}

fn file(data_root: &Path) -> PathBuf {
    dir(data_root).join("member.json")
}

impl Member {
    pub fn load(data_root: &Path) -> Result<Option<Member>, MemberError> {
        let path = file(data_root);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(MemberError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| MemberError::Parse {
                path,
                message: e.to_string(),
            })
    }

    pub fn save(&self, data_root: &Path) -> Result<(), MemberError> {
        let path = file(data_root);
        let io = |op, path: &Path| {
            let path = path.to_owned();
            move |source| MemberError::Io { op, path, source }
        };
        std::fs::create_dir_all(dir(data_root)).map_err(io("create", &dir(data_root)))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))
    }
}

/// Moves `<data-root>/<name>` aside to `<name>.<suffix>-<seconds>` (a node that joins keeps
/// its former lone state; a node that leaves keeps its cluster state) — never deleted.
pub fn set_aside(data_root: &Path, name: &str, suffix: &str) -> Result<(), MemberError> {
    let from = data_root.join(name);
    if !from.exists() {
        return Ok(());
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = data_root.join(format!("{name}.{suffix}-{secs}"));
    std::fs::rename(&from, &to).map_err(|source| MemberError::Io {
        op: "rename",
        path: from,
        source,
    })
}

/// The Raft id of a node joining: from its id, so every manager would pick the same one;
/// never 0 (no member) nor 1 (the node that ran `cluster init`).
pub fn raft_id_for(node_id: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(node_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // Stay within JSON's exact integers for tools that read the state.
    let id = u64::from_le_bytes(bytes) >> 12;
    id.max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_round_trips_and_absent_means_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Member::load(dir.path()).unwrap(), None);
        let member = Member {
            raft_id: 7,
            role: "worker".into(),
            advertise: "10.1.0.2:4245".parse().unwrap(),
            peers: vec![Peer {
                raft_id: 1,
                address: "10.1.0.1:4245".parse().unwrap(),
            }],
            voters: vec![1],
            learners: vec![],
        };
        member.save(dir.path()).unwrap();
        assert_eq!(Member::load(dir.path()).unwrap(), Some(member));
        std::fs::write(file(dir.path()), "{").unwrap();
        assert!(
            Member::load(dir.path())
                .unwrap_err()
                .to_string()
                .contains("member.json")
        );
    }

    #[test]
    fn raft_ids_are_stable_and_never_0_or_1() {
        assert_eq!(raft_id_for("abc"), raft_id_for("abc"));
        assert_ne!(raft_id_for("abc"), raft_id_for("abd"));
        for id in ["a", "b", "node-1", "0f0f"] {
            assert!(raft_id_for(id) >= 2);
        }
    }
}
