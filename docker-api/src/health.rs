//! Healthchecks of containers started through the API: the container's `Healthcheck`
//! over the image's, run on Docker's schedule and verdict rules — the node agent's pure
//! parts ([`HealthConfig::resolve`], [`Verdicts`]), not a second copy of them. A probe is
//! the container layer's `exec` of the test, bounded by its timeout. What Docker shows in
//! `State.Health` (status, failing streak, the last five probes with their output) is kept
//! in memory here; it starts over with the server, like the monitors themselves.
//!
//! This module owns the probe loop and the state; it must not decide health itself (that
//! is `Verdicts`) nor run anything but the configured test.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_node_agent::container::{ExecOptions, Record};
use berth_node_agent::worker::Health;
use berth_node_agent::worker::health::{HealthConfig, ImageHealthcheck, Verdicts};
use serde_json::{Value, json};

use crate::backend::Backend;

/// Docker keeps this many probe results.
const LOG_ENTRIES: usize = 5;
/// And this much of each probe's output.
const OUTPUT_BYTES: usize = 4096;

/// What inspect shows of one container's health.
#[derive(Debug, Clone)]
struct State {
    /// Which start of the container the monitor belongs to.
    run: u64,
    health: Health,
    failing_streak: u64,
    log: VecDeque<Value>,
}

/// The health of every container with a healthcheck that started since the server did.
#[derive(Debug, Default)]
pub(crate) struct Monitors {
    states: Mutex<HashMap<String, State>>,
    runs: std::sync::atomic::AtomicU64,
    resumed: std::sync::atomic::AtomicBool,
}

pub(crate) fn status_word(h: Health) -> &'static str {
    match h {
        Health::None => "none",
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

impl Monitors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The container's health (`Health::None` without a healthcheck).
    pub(crate) fn health(&self, id: &str) -> Health {
        self.lock().get(id).map_or(Health::None, |s| s.health)
    }

    /// Docker's `State.Health`, when the container has a healthcheck.
    pub(crate) fn inspect(&self, id: &str) -> Option<Value> {
        self.lock().get(id).map(|s| {
            json!({
                "Status": status_word(s.health),
                "FailingStreak": s.failing_streak,
                "Log": s.log,
            })
        })
    }

    /// Forgets a removed container.
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn current(&self, id: &str, run: u64) -> bool {
        self.lock().get(id).is_some_and(|s| s.run == run)
    }
}

/// The check to run for `record`: `Config.Healthcheck` field by field over the image's
/// `HEALTHCHECK`; `None` without a test or with `NONE`.
pub(crate) fn config_of(b: &Backend, record: &Record) -> Option<HealthConfig> {
    let image = berth_image::Digest::parse(&record.image_id)
        .ok()
        .and_then(|d| b.store.read_blob(&d).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|v| ImageHealthcheck::from_config(&v));
    let own = b
        .extra(&record.id)
        .healthcheck
        .and_then(|h| ImageHealthcheck::from_config(&json!({"config": {"Healthcheck": h}})));
    let merged = merge(own, image)?;
    HealthConfig::resolve(None, Some(&merged)).ok().flatten()
}

/// The container's fields win; an empty test inherits the image's (Docker's rule).
fn merge(
    own: Option<ImageHealthcheck>,
    image: Option<ImageHealthcheck>,
) -> Option<ImageHealthcheck> {
    match (own, image) {
        (None, i) => i,
        (Some(o), None) => Some(o),
        (Some(o), Some(i)) => Some(ImageHealthcheck {
            test: if o.test.is_empty() { i.test } else { o.test },
            interval: o.interval.or(i.interval),
            timeout: o.timeout.or(i.timeout),
            start_period: o.start_period.or(i.start_period),
            start_interval: o.start_interval.or(i.start_interval),
            retries: o.retries.or(i.retries),
        }),
    }
}

/// Starts monitoring the running containers made through the API that have a
/// healthcheck (after a server restart: their state starts over at `starting`). Containers
/// of Compose services are the node agent's to watch. Once per backend.
pub(crate) fn resume(b: &Arc<Backend>) {
    if b.health
        .resumed
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        return;
    }
    let b = b.clone();
    tokio::spawn(async move {
        let b2 = b.clone();
        let running = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for mut r in b2.containers.records().unwrap_or_default() {
                let ours = b2
                    .meta::<crate::create::Extra>("containers", &r.id)
                    .is_some();
                if !ours {
                    continue;
                }
                b2.containers.observe(&mut r);
                if r.state.status == berth_node_agent::container::Status::Running {
                    out.push(r);
                }
            }
            out
        })
        .await
        .unwrap_or_default();
        for r in running {
            if b.health.health(&r.id) == Health::None {
                watch(&b, &r);
            }
        }
    });
}

/// Starts the health monitor of a container that has just started (a monitor of an
/// earlier run stops at its next probe). Runs on the tokio runtime.
pub(crate) fn watch(b: &Arc<Backend>, record: &Record) {
    let Some(cfg) = config_of(b, record) else {
        b.health.forget(&record.id);
        return;
    };
    let run = b
        .health
        .runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    b.health.lock().insert(
        record.id.clone(),
        State {
            run,
            health: Health::Starting,
            failing_streak: 0,
            log: VecDeque::new(),
        },
    );
    let b = b.clone();
    let id = record.id.clone();
    tokio::spawn(async move { monitor(b, id, cfg, run).await });
}

async fn monitor(b: Arc<Backend>, id: String, cfg: HealthConfig, run: u64) {
    let began = tokio::time::Instant::now();
    let mut verdicts = Verdicts::new(cfg.retries);
    loop {
        let in_start = began.elapsed() < cfg.start_period;
        let wait = if in_start && verdicts.health == Health::Starting {
            cfg.start_interval
        } else {
            cfg.interval
        };
        tokio::time::sleep(wait).await;
        if !b.health.current(&id, run) {
            return;
        }
        let b2 = b.clone();
        let cid = id.clone();
        let args = cfg.args.clone();
        let cmd = tokio::task::spawn_blocking(move || {
            b2.containers.exec_command(
                &cid,
                &ExecOptions {
                    args,
                    ..Default::default()
                },
            )
        })
        .await;
        let cmd = match cmd {
            Ok(Ok(cmd)) => cmd,
            // not running any more (or gone): the monitor of this run is over
            Ok(Err(berth_node_agent::container::ContainerError::State { .. }))
            | Ok(Err(berth_node_agent::container::ContainerError::NotFound(_))) => return,
            Ok(Err(e)) => {
                let now = berth_shim::time::now_rfc3339();
                let entry = entry(&now, &now, -1, &format!("healthcheck: {e}"));
                record(&b, &id, run, &mut verdicts, false, in_start, entry);
                continue;
            }
            Err(_) => return,
        };
        let start = berth_shim::time::now_rfc3339();
        let (code, output) = probe(cmd, cfg.timeout).await;
        let end = berth_shim::time::now_rfc3339();
        let in_start = began.elapsed() < cfg.start_period;
        let e = entry(&start, &end, code, &output);
        if !record(&b, &id, run, &mut verdicts, code == 0, in_start, e) {
            return;
        }
    }
}

fn entry(start: &str, end: &str, code: i64, output: &str) -> Value {
    json!({"Start": start, "End": end, "ExitCode": code, "Output": output})
}

/// Records one probe; publishes `health_status: …` when the verdict changes. False when
/// this run's monitor is no longer current.
fn record(
    b: &Arc<Backend>,
    id: &str,
    run: u64,
    verdicts: &mut Verdicts,
    ok: bool,
    in_start: bool,
    entry: Value,
) -> bool {
    let changed = {
        let mut states = b.health.lock();
        let Some(s) = states.get_mut(id).filter(|s| s.run == run) else {
            return false;
        };
        let changed = verdicts.record(ok, in_start);
        s.health = verdicts.health;
        if ok {
            s.failing_streak = 0;
        } else if !in_start {
            s.failing_streak += 1;
        }
        s.log.push_back(entry);
        while s.log.len() > LOG_ENTRIES {
            s.log.pop_front();
        }
        changed
    };
    if let Some(h) = changed {
        if let Ok(r) = b.containers.resolve(id) {
            b.container_event(&format!("health_status: {}", status_word(h)), &r, &[]);
        }
    }
    true
}

/// Runs one probe: its exit code (-1 when it did not finish within `timeout`, as Docker)
/// and the start of its output, stdout and stderr together.
async fn probe(cmd: std::process::Command, timeout: Duration) -> (i64, String) {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (-1, format!("healthcheck: cannot run the runtime: {e}")),
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let mut text = out.stdout;
            text.extend_from_slice(&out.stderr);
            text.truncate(OUTPUT_BYTES);
            let code = out.status.code().map_or(-1, i64::from);
            (code, String::from_utf8_lossy(&text).into_owned())
        }
        Ok(Err(e)) => (-1, format!("healthcheck: {e}")),
        // the child is killed as the future holding it drops
        Err(_) => (
            -1,
            format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(test: &[&str], interval: Option<u64>) -> ImageHealthcheck {
        ImageHealthcheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval: interval.map(Duration::from_secs),
            ..Default::default()
        }
    }

    #[test]
    fn the_containers_fields_win_over_the_images() {
        let image = hc(&["CMD-SHELL", "wget -q localhost"], Some(30));
        // timing only: the image's test stays
        let m = merge(Some(hc(&[], Some(1))), Some(image.clone())).unwrap();
        assert_eq!(m.test, ["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(m.interval, Some(Duration::from_secs(1)));
        // a test of its own, the image's interval
        let m = merge(Some(hc(&["CMD", "true"], None)), Some(image.clone())).unwrap();
        assert_eq!(m.test, ["CMD", "true"]);
        assert_eq!(m.interval, Some(Duration::from_secs(30)));
        // NONE switches the image's off
        let m = merge(Some(hc(&["NONE"], None)), Some(image)).unwrap();
        assert!(HealthConfig::resolve(None, Some(&m)).unwrap().is_none());
        assert!(merge(None, None).is_none());
    }

    #[test]
    fn dockers_json_reads_as_a_healthcheck() {
        let v = json!({"config": {"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000u64, "Retries": 2}}});
        let h = ImageHealthcheck::from_config(&v).unwrap();
        let c = HealthConfig::resolve(None, Some(&h)).unwrap().unwrap();
        assert_eq!(c.args, ["/bin/sh", "-c", "true"]);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.retries, 2);
    }
}
