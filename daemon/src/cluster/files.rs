//! Compose secrets and configs of the apps: sealed at deploy (AES-256-GCM under the
//! managers' key, like the CA key) before they enter the replicated store, so the Raft log,
//! its snapshots and every worker's replica only ever hold ciphertext; opened for a task only
//! on the node that runs it.
//!
//! - [`seal`]: one value → its sealed text, for the app's files and for stored secrets
//!   (`crate::secrets`). A lone node makes its key on first use (`cluster init` keeps it, so
//!   sealed values stay readable).
//! - [`seal_for_deploy`], [`propose_for_deploy`]: the contents the client read, plus the
//!   app's `external: true` secrets by the stored secret they name → one `SetAppFiles`
//!   command (the store copies the stored secrets' sealed values in).
//! - [`Source`]: the agent's `FileSource`. A node holding the key (a manager, a lone node)
//!   opens the values itself; a worker, which has no key, asks a manager over mutual TLS
//!   (`ClusterPeer.TaskFiles`), which answers only for a task placed on the caller
//!   ([`open_for_task`] after the assignment check in `peer.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_api::v1::TaskFilesRequest;
use berth_cluster::ManagerKey;
use berth_controller::store::{AppFiles, AppSpec, ApplyError, Command, ExternalSecret, State};
use berth_node_agent::task_files::{FileSource, TaskFiles};
use tonic::Status;

use super::Cluster;
use super::member;
use crate::controller::{Controller, ControllerError};

/// The largest content one secret or config may have (Docker's limit is 500 KiB).
pub const MAX_CONTENT: usize = 512 * 1024;

/// Seals one value (an app's secret or config, a stored secret) for the store, with the
/// size limit every value has; `what` names it in errors.
pub fn seal(data_root: &Path, what: &str, content: &[u8]) -> Result<String, Status> {
    if content.len() > MAX_CONTENT {
        return Err(Status::invalid_argument(format!(
            "{what}: {} bytes, more than {MAX_CONTENT}",
            content.len()
        )));
    }
    data_key(data_root)?
        .seal(content)
        .map_err(|e| Status::internal(format!("sealing {what}: {e}")))
}

/// The app's files for the store: what the client sent (`secrets/<key>`, `configs/<key>`)
/// sealed, and its `external: true` secrets by the stored secret they name (the store
/// copies their sealed values in). External configs are refused.
pub fn seal_for_deploy(
    data_root: &Path,
    spec: &AppSpec,
    files: HashMap<String, Vec<u8>>,
) -> Result<AppFiles, Status> {
    let mut sealed = AppFiles::default();
    for (name, content) in files {
        let (map, key_name) = match name.split_once('/') {
            Some(("secrets", k)) => (&mut sealed.secrets, k),
            Some(("configs", k)) => (&mut sealed.configs, k),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "files: {name:?} is neither secrets/<key> nor configs/<key>"
                )));
            }
        };
        map.insert(key_name.to_owned(), seal(data_root, &name, &content)?);
    }
    if spec.document.is_null() {
        return Ok(sealed);
    }
    let app: berth_spec::App = serde_json::from_value(spec.document.clone())
        .map_err(|e| Status::invalid_argument(format!("app {}: {e}", spec.name)))?;
    if let Some((key, _)) = app.configs.iter().find(|(_, c)| c.external.external) {
        return Err(Status::invalid_argument(format!(
            "config {key:?}{}: external configs are not supported (external secrets are: `berth secret create`)",
            in_files(spec)
        )));
    }
    for (key, secret) in app.secrets.iter().filter(|(_, s)| s.external.external) {
        let services = app
            .services
            .iter()
            .filter(|(_, svc)| svc.secrets.iter().any(|r| &r.source == key))
            .map(|(name, _)| name.clone())
            .collect();
        sealed.external.insert(
            key.clone(),
            ExternalSecret {
                // The loader names an external secret after its key unless `name:` says.
                name: secret.name.clone().unwrap_or_else(|| key.clone()),
                services,
            },
        );
    }
    Ok(sealed)
}

/// Seals the app's files and proposes them before its deploy (when it has some, or had);
/// a missing external secret fails here, naming it and the Compose files.
pub async fn propose_for_deploy(
    controller: &Controller,
    data_root: &Path,
    spec: &AppSpec,
    files: HashMap<String, Vec<u8>>,
) -> Result<(), Status> {
    let sealed = seal_for_deploy(data_root, spec, files)?;
    let had = controller.read(|s| s.files.contains_key(&spec.name));
    if sealed == AppFiles::default() && !had {
        return Ok(());
    }
    let command = Command::SetAppFiles {
        app: spec.name.clone(),
        files: sealed,
    };
    match controller.propose(command).await {
        Ok(_) => Ok(()),
        Err(ControllerError::Refused(ApplyError::MissingExternalSecret { key, name, .. })) => {
            Err(Status::failed_precondition(format!(
                "external secret {name:?} (secrets.{key}{}) does not exist: create it with `berth secret create {name} FILE`",
                in_files(spec)
            )))
        }
        Err(e) => Err(crate::api::status(e)),
    }
}

/// ` in <the app's Compose files>`, or nothing when unknown.
fn in_files(spec: &AppSpec) -> String {
    if spec.config_files.is_empty() {
        String::new()
    } else {
        format!(" in {}", spec.config_files.join(", "))
    }
}

/// The key that seals app files: the managers' key; a lone node makes one on first use.
fn data_key(data_root: &Path) -> Result<ManagerKey, Status> {
    let dir = member::dir(data_root);
    if let Some(key) =
        ManagerKey::load(&dir).map_err(|e| Status::internal(format!("the managers' key: {e}")))?
    {
        return Ok(key);
    }
    let in_cluster = member::Member::load(data_root)
        .map_err(|e| Status::internal(e.to_string()))?
        .is_some();
    if in_cluster {
        return Err(Status::permission_denied(
            "this node holds no managers' key to seal secrets with: run this on a manager",
        ));
    }
    let key = ManagerKey::generate().map_err(|e| Status::internal(e.to_string()))?;
    key.save(&dir)
        .map_err(|e| Status::internal(format!("saving the managers' key: {e}")))?;
    Ok(key)
}

/// The opened secrets and configs the service of task `task_id` uses.
pub fn open_for_task(state: &State, key: &ManagerKey, task_id: &str) -> Result<TaskFiles, String> {
    let task = state
        .tasks
        .get(task_id)
        .ok_or_else(|| format!("no task {task_id}"))?;
    let record = state
        .apps
        .get(&task.app)
        .ok_or_else(|| format!("no app {}", task.app))?;
    let app: berth_spec::App = serde_json::from_value(record.spec.document.clone())
        .map_err(|e| format!("app {}: {e}", task.app))?;
    let service = app
        .services
        .get(&task.service)
        .ok_or_else(|| format!("no service {} in app {}", task.service, task.app))?;
    let sealed = state.files.get(&task.app);
    let mut out = TaskFiles::default();
    for (word, refs, stored, into) in [
        (
            "secret",
            &service.secrets,
            sealed.map(|f| &f.secrets),
            &mut out.secrets,
        ),
        (
            "config",
            &service.configs,
            sealed.map(|f| &f.configs),
            &mut out.configs,
        ),
    ] {
        for r in refs {
            let text = stored
                .and_then(|m| m.get(&r.source))
                .ok_or_else(|| format!("{word} {} has no content in the cluster", r.source))?;
            let plain = key
                .open(text)
                .map_err(|e| format!("opening {word} {}: {e}", r.source))?;
            into.insert(r.source.clone(), plain);
        }
    }
    Ok(out)
}

/// The agent's source of secret and config contents on this node.
pub struct Source {
    pub cluster: Arc<Cluster>,
    pub controller: Arc<Controller>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cluster::files::Source")
    }
}

impl Source {
    fn local_key(&self) -> Option<ManagerKey> {
        if let Some(key) = self
            .cluster
            .manager_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Some(key);
        }
        // A lone node makes its key at its first deploy with secrets, after start.
        if self.cluster.member.is_none() {
            return ManagerKey::load(&member::dir(&self.cluster.data_root))
                .ok()
                .flatten();
        }
        None
    }

    async fn fetch_remote(&self, task_id: &str) -> Result<TaskFiles, String> {
        let peers = self
            .cluster
            .peers
            .as_ref()
            .ok_or("this node holds no key to open secrets")?;
        // The leader first, then every other manager.
        let leader = self.controller.status().leader;
        let mut managers: Vec<u64> = self.controller.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.role == berth_controller::store::Role::Manager && n.raft_id != 0)
                .map(|n| n.raft_id)
                .collect()
        });
        managers.sort_by_key(|id| *id != leader);
        let mut last = String::from("no manager known");
        for id in managers {
            let Some(address) = peers.address(id) else {
                continue;
            };
            let mut request = tonic::Request::new(TaskFilesRequest {
                task_id: task_id.to_owned(),
            });
            request.set_timeout(Duration::from_secs(10));
            match peers.client(address).task_files(request).await {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    return Ok(TaskFiles {
                        secrets: answer.secrets.into_iter().collect(),
                        configs: answer.configs.into_iter().collect(),
                    });
                }
                Err(status) => last = format!("{address}: {}", status.message()),
            }
        }
        Err(format!("secrets and configs of task {task_id}: {last}"))
    }
}

impl FileSource for Source {
    fn fetch<'a>(
        &'a self,
        task_id: &'a str,
        _project: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<TaskFiles, String>> + Send + 'a>> {
        Box::pin(async move {
            match self.local_key() {
                Some(key) => self.controller.read(|s| open_for_task(s, &key, task_id)),
                None => self.fetch_remote(task_id).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_sealed_and_only_a_tasks_own_files_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = HashMap::new();
        files.insert("secrets/pw".to_string(), b"hunter2".to_vec());
        files.insert("secrets/other".to_string(), b"not-for-web".to_vec());
        files.insert("configs/conf".to_string(), b"x=1".to_vec());
        let doc = serde_json::json!({
            "name": "a",
            "services": {"web": {"image": "x", "secrets": [{"source": "pw"}, {"source": "ext"}],
                                 "configs": [{"source": "conf"}]}},
            "secrets": {"pw": {"file": "/pw"}, "other": {"file": "/o"},
                        "ext": {"external": true, "name": "stored"}},
            "configs": {"conf": {"content": "x=1"}},
        });
        let app: berth_spec::App = serde_json::from_value(doc.clone()).unwrap();
        let mut spec = berth_controller::store::app_spec("a", &app, &Default::default()).unwrap();
        spec.document = doc;
        let sealed = seal_for_deploy(dir.path(), &spec, files).unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("x=1"), "{text}");
        assert_eq!(sealed.external["ext"].name, "stored");
        assert_eq!(sealed.external["ext"].services, vec!["web".to_string()]);

        let key = ManagerKey::load(&member::dir(dir.path())).unwrap().unwrap();
        let mut state = State::default();
        state
            .apply_command(Command::CreateSecret(
                berth_controller::store::StoredSecret {
                    id: "s1".into(),
                    name: "stored".into(),
                    sealed: key.seal(b"from-the-store").unwrap(),
                    ..Default::default()
                },
            ))
            .unwrap();
        state.apps.insert(
            "a".into(),
            berth_controller::store::AppRecord {
                spec,
                services: Default::default(),
            },
        );
        state
            .apply_command(Command::SetAppFiles {
                app: "a".into(),
                files: sealed,
            })
            .unwrap();
        let task = berth_controller::store::Task::new(
            "t1",
            "a",
            "web",
            "h",
            berth_controller::store::DesiredState::Running,
            0,
        );
        state.tasks.insert("t1".into(), task);
        let opened = open_for_task(&state, &key, "t1").unwrap();
        assert_eq!(opened.secrets.len(), 2, "only the secrets the service uses");
        assert_eq!(opened.secrets["pw"], b"hunter2");
        assert_eq!(opened.secrets["ext"], b"from-the-store");
        assert_eq!(opened.configs["conf"], b"x=1");
        let wrong = ManagerKey::generate().unwrap();
        assert!(open_for_task(&state, &wrong, "t1").is_err());
    }
}
