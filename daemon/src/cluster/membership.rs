//! The loops of a cluster node:
//!
//! - registration: the node records itself (what it offers, its address, its Raft id) once a
//!   leader takes the write, retrying until one does;
//! - on the leader, every 250 ms: the Raft configuration follows the node records (a manager
//!   is a voter, a worker a learner, a removed node no member — one change at a time), and a
//!   node not heard from for [`DOWN_AFTER`] is marked down, so the orchestrator replaces its
//!   tasks elsewhere; heard again, it is ready again;
//! - on every node: the address book follows the node records, and when the store says this
//!   node's role is not the one its certificate carries (promote, demote), it gets a new
//!   certificate and restarts with it; when its certificate enters the last third of its
//!   lifetime (the renewal rule of `berth_cluster::identity`), it gets a new one for the same
//!   role and swaps it into the live TLS configurations — no restart.
//!
//! Decisions are small pure functions ([`conf_change`], [`liveness`]); the loops only read,
//! propose and wait.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use berth_api::v1::RenewRequest;
use berth_cluster::{ManagerKey, NodeCertificate, NodeCredentials, NodeId, NodeIdentity, NodeKey};
use berth_controller::raft_node::Membership;
use berth_controller::store::{Command, NodeStatus, Role, State};
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use super::Cluster;
use super::member::{self, Member};
use crate::controller::Controller;

/// A node silent this long is down.
pub const DOWN_AFTER: Duration = Duration::from_secs(3);
const PERIOD: Duration = Duration::from_millis(250);

/// One membership change that brings the Raft configuration closer to the node records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfStep {
    AddVoter(u64),
    AddLearner(u64),
    Remove(u64),
    /// The leader itself must go: hand leadership to this voter first.
    Transfer(u64),
}

/// The next change, if any. Voters are added first (quorum grows before anything shrinks),
/// then learners, then removals; the leader never removes or demotes itself directly.
pub fn conf_change(state: &State, current: &Membership, me: u64) -> Option<ConfStep> {
    let mut voters = BTreeSet::new();
    let mut learners = BTreeSet::new();
    for node in state.nodes.values().filter(|n| n.raft_id != 0) {
        match node.role {
            Role::Manager => voters.insert(node.raft_id),
            Role::Worker => learners.insert(node.raft_id),
        };
    }
    let in_voters = |id: &u64| current.voters.contains(id);
    let in_learners = |id: &u64| current.learners.contains(id);
    if let Some(id) = voters.iter().find(|id| !in_voters(id)) {
        return Some(ConfStep::AddVoter(*id));
    }
    let successor = || {
        current
            .voters
            .iter()
            .copied()
            .find(|id| *id != me && voters.contains(id))
    };
    if let Some(id) = learners.iter().find(|id| !in_learners(id)) {
        if *id == me {
            return successor().map(ConfStep::Transfer);
        }
        return Some(ConfStep::AddLearner(*id));
    }
    let gone = current
        .voters
        .iter()
        .chain(&current.learners)
        .find(|id| !voters.contains(id) && !learners.contains(id));
    match gone {
        Some(id) if *id == me => successor().map(ConfStep::Transfer),
        Some(id) => Some(ConfStep::Remove(*id)),
        None => None,
    }
}

/// Nodes whose status should change, from how long ago each was heard from.
pub fn liveness(
    state: &State,
    me: &str,
    heard: impl Fn(u64) -> Option<Duration>,
) -> Vec<(String, NodeStatus)> {
    let mut out = Vec::new();
    for node in state.nodes.values() {
        if node.id == me || node.raft_id == 0 {
            continue;
        }
        let fresh = heard(node.raft_id).is_some_and(|d| d < DOWN_AFTER);
        match node.status {
            NodeStatus::Ready if !fresh => out.push((node.id.clone(), NodeStatus::Down)),
            NodeStatus::Down if fresh => out.push((node.id.clone(), NodeStatus::Ready)),
            _ => {}
        }
    }
    out
}

/// Starts the loops; they end when `shutdown` turns true.
pub fn spawn(cluster: Arc<Cluster>, controller: Arc<Controller>, shutdown: watch::Receiver<bool>) {
    let Some(me) = cluster.member.clone() else {
        return;
    };
    tokio::spawn(register(
        cluster.clone(),
        controller.clone(),
        me.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(watch_loop(cluster, controller, me, shutdown));
}

async fn register(
    cluster: Arc<Cluster>,
    controller: Arc<Controller>,
    me: Member,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut node = crate::host::node(&cluster.node_id);
    node.address = me.advertise.to_string();
    node.raft_id = me.raft_id;
    loop {
        match controller
            .propose(Command::RegisterNode(node.clone()))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %cluster.node_id, "registered with the cluster");
                return;
            }
            Err(e) => tracing::info!(error = %e, "registering with the cluster; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn watch_loop(
    cluster: Arc<Cluster>,
    controller: Arc<Controller>,
    me: Member,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut leader_since: Option<Instant> = None;
    let mut last_renewal: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PERIOD) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Some(peers) = &cluster.peers {
            controller.read(|s| {
                for node in s.nodes.values().filter(|n| n.raft_id != 0) {
                    if let Ok(addr) = node.address.parse() {
                        peers.set_address(node.raft_id, addr);
                    }
                }
            });
        }
        let status = controller.status();
        let forced = member::dir(&cluster.data_root).join(super::admin::FORCED);
        if status.is_leader && forced.exists() {
            // Re-formed by --force-new-cluster: the managers left behind go before the
            // configuration follows the records again (it would add them back as voters).
            match drop_other_managers(&controller, &cluster.node_id).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(&forced);
                    tracing::warn!("the cluster was re-formed with this node as its only manager");
                }
                Err(e) => tracing::warn!(error = %e, "removing the managers left behind"),
            }
            continue;
        }
        if status.is_leader {
            let since = *leader_since.get_or_insert_with(Instant::now);
            lead(&controller, me.raft_id, &cluster.node_id, since).await;
        } else {
            leader_since = None;
        }
        let role = controller.read(|s| s.nodes.get(&cluster.node_id).map(|n| n.role));
        let due = last_renewal.is_none_or(|at| at.elapsed() > Duration::from_secs(5));
        let expiring = cluster
            .live_cert
            .as_ref()
            .and_then(|live| NodeIdentity::from_cert_der(&live.cert_der()).ok())
            .is_some_and(|identity| identity.needs_renewal(SystemTime::now()));
        if expiring && due && role.is_none_or(|r| r.as_str() == me.role) {
            last_renewal = Some(Instant::now());
            match refresh(&cluster, &controller, &me).await {
                Ok(not_after) => tracing::info!(
                    valid_until = ?not_after,
                    "renewed this node's certificate before it expires"
                ),
                Err(e) => tracing::warn!(error = %e, "renewing this node's certificate; retrying"),
            }
        }
        if let Some(role) = role {
            if role.as_str() != me.role && due {
                last_renewal = Some(Instant::now());
                match renew(&cluster, &controller, &me, role).await {
                    Ok(()) => {
                        tracing::info!(
                            role = role.as_str(),
                            "new certificate for the new role; restarting"
                        );
                        cluster.restart.notify_one();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the certificate for the new role")
                    }
                }
            }
        }
    }
}

async fn lead(controller: &Controller, me: u64, node_id: &str, since: Instant) {
    let step = controller.read(|s| conf_change(s, &controller.membership(), me));
    let raft = controller.raft();
    let result = match step {
        Some(ConfStep::AddVoter(id)) => raft.add_voter(id).await,
        Some(ConfStep::AddLearner(id)) => raft.add_learner(id).await,
        Some(ConfStep::Remove(id)) => raft.remove_member(id).await,
        Some(ConfStep::Transfer(id)) => raft.transfer_leader(id),
        None => Ok(()),
    };
    match (step, result) {
        (Some(step), Ok(())) => tracing::info!(?step, "raft membership changed"),
        (Some(step), Err(e)) => {
            tracing::debug!(?step, error = %e, "raft membership change not made")
        }
        _ => {}
    }
    // A new leader has not heard from anyone yet: give every node a chance first.
    if since.elapsed() < DOWN_AFTER {
        return;
    }
    let changes = controller.read(|s| liveness(s, node_id, |id| controller.heard_from(id)));
    for (id, status) in changes {
        tracing::info!(node = %id, ?status, "node status changed");
        if let Err(e) = controller.propose(Command::NodeStatus { id, status }).await {
            tracing::warn!(error = %e, "marking a node's status");
        }
    }
}

/// A new certificate from the leader (for the role the store holds), its key, and the
/// managers' key the leader sent (empty for a worker).
struct Renewed {
    creds: NodeCredentials,
    role: String,
    manager_key: String,
}

async fn fetch_certificate(cluster: &Cluster, controller: &Controller) -> Result<Renewed, String> {
    let peers = cluster.peers.as_ref().ok_or("not in a cluster")?;
    let leader = controller.status().leader;
    let address = peers.address(leader).ok_or("no leader known")?;
    let node_id = NodeId::new(cluster.node_id.clone()).map_err(|e| e.to_string())?;
    let key = NodeKey::generate().map_err(|e| e.to_string())?;
    let csr = key.csr(&node_id).map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(RenewRequest {
        csr_der: csr.to_vec(),
    });
    request.set_timeout(Duration::from_secs(10));
    let answer = peers
        .client(address)
        .renew(request)
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    let old =
        NodeCredentials::load(&member::tls_dir(&cluster.data_root)).map_err(|e| e.to_string())?;
    let cert = NodeCertificate::from_der(CertificateDer::from(answer.cert_der))
        .map_err(|e| e.to_string())?;
    Ok(Renewed {
        creds: NodeCredentials {
            ca_der: old.ca_der,
            cert,
            key,
        },
        role: answer.role,
        manager_key: answer.manager_key,
    })
}

/// Renews this node's certificate for the role it holds: stores the new credentials and
/// presents them from the next handshake on. Returns the new expiry.
async fn refresh(
    cluster: &Cluster,
    controller: &Controller,
    me: &Member,
) -> Result<SystemTime, String> {
    let live = cluster.live_cert.as_ref().ok_or("not in a cluster")?;
    let renewed = fetch_certificate(cluster, controller).await?;
    if renewed.role != me.role {
        // The record changed role meanwhile: the role path renews and restarts.
        return Err(format!("the leader issued a {} certificate", renewed.role));
    }
    // Live first: if the new pair is unusable, nothing on disk changed either.
    live.replace(&renewed.creds).map_err(|e| e.to_string())?;
    renewed
        .creds
        .save(&member::tls_dir(&cluster.data_root))
        .map_err(|e| e.to_string())?;
    Ok(renewed.creds.cert.identity.not_after)
}

/// Removes the node records of every manager but `me`.
async fn drop_other_managers(controller: &Controller, me: &str) -> Result<(), String> {
    let others: Vec<String> = controller.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.role == Role::Manager && n.id != me)
            .map(|n| n.id.clone())
            .collect()
    });
    for id in others {
        controller
            .propose(Command::RemoveNode { id: id.clone() })
            .await
            .map_err(|e| format!("node {id}: {e}"))?;
        controller
            .propose(Command::RevokeNode {
                id: id.clone(),
                at: crate::controller::now_ms(),
            })
            .await
            .map_err(|e| format!("node {id}: {e}"))?;
        tracing::info!(node = %id, "removed a manager left behind");
    }
    Ok(())
}

/// Gets a certificate for `role` from the leader, stores it (and the managers' key, or
/// forgets it) and the new role in `member.json`.
async fn renew(
    cluster: &Cluster,
    controller: &Controller,
    me: &Member,
    role: Role,
) -> Result<(), String> {
    let answer = fetch_certificate(cluster, controller).await?;
    if answer.role != role.as_str() {
        return Err(format!("the leader issued a {} certificate", answer.role));
    }
    let data_root = &cluster.data_root;
    answer
        .creds
        .save(&member::tls_dir(data_root))
        .map_err(|e| e.to_string())?;
    let dir = member::dir(data_root);
    if answer.manager_key.is_empty() {
        ManagerKey::forget(&dir).map_err(|e| e.to_string())?;
    } else {
        ManagerKey::from_text(&answer.manager_key)
            .and_then(|k| k.save(&dir))
            .map_err(|e| e.to_string())?;
    }
    Member {
        role: role.as_str().to_owned(),
        ..me.clone()
    }
    .save(data_root)
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(nodes: &[(&str, Role, u64, NodeStatus)]) -> State {
        let mut s = State::default();
        for (id, role, raft_id, status) in nodes {
            let mut n = crate::host::node(id);
            n.role = *role;
            n.raft_id = *raft_id;
            n.status = *status;
            s.nodes.insert(id.to_string(), n);
        }
        s
    }

    fn conf(voters: &[u64], learners: &[u64]) -> Membership {
        Membership {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
        }
    }

    #[test]
    fn the_configuration_follows_the_node_records() {
        use NodeStatus::Ready;
        let s = state(&[
            ("m1", Role::Manager, 1, Ready),
            ("m2", Role::Manager, 2, Ready),
            ("w1", Role::Worker, 3, Ready),
        ]);
        assert_eq!(
            conf_change(&s, &conf(&[1], &[]), 1),
            Some(ConfStep::AddVoter(2))
        );
        assert_eq!(
            conf_change(&s, &conf(&[1, 2], &[]), 1),
            Some(ConfStep::AddLearner(3))
        );
        assert_eq!(conf_change(&s, &conf(&[1, 2], &[3]), 1), None);
        // Promotion: a learner whose record says manager becomes a voter.
        let promoted = state(&[
            ("m1", Role::Manager, 1, Ready),
            ("w1", Role::Manager, 3, Ready),
        ]);
        assert_eq!(
            conf_change(&promoted, &conf(&[1], &[3]), 1),
            Some(ConfStep::AddVoter(3))
        );
        // Demotion and removal of others; the leader hands over before it goes itself.
        let demoted = state(&[
            ("m1", Role::Manager, 1, Ready),
            ("m2", Role::Worker, 2, Ready),
        ]);
        assert_eq!(
            conf_change(&demoted, &conf(&[1, 2], &[]), 1),
            Some(ConfStep::AddLearner(2))
        );
        assert_eq!(
            conf_change(&demoted, &conf(&[1, 2], &[]), 2),
            Some(ConfStep::Transfer(1))
        );
        let removed = state(&[("m1", Role::Manager, 1, Ready)]);
        assert_eq!(
            conf_change(&removed, &conf(&[1], &[9]), 1),
            Some(ConfStep::Remove(9))
        );
        // Nodes without a Raft id (a lone node's own record before init) are ignored.
        let lone = state(&[("m1", Role::Manager, 0, Ready)]);
        assert_eq!(conf_change(&lone, &conf(&[1], &[]), 1), None);
    }

    #[test]
    fn silent_nodes_go_down_and_come_back() {
        use NodeStatus::{Down, Ready, Unknown};
        let s = state(&[
            ("me", Role::Manager, 1, Ready),
            ("a", Role::Worker, 2, Ready),
            ("b", Role::Worker, 3, Down),
            ("c", Role::Worker, 4, Unknown),
            ("d", Role::Worker, 5, Ready),
        ]);
        let heard = |id: u64| match id {
            2 => Some(Duration::from_secs(10)),
            3 => Some(Duration::from_millis(100)),
            5 => Some(Duration::from_millis(100)),
            _ => None,
        };
        let changes = liveness(&s, "me", heard);
        assert_eq!(
            changes,
            vec![("a".to_string(), Down), ("b".to_string(), Ready)]
        );
    }
}
