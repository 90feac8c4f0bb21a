//! `berth.v1.Services`: the operator's view of deployed services (`berth service ls|ps|
//! inspect|scale|rollback`), on berthd's local socket. Reads answer from this member's
//! applied state; scale and rollback are store commands, forwarded to the leader like any
//! write. What the words mean (names, why a task waits) is `orchestrator::report`'s.

use std::sync::Arc;

use berth_api::v1::services_server;
use berth_api::v1::{
    ServiceInspectRequest, ServiceInspectResponse, ServiceListRequest, ServiceListResponse,
    ServiceRollbackRequest, ServiceRollbackResponse, ServiceScaleRequest, ServiceScaleResponse,
    ServiceSummary, ServiceTask, ServiceTasksRequest, ServiceTasksResponse,
};
use berth_controller::orchestrator::report;
use berth_controller::store::{Command, Mode, PortMode, Protocol, ServiceSpec, State};
use tonic::{Request, Response, Status};

use crate::controller::{Controller, now_ms};

pub struct ServicesService {
    controller: Arc<Controller>,
}

impl ServicesService {
    pub fn new(controller: Arc<Controller>) -> Self {
        ServicesService { controller }
    }

    fn resolve(&self, name: &str) -> Result<(String, String), Status> {
        self.controller
            .read(|s| report::resolve(s, name))
            .map_err(|e| Status::not_found(e.to_string()))
    }
}

fn ports(spec: &ServiceSpec) -> Vec<String> {
    spec.ports
        .iter()
        .map(|p| {
            let protocol = match p.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
            };
            let mode = match p.mode {
                PortMode::Host => "host",
                PortMode::Ingress => "ingress",
            };
            let ip = if p.ip.is_empty() { "*" } else { p.ip.as_str() };
            format!("{ip}:{}/{protocol} ({mode})", p.port)
        })
        .collect()
}

fn mode(spec: &ServiceSpec) -> &'static str {
    match spec.mode {
        Mode::Replicated => "replicated",
        Mode::Global => "global",
    }
}

fn summary(state: &State, app: &str, service: &str, spec: &ServiceSpec) -> ServiceSummary {
    let (update_state, update_message) = state
        .service_record(app, service)
        .map(|r| report::update_status(&r.update))
        .unwrap_or(("completed", String::new()));
    ServiceSummary {
        name: report::service_name(app, service),
        app: app.to_owned(),
        service: service.to_owned(),
        mode: mode(spec).into(),
        desired: report::desired_tasks(state, app, service, spec),
        running: report::running_tasks(state, app, service, spec),
        image: spec.image.clone(),
        ports: ports(spec),
        update_state: update_state.into(),
        update_message,
    }
}

fn tasks_of(state: &State, app: &str, service: &str) -> Vec<ServiceTask> {
    let Some(spec) = state.service(app, service) else {
        return Vec::new();
    };
    let record = state.service_record(app, service);
    state
        .tasks
        .values()
        .filter(|t| t.app == app && t.service == service)
        .map(|t| {
            let node = t.node.as_ref().and_then(|n| state.nodes.get(n));
            ServiceTask {
                id: t.id.clone(),
                name: report::task_name(t),
                service: report::service_name(app, service),
                image: report::task_image(spec, record, t),
                node: node.map(|n| n.hostname.clone()).unwrap_or_default(),
                node_id: t.node.clone().unwrap_or_default(),
                desired_state: report::desired_word(t.desired).into(),
                current_state: report::current_state(t),
                since_ms: t.status.timestamp,
                error: report::task_error(t),
                slot: t.slot.unwrap_or(0),
                spec_hash: t.spec_hash.clone(),
                live: t.is_live(),
                created_ms: t.created_at,
            }
        })
        .collect()
}

#[tonic::async_trait]
impl services_server::Services for ServicesService {
    async fn list(
        &self,
        request: Request<ServiceListRequest>,
    ) -> Result<Response<ServiceListResponse>, Status> {
        let only = request.into_inner().app;
        let services = self.controller.read(|s| {
            s.apps
                .values()
                .filter(|a| only.is_empty() || a.spec.name == only)
                .flat_map(|a| {
                    a.spec
                        .services
                        .iter()
                        .map(|(name, spec)| summary(s, &a.spec.name, name, spec))
                })
                .collect()
        });
        Ok(Response::new(ServiceListResponse { services }))
    }

    async fn tasks(
        &self,
        request: Request<ServiceTasksRequest>,
    ) -> Result<Response<ServiceTasksResponse>, Status> {
        let names = request.into_inner().services;
        let mut wanted = Vec::new();
        for name in &names {
            wanted.push(self.resolve(name)?);
        }
        let tasks = self.controller.read(|s| {
            if wanted.is_empty() {
                wanted = s
                    .apps
                    .values()
                    .flat_map(|a| {
                        a.spec
                            .services
                            .keys()
                            .map(|n| (a.spec.name.clone(), n.clone()))
                    })
                    .collect();
            }
            wanted
                .iter()
                .flat_map(|(app, service)| tasks_of(s, app, service))
                .collect()
        });
        Ok(Response::new(ServiceTasksResponse { tasks }))
    }

    async fn inspect(
        &self,
        request: Request<ServiceInspectRequest>,
    ) -> Result<Response<ServiceInspectResponse>, Status> {
        let mut out = Vec::new();
        for name in request.into_inner().services {
            let (app, service) = self.resolve(&name)?;
            let json = self.controller.read(|s| {
                let spec = s.service(&app, &service)?;
                let record = s.service_record(&app, &service);
                let (state, message) = record
                    .map(|r| report::update_status(&r.update))
                    .unwrap_or(("completed", String::new()));
                let summary = summary(s, &app, &service, spec);
                Some(serde_json::json!({
                    "Name": summary.name,
                    "App": app,
                    "Service": service,
                    "Mode": summary.mode,
                    "Replicas": {"Desired": summary.desired, "Running": summary.running},
                    "Spec": spec,
                    "PreviousSpec": record.and_then(|r| r.previous.as_ref()),
                    "UpdateStatus": {"State": state, "Message": message},
                }))
            });
            let json = json.ok_or_else(|| Status::not_found(format!("no service {name:?}")))?;
            out.push(
                serde_json::to_string_pretty(&json).map_err(|e| Status::internal(e.to_string()))?,
            );
        }
        Ok(Response::new(ServiceInspectResponse { services: out }))
    }

    async fn scale(
        &self,
        request: Request<ServiceScaleRequest>,
    ) -> Result<Response<ServiceScaleResponse>, Status> {
        let request = request.into_inner();
        let (app, service) = self.resolve(&request.service)?;
        self.controller
            .propose(Command::ScaleService {
                app,
                service,
                replicas: request.replicas,
            })
            .await
            .map_err(crate::api::status)?;
        Ok(Response::new(ServiceScaleResponse {}))
    }

    async fn rollback(
        &self,
        request: Request<ServiceRollbackRequest>,
    ) -> Result<Response<ServiceRollbackResponse>, Status> {
        let (app, service) = self.resolve(&request.into_inner().service)?;
        self.controller
            .propose(Command::RollbackService {
                app,
                service,
                reason: "rollback requested by the operator".into(),
                at: now_ms(),
            })
            .await
            .map_err(crate::api::status)?;
        Ok(Response::new(ServiceRollbackResponse {}))
    }
}
