//! The contents of a Compose app's secrets and configs, read where the user runs `berth up`
//! (a `file:` on this machine, an `environment:` variable of this process, a config's inline
//! `content:`), for the daemon to seal. External ones are left to the cluster.

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use berth_spec::App;
use berth_spec::model::FileObject;

/// `secrets/<key>` and `configs/<key>` → content.
pub fn collect(app: &App) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    for (kind, map) in [("secrets", &app.secrets), ("configs", &app.configs)] {
        for (key, object) in map {
            if let Some(content) = read(kind, key, object)? {
                out.insert(format!("{kind}/{key}"), content);
            }
        }
    }
    Ok(out)
}

fn read(kind: &str, key: &str, object: &FileObject) -> anyhow::Result<Option<Vec<u8>>> {
    let what = &kind[..kind.len() - 1];
    if let Some(path) = &object.file {
        return std::fs::read(path)
            .with_context(|| format!("{what} {key}: reading {path}"))
            .map(Some);
    }
    if let Some(var) = &object.environment {
        return match std::env::var_os(var) {
            Some(value) => Ok(Some(value.into_encoded_bytes())),
            None => bail!("{what} {key}: the environment variable {var} is not set"),
        };
    }
    if let Some(content) = &object.content {
        return Ok(Some(content.clone().into_bytes()));
    }
    Ok(None)
}
