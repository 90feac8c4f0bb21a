//! A service's restart policy, unified from Compose's `restart:` and
//! `deploy.restart_policy`. The decision to restart lives in the orchestrator.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// `restart: no`, `condition: none`.
    #[default]
    Never,
    /// Restart after a non-zero exit (or a failure to start).
    OnFailure,
    /// `restart: always`, `condition: any`: restart on any exit; a task the user stopped
    /// comes back when the daemon restarts.
    Always,
    /// Like `Always`, except a task the user stopped stays stopped across daemon restarts.
    UnlessStopped,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// Milliseconds before a restart; `None` means exponential back-off.
    #[serde(default)]
    pub delay: Option<u64>,
    /// Give up after this many restarts (within `window` when set).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Milliseconds over which `max_attempts` is counted.
    #[serde(default)]
    pub window: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartPolicyError {
    #[error(
        "restart policy {value:?}: expected no, always, on-failure, on-failure:N or unless-stopped"
    )]
    Unknown { value: String },
    #[error("restart policy {value:?}: {count:?} is not a count of attempts")]
    BadCount { value: String, count: String },
}

impl RestartPolicy {
    pub fn new(condition: RestartCondition) -> Self {
        RestartPolicy {
            condition,
            ..RestartPolicy::default()
        }
    }

    /// Parses Compose's `restart:` value.
    pub fn parse_compose(value: &str) -> Result<RestartPolicy, RestartPolicyError> {
        let (word, count) = match value.split_once(':') {
            Some((word, count)) => (word, Some(count)),
            None => (value, None),
        };
        let condition = match word {
            "no" | "" => RestartCondition::Never,
            "always" => RestartCondition::Always,
            "on-failure" => RestartCondition::OnFailure,
            "unless-stopped" => RestartCondition::UnlessStopped,
            _ => {
                return Err(RestartPolicyError::Unknown {
                    value: value.to_owned(),
                });
            }
        };
        let max_attempts = match count {
            None => None,
            Some(count) if condition == RestartCondition::OnFailure => {
                Some(count.parse().map_err(|_| RestartPolicyError::BadCount {
                    value: value.to_owned(),
                    count: count.to_owned(),
                })?)
            }
            Some(_) => {
                return Err(RestartPolicyError::Unknown {
                    value: value.to_owned(),
                });
            }
        };
        Ok(RestartPolicy {
            condition,
            max_attempts,
            ..RestartPolicy::default()
        })
    }

    /// Builds the policy of `deploy.restart_policy` (condition `none`, `on-failure`, `any`).
    pub fn from_deploy(
        condition: &str,
        delay: Option<u64>,
        max_attempts: Option<u32>,
        window: Option<u64>,
    ) -> Result<RestartPolicy, RestartPolicyError> {
        let condition = match condition {
            "none" => RestartCondition::Never,
            "on-failure" => RestartCondition::OnFailure,
            "any" => RestartCondition::Always,
            _ => {
                return Err(RestartPolicyError::Unknown {
                    value: condition.to_owned(),
                });
            }
        };
        Ok(RestartPolicy {
            condition,
            delay,
            // Swarm treats 0 as "no limit".
            max_attempts: max_attempts.filter(|n| *n > 0),
            window: window.filter(|w| *w > 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_values_parse() {
        let cases = [
            ("no", RestartCondition::Never, None),
            ("always", RestartCondition::Always, None),
            ("unless-stopped", RestartCondition::UnlessStopped, None),
            ("on-failure", RestartCondition::OnFailure, None),
            ("on-failure:3", RestartCondition::OnFailure, Some(3)),
        ];
        for (value, condition, max) in cases {
            let policy = RestartPolicy::parse_compose(value).unwrap();
            assert_eq!((policy.condition, policy.max_attempts), (condition, max), "{value}");
        }
        assert!(RestartPolicy::parse_compose("sometimes").is_err());
        assert!(RestartPolicy::parse_compose("always:3").is_err());
        let err = RestartPolicy::parse_compose("on-failure:x").unwrap_err();
        assert!(err.to_string().contains("\"x\" is not a count"));
    }

    #[test]
    fn deploy_policy_parses() {
        let p = RestartPolicy::from_deploy("any", Some(5), Some(0), Some(60_000)).unwrap();
        assert_eq!(p.condition, RestartCondition::Always);
        assert_eq!(p.max_attempts, None);
        assert_eq!(p.window, Some(60_000));
        assert!(RestartPolicy::from_deploy("sometimes", None, None, None).is_err());
    }
}
