//! The build cache: the state after each step, stored under
//! `<data-root>/build/cache/<key>.json`, where the key chains the parent state's key with
//! the step (the instruction after variable expansion, the build args in scope for a
//! `RUN`, and the content hash of the files a `COPY`/`ADD` takes) — as BuildKit keys its
//! cache, so an unchanged step hits and a changed file invalidates only from its `COPY` on.
//!
//! Records are written atomically (temp file + rename) and read back only if every layer
//! blob they name is still in the store: content freed by `berth image prune` makes an
//! entry a miss, never a broken image. Must not touch the image store.

use std::fs;
use std::path::{Path, PathBuf};

use berth_image::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::layer::Layer;
use crate::{BuildError, io_err};

/// A build state: what an image made from it would hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The cache key of this state.
    pub key: String,
    pub layers: Vec<Layer>,
    /// The OCI config's `config` object (Env, Cmd, WorkingDir, …).
    pub config: Value,
    /// The OCI config's `history`.
    pub history: Vec<Value>,
    pub os: String,
    pub architecture: String,
}

/// The key of the state after a step: sha256 of the parent key and the step's description.
pub fn chain(parent: &str, step: &str) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update(b"\n");
    h.update(step.as_bytes());
    hex::encode(h.finalize())
}

/// The cache directory of a data root.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(data_root: &Path) -> Result<Cache, BuildError> {
        let dir = data_root.join("build").join("cache");
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(Cache { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The cached state for `key`, if present and all its layers are still stored.
    pub fn get(&self, store: &Store, key: &str) -> Option<State> {
        let bytes = fs::read(self.path(key)).ok()?;
        let state: State = serde_json::from_slice(&bytes).ok()?;
        if state.key != key || !state.layers.iter().all(|l| store.has_blob(&l.blob)) {
            return None;
        }
        Some(state)
    }

    pub fn put(&self, state: &State) -> Result<(), BuildError> {
        let path = self.path(&state.key);
        let tmp = self.dir.join(format!(".{}", crate::layer::unique("tmp-")));
        let bytes = serde_json::to_vec(state).map_err(|e| BuildError::Internal(e.to_string()))?;
        fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            BuildError::Io {
                op: "rename",
                path: path.clone(),
                source: e,
            }
        })
    }

    /// Deletes every record; returns how many there were.
    pub fn prune(&self) -> Result<usize, BuildError> {
        let mut n = 0;
        for entry in fs::read_dir(&self.dir).map_err(io_err("read directory", &self.dir))? {
            let entry = entry.map_err(io_err("read directory", &self.dir))?;
            if fs::remove_file(entry.path()).is_ok()
                && entry.file_name().to_string_lossy().ends_with(".json")
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain_and_records_round_trip() {
        let a = chain("root", "RUN x");
        assert_ne!(a, chain("root", "RUN y"));
        assert_ne!(a, chain("other", "RUN x"));
        assert_eq!(a, chain("root", "RUN x"));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("image")).unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let state = State {
            key: a.clone(),
            layers: vec![],
            config: serde_json::json!({"Env": ["A=1"]}),
            history: vec![],
            os: "linux".into(),
            architecture: "amd64".into(),
        };
        assert!(cache.get(&store, &a).is_none());
        cache.put(&state).unwrap();
        assert_eq!(cache.get(&store, &a), Some(state.clone()));
        // A record whose layer blob is gone is a miss.
        let mut broken = state;
        broken.key = chain(&a, "COPY");
        broken.layers.push(Layer {
            diff_id: berth_image::Digest::of(b"x"),
            blob: berth_image::Digest::of(b"y"),
            size: 1,
            media_type: "m".into(),
        });
        cache.put(&broken).unwrap();
        assert!(cache.get(&store, &broken.key).is_none());
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.prune().unwrap(), 2);
        assert!(cache.is_empty());
    }
}
