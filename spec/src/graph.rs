//! The service dependency graph: built from `depends_on`, `links`, `network_mode: service:x`
//! and `volumes_from`, it rejects cycles (naming the whole cycle), orders start-up in waves
//! (services whose dependencies are all met start together), reverses that order for stopping,
//! and closes a selection of services over its dependencies (as `up svc` does).
//!
//! Pure: it knows service names and edges only, not the model, so every layer can use it.

use std::collections::{BTreeSet, HashMap};

use indexmap::IndexSet;
use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::Error;

/// Why one service depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    DependsOn,
    Link,
    NetworkMode,
    VolumesFrom,
    /// `ipc`, `pid`, `uts` or `cgroup` set to `service:<name>`.
    Namespace,
}

/// `dependent` needs `dependency` to be started first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub dependent: String,
    pub dependency: String,
    pub kind: EdgeKind,
    /// `depends_on.<x>.required: false` makes a missing dependency harmless.
    pub required: bool,
}

impl Edge {
    pub fn new(dependent: &str, dependency: &str, kind: EdgeKind) -> Self {
        Edge {
            dependent: dependent.to_owned(),
            dependency: dependency.to_owned(),
            kind,
            required: true,
        }
    }
}

/// An acyclic graph of services; edges point from a dependent to its dependency.
#[derive(Debug, Clone)]
pub struct DependencyGraph {
    graph: DiGraph<String, EdgeKind>,
    index: HashMap<String, NodeIndex>,
}

impl DependencyGraph {
    /// Builds the graph. A required edge to an unknown service is an error; an optional one is
    /// dropped. A cycle is an error whose path starts and ends with the same service.
    pub fn new<'a>(
        services: impl IntoIterator<Item = &'a str>,
        edges: impl IntoIterator<Item = Edge>,
    ) -> Result<Self, Error> {
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for name in services {
            index
                .entry(name.to_owned())
                .or_insert_with(|| graph.add_node(name.to_owned()));
        }
        for edge in edges {
            let Some(&from) = index.get(&edge.dependent) else {
                return Err(unknown(&edge.dependency, &edge.dependent));
            };
            let Some(&to) = index.get(&edge.dependency) else {
                if edge.required {
                    return Err(unknown(&edge.dependent, &edge.dependency));
                }
                continue;
            };
            if graph.find_edge(from, to).is_none() {
                graph.add_edge(from, to, edge.kind);
            }
        }
        let built = DependencyGraph { graph, index };
        if let Some(cycle) = built.find_cycle() {
            return Err(Error::Cycle { path: cycle });
        }
        Ok(built)
    }

    /// Start order: each wave holds the services whose dependencies are all in earlier waves,
    /// sorted by name so the order is stable.
    pub fn start_waves(&self) -> Vec<Vec<String>> {
        let mut remaining: HashMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|n| {
                (
                    n,
                    self.graph
                        .neighbors_directed(n, Direction::Outgoing)
                        .count(),
                )
            })
            .collect();
        let mut waves = Vec::new();
        let mut ready: BTreeSet<&str> = remaining
            .iter()
            .filter(|(_, deps)| **deps == 0)
            .map(|(n, _)| self.graph[*n].as_str())
            .collect();
        while !ready.is_empty() {
            let wave: Vec<String> = ready.iter().map(|s| (*s).to_owned()).collect();
            let mut next = BTreeSet::new();
            for name in &wave {
                let node = self.index[name];
                remaining.remove(&node);
                for dependent in self.graph.neighbors_directed(node, Direction::Incoming) {
                    if let Some(count) = remaining.get_mut(&dependent) {
                        *count -= 1;
                        if *count == 0 {
                            next.insert(self.graph[dependent].as_str());
                        }
                    }
                }
            }
            waves.push(wave);
            ready = next;
        }
        waves
    }

    /// Stop order: the start waves reversed, so dependents stop before their dependencies.
    pub fn stop_waves(&self) -> Vec<Vec<String>> {
        let mut waves = self.start_waves();
        waves.reverse();
        waves
    }

    /// The selected services plus everything they depend on, transitively, in the order
    /// first seen. Unknown names are an error.
    pub fn with_dependencies<S: AsRef<str>>(
        &self,
        selected: &[S],
    ) -> Result<IndexSet<String>, Error> {
        let mut out = IndexSet::new();
        let mut stack: Vec<NodeIndex> = Vec::new();
        for name in selected {
            let name = name.as_ref();
            let node = *self
                .index
                .get(name)
                .ok_or_else(|| Error::Project(format!("no such service: {name}")))?;
            stack.push(node);
        }
        while let Some(node) = stack.pop() {
            if out.insert(self.graph[node].clone()) {
                stack.extend(self.graph.neighbors_directed(node, Direction::Outgoing));
            }
        }
        Ok(out)
    }

    /// Services that depend on `name` directly.
    pub fn dependents(&self, name: &str) -> Vec<String> {
        let Some(&node) = self.index.get(name) else {
            return Vec::new();
        };
        let mut out: Vec<String> = self
            .graph
            .neighbors_directed(node, Direction::Incoming)
            .map(|n| self.graph[n].clone())
            .collect();
        out.sort();
        out
    }

    /// Services `name` depends on directly.
    pub fn dependencies(&self, name: &str) -> Vec<String> {
        let Some(&node) = self.index.get(name) else {
            return Vec::new();
        };
        let mut out: Vec<String> = self
            .graph
            .neighbors_directed(node, Direction::Outgoing)
            .map(|n| self.graph[n].clone())
            .collect();
        out.sort();
        out
    }

    /// Finds one cycle, if any, as a path of names that starts and ends with the same service.
    fn find_cycle(&self) -> Option<Vec<String>> {
        let mut components = tarjan_scc(&self.graph);
        // Report the cycle that involves the alphabetically first service, for stable output.
        components.sort_by_key(|c| c.iter().map(|n| self.graph[*n].clone()).min());
        for component in components {
            let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
            let start = *component.iter().min_by_key(|n| self.graph[**n].as_str())?;
            let self_loop = self.graph.find_edge(start, start).is_some();
            if component.len() == 1 && !self_loop {
                continue;
            }
            let name = |n: NodeIndex| self.graph[n].clone();
            if self_loop {
                return Some(vec![name(start), name(start)]);
            }
            return Some(
                self.path_within(start, &members)
                    .into_iter()
                    .map(name)
                    .collect(),
            );
        }
        None
    }

    /// A closed walk from `start` back to itself inside one strongly connected component.
    fn path_within(&self, start: NodeIndex, members: &BTreeSet<NodeIndex>) -> Vec<NodeIndex> {
        // Breadth-first from start's successors back to start gives the shortest cycle.
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::new();
        let mut successors: Vec<NodeIndex> = self
            .graph
            .neighbors(start)
            .filter(|n| members.contains(n))
            .collect();
        successors.sort_by_key(|n| self.graph[*n].as_str());
        for next in successors {
            if parent.insert(next, start).is_none() {
                queue.push_back(next);
            }
        }
        while let Some(node) = queue.pop_front() {
            if node == start {
                break;
            }
            let mut successors: Vec<NodeIndex> = self
                .graph
                .neighbors(node)
                .filter(|n| members.contains(n))
                .collect();
            successors.sort_by_key(|n| self.graph[*n].as_str());
            for next in successors {
                if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(next) {
                    e.insert(node);
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![start];
        let mut node = parent[&start];
        while node != start {
            path.push(node);
            node = parent[&node];
        }
        path.push(start);
        path.reverse();
        path
    }
}

fn unknown(dependent: &str, dependency: &str) -> Error {
    Error::Project(format!(
        "service {dependent:?} depends on undefined service {dependency:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(services: &[&str], edges: &[(&str, &str)]) -> Result<DependencyGraph, Error> {
        DependencyGraph::new(
            services.iter().copied(),
            edges
                .iter()
                .map(|(a, b)| Edge::new(a, b, EdgeKind::DependsOn)),
        )
    }

    #[test]
    fn waves_group_independent_services() {
        let g = graph(
            &["web", "api", "db", "cache", "worker"],
            &[
                ("web", "api"),
                ("api", "db"),
                ("api", "cache"),
                ("worker", "db"),
            ],
        )
        .unwrap();
        assert_eq!(
            g.start_waves(),
            vec![vec!["cache", "db"], vec!["api", "worker"], vec!["web"]]
        );
        assert_eq!(
            g.stop_waves(),
            vec![
                vec!["web".to_owned()],
                vec!["api".into(), "worker".into()],
                vec!["cache".into(), "db".into()]
            ]
        );
    }

    #[test]
    fn cycle_is_reported_with_its_whole_path() {
        let err = graph(
            &["a", "b", "c", "d"],
            &[("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")],
        )
        .unwrap_err();
        match &err {
            Error::Cycle { path } => assert_eq!(path, &["a", "b", "c", "a"]),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "dependency cycle between services: a -> b -> c -> a"
        );
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = graph(&["a"], &[("a", "a")]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle between services: a -> a");
    }

    #[test]
    fn shortest_cycle_inside_a_larger_component() {
        // a -> b -> a and b -> c -> a: the shortest cycle through `a` is a -> b -> a.
        let err = graph(
            &["a", "b", "c"],
            &[("a", "b"), ("b", "a"), ("b", "c"), ("c", "a")],
        )
        .unwrap_err();
        match err {
            Error::Cycle { path } => assert_eq!(path, ["a", "b", "a"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_required_dependency_is_an_error_optional_is_dropped() {
        let err = graph(&["web"], &[("web", "db")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service \"web\" depends on undefined service \"db\""
        );
        let optional = Edge {
            required: false,
            ..Edge::new("web", "db", EdgeKind::DependsOn)
        };
        let g = DependencyGraph::new(["web"], [optional]).unwrap();
        assert_eq!(g.start_waves(), vec![vec!["web"]]);
    }

    #[test]
    fn selection_pulls_in_transitive_dependencies() {
        let g = graph(
            &["web", "api", "db", "other"],
            &[("web", "api"), ("api", "db")],
        )
        .unwrap();
        let selected = g.with_dependencies(&["web"]).unwrap();
        let mut names: Vec<_> = selected.into_iter().collect();
        names.sort();
        assert_eq!(names, ["api", "db", "web"]);
        assert!(g.with_dependencies(&["nope"]).is_err());
        assert_eq!(g.dependents("db"), ["api"]);
        assert_eq!(g.dependencies("web"), ["api"]);
    }

    #[test]
    fn duplicate_edges_of_different_kinds_count_once() {
        let g = DependencyGraph::new(
            ["a", "b"],
            [
                Edge::new("a", "b", EdgeKind::DependsOn),
                Edge::new("a", "b", EdgeKind::Link),
            ],
        )
        .unwrap();
        assert_eq!(g.start_waves(), vec![vec!["b"], vec!["a"]]);
    }

    #[test]
    fn wide_graph_waves_are_linear() {
        let names: Vec<String> = (0..500).map(|i| format!("s{i:03}")).collect();
        let edges = (1..500).map(|i| Edge::new(&names[i], &names[i - 1], EdgeKind::DependsOn));
        let g = DependencyGraph::new(names.iter().map(String::as_str), edges).unwrap();
        assert_eq!(g.start_waves().len(), 500);
    }
}
