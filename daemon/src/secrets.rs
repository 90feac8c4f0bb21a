//! `berth.v1.Secrets`: secrets stored on their own (`berth secret create|ls|inspect|rm`), for
//! Compose files to use as `external: true`. A value is sealed here, with the same key and
//! limit as an app's secrets (`cluster::files::seal`), before its `CreateSecret` command is
//! proposed (forwarded to the leader like any write); it is never returned. Reads answer
//! from this member's applied state.
//!
//! It must not decide names, uniqueness or use (the store's `secret` module does) nor hold a
//! value longer than the call.

use std::path::PathBuf;
use std::sync::Arc;

use berth_api::v1::secrets_server::Secrets;
use berth_api::v1::{
    SecretCreateRequest, SecretCreateResponse, SecretInfo, SecretInspectRequest,
    SecretInspectResponse, SecretListRequest, SecretListResponse, SecretRemoveRequest,
    SecretRemoveResponse,
};
use berth_controller::store::{Command, State, StoredSecret, check_secret_name};
use tonic::{Request, Response, Status};

use crate::controller::{Controller, now_ms};

pub struct SecretsService {
    controller: Arc<Controller>,
    data_root: PathBuf,
}

impl SecretsService {
    pub fn new(controller: Arc<Controller>, data_root: PathBuf) -> Self {
        SecretsService {
            controller,
            data_root,
        }
    }
}

/// What `ls` and `inspect` show of a stored secret: never its value.
fn info(state: &State, secret: &StoredSecret) -> SecretInfo {
    SecretInfo {
        id: secret.id.clone(),
        name: secret.name.clone(),
        labels: secret.labels.clone().into_iter().collect(),
        created_ms: secret.created_at,
        used_by: state.secret_users(&secret.name),
    }
}

#[tonic::async_trait]
impl Secrets for SecretsService {
    async fn create_secret(
        &self,
        request: Request<SecretCreateRequest>,
    ) -> Result<Response<SecretCreateResponse>, Status> {
        let request = request.into_inner();
        check_secret_name(&request.name).map_err(Status::invalid_argument)?;
        if request.data.is_empty() {
            return Err(Status::invalid_argument(format!(
                "secret {:?}: the value is empty",
                request.name
            )));
        }
        if self
            .controller
            .read(|s| s.secrets.contains_key(&request.name))
        {
            return Err(Status::already_exists(format!(
                "a secret named {:?} already exists",
                request.name
            )));
        }
        let sealed = crate::cluster::files::seal(
            &self.data_root,
            &format!("secret {}", request.name),
            &request.data,
        )?;
        let id = self.controller.next_id();
        self.controller
            .propose(Command::CreateSecret(StoredSecret {
                id: id.clone(),
                name: request.name,
                labels: request.labels.into_iter().collect(),
                created_at: now_ms(),
                sealed,
            }))
            .await
            .map_err(crate::api::status)?;
        Ok(Response::new(SecretCreateResponse { id }))
    }

    async fn list_secrets(
        &self,
        _request: Request<SecretListRequest>,
    ) -> Result<Response<SecretListResponse>, Status> {
        let secrets = self
            .controller
            .read(|s| s.secrets.values().map(|secret| info(s, secret)).collect());
        Ok(Response::new(SecretListResponse { secrets }))
    }

    async fn inspect_secrets(
        &self,
        request: Request<SecretInspectRequest>,
    ) -> Result<Response<SecretInspectResponse>, Status> {
        let names = request.into_inner().names;
        let secrets = self.controller.read(|s| {
            names
                .iter()
                .map(|name| {
                    s.secret(name)
                        .map(|secret| info(s, secret))
                        .ok_or_else(|| Status::not_found(format!("no secret {name:?}")))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(Response::new(SecretInspectResponse { secrets }))
    }

    async fn remove_secret(
        &self,
        request: Request<SecretRemoveRequest>,
    ) -> Result<Response<SecretRemoveResponse>, Status> {
        let name = request.into_inner().name;
        let name = self
            .controller
            .read(|s| s.secret(&name).map(|secret| secret.name.clone()))
            .unwrap_or(name);
        self.controller
            .propose(Command::RemoveSecret { name: name.clone() })
            .await
            .map_err(crate::api::status)?;
        Ok(Response::new(SecretRemoveResponse { name }))
    }
}
