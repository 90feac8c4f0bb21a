//! The scheduler: a pure function from a read-only snapshot (nodes, tasks already placed,
//! tasks waiting) to decisions — place this task on that node, or explain why no node fits.
//!
//! It owns the filters, the scoring and the bookkeeping that keeps placement fast; it must not
//! change the store (its caller turns decisions into commands) nor create or stop tasks (the
//! orchestrator does).
//!
//! Cost: building the per-node counters is O(nodes + placed tasks); each service then costs
//! O(nodes) for its static filters and heaps, and each placement O(preference groups +
//! log nodes). A node that
//! fails a dynamic filter (resources, ports, replica cap) is dropped from the service's heap,
//! since placing more of the same service can only make it fail again.

mod filter;
mod node_info;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use indexmap::IndexMap;
use rustc_hash::FxHashMap;

use crate::store::{
    Command, Node, ServiceSpec, State, Task, TaskId, TaskState, placement::Strategy,
};
pub use filter::Filter;
use filter::{FILTERS, explain, first_failure};
use node_info::{NodeInfo, ServiceIndex};

/// Preference levels honoured; deeper `spread_over` entries are ignored.
const MAX_PREFERENCE_LEVELS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Assign { task: TaskId, node: String },
    Unplaceable { task: TaskId, reason: String },
}

/// Where the scheduler finds the spec of a task's service.
pub trait SpecSource {
    fn spec(&self, app: &str, service: &str) -> Option<&ServiceSpec>;
}

impl SpecSource for State {
    fn spec(&self, app: &str, service: &str) -> Option<&ServiceSpec> {
        self.service(app, service)
    }
}

impl SpecSource for HashMap<(String, String), ServiceSpec> {
    fn spec(&self, app: &str, service: &str) -> Option<&ServiceSpec> {
        // Keys are owned; a lookup by borrowed parts needs a temporary. Tests and benches
        // only, where the allocation does not matter.
        self.get(&(app.to_owned(), service.to_owned()))
    }
}

/// Decides where each of `pending` goes. `existing` are the tasks that hold node resources
/// (placed and not finished). A pending task with a preset node (a global service's) is
/// only checked against that node.
pub fn schedule<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    existing: impl IntoIterator<Item = &'a Task>,
    pending: impl IntoIterator<Item = &'a Task>,
    specs: &'a dyn SpecSource,
) -> Vec<Decision> {
    let mut batch = Batch::new(nodes, specs);
    for task in existing {
        batch.count_existing(task);
    }
    let mut groups: IndexMap<ServiceIndex, Vec<&'a Task>> = IndexMap::new();
    for task in pending {
        let service = batch.intern(task);
        groups.entry(service).or_default().push(task);
    }
    let mut decisions = Vec::new();
    for (service, tasks) in groups {
        batch.place_service(service, &tasks, &mut decisions);
    }
    decisions
}

/// Runs the scheduler over the store and returns the commands recording its decisions;
/// empty when nothing changed.
pub fn plan(state: &State) -> Vec<Command> {
    let pending: Vec<&Task> = state
        .tasks
        .values()
        .filter(|t| t.is_live() && t.status.state < TaskState::Assigned)
        .collect();
    if pending.is_empty() {
        return Vec::new();
    }
    let existing = state
        .tasks
        .values()
        .filter(|t| t.status.state >= TaskState::Assigned && t.holds_resources());
    let decisions = schedule(state.nodes.values(), existing, pending, state);
    let mut assign = Vec::new();
    let mut unplaceable = Vec::new();
    for decision in decisions {
        match decision {
            Decision::Assign { task, node } => assign.push((task, node)),
            Decision::Unplaceable { task, reason } => {
                let known = state.tasks.get(&task).and_then(|t| t.unplaceable_reason.as_ref());
                if known != Some(&reason) {
                    unplaceable.push((task, reason));
                }
            }
        }
    }
    let mut commands = Vec::new();
    if !assign.is_empty() {
        commands.push(Command::AssignTasks(assign));
    }
    if !unplaceable.is_empty() {
        commands.push(Command::MarkUnplaceable(unplaceable));
    }
    commands
}

struct Batch<'a> {
    infos: Vec<NodeInfo<'a>>,
    by_id: HashMap<&'a str, usize>,
    specs: &'a dyn SpecSource,
    services: FxHashMap<(&'a str, &'a str), ServiceIndex>,
    /// The spec of each interned service (`None` when it no longer exists).
    service_specs: Vec<Option<&'a ServiceSpec>>,
}

/// Smaller is better. `index` makes ties deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    first: u64,
    second: u64,
    third: u64,
    index: usize,
}

/// The candidate nodes of one service, split by spread preference: one leaf per distinct
/// path of label values, each with its own heap of nodes. Without preferences there is one
/// leaf. Choosing a leaf costs O(leaves), choosing a node in it O(log nodes); only the
/// chosen node's key changes with a placement, so heap entries never go stale.
struct Leaves {
    levels: usize,
    leaves: Vec<Leaf>,
    /// Tasks of the service per group, per level (a group is a path prefix).
    counts: Vec<FxHashMap<u32, u32>>,
}

struct Leaf {
    groups: [u32; MAX_PREFERENCE_LEVELS],
    heap: BinaryHeap<Reverse<Key>>,
}

impl Leaves {
    fn new(
        infos: &[NodeInfo<'_>],
        candidates: &[usize],
        spec: &ServiceSpec,
        service: ServiceIndex,
        key: impl Fn(&NodeInfo<'_>, usize) -> Key,
    ) -> Self {
        let labels = &spec.placement.spread_over;
        let levels = labels.len().min(MAX_PREFERENCE_LEVELS);
        let mut names: HashMap<Vec<&str>, u32> = HashMap::new();
        let mut leaf_of: FxHashMap<u32, usize> = FxHashMap::default();
        let mut leaves: Vec<Leaf> = Vec::new();
        let mut counts = vec![FxHashMap::default(); levels];
        for &index in candidates {
            let info = &infos[index];
            let mut groups = [0; MAX_PREFERENCE_LEVELS];
            let mut path = Vec::with_capacity(levels);
            for (level, label) in labels.iter().take(levels).enumerate() {
                // Nodes without the label form a group of their own.
                path.push(info.node.labels.get(label).map_or("", String::as_str));
                let next = names.len() as u32;
                let group = *names.entry(path.clone()).or_insert(next);
                groups[level] = group;
                *counts[level].entry(group).or_insert(0) += info.service_tasks(service);
            }
            let leaf_id = if levels == 0 { 0 } else { groups[levels - 1] };
            let next = leaves.len();
            let slot = *leaf_of.entry(leaf_id).or_insert(next);
            if slot == leaves.len() {
                leaves.push(Leaf {
                    groups,
                    heap: BinaryHeap::new(),
                });
            }
            leaves[slot].heap.push(Reverse(key(info, index)));
        }
        Leaves {
            levels,
            leaves,
            counts,
        }
    }

    /// The non-empty leaf whose groups hold the fewest of the service's tasks, level by
    /// level.
    fn choose(&self) -> Option<usize> {
        self.leaves
            .iter()
            .enumerate()
            .filter(|(_, leaf)| !leaf.heap.is_empty())
            .min_by_key(|(position, leaf)| {
                let mut rank = [0u32; MAX_PREFERENCE_LEVELS];
                for (level, slot) in rank.iter_mut().enumerate().take(self.levels) {
                    *slot = self.counts[level]
                        .get(&leaf.groups[level])
                        .copied()
                        .unwrap_or(0);
                }
                (rank, *position)
            })
            .map(|(position, _)| position)
    }

    fn record(&mut self, leaf: usize) {
        for level in 0..self.levels {
            *self.counts[level]
                .entry(self.leaves[leaf].groups[level])
                .or_insert(0) += 1;
        }
    }
}

impl<'a> Batch<'a> {
    fn new(nodes: impl IntoIterator<Item = &'a Node>, specs: &'a dyn SpecSource) -> Self {
        let infos: Vec<NodeInfo<'a>> = nodes.into_iter().map(NodeInfo::new).collect();
        let by_id = infos
            .iter()
            .enumerate()
            .map(|(index, info)| (info.node.id.as_str(), index))
            .collect();
        Batch {
            infos,
            by_id,
            specs,
            services: FxHashMap::default(),
            service_specs: Vec::new(),
        }
    }

    fn intern(&mut self, task: &'a Task) -> ServiceIndex {
        let next = self.service_specs.len() as ServiceIndex;
        let key = (task.app.as_str(), task.service.as_str());
        if let Some(index) = self.services.get(&key) {
            return *index;
        }
        self.services.insert(key, next);
        self.service_specs
            .push(self.specs.spec(&task.app, &task.service));
        next
    }

    fn count_existing(&mut self, task: &'a Task) {
        let Some(node) = task.node.as_deref() else {
            return;
        };
        let Some(&index) = self.by_id.get(node) else {
            return;
        };
        let service = self.intern(task);
        match self.service_specs[service as usize] {
            Some(spec) => self.infos[index].add_task(service, &spec.resources, spec.host_ports()),
            None => self.infos[index].add_task(service, &Default::default(), std::iter::empty()),
        }
    }

    fn place_service(
        &mut self,
        service: ServiceIndex,
        tasks: &[&'a Task],
        decisions: &mut Vec<Decision>,
    ) {
        let Some(spec) = self.service_specs[service as usize] else {
            for task in tasks {
                decisions.push(Decision::Unplaceable {
                    task: task.id.clone(),
                    reason: format!(
                        "service {:?} of app {:?} no longer exists",
                        task.service, task.app
                    ),
                });
            }
            return;
        };
        let (pinned, free): (Vec<&Task>, Vec<&Task>) =
            tasks.iter().partition(|task| task.node.is_some());
        for task in pinned {
            self.place_pinned(task, spec, service, decisions);
        }
        if free.is_empty() {
            return;
        }
        let candidates: Vec<usize> = (0..self.infos.len())
            .filter(|&index| {
                FILTERS
                    .iter()
                    .filter(|filter| filter.is_static())
                    .all(|filter| filter.passes(&self.infos[index], spec, service))
            })
            .collect();
        let strategy = spec.placement.strategy;
        let key = |info: &NodeInfo<'_>, index: usize| {
            let (first, second, third) = match strategy {
                Strategy::Spread => (
                    u64::from(info.service_tasks(service)),
                    u64::from(info.tasks),
                    0,
                ),
                Strategy::Binpack => (
                    info.free_memory,
                    info.free_nano_cpus,
                    u64::from(u32::MAX - info.tasks),
                ),
            };
            Key {
                first,
                second,
                third,
                index,
            }
        };
        let mut leaves = Leaves::new(&self.infos, &candidates, spec, service, key);
        let mut exhausted: Option<String> = None;
        for task in free {
            let chosen = loop {
                let Some(leaf) = leaves.choose() else {
                    break None;
                };
                let Some(Reverse(top)) = leaves.leaves[leaf].heap.pop() else {
                    continue;
                };
                if first_failure(&self.infos[top.index], spec, service).is_none() {
                    break Some((leaf, top.index));
                }
            };
            match chosen {
                Some((leaf, index)) => {
                    self.infos[index].add_task(service, &spec.resources, spec.host_ports());
                    leaves.record(leaf);
                    leaves.leaves[leaf]
                        .heap
                        .push(Reverse(key(&self.infos[index], index)));
                    decisions.push(Decision::Assign {
                        task: task.id.clone(),
                        node: self.infos[index].node.id.clone(),
                    });
                }
                None => {
                    let reason = exhausted
                        .get_or_insert_with(|| explain(&self.infos, spec, service))
                        .clone();
                    decisions.push(Decision::Unplaceable {
                        task: task.id.clone(),
                        reason,
                    });
                }
            }
        }
    }

    fn place_pinned(
        &mut self,
        task: &Task,
        spec: &ServiceSpec,
        service: ServiceIndex,
        decisions: &mut Vec<Decision>,
    ) {
        let node = task.node.clone().unwrap_or_default();
        let Some(&index) = self.by_id.get(node.as_str()) else {
            decisions.push(Decision::Unplaceable {
                task: task.id.clone(),
                reason: format!("node {node:?} is not part of the cluster"),
            });
            return;
        };
        if first_failure(&self.infos[index], spec, service).is_some() {
            decisions.push(Decision::Unplaceable {
                task: task.id.clone(),
                reason: explain(std::iter::once(&self.infos[index]), spec, service),
            });
            return;
        }
        self.infos[index].add_task(service, &spec.resources, spec.host_ports());
        decisions.push(Decision::Assign {
            task: task.id.clone(),
            node,
        });
    }
}

#[cfg(test)]
mod tests;
