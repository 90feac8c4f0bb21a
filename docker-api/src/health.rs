//! Healthchecks of containers started through the API: the container's `Healthcheck`
//! over the image's, run on Docker's schedule and verdict rules — the node agent's pure
//! parts ([`HealthConfig::resolve`], [`Verdicts`]), not a second copy of them. A probe is
//! the container layer's `exec` of the test, bounded by its timeout. What Docker shows in
//! `State.Health` (status, failing streak, the last five probes with their output) is kept
//! here and written after every change under the server's state dir (`health/<id>.json`),
//! so a restarted server shows the same health and its monitors go on from it.
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
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backend::Backend;

/// Docker keeps this many probe results.
const LOG_ENTRIES: usize = 5;
/// And this much of each probe's output.
const OUTPUT_BYTES: usize = 4096;

/// What inspect shows of one container's health.
#[derive(Debug, Clone)]
struct State {
    /// Which monitor (of this server) owns it; 0 for none.
    run: u64,
    saved: Saved,
}

/// The part of a container's health that outlives the server: `health/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    /// The container start it belongs to (`State.StartedAt`): a later start begins anew.
    started_at: String,
    health: Health,
    failing_streak: u64,
    log: VecDeque<Value>,
}

const KIND: &str = "health";

/// Writes `s` under the caller's lock, so an older monitor's write cannot land after a
/// newer one's. Not fsynced: a probe lost in a crash is retaken at the next interval.
fn save(b: &Backend, id: &str, s: &Saved) {
    if let Err(e) = b.put_meta_volatile(KIND, id, s) {
        tracing::warn!(container = id, error = %e.message, "cannot save the health state");
    }
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
        self.lock().get(id).map_or(Health::None, |s| s.saved.health)
    }

    /// Docker's `State.Health`, when the container has a healthcheck.
    pub(crate) fn inspect(&self, id: &str) -> Option<Value> {
        self.lock().get(id).map(|s| {
            json!({
                "Status": status_word(s.saved.health),
                "FailingStreak": s.saved.failing_streak,
                "Log": s.saved.log,
            })
        })
    }

    /// Forgets a removed container (or one without a healthcheck any more), on disk too.
    pub(crate) fn forget(&self, b: &Backend, id: &str) {
        let mut states = self.lock();
        states.remove(id);
        b.drop_meta(KIND, id);
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

/// Takes up the containers made through the API after a server (re)start: each one's
/// saved health is shown again, and a running container with a healthcheck is monitored
/// from it — its status, failing streak and log — when the save belongs to its current
/// start (else it begins at `starting`). Containers of Compose services are the node
/// agent's to watch. Once per backend.
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
        let ours = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for mut r in b2.containers.records().unwrap_or_default() {
                let ours = b2
                    .meta::<crate::create::Extra>("containers", &r.id)
                    .is_some();
                if !ours {
                    continue;
                }
                b2.containers.observe(&mut r);
                let saved = b2.meta::<Saved>(KIND, &r.id);
                out.push((r, saved));
            }
            out
        })
        .await
        .unwrap_or_default();
        for (r, saved) in ours {
            if b.health.health(&r.id) != Health::None {
                continue; // already started through this server
            }
            let running = r.state.status == berth_node_agent::container::Status::Running;
            match saved {
                Some(saved) if running && saved.started_at == r.state.started_at => {
                    match config_of(&b, &r) {
                        Some(cfg) => take_up(&b, &r, cfg, saved),
                        None => b.health.forget(&b, &r.id),
                    }
                }
                _ if running => watch(&b, &r),
                // stopped: the last verdict stays, with no monitor
                Some(saved) => {
                    b.health
                        .lock()
                        .insert(r.id.clone(), State { run: 0, saved });
                }
                None => {}
            }
        }
    });
}

/// Starts the health monitor of a container that has just started (a monitor of an
/// earlier run stops at its next probe). Runs on the tokio runtime.
pub(crate) fn watch(b: &Arc<Backend>, record: &Record) {
    let Some(cfg) = config_of(b, record) else {
        b.health.forget(b, &record.id);
        return;
    };
    let saved = Saved {
        started_at: record.state.started_at.clone(),
        health: Health::Starting,
        failing_streak: 0,
        log: VecDeque::new(),
    };
    let verdicts = Verdicts::new(cfg.retries);
    spawn_monitor(
        b,
        &record.id,
        cfg,
        saved,
        verdicts,
        tokio::time::Instant::now(),
    );
}

/// Monitors a running container from its saved health (after a server restart). The
/// start period still counts from the container's start.
fn take_up(b: &Arc<Backend>, record: &Record, cfg: HealthConfig, saved: Saved) {
    let verdicts = resumed_verdicts(cfg.retries, saved.health, saved.failing_streak);
    let up = crate::time::now_seconds() - crate::time::unix_seconds(&record.state.started_at);
    let now = tokio::time::Instant::now();
    let began = now
        .checked_sub(Duration::from_secs(up.max(0) as u64))
        .unwrap_or(now);
    spawn_monitor(b, &record.id, cfg, saved, verdicts, began);
}

/// The verdict rules' state that leads to `health` with `streak` failures in a row: a
/// passing probe (for `healthy`) then the failures, the status set last since an
/// `unhealthy` verdict made under other retries stands until a probe passes.
fn resumed_verdicts(retries: u64, health: Health, streak: u64) -> Verdicts {
    let mut v = Verdicts::new(retries);
    if health != Health::Starting {
        v.record(true, false);
    }
    // beyond `retries` more failures change nothing
    for _ in 0..streak.min(retries.max(1)) {
        v.record(false, false);
    }
    v.health = health;
    v
}

fn spawn_monitor(
    b: &Arc<Backend>,
    id: &str,
    cfg: HealthConfig,
    saved: Saved,
    verdicts: Verdicts,
    began: tokio::time::Instant,
) {
    let run = b
        .health
        .runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    {
        let mut states = b.health.lock();
        save(b, id, &saved);
        states.insert(id.to_string(), State { run, saved });
    }
    let b = b.clone();
    let id = id.to_string();
    tokio::spawn(async move { monitor(b, id, cfg, run, verdicts, began).await });
}

async fn monitor(
    b: Arc<Backend>,
    id: String,
    cfg: HealthConfig,
    run: u64,
    mut verdicts: Verdicts,
    began: tokio::time::Instant,
) {
    loop {
        let since_start = began.elapsed();
        let in_start = since_start < cfg.start_period;
        tokio::time::sleep(cfg.wait_before_probe(since_start, verdicts.health)).await;
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
        let s = &mut s.saved;
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
        save(b, id, s);
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
    fn resumed_verdicts_go_on_from_the_saved_state() {
        // healthy with one failure: one more of three retries is not yet unhealthy
        let mut v = resumed_verdicts(3, Health::Healthy, 1);
        assert_eq!(v.health, Health::Healthy);
        assert_eq!(v.record(false, false), None);
        assert_eq!(v.record(false, false), Some(Health::Unhealthy));
        // unhealthy stays so on failures, a pass turns it healthy
        let mut v = resumed_verdicts(2, Health::Unhealthy, 7);
        assert_eq!(v.record(false, false), None);
        assert_eq!(v.health, Health::Unhealthy);
        assert_eq!(v.record(true, false), Some(Health::Healthy));
        // starting with two failures of three: the next one decides
        let mut v = resumed_verdicts(3, Health::Starting, 2);
        assert_eq!(v.health, Health::Starting);
        assert_eq!(v.record(false, false), Some(Health::Unhealthy));
        // saved as Docker's words
        let saved = Saved {
            started_at: "2026-01-01T00:00:00Z".into(),
            health: Health::Unhealthy,
            failing_streak: 4,
            log: VecDeque::from([entry("a", "b", 1, "no")]),
        };
        let text = serde_json::to_string(&saved).unwrap();
        assert!(text.contains("\"unhealthy\""), "{text}");
        assert_eq!(serde_json::from_str::<Saved>(&text).unwrap(), saved);
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
