//! The chain of filters a node must pass to receive a task, and the explanation of a
//! failed placement: how many nodes each filter turned away.
//!
//! The first four filters depend only on the node and the service, so they are evaluated once
//! per service per batch; the others depend on what was placed so far.

use crate::store::{NodeStatus, ServiceSpec};

use super::node_info::{NodeInfo, ServiceIndex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Filter {
    Ready,
    Availability,
    Platform,
    Constraints,
    Cpu,
    Memory,
    HostPort,
    MaxReplicas,
}

pub const FILTERS: [Filter; 8] = [
    Filter::Ready,
    Filter::Availability,
    Filter::Platform,
    Filter::Constraints,
    Filter::Cpu,
    Filter::Memory,
    Filter::HostPort,
    Filter::MaxReplicas,
];

impl Filter {
    pub fn passes(self, info: &NodeInfo<'_>, spec: &ServiceSpec, service: ServiceIndex) -> bool {
        let node = info.node;
        match self {
            Filter::Ready => node.status == NodeStatus::Ready,
            Filter::Availability => node.availability == crate::store::Availability::Active,
            Filter::Platform => spec.placement.platform_matches(node),
            Filter::Constraints => spec.placement.constraints_match(node),
            Filter::Cpu => info.free_nano_cpus >= spec.resources.reserve_nano_cpus,
            Filter::Memory => info.free_memory >= spec.resources.reserve_memory,
            Filter::HostPort => !spec.host_ports().any(|port| info.port_in_use(port)),
            Filter::MaxReplicas => {
                let max = spec.placement.max_replicas_per_node;
                max == 0 || info.service_tasks(service) < max
            }
        }
    }

    /// Whether the verdict can change as tasks are placed within one batch.
    pub fn is_static(self) -> bool {
        self <= Filter::Constraints
    }

    fn describe(self, count: usize, spec: &ServiceSpec) -> String {
        let one = count == 1;
        let nodes = if one { "node" } else { "nodes" };
        let (is, has, does) = if one {
            ("is", "has", "does")
        } else {
            ("are", "have", "do")
        };
        match self {
            Filter::Ready => format!("{count} {nodes} {is} not ready"),
            Filter::Availability => format!("{count} {nodes} not available for new tasks"),
            Filter::Platform => format!("{count} {nodes} {has} an unsupported platform"),
            Filter::Constraints => {
                let constraints: Vec<String> = spec
                    .placement
                    .constraints
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                format!(
                    "{count} {nodes} {does} not satisfy the placement constraints [{}]",
                    constraints.join(", ")
                )
            }
            Filter::Cpu => format!("{count} {nodes} {has} insufficient cpu"),
            Filter::Memory => format!("{count} {nodes} {has} insufficient memory"),
            Filter::HostPort => format!("{count} {nodes} {has} the published host port in use"),
            Filter::MaxReplicas => format!(
                "{count} {nodes} already {} max_replicas_per_node ({}) tasks of the service",
                if one { "runs" } else { "run" },
                spec.placement.max_replicas_per_node
            ),
        }
    }
}

/// The first filter the node fails, if any.
pub fn first_failure(
    info: &NodeInfo<'_>,
    spec: &ServiceSpec,
    service: ServiceIndex,
) -> Option<Filter> {
    FILTERS
        .into_iter()
        .find(|filter| !filter.passes(info, spec, service))
}

/// Explains why none of `nodes` can take a task of the service, counting each node under
/// the first filter it fails: "no suitable node (1 node not available for new tasks; 2 nodes
/// have insufficient memory)".
pub fn explain<'a>(
    nodes: impl IntoIterator<Item = &'a NodeInfo<'a>>,
    spec: &ServiceSpec,
    service: ServiceIndex,
) -> String {
    let mut counts = [0usize; FILTERS.len()];
    let mut seen = 0;
    for info in nodes {
        seen += 1;
        if let Some(filter) = first_failure(info, spec, service) {
            counts[filter as usize] += 1;
        }
    }
    if seen == 0 {
        return "no suitable node (the cluster has no nodes)".to_owned();
    }
    let parts: Vec<String> = FILTERS
        .into_iter()
        .zip(counts)
        .filter(|(_, count)| *count > 0)
        .map(|(filter, count)| filter.describe(count, spec))
        .collect();
    format!("no suitable node ({})", parts.join("; "))
}
