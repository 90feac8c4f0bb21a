//! `berth.v1.ClusterPeer`: what other nodes call on the cluster port. The caller's identity
//! and role come from its verified certificate ([`PeerInfo`]); a caller without one may only
//! join, a worker may only answer Raft as itself and report its own tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use berth_api::v1::cluster_peer_server::ClusterPeer;
use berth_api::v1::{
    PeerJoinRequest, PeerJoinResponse, ProposeRequest, ProposeResponse, RaftAck, RaftBatch,
    RaftMember, RenewRequest, RenewResponse, TaskFilesRequest, TaskFilesResponse,
};
use berth_cluster::{NodeCertRequest, NodeId, NodeIdentity, Role as CertRole};
use berth_controller::raft_node::{RaftError, decode_message, is_response};
use berth_controller::store::{
    Availability, Command, Node, NodeResources, NodeStatus, Platform, Role, State,
};
use rustls::pki_types::CertificateSigningRequestDer;
use tonic::{Request, Response, Status};

use super::Cluster;
use super::member::raft_id_for;
use super::tls_io::PeerInfo;
use crate::controller::Controller;

pub struct PeerService {
    cluster: Arc<Cluster>,
}

impl PeerService {
    /// The managers' sealing key, in text, for a node that will be a manager; nothing for
    /// a worker (workers copy the log but must not open the sealed secrets).
    fn manager_key_for(&self, manager: bool) -> String {
        if !manager {
            return String::new();
        }
        self.cluster
            .manager_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|k| k.to_text())
            .unwrap_or_default()
    }

    pub fn new(cluster: Arc<Cluster>) -> Self {
        PeerService { cluster }
    }

    fn controller(&self) -> Result<&Arc<Controller>, Status> {
        self.cluster
            .controller()
            .ok_or_else(|| Status::unavailable("the controller is starting"))
    }
}

fn identity<T>(request: &Request<T>) -> Result<NodeIdentity, Status> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|info| info.identity.clone())
        .ok_or_else(|| Status::unauthenticated("this call needs a node certificate of the cluster"))
}

/// Whether the deny list refuses `identity`'s certificate: its node was removed after the
/// certificate was issued (a node that joins again gets a newer one).
fn revoked(state: &State, identity: &NodeIdentity) -> bool {
    let Some(at) = state.revoked.get(identity.node_id.as_str()) else {
        return false;
    };
    let issued = identity.not_before + berth_cluster::ca::CLOCK_SKEW_ALLOWANCE;
    let issued_ms = issued
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    issued_ms <= *at
}

impl PeerService {
    /// The caller's verified identity, unless its certificate is on the deny list.
    fn admitted<T>(&self, request: &Request<T>) -> Result<NodeIdentity, Status> {
        let caller = identity(request)?;
        if self
            .cluster
            .controller()
            .is_some_and(|c| c.read(|s| revoked(s, &caller)))
        {
            return Err(Status::permission_denied(format!(
                "the certificate of node {} was revoked when it was removed from the cluster",
                caller.node_id
            )));
        }
        Ok(caller)
    }
}

fn cert_role(role: Role) -> CertRole {
    match role {
        Role::Manager => CertRole::Manager,
        Role::Worker => CertRole::Worker,
    }
}

fn store_role(role: CertRole) -> Role {
    match role {
        CertRole::Manager => Role::Manager,
        CertRole::Worker => Role::Worker,
    }
}

fn forbidden(identity: &NodeIdentity) -> Status {
    Status::permission_denied(format!(
        "node {} has role worker, but this call needs a manager",
        identity.node_id
    ))
}

/// The Raft id the store records for the caller's node.
fn raft_id_of(state: &State, node: &str) -> Option<u64> {
    state
        .nodes
        .get(node)
        .map(|n| n.raft_id)
        .filter(|id| *id != 0)
}

/// Whether a worker may propose `command`: registering or removing itself (`cluster
/// leave`), or the status of tasks placed on it.
fn worker_may_propose(state: &State, node: &str, command: &Command) -> bool {
    match command {
        Command::RegisterNode(n) => n.id == node,
        Command::RemoveNode { id } => id == node,
        Command::TaskStatusUpdate(updates) => updates.iter().all(|(id, _)| {
            state
                .tasks
                .get(id)
                .is_none_or(|t| t.node.as_deref() == Some(node))
        }),
        _ => false,
    }
}

#[tonic::async_trait]
impl ClusterPeer for PeerService {
    async fn join(
        &self,
        request: Request<PeerJoinRequest>,
    ) -> Result<Response<PeerJoinResponse>, Status> {
        let controller = self.controller()?.clone();
        let request = request.into_inner();
        let secrets = controller
            .read(|s| self.cluster.secrets(s))
            .map_err(Status::failed_precondition)?;
        let token = request
            .token
            .parse::<berth_cluster::JoinToken>()
            .map_err(|e| Status::invalid_argument(format!("join token: {e}")))?;
        let role = secrets
            .join
            .role_for(&token, secrets.ca.fingerprint())
            .map_err(|e| Status::permission_denied(format!("join token refused: {e}")))?;
        let node_id = NodeId::new(request.node_id.clone())
            .map_err(|e| Status::invalid_argument(format!("node id: {e}")))?;
        let advertise: SocketAddr = request
            .advertise_addr
            .parse()
            .map_err(|_| Status::invalid_argument("advertise address is not ip:port"))?;
        if controller.read(|s| s.nodes.contains_key(node_id.as_str())) {
            return Err(Status::already_exists(format!(
                "node {node_id} is already in the cluster (remove it first with `berth node rm`)"
            )));
        }
        let csr = CertificateSigningRequestDer::from(request.csr_der);
        let cert = secrets
            .ca
            .issue_for_csr(
                &csr,
                &NodeCertRequest {
                    node_id: node_id.clone(),
                    role,
                    addresses: vec![advertise.ip()],
                },
                SystemTime::now(),
            )
            .map_err(|e| Status::invalid_argument(format!("certificate request: {e}")))?;
        let mut raft_id = raft_id_for(node_id.as_str());
        while controller.read(|s| s.nodes.values().any(|n| n.raft_id == raft_id)) {
            raft_id += 1;
        }
        // Unknown until the node registers itself with what it offers: nothing is placed on
        // it before it runs.
        let node = Node {
            id: node_id.as_str().to_owned(),
            hostname: request.hostname,
            role: store_role(role),
            availability: Availability::Active,
            labels: Default::default(),
            platform: Platform::default(),
            resources: NodeResources::default(),
            status: NodeStatus::Unknown,
            address: advertise.to_string(),
            raft_id,
        };
        controller
            .propose(Command::RegisterNode(node))
            .await
            .map_err(crate::api::status)?;
        tracing::info!(node = %node_id, %role, raft_id, %advertise, "node joined");
        let members = controller.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.raft_id != 0 && !n.address.is_empty())
                .map(|n| RaftMember {
                    raft_id: n.raft_id,
                    address: n.address.clone(),
                })
                .collect()
        });
        let membership = controller.membership();
        let manager_key = self.manager_key_for(role == CertRole::Manager);
        Ok(Response::new(PeerJoinResponse {
            cert_der: cert.der.to_vec(),
            ca_der: secrets.ca.cert_der().to_vec(),
            role: role.as_str().to_owned(),
            raft_id,
            manager_key,
            members,
            voters: membership.voters,
            learners: membership.learners,
        }))
    }

    async fn raft(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
        let caller = self.admitted(&request)?;
        let controller = self.controller()?;
        let (expected, role) = controller.read(|s| {
            (
                raft_id_of(s, caller.node_id.as_str()),
                s.nodes.get(caller.node_id.as_str()).map(|n| n.role),
            )
        });
        // A member that has not caught up yet knows its peers only by address (from the
        // join): the certificate's addresses then bind the caller to its Raft id.
        let bound_by_address = |from: u64| {
            self.cluster
                .peers
                .as_ref()
                .and_then(|p| p.address(from))
                .is_some_and(|addr| caller.addresses.contains(&addr.ip()))
        };
        // The role the store holds now and the certificate's must both allow a vote: a
        // demoted manager keeps its certificate until it renews.
        let voter = caller.role == CertRole::Manager && role != Some(Role::Worker);
        for bytes in request.into_inner().messages {
            let message =
                decode_message(&bytes).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let bound = match expected {
                Some(id) => id == message.from,
                None => bound_by_address(message.from),
            };
            if !bound {
                return Err(Status::permission_denied(format!(
                    "node {} may not send raft messages as member {}",
                    caller.node_id, message.from
                )));
            }
            if !voter && !is_response(&message) {
                return Err(forbidden(&caller));
            }
            controller
                .step(message)
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let caller = self.admitted(&request)?;
        let controller = self.controller()?;
        let bytes = request.into_inner().command;
        let command: Command = serde_json::from_slice(&bytes)
            .map_err(|e| Status::invalid_argument(format!("command: {e}")))?;
        let allowed = caller.role == CertRole::Manager
            || controller.read(|s| worker_may_propose(s, caller.node_id.as_str(), &command));
        if !allowed {
            return Err(forbidden(&caller));
        }
        match controller.propose_local(bytes).await {
            Ok(reply) => Ok(Response::new(ProposeResponse {
                reply,
                applied_index: controller.status().applied,
            })),
            // Not in this member's log: the caller may safely try the new leader.
            Err(RaftError::NotLeader { leader }) => Err(Status::unavailable(format!(
                "not the leader (leader: {leader})"
            ))),
            Err(e) => Err(Status::aborted(e.to_string())),
        }
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let caller = self.admitted(&request)?;
        let controller = self.controller()?;
        let role = controller
            .read(|s| s.nodes.get(caller.node_id.as_str()).map(|n| n.role))
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "node {} is not a member of this cluster",
                    caller.node_id
                ))
            })?;
        let secrets = controller
            .read(|s| self.cluster.secrets(s))
            .map_err(Status::failed_precondition)?;
        let mut wanted = caller.renewal_request();
        wanted.role = cert_role(role);
        let csr = CertificateSigningRequestDer::from(request.into_inner().csr_der);
        let cert = secrets
            .ca
            .issue_for_csr(&csr, &wanted, SystemTime::now())
            .map_err(|e| Status::invalid_argument(format!("certificate request: {e}")))?;
        let manager_key = self.manager_key_for(role == Role::Manager);
        Ok(Response::new(RenewResponse {
            cert_der: cert.der.to_vec(),
            role: role.as_str().to_owned(),
            manager_key,
        }))
    }

    async fn task_files(
        &self,
        request: Request<TaskFilesRequest>,
    ) -> Result<Response<TaskFilesResponse>, Status> {
        let caller = self.admitted(&request)?;
        let controller = self.controller()?;
        let task_id = request.into_inner().task_id;
        let key = self
            .cluster
            .manager_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Status::failed_precondition("this node is not a manager"))?;
        // Only the node a task is placed on gets its secrets.
        let placed = controller.read(|s| {
            s.tasks
                .get(&task_id)
                .map(|t| t.node.as_deref() == Some(caller.node_id.as_str()))
        });
        match placed {
            None => return Err(Status::not_found(format!("no task {task_id}"))),
            Some(false) => {
                return Err(Status::permission_denied(format!(
                    "task {task_id} is not placed on node {}",
                    caller.node_id
                )));
            }
            Some(true) => {}
        }
        let files = controller
            .read(|s| super::files::open_for_task(s, &key, &task_id))
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(TaskFilesResponse {
            secrets: files.secrets.into_iter().collect(),
            configs: files.configs.into_iter().collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_controller::store::{DesiredState, Task, TaskState, TaskStatus};

    #[test]
    fn the_deny_list_refuses_certificates_issued_before_the_removal_only() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let ca = berth_cluster::ClusterCa::init(dir.path(), t0).unwrap();
        let issue = |at| {
            ca.issue_with_new_key(
                &NodeCertRequest {
                    node_id: NodeId::new("wrk-1").unwrap(),
                    role: CertRole::Worker,
                    addresses: vec![],
                },
                at,
            )
            .unwrap()
            .cert
            .identity
        };
        let old = issue(t0);
        let rejoined = issue(t0 + std::time::Duration::from_secs(60));
        let mut state = State::default();
        assert!(!revoked(&state, &old));
        state.revoked.insert("wrk-1".into(), 1_800_000_010_000);
        assert!(revoked(&state, &old));
        assert!(!revoked(&state, &rejoined));
        let mut other = old.clone();
        other.node_id = NodeId::new("wrk-2").unwrap();
        assert!(!revoked(&state, &other));
    }

    #[test]
    fn a_worker_reports_only_its_own_tasks_and_registers_only_itself() {
        let mut state = State::default();
        for (id, node) in [("t1", "w1"), ("t2", "w2")] {
            let mut task = Task::new(id, "app", "web", "h", DesiredState::Running, 0);
            task.node = Some(node.into());
            state.tasks.insert(id.into(), task);
        }
        let report = |id: &str| {
            Command::TaskStatusUpdate(vec![(id.into(), TaskStatus::new(TaskState::Running, 1))])
        };
        assert!(worker_may_propose(&state, "w1", &report("t1")));
        assert!(!worker_may_propose(&state, "w1", &report("t2")));
        let mut me = crate::host::node("w1");
        assert!(worker_may_propose(
            &state,
            "w1",
            &Command::RegisterNode(me.clone())
        ));
        me.id = "w2".into();
        assert!(!worker_may_propose(
            &state,
            "w1",
            &Command::RegisterNode(me)
        ));
        assert!(!worker_may_propose(
            &state,
            "w1",
            &Command::RemoveApp { name: "app".into() }
        ));
        let remove = |id: &str| Command::RemoveNode { id: id.into() };
        assert!(worker_may_propose(&state, "w1", &remove("w1")));
        assert!(!worker_may_propose(&state, "w1", &remove("w2")));
    }
}
