//! `berth.v1.System`: liveness, version and what the node holds.

use std::sync::Arc;

use berth_api::v1::system_server::System;
use berth_api::v1::{
    InfoRequest, InfoResponse, PingRequest, PingResponse, VersionRequest, VersionResponse,
};
use berth_controller::store::TaskState;
use tonic::{Request, Response, Status};

use super::Node;

pub struct SystemService {
    node: Arc<Node>,
}

impl SystemService {
    pub fn new(node: Arc<Node>) -> Self {
        SystemService { node }
    }
}

#[tonic::async_trait]
impl System for SystemService {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        self.node.metrics.api_requests.inc();
        Ok(Response::new(PingResponse {
            api_version: berth_api::API_VERSION.into(),
        }))
    }

    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let platform = crate::host::platform();
        Ok(Response::new(VersionResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: berth_api::API_VERSION.into(),
            os: platform.os,
            arch: platform.architecture,
        }))
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let controller = &self.node.controller;
        let status = controller.status();
        let (apps, tasks, running, nodes, memory, cpus) = controller.read(|s| {
            let me = s.nodes.get(controller.node_id());
            (
                s.apps.len() as u32,
                s.tasks.len() as u32,
                s.tasks
                    .values()
                    .filter(|t| t.status.state == TaskState::Running)
                    .count() as u32,
                s.nodes.len() as u32,
                me.map(|n| n.resources.memory).unwrap_or(0),
                me.map(|n| (n.resources.nano_cpus / 1_000_000_000) as u32)
                    .unwrap_or(0),
            )
        });
        let containers = self
            .node
            .agent
            .containers()
            .ids()
            .map(|ids| ids.len() as u32)
            .unwrap_or(0);
        Ok(Response::new(InfoResponse {
            node_id: controller.node_id().into(),
            hostname: crate::host::hostname(),
            data_root: self.node.data_root.display().to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            apps,
            tasks,
            tasks_running: running,
            nodes,
            raft_id: status.id,
            raft_applied: status.applied,
            raft_term: status.term,
            raft_leader: status.leader,
            containers,
            memory_bytes: memory,
            cpus,
        }))
    }
}
