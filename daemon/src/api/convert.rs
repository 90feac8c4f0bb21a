//! Store and container types to `berth.v1` messages. Pure.

use std::collections::HashMap;

use berth_api::v1;
use berth_controller::store::{DesiredState, Health, Task, TaskState};
use berth_node_agent::container::Record;

pub const LABEL_TASK: &str = "berth.task.id";
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";

pub fn desired(d: DesiredState) -> v1::DesiredState {
    match d {
        DesiredState::Ready => v1::DesiredState::DesiredReady,
        DesiredState::Running => v1::DesiredState::DesiredRunning,
        DesiredState::Shutdown => v1::DesiredState::DesiredShutdown,
        DesiredState::Remove => v1::DesiredState::DesiredRemove,
    }
}

pub fn state(s: TaskState) -> v1::TaskState {
    match s {
        TaskState::New => v1::TaskState::TaskNew,
        TaskState::Pending => v1::TaskState::TaskPending,
        TaskState::Assigned => v1::TaskState::TaskAssigned,
        TaskState::Preparing => v1::TaskState::TaskPreparing,
        TaskState::Starting => v1::TaskState::TaskStarting,
        TaskState::Running => v1::TaskState::TaskRunning,
        TaskState::Complete => v1::TaskState::TaskComplete,
        TaskState::Failed => v1::TaskState::TaskFailed,
        TaskState::Shutdown => v1::TaskState::TaskShutdown,
        TaskState::Rejected => v1::TaskState::TaskRejected,
        TaskState::Orphaned => v1::TaskState::TaskOrphaned,
    }
}

pub fn health(h: Health) -> v1::Health {
    match h {
        Health::None => v1::Health::None,
        Health::Starting => v1::Health::Starting,
        Health::Healthy => v1::Health::Healthy,
        Health::Unhealthy => v1::Health::Unhealthy,
    }
}

/// Published ports of a container, from its endpoints (`[ip:]host:container[/proto]`).
pub fn ports(record: &Record) -> Vec<v1::PortBinding> {
    let mut out = Vec::new();
    for endpoint in &record.endpoints {
        for spec in &endpoint.ports {
            out.extend(parse_port(spec));
        }
    }
    out
}

fn parse_port(spec: &str) -> Vec<v1::PortBinding> {
    let (body, protocol) = match spec.rsplit_once('/') {
        Some((body, proto)) => (body, proto.to_owned()),
        None => (spec, "tcp".to_owned()),
    };
    let parts: Vec<&str> = body.rsplitn(3, ':').collect();
    let (container, host, ip) = match parts.as_slice() {
        [c, h, ip] => (*c, *h, ip.trim_matches(['[', ']']).to_owned()),
        [c, h] => (*c, *h, String::new()),
        _ => return Vec::new(),
    };
    let range = |s: &str| -> Option<(u32, u32)> {
        match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|n| (n, n)),
        }
    };
    let (Some((c0, c1)), Some((h0, _))) = (range(container), range(host)) else {
        return Vec::new();
    };
    (c0..=c1)
        .map(|c| v1::PortBinding {
            host_ip: ip.clone(),
            host_port: h0 + (c - c0),
            container_port: c,
            protocol: protocol.clone(),
        })
        .collect()
}

/// Whether the runtime has the container's cgroup frozen (`pause`).
pub fn is_paused(run_root: &std::path::Path, id: &str) -> bool {
    berth_runtime::ops::state(run_root, id)
        .is_ok_and(|s| s.status == berth_runtime::state::Status::Paused)
}

/// The containers of `project` on this node, by task id.
pub fn by_task(records: Vec<Record>, project: &str) -> HashMap<String, Record> {
    records
        .into_iter()
        .filter(|r| r.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project))
        .filter_map(|r| r.labels.get(LABEL_TASK).cloned().map(|t| (t, r)))
        .collect()
}

/// A task with what its container shows.
pub fn task(t: &Task, image: &str, record: Option<&Record>) -> v1::Task {
    let message = t
        .unplaceable_reason
        .clone()
        .or_else(|| t.waiting_for.clone())
        .unwrap_or_else(|| t.status.message.clone());
    v1::Task {
        id: t.id.clone(),
        project: t.app.clone(),
        service: t.service.clone(),
        slot: t.slot.unwrap_or(0),
        node: t.node.clone().unwrap_or_default(),
        desired: desired(t.desired) as i32,
        state: state(t.status.state) as i32,
        health: health(t.status.health) as i32,
        // an exited container's own status is the truth; the task's report may lag it
        exit_code: record
            .filter(|r| r.state.status == berth_node_agent::container::Status::Exited)
            .map(|r| r.state.exit_code)
            .or(t.status.exit_code),
        container_id: record.map(|r| r.id.clone()).unwrap_or_default(),
        container_name: record.map(|r| r.name.clone()).unwrap_or_default(),
        ports: record.map(ports).unwrap_or_default(),
        message,
        image: record
            .map(|r| r.image.clone())
            .unwrap_or_else(|| image.to_owned()),
        restart_count: t.restart_count,
        created_at: t.created_at,
        started_at: t.started_at,
        updated_at: t.status.timestamp,
        config_hash: t.spec_hash.clone(),
        container_status: record
            .map(|r| r.state.status.as_str().to_owned())
            .unwrap_or_default(),
        command: record.map(|r| r.args.join(" ")).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse() {
        let p = parse_port("127.0.0.1:8080:80/tcp");
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].host_ip.as_str(), p[0].host_port, p[0].container_port),
            ("127.0.0.1", 8080, 80)
        );
        let p = parse_port("9000-9001:90-91/udp");
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[1].host_port, p[1].container_port, p[1].protocol.as_str()),
            (9001, 91, "udp")
        );
        assert!(parse_port("80").is_empty());
    }
}
