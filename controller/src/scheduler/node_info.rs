//! What the scheduler tracks per node while it places a batch: free reservations, task
//! counts in total and per service, and host ports in use. Kept up to date incrementally
//! with every placement so that no decision rescans the tasks.

use rustc_hash::FxHashMap;

use crate::store::{Node, PublishedPort, Resources};

/// A service, interned to a small number for cheap per-node counters.
pub type ServiceIndex = u32;

pub struct NodeInfo<'a> {
    pub node: &'a Node,
    pub free_nano_cpus: u64,
    pub free_memory: u64,
    pub tasks: u32,
    pub per_service: FxHashMap<ServiceIndex, u32>,
    pub host_ports: Vec<PublishedPort>,
}

impl<'a> NodeInfo<'a> {
    pub fn new(node: &'a Node) -> Self {
        NodeInfo {
            node,
            free_nano_cpus: node.resources.nano_cpus,
            free_memory: node.resources.memory,
            tasks: 0,
            per_service: FxHashMap::default(),
            host_ports: Vec::new(),
        }
    }

    pub fn service_tasks(&self, service: ServiceIndex) -> u32 {
        self.per_service.get(&service).copied().unwrap_or(0)
    }

    /// Counts a task (already running or just placed) against this node.
    pub fn add_task<'p>(
        &mut self,
        service: ServiceIndex,
        resources: &Resources,
        ports: impl Iterator<Item = &'p PublishedPort>,
    ) {
        // A task already running may exceed what is free (reservations were raised after
        // it started); never wrap around.
        self.free_nano_cpus = self
            .free_nano_cpus
            .saturating_sub(resources.reserve_nano_cpus);
        self.free_memory = self.free_memory.saturating_sub(resources.reserve_memory);
        self.tasks += 1;
        *self.per_service.entry(service).or_default() += 1;
        self.host_ports.extend(ports.cloned());
    }

    pub fn port_in_use(&self, port: &PublishedPort) -> bool {
        self.host_ports.iter().any(|used| used.collides_with(port))
    }
}
