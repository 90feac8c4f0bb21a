//! `berth.v1.Cluster`: the operator's cluster commands, served on berthd's API — its local
//! socket, or a tcp:// address with mutual TLS (whoever reaches it is root on this machine).
//! Joining and leaving change which Raft group the node belongs to, so they write the new
//! membership and restart berthd into it; containers keep running across the restart, as they
//! do across any.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_api::v1::cluster_peer_client::ClusterPeerClient;
use berth_api::v1::cluster_server;
use berth_api::v1::{
    ClientCertRequest, ClientCertResponse, InitRequest, InitResponse, JoinRequest, JoinResponse,
    JoinTokenRequest, JoinTokenResponse, LeaveRequest, LeaveResponse, NodeInfo, NodeListRequest,
    NodeListResponse, NodeRemoveRequest, NodeRemoveResponse, NodeUpdateRequest, NodeUpdateResponse,
    PeerJoinRequest,
};
use berth_cluster::{
    ClusterCa, JoinSecrets, JoinToken, ManagerKey, NodeCertRequest, NodeCertificate,
    NodeCredentials, NodeId, NodeKey, Role as CertRole,
};
use berth_controller::store::{Availability, Command, NodeStatus, Role, State};
use rustls::pki_types::CertificateDer;
use tonic::{Request, Response, Status};

use super::member::{self, Member, Peer};
use super::{Cluster, parse_addr, seal, tls_io, transport};
use crate::controller::Controller;

pub struct AdminService {
    cluster: Arc<Cluster>,
}

impl AdminService {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        AdminService { cluster }
    }

    fn controller(&self) -> Result<&Arc<Controller>, Status> {
        self.cluster
            .controller()
            .ok_or_else(|| Status::unavailable("the controller is starting"))
    }

    fn not_in_cluster(&self) -> Result<(), Status> {
        match &self.cluster.member {
            Some(_) => Err(Status::failed_precondition(
                "this node is already part of a cluster (berth cluster leave first)",
            )),
            None => Ok(()),
        }
    }

    /// Restarts berthd shortly, once the reply is on its way.
    /// `cluster init --force-new-cluster`: on a manager, marks the Raft log to start as a
    /// one-voter group and restarts into it.
    async fn force_new_cluster(&self) -> Result<Response<InitResponse>, Status> {
        let me = self.cluster.member.as_ref().ok_or_else(|| {
            Status::failed_precondition("--force-new-cluster: this node is not in a cluster")
        })?;
        if me.role != "manager" || !self.cluster.is_manager() {
            return Err(Status::failed_precondition(
                "--force-new-cluster: only a manager can re-form the cluster",
            ));
        }
        let controller = self.controller()?;
        let secrets = controller
            .read(|s| self.cluster.secrets(s))
            .map_err(Status::failed_precondition)?;
        let data_root = &self.cluster.data_root;
        std::fs::write(data_root.join(FORCE_NEW), b"")
            .map_err(|e| Status::internal(format!("marking the raft log: {e}")))?;
        tracing::warn!("re-forming the cluster with this node as its only manager; restarting");
        self.restart_soon();
        let fingerprint = secrets.ca.fingerprint();
        Ok(Response::new(InitResponse {
            node_id: self.cluster.node_id.clone(),
            worker_token: secrets
                .join
                .token(CertRole::Worker, fingerprint)
                .to_string(),
            manager_token: secrets
                .join
                .token(CertRole::Manager, fingerprint)
                .to_string(),
            advertise_addr: me.advertise.to_string(),
        }))
    }

    fn restart_soon(&self) {
        let restart = self.cluster.restart.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            restart.notify_one();
        });
    }
}

fn internal(what: &str) -> impl Fn(String) -> Status + '_ {
    move |e| Status::internal(format!("{what}: {e}"))
}

/// The next start sets the current Raft log aside (a node entering or leaving a group starts
/// a new log); the marker holds the name it is set aside under.
const RAFT_RESET: &str = "raft-reset";

/// At start, before the Raft log is opened: honour a pending [`RAFT_RESET`].
pub fn apply_pending_reset(data_root: &std::path::Path) -> Result<(), member::MemberError> {
    let marker = data_root.join(RAFT_RESET);
    let Ok(suffix) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    member::set_aside(data_root, "raft", suffix.trim())?;
    std::fs::remove_file(&marker).map_err(|source| member::MemberError::Io {
        op: "remove",
        path: marker,
        source,
    })
}

/// Marker: the next start makes this member the only voter of its Raft group.
const FORCE_NEW: &str = "raft-force-new-cluster";
/// Marker: once leader, remove the records of the managers left behind.
pub const FORCED: &str = "forced-new-cluster";

/// At start, before the Raft log is opened: honour a pending `--force-new-cluster` — the
/// stored configuration becomes this member alone as voter (learners stay), so it elects
/// itself with the log it has.
pub fn apply_pending_force(data_root: &std::path::Path) -> Result<(), member::MemberError> {
    let marker = data_root.join(FORCE_NEW);
    if !marker.exists() {
        return Ok(());
    }
    let fault = |e: &dyn std::fmt::Display| member::MemberError::Parse {
        path: data_root.join("raft"),
        message: format!("re-forming the cluster: {e}"),
    };
    let Some(me) = Member::load(data_root)? else {
        return Err(fault(&"this node is not in a cluster"));
    };
    let conf = berth_controller::raft_node::force_sole_voter(&data_root.join("raft"), me.raft_id)
        .map_err(|e| fault(&e))?;
    Member {
        voters: conf.voters,
        learners: conf.learners,
        ..me
    }
    .save(data_root)?;
    let io = |op, path: std::path::PathBuf, source| member::MemberError::Io { op, path, source };
    let forced = member::dir(data_root).join(FORCED);
    std::fs::write(&forced, b"").map_err(|e| io("write", forced, e))?;
    std::fs::remove_file(&marker).map_err(|e| io("remove", marker, e))
}

fn mark_reset(data_root: &std::path::Path, suffix: &str) -> Result<(), Status> {
    std::fs::write(data_root.join(RAFT_RESET), suffix)
        .map_err(|e| Status::internal(format!("write {RAFT_RESET}: {e}")))
}

fn parse_role(text: &str) -> Result<CertRole, Status> {
    text.parse::<CertRole>()
        .map_err(|_| Status::invalid_argument(format!("role {text:?}: use worker or manager")))
}

/// A node named by id, unique id prefix or unique hostname.
fn resolve(state: &State, name: &str) -> Result<String, Status> {
    if state.nodes.contains_key(name) {
        return Ok(name.to_owned());
    }
    let matches: Vec<&String> = state
        .nodes
        .values()
        .filter(|n| n.id.starts_with(name) || n.hostname == name)
        .map(|n| &n.id)
        .collect();
    match matches[..] {
        [one] => Ok(one.clone()),
        [] => Err(Status::not_found(format!("no node {name:?}"))),
        _ => Err(Status::invalid_argument(format!(
            "{name:?} names several nodes; use the node id"
        ))),
    }
}

fn word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tonic::async_trait]
impl cluster_server::Cluster for AdminService {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let request = request.into_inner();
        if request.force_new_cluster {
            return self.force_new_cluster().await;
        }
        self.not_in_cluster()?;
        let controller = self.controller()?.clone();
        let advertise = parse_addr(&request.advertise_addr)
            .map_err(|e| Status::invalid_argument(format!("--advertise-addr: {e}")))?;
        let node_id = NodeId::new(self.cluster.node_id.clone())
            .map_err(|e| Status::failed_precondition(format!("this node's id: {e}")))?;
        let data_root = &self.cluster.data_root;
        let dir = member::dir(data_root);
        // The CA is made in a scratch directory and lives on sealed in the store only.
        let scratch = dir.join("ca-init");
        let _ = std::fs::remove_dir_all(&scratch);
        let ca = ClusterCa::init(&scratch, SystemTime::now())
            .map_err(|e| Status::internal(format!("cluster CA: {e}")));
        let _ = std::fs::remove_dir_all(&scratch);
        let mut ca = ca?;
        if request.cert_expiry_secs != 0 {
            ca = ca
                .with_node_cert_lifetime(std::time::Duration::from_secs(request.cert_expiry_secs))
                .map_err(|e| Status::invalid_argument(format!("--cert-expiry: {e}")))?;
        }
        let join = JoinSecrets::generate().map_err(|e| Status::internal(e.to_string()))?;
        // A lone node that already sealed app secrets keeps its key, so they stay readable.
        let key = match ManagerKey::load(&dir).map_err(|e| Status::internal(e.to_string()))? {
            Some(key) => key,
            None => ManagerKey::generate().map_err(|e| Status::internal(e.to_string()))?,
        };
        let sealed = seal(&key, &ca, &join).map_err(internal("sealing the cluster secrets"))?;
        controller
            .propose(Command::SetClusterSecrets(sealed))
            .await
            .map_err(crate::api::status)?;
        let creds = ca
            .issue_with_new_key(
                &NodeCertRequest {
                    node_id: node_id.clone(),
                    role: CertRole::Manager,
                    addresses: vec![advertise.ip()],
                },
                SystemTime::now(),
            )
            .map_err(|e| Status::internal(format!("node certificate: {e}")))?;
        creds
            .save(&member::tls_dir(data_root))
            .map_err(|e| Status::internal(e.to_string()))?;
        key.save(&dir)
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut node = crate::host::node(node_id.as_str());
        node.address = advertise.to_string();
        node.raft_id = 1;
        controller
            .propose(Command::RegisterNode(node))
            .await
            .map_err(crate::api::status)?;
        Member {
            raft_id: 1,
            role: "manager".into(),
            advertise,
            peers: Vec::new(),
            voters: vec![1],
            learners: Vec::new(),
        }
        .save(data_root)
        .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(%advertise, "cluster initialized; restarting into it");
        self.restart_soon();
        let fingerprint = ca.fingerprint();
        Ok(Response::new(InitResponse {
            node_id: node_id.to_string(),
            worker_token: join.token(CertRole::Worker, fingerprint).to_string(),
            manager_token: join.token(CertRole::Manager, fingerprint).to_string(),
            advertise_addr: advertise.to_string(),
        }))
    }

    async fn join_token(
        &self,
        request: Request<JoinTokenRequest>,
    ) -> Result<Response<JoinTokenResponse>, Status> {
        let controller = self.controller()?.clone();
        let request = request.into_inner();
        let role = parse_role(&request.role)?;
        let mut secrets = controller
            .read(|s| self.cluster.secrets(s))
            .map_err(Status::failed_precondition)?;
        if request.rotate {
            secrets
                .join
                .rotate(role)
                .map_err(|e| Status::internal(e.to_string()))?;
            let key = self
                .cluster
                .manager_key
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .ok_or_else(|| Status::failed_precondition("this node is not a manager"))?;
            let sealed = seal(&key, &secrets.ca, &secrets.join)
                .map_err(internal("sealing the cluster secrets"))?;
            controller
                .propose(Command::SetClusterSecrets(sealed))
                .await
                .map_err(crate::api::status)?;
        }
        let manager_addr = self
            .cluster
            .member
            .as_ref()
            .map(|m| m.advertise.to_string())
            .unwrap_or_default();
        Ok(Response::new(JoinTokenResponse {
            token: secrets
                .join
                .token(role, secrets.ca.fingerprint())
                .to_string(),
            manager_addr,
        }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        self.not_in_cluster()?;
        let controller = self.controller()?.clone();
        let request = request.into_inner();
        if let Some(app) = controller.read(|s| s.apps.keys().next().cloned()) {
            return Err(Status::failed_precondition(format!(
                "this node runs app {app:?}; remove its apps (berth down) before joining a cluster"
            )));
        }
        let token: JoinToken = request
            .token
            .parse()
            .map_err(|e| Status::invalid_argument(format!("join token: {e}")))?;
        let remote = parse_addr(&request.remote_addr)
            .map_err(|e| Status::invalid_argument(format!("manager address: {e}")))?;
        let advertise = parse_addr(&request.advertise_addr)
            .map_err(|e| Status::invalid_argument(format!("--advertise-addr: {e}")))?;
        let node_id = NodeId::new(self.cluster.node_id.clone())
            .map_err(|e| Status::failed_precondition(format!("this node's id: {e}")))?;
        let key = NodeKey::generate().map_err(|e| Status::internal(e.to_string()))?;
        let csr = key
            .csr(&node_id)
            .map_err(|e| Status::internal(e.to_string()))?;
        // The manager is trusted only if it proves to hold the CA the token names.
        let tls = berth_cluster::join_client_config(&token)
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut client = ClusterPeerClient::new(tls_io::channel(remote, tls))
            .max_decoding_message_size(transport::MAX_MESSAGE);
        let mut call = Request::new(PeerJoinRequest {
            token: token.to_string(),
            csr_der: csr.to_vec(),
            node_id: node_id.to_string(),
            hostname: crate::host::hostname(),
            advertise_addr: advertise.to_string(),
        });
        call.set_timeout(Duration::from_secs(20));
        let answer = client
            .join(call)
            .await
            .map_err(|s| {
                Status::new(
                    s.code(),
                    format!("joining through {remote}: {}", s.message()),
                )
            })?
            .into_inner();
        token
            .verify_ca(&answer.ca_der)
            .map_err(|e| Status::permission_denied(format!("the manager's CA: {e}")))?;
        let cert = NodeCertificate::from_der(CertificateDer::from(answer.cert_der))
            .map_err(|e| Status::internal(format!("the issued certificate: {e}")))?;
        let creds = NodeCredentials {
            ca_der: CertificateDer::from(answer.ca_der),
            cert,
            key,
        };
        let data_root = &self.cluster.data_root;
        creds
            .save(&member::tls_dir(data_root))
            .map_err(|e| Status::internal(e.to_string()))?;
        if !answer.manager_key.is_empty() {
            ManagerKey::from_text(&answer.manager_key)
                .and_then(|k| k.save(&member::dir(data_root)))
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let peers = answer
            .members
            .iter()
            .filter_map(|m| {
                Some(Peer {
                    raft_id: m.raft_id,
                    address: m.address.parse().ok()?,
                })
            })
            .collect();
        mark_reset(data_root, "standalone")?;
        Member {
            raft_id: answer.raft_id,
            role: answer.role.clone(),
            advertise,
            peers,
            voters: answer.voters,
            learners: answer.learners,
        }
        .save(data_root)
        .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(%remote, role = %answer.role, raft_id = answer.raft_id, "joined a cluster; restarting into it");
        self.restart_soon();
        Ok(Response::new(JoinResponse {
            node_id: node_id.to_string(),
            role: answer.role,
        }))
    }

    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        let Some(me) = &self.cluster.member else {
            return Err(Status::failed_precondition(
                "this node is not part of a cluster",
            ));
        };
        let controller = self.controller()?.clone();
        if me.role == "manager" && !request.into_inner().force {
            return Err(Status::failed_precondition(
                "this node is a manager: leaving weakens the Raft quorum; demote it first (berth node demote) or use --force",
            ));
        }
        controller
            .propose(Command::RemoveNode {
                id: self.cluster.node_id.clone(),
            })
            .await
            .map_err(crate::api::status)?;
        let data_root = &self.cluster.data_root;
        member::set_aside(data_root, "cluster", "left")
            .map_err(|e| Status::internal(e.to_string()))?;
        mark_reset(data_root, "cluster")?;
        tracing::info!("left the cluster; restarting alone");
        self.restart_soon();
        Ok(Response::new(LeaveResponse {}))
    }

    async fn node_list(
        &self,
        _request: Request<NodeListRequest>,
    ) -> Result<Response<NodeListResponse>, Status> {
        let controller = self.controller()?;
        controller
            .read_barrier()
            .await
            .map_err(crate::api::status)?;
        let status = controller.status();
        let me = &self.cluster.node_id;
        let nodes = controller.read(|s| {
            s.nodes
                .values()
                .map(|n| {
                    let manager_status = match n.role {
                        Role::Worker => String::new(),
                        Role::Manager if n.raft_id != 0 && n.raft_id == status.leader => {
                            "leader".into()
                        }
                        Role::Manager => {
                            let fresh = &n.id == me
                                || controller
                                    .heard_from(n.raft_id)
                                    .is_some_and(|d| d < Duration::from_secs(3))
                                || n.status == NodeStatus::Ready;
                            if fresh { "reachable" } else { "unreachable" }.into()
                        }
                    };
                    NodeInfo {
                        id: n.id.clone(),
                        hostname: n.hostname.clone(),
                        role: n.role.as_str().into(),
                        availability: word(&n.availability),
                        status: word(&n.status),
                        address: n.address.clone(),
                        raft_id: n.raft_id,
                        manager_status,
                        labels: n.labels.clone().into_iter().collect(),
                        platform: format!("{}/{}", n.platform.os, n.platform.architecture),
                        nano_cpus: n.resources.nano_cpus,
                        memory: n.resources.memory,
                        tasks: s
                            .tasks
                            .values()
                            .filter(|t| t.node.as_deref() == Some(&n.id) && t.is_live())
                            .count() as u32,
                        is_self: &n.id == me,
                    }
                })
                .collect()
        });
        Ok(Response::new(NodeListResponse { nodes }))
    }

    async fn node_update(
        &self,
        request: Request<NodeUpdateRequest>,
    ) -> Result<Response<NodeUpdateResponse>, Status> {
        let controller = self.controller()?.clone();
        let request = request.into_inner();
        let id = controller.read(|s| resolve(s, &request.id))?;
        let availability = match request.availability.as_str() {
            "" => None,
            "active" => Some(Availability::Active),
            "pause" => Some(Availability::Pause),
            "drain" => Some(Availability::Drain),
            other => {
                return Err(Status::invalid_argument(format!(
                    "availability {other:?}: use active, pause or drain"
                )));
            }
        };
        let role = match request.role.as_str() {
            "" => None,
            text => Some(match parse_role(text)? {
                CertRole::Manager => Role::Manager,
                CertRole::Worker => Role::Worker,
            }),
        };
        if role.is_some() && self.cluster.member.is_none() {
            return Err(Status::failed_precondition(
                "this node is not part of a cluster",
            ));
        }
        if role == Some(Role::Worker) {
            let managers = controller.read(|s| {
                s.nodes
                    .values()
                    .filter(|n| n.role == Role::Manager && n.id != id)
                    .count()
            });
            if managers == 0 {
                return Err(Status::failed_precondition(
                    "the cluster needs at least one manager: this one cannot be demoted",
                ));
            }
        }
        let labels_add: BTreeMap<String, String> = request.label_add.into_iter().collect();
        controller
            .propose(Command::UpdateNode {
                id,
                availability,
                labels_add,
                labels_rm: request.label_rm,
                role,
            })
            .await
            .map_err(crate::api::status)?;
        Ok(Response::new(NodeUpdateResponse {}))
    }

    async fn node_remove(
        &self,
        request: Request<NodeRemoveRequest>,
    ) -> Result<Response<NodeRemoveResponse>, Status> {
        let controller = self.controller()?.clone();
        let request = request.into_inner();
        let id = controller.read(|s| resolve(s, &request.id))?;
        if id == self.cluster.node_id {
            return Err(Status::failed_precondition(
                "this is the local node: use berth cluster leave",
            ));
        }
        let (role, status) = controller.read(|s| {
            let n = &s.nodes[&id];
            (n.role, n.status)
        });
        if role == Role::Manager {
            return Err(Status::failed_precondition(format!(
                "node {id} is a manager: demote it first (berth node demote {id})"
            )));
        }
        if status == NodeStatus::Ready && !request.force {
            return Err(Status::failed_precondition(format!(
                "node {id} is ready and may still run tasks: stop it or use --force"
            )));
        }
        controller
            .propose(Command::RemoveNode { id: id.clone() })
            .await
            .map_err(crate::api::status)?;
        // Its certificate stays valid until it expires: deny it from now on.
        controller
            .propose(Command::RevokeNode {
                id,
                at: crate::controller::now_ms(),
            })
            .await
            .map_err(crate::api::status)?;
        Ok(Response::new(NodeRemoveResponse {}))
    }

    async fn client_cert(
        &self,
        request: Request<ClientCertRequest>,
    ) -> Result<Response<ClientCertResponse>, Status> {
        let controller = self.controller()?.clone();
        let request = request.into_inner();
        let name = request.name.trim();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            return Err(Status::invalid_argument(format!(
                "client name {name:?}: use 1 to 64 letters, digits, '.', '-' or '_'"
            )));
        }
        if self.cluster.member.is_none() {
            return Err(Status::failed_precondition(
                "this node is not in a cluster: client certificates come from a cluster CA (or give berthd --tlscacert/--tlscert/--tlskey of your own)",
            ));
        }
        if !self.cluster.is_manager() {
            return Err(Status::failed_precondition(
                "client certificates are issued by a manager: run this on one",
            ));
        }
        let secrets = controller
            .read(|s| self.cluster.secrets(s))
            .map_err(Status::failed_precondition)?;
        let lifetime = match request.lifetime_secs {
            0 => secrets.ca.node_cert_lifetime(),
            secs => Duration::from_secs(secs),
        };
        let issued = secrets
            .ca
            .issue_client(name, lifetime, SystemTime::now())
            .map_err(|e| internal("issuing the client certificate")(e.to_string()))?;
        tracing::info!(client = name, "issued a client certificate");
        Ok(Response::new(ClientCertResponse {
            ca_pem: issued.ca_pem,
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        }))
    }
}
