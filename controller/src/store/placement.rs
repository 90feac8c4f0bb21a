//! Where a service's tasks may and should go: parsed placement constraints, spread
//! preferences, per-node replica caps, platforms and the scoring strategy.
//!
//! Constraints are parsed once when the spec is built, so the scheduler only compares
//! strings; evaluation against a node lives here beside the grammar.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::node::{Node, Platform};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// Label names (`node.labels.` stripped) to spread tasks evenly over, most significant
    /// first.
    #[serde(default)]
    pub spread_over: Vec<String>,
    /// 0 means no cap.
    #[serde(default)]
    pub max_replicas_per_node: u32,
    /// Platforms the image runs on; empty means any.
    #[serde(default)]
    pub platforms: Vec<Platform>,
    #[serde(default)]
    pub strategy: Strategy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Fewest tasks of the service, then fewest tasks overall.
    #[default]
    Spread,
    /// Fill the fullest node that still fits.
    Binpack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintKey {
    Id,
    Hostname,
    Role,
    Os,
    Arch,
    Label(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintOp {
    Eq,
    Ne,
}

/// One `node.<attribute> ==|!= value` expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub key: ConstraintKey,
    pub op: ConstraintOp,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("placement constraint {expression:?}: expected `node.<attribute> == value` or `!=`")]
    NoOperator { expression: String },
    #[error("placement constraint {expression:?}: unknown attribute {key:?}")]
    UnknownKey { expression: String, key: String },
    #[error("placement constraint {expression:?}: empty value")]
    EmptyValue { expression: String },
}

impl Constraint {
    pub fn parse(expression: &str) -> Result<Constraint, ConstraintError> {
        let (left, op, right) = if let Some((l, r)) = expression.split_once("==") {
            (l, ConstraintOp::Eq, r)
        } else if let Some((l, r)) = expression.split_once("!=") {
            (l, ConstraintOp::Ne, r)
        } else {
            return Err(ConstraintError::NoOperator {
                expression: expression.to_owned(),
            });
        };
        let key_text = left.trim();
        let value = right.trim();
        if value.is_empty() {
            return Err(ConstraintError::EmptyValue {
                expression: expression.to_owned(),
            });
        }
        let key = match key_text {
            "node.id" => ConstraintKey::Id,
            "node.hostname" => ConstraintKey::Hostname,
            "node.role" => ConstraintKey::Role,
            "node.platform.os" => ConstraintKey::Os,
            "node.platform.arch" => ConstraintKey::Arch,
            other => match other.strip_prefix("node.labels.") {
                Some(label) if !label.is_empty() => ConstraintKey::Label(label.to_owned()),
                _ => {
                    return Err(ConstraintError::UnknownKey {
                        expression: expression.to_owned(),
                        key: other.to_owned(),
                    });
                }
            },
        };
        Ok(Constraint {
            key,
            op,
            value: value.to_owned(),
        })
    }

    pub fn matches(&self, node: &Node) -> bool {
        // Roles and platforms are case-insensitive words; ids, names and labels are exact.
        let equal = match &self.key {
            ConstraintKey::Id => node.id == self.value,
            ConstraintKey::Hostname => node.hostname == self.value,
            ConstraintKey::Role => node.role.as_str().eq_ignore_ascii_case(&self.value),
            ConstraintKey::Os => node.platform.os.eq_ignore_ascii_case(&self.value),
            ConstraintKey::Arch => node.platform.architecture.eq_ignore_ascii_case(&self.value),
            ConstraintKey::Label(label) => node.labels.get(label) == Some(&self.value),
        };
        equal == (self.op == ConstraintOp::Eq)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.key {
            ConstraintKey::Id => "node.id".to_owned(),
            ConstraintKey::Hostname => "node.hostname".to_owned(),
            ConstraintKey::Role => "node.role".to_owned(),
            ConstraintKey::Os => "node.platform.os".to_owned(),
            ConstraintKey::Arch => "node.platform.arch".to_owned(),
            ConstraintKey::Label(label) => format!("node.labels.{label}"),
        };
        let op = match self.op {
            ConstraintOp::Eq => "==",
            ConstraintOp::Ne => "!=",
        };
        write!(f, "{key} {op} {}", self.value)
    }
}

impl Placement {
    pub fn constraints_match(&self, node: &Node) -> bool {
        self.constraints.iter().all(|c| c.matches(node))
    }

    pub fn platform_matches(&self, node: &Node) -> bool {
        self.platforms.is_empty()
            || self.platforms.iter().any(|p| {
                (p.os.is_empty() || p.os.eq_ignore_ascii_case(&node.platform.os))
                    && (p.architecture.is_empty()
                        || p.architecture
                            .eq_ignore_ascii_case(&node.platform.architecture))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Availability, NodeResources, NodeStatus, Role};

    fn node() -> Node {
        Node {
            id: "n1".into(),
            hostname: "alpha".into(),
            role: Role::Worker,
            availability: Availability::Active,
            labels: [("zone".to_owned(), "east".to_owned())].into(),
            platform: Platform::new("linux", "amd64"),
            resources: NodeResources::default(),
            status: NodeStatus::Ready,
            address: String::new(),
            raft_id: 0,
        }
    }

    #[test]
    fn constraints_parse_and_match() {
        let cases = [
            ("node.labels.zone == east", true),
            ("node.labels.zone==west", false),
            ("node.labels.zone != west", true),
            ("node.labels.rack == 1", false),
            ("node.labels.rack != 1", true),
            ("node.role != manager", true),
            ("node.role == Worker", true),
            ("node.hostname == alpha", true),
            ("node.id == n2", false),
            ("node.platform.os == linux", true),
            ("node.platform.arch == arm64", false),
        ];
        for (expression, expected) in cases {
            let constraint = Constraint::parse(expression).unwrap();
            assert_eq!(constraint.matches(&node()), expected, "{expression}");
        }
    }

    #[test]
    fn bad_constraints_are_explained() {
        assert!(matches!(
            Constraint::parse("node.labels.zone"),
            Err(ConstraintError::NoOperator { .. })
        ));
        let err = Constraint::parse("engine.labels.x == 1").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown attribute \"engine.labels.x\"")
        );
        assert!(matches!(
            Constraint::parse("node.role == "),
            Err(ConstraintError::EmptyValue { .. })
        ));
    }

    #[test]
    fn platforms_match_loosely() {
        let mut placement = Placement::default();
        assert!(placement.platform_matches(&node()));
        placement.platforms = vec![Platform::new("linux", "arm64")];
        assert!(!placement.platform_matches(&node()));
        placement.platforms.push(Platform::new("linux", ""));
        assert!(placement.platform_matches(&node()));
    }
}
