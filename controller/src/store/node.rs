//! A machine of the cluster as the controller knows it: identity, role, what the operator
//! allows on it, what it offers, and whether it answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::task::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub hostname: String,
    pub role: Role,
    pub availability: Availability,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub platform: Platform,
    pub resources: NodeResources,
    pub status: NodeStatus,
    /// The node's cluster address (`ip:port` of its mutual-TLS listener); empty alone.
    #[serde(default)]
    pub address: String,
    /// The node's member id in the Raft group (voter for a manager, learner for a worker);
    /// 0 for a node that is not a member.
    #[serde(default)]
    pub raft_id: u64,
}

impl Node {
    /// Whether the node may receive new tasks.
    pub fn accepts_tasks(&self) -> bool {
        self.status == NodeStatus::Ready && self.availability == Availability::Active
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Takes new tasks.
    Active,
    /// Keeps its tasks but takes no new ones.
    Pause,
    /// Its tasks are moved elsewhere.
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Ready,
    Down,
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
}

impl Platform {
    pub fn new(os: &str, architecture: &str) -> Self {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeResources {
    pub nano_cpus: u64,
    pub memory: u64,
}
