//! Healthchecks, run by the agent: the service's `healthcheck` (or the image's
//! `HEALTHCHECK` when the service has none), executed inside the container through the
//! runtime's `exec`, with Docker's rules — probes every `interval` (every `start_interval`
//! during `start_period`), each bounded by `timeout`; a success makes the container
//! healthy; `retries` consecutive failures after the start period make it unhealthy;
//! failures inside the start period do not count.
//!
//! [`HealthConfig::resolve`] and [`Verdicts`] are pure; [`probe`] runs one probe.

use std::time::Duration;

use berth_spec::model::Healthcheck;
use serde_json::Value;

use super::task::Health;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u64 = 3;

/// A healthcheck ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// The process to exec: `CMD` arguments as given, `CMD-SHELL x` as `/bin/sh -c x`.
    pub args: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u64,
    pub start_period: Duration,
    pub start_interval: Duration,
}

/// The image config's `Healthcheck` (Docker's extension of the OCI config: durations in
/// nanoseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageHealthcheck {
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u64>,
}

impl ImageHealthcheck {
    /// Reads `config.Healthcheck` from an image config document.
    pub fn from_config(config: &Value) -> Option<ImageHealthcheck> {
        let h = config.get("config")?.get("Healthcheck")?;
        let test: Vec<String> = h
            .get("Test")?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let ns = |k: &str| {
            h.get(k)
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
                .map(Duration::from_nanos)
        };
        Some(ImageHealthcheck {
            test,
            interval: ns("Interval"),
            timeout: ns("Timeout"),
            start_period: ns("StartPeriod"),
            start_interval: ns("StartInterval"),
            retries: h.get("Retries").and_then(Value::as_u64).filter(|n| *n > 0),
        })
    }
}

impl HealthConfig {
    /// How long to wait before the next probe: `start_interval` while the container is in
    /// its start period and not yet healthy, `interval` otherwise (Docker's rule).
    pub fn wait_before_probe(&self, since_start: Duration, health: Health) -> Duration {
        if since_start < self.start_period && health == Health::Starting {
            self.start_interval
        } else {
            self.interval
        }
    }

    /// The check to run: the service's fields over the image's, `None` when there is no
    /// test, `disable: true`, or the test is `NONE`. A bad test is an error message.
    pub fn resolve(
        service: Option<&Healthcheck>,
        image: Option<&ImageHealthcheck>,
    ) -> Result<Option<HealthConfig>, String> {
        if service.is_some_and(|s| s.disable) {
            return Ok(None);
        }
        let test = service
            .and_then(|s| s.test.clone())
            .or_else(|| image.map(|i| i.test.clone()))
            .unwrap_or_default();
        let args = match test.first().map(String::as_str) {
            None | Some("NONE") => return Ok(None),
            Some("CMD") if test.len() > 1 => test[1..].to_vec(),
            Some("CMD-SHELL") if test.len() == 2 => {
                vec!["/bin/sh".into(), "-c".into(), test[1].clone()]
            }
            Some(_) => {
                return Err(format!(
                    "healthcheck.test must be [\"CMD\", args…], [\"CMD-SHELL\", command] or [\"NONE\"], not {test:?}"
                ));
            }
        };
        let pick = |s: Option<Duration>, i: Option<Duration>, d: Duration| {
            s.or(i).filter(|x| !x.is_zero()).unwrap_or(d)
        };
        let sd = |f: fn(&Healthcheck) -> Option<berth_spec::model::Duration>| {
            service.and_then(f).map(|d| d.as_std())
        };
        Ok(Some(HealthConfig {
            args,
            interval: pick(
                sd(|s| s.interval),
                image.and_then(|i| i.interval),
                DEFAULT_INTERVAL,
            ),
            timeout: pick(
                sd(|s| s.timeout),
                image.and_then(|i| i.timeout),
                DEFAULT_TIMEOUT,
            ),
            retries: service
                .and_then(|s| s.retries)
                .or_else(|| image.and_then(|i| i.retries))
                .filter(|r| *r > 0)
                .unwrap_or(DEFAULT_RETRIES),
            start_period: sd(|s| s.start_period)
                .or_else(|| image.and_then(|i| i.start_period))
                .unwrap_or(Duration::ZERO),
            start_interval: pick(
                sd(|s| s.start_interval),
                image.and_then(|i| i.start_interval),
                DEFAULT_START_INTERVAL,
            ),
        }))
    }
}

/// The verdict after each probe, as Docker keeps it.
#[derive(Debug, Clone)]
pub struct Verdicts {
    pub health: Health,
    failures: u64,
    retries: u64,
}

impl Verdicts {
    pub fn new(retries: u64) -> Verdicts {
        Verdicts {
            health: Health::Starting,
            failures: 0,
            retries,
        }
    }

    /// Records one probe; `in_start_period` failures do not count. Returns the new health
    /// when it changed.
    pub fn record(&mut self, ok: bool, in_start_period: bool) -> Option<Health> {
        let before = self.health;
        if ok {
            self.failures = 0;
            self.health = Health::Healthy;
        } else if !in_start_period {
            self.failures += 1;
            if self.failures >= self.retries {
                self.health = Health::Unhealthy;
            }
        }
        (self.health != before).then_some(self.health)
    }
}

/// Runs one probe: the runtime's `exec` of `args` in container `id`, killed after
/// `timeout`. Success is exit code 0 within the timeout.
pub(crate) async fn probe(cmd: std::process::Command, timeout: Duration) -> bool {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(v: serde_json::Value) -> Healthcheck {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn probes_come_at_the_start_interval_only_while_starting_in_the_start_period() {
        let cfg = HealthConfig {
            args: vec!["true".into()],
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            retries: 3,
            start_period: Duration::from_secs(60),
            start_interval: Duration::from_secs(2),
        };
        let s = Duration::from_secs;
        assert_eq!(cfg.wait_before_probe(s(10), Health::Starting), s(2));
        assert_eq!(cfg.wait_before_probe(s(10), Health::Healthy), s(30));
        assert_eq!(cfg.wait_before_probe(s(61), Health::Starting), s(30));
    }

    #[test]
    fn tests_and_defaults() {
        let c = HealthConfig::resolve(
            Some(&hc(
                serde_json::json!({"test": ["CMD-SHELL", "true"], "interval": "2s", "retries": 5}),
            )),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.args, ["/bin/sh", "-c", "true"]);
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.retries, 5);
        let c = HealthConfig::resolve(
            Some(&hc(serde_json::json!({"test": ["CMD", "ls", "/"]}))),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.args, ["ls", "/"]);
        assert!(
            HealthConfig::resolve(Some(&hc(serde_json::json!({"test": ["NONE"]}))), None)
                .unwrap()
                .is_none()
        );
        assert!(
            HealthConfig::resolve(Some(&hc(serde_json::json!({"disable": true}))), None)
                .unwrap()
                .is_none()
        );
        assert!(
            HealthConfig::resolve(Some(&hc(serde_json::json!({"test": ["BOGUS"]}))), None).is_err()
        );
        assert!(HealthConfig::resolve(None, None).unwrap().is_none());
    }

    #[test]
    fn image_healthcheck_is_the_fallback() {
        let cfg = serde_json::json!({"config": {"Healthcheck": {"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 3_000_000_000u64, "Retries": 2}}});
        let img = ImageHealthcheck::from_config(&cfg).unwrap();
        let c = HealthConfig::resolve(None, Some(&img)).unwrap().unwrap();
        assert_eq!(c.args[2], "wget -q localhost");
        assert_eq!(c.interval, Duration::from_secs(3));
        assert_eq!(c.retries, 2);
        // the service overrides the timing but keeps the image's test
        let c = HealthConfig::resolve(Some(&hc(serde_json::json!({"interval": "1s"}))), Some(&img))
            .unwrap()
            .unwrap();
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.args[2], "wget -q localhost");
    }

    #[test]
    fn verdicts_follow_docker() {
        let mut v = Verdicts::new(2);
        assert_eq!(v.record(false, true), None); // start period: not counted
        assert_eq!(v.record(false, false), None);
        assert_eq!(v.record(false, false), Some(Health::Unhealthy));
        assert_eq!(v.record(true, false), Some(Health::Healthy));
        assert_eq!(v.record(true, false), None);
        assert_eq!(v.record(false, false), None);
        assert_eq!(v.record(false, false), Some(Health::Unhealthy));
    }
}
