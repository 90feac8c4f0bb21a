//! `/containers/…`: list, create, inspect, start, stop, restart, kill, pause, unpause,
//! wait, remove, rename, prune, top, stats, resize, logs — each one call into berth's
//! container layer plus Docker's JSON shapes. Attach, exec and archive live in their own
//! modules. A container started here gets a monitor (one blocking task) that reports its
//! exit as a `die` event, applies the restart policy and removes `AutoRemove` containers.

use std::sync::Arc;
use std::time::Duration;

use berth_node_agent::container::{LogOptions, NetworkMode, Record, Status};
use berth_node_agent::worker::Health;
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::backend::{AttachHandoff, Backend, blocking, random_id};
use crate::create::{self, Supplies};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::health;
use crate::http::{self, Query, Reply, frame, ok_json};
use crate::time;

/// Whether the runtime has the container's cgroup frozen.
pub(crate) fn is_paused(b: &Backend, id: &str) -> bool {
    berth_runtime::ops::state(&b.config.run_root, id)
        .map(|s| format!("{:?}", s.status).eq_ignore_ascii_case("paused"))
        .unwrap_or(false)
}

fn state_name(b: &Backend, r: &Record) -> &'static str {
    match r.state.status {
        Status::Running if is_paused(b, &r.id) => "paused",
        Status::Running => "running",
        Status::Created => "created",
        Status::Exited => "exited",
    }
}

fn status_text(b: &Backend, r: &Record) -> String {
    let now = time::now_seconds();
    match r.state.status {
        Status::Running => {
            let up = format!(
                "Up {}",
                time::human_duration(now - time::unix_seconds(&r.state.started_at))
            );
            if is_paused(b, &r.id) {
                format!("{up} (Paused)")
            } else {
                match b.health.health(&r.id) {
                    Health::None => up,
                    Health::Starting => format!("{up} (health: starting)"),
                    h => format!("{up} ({})", health::status_word(h)),
                }
            }
        }
        Status::Created => "Created".into(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            time::human_duration(now - time::unix_seconds(&r.state.finished_at))
        ),
    }
}

/// Published ports as `docker ps` lists them.
fn port_list(r: &Record) -> Vec<Value> {
    let mut out = Vec::new();
    for spec in &r.config.ports {
        if let Ok(maps) = berth_network::firewall::parse_ports(spec) {
            for m in maps {
                out.push(json!({
                    "IP": m.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                    "PrivatePort": m.container_port,
                    "PublicPort": m.host_port,
                    "Type": format!("{:?}", m.protocol).to_ascii_lowercase(),
                }));
            }
        }
    }
    out
}

fn mounts_json(r: &Record) -> Vec<Value> {
    r.mounts
        .iter()
        .map(|m| {
            json!({
                "Type": m.kind, "Name": m.name.clone().unwrap_or_default(), "Source": m.source,
                "Destination": m.destination, "Driver": if m.kind == "volume" { "local" } else { "" },
                "Mode": if m.read_only { "ro" } else { "" }, "RW": !m.read_only, "Propagation": "rprivate",
            })
        })
        .collect()
}

/// The berth network a container is configured for, if it gets a bridge.
pub(crate) fn configured_network(b: &Backend, r: &Record) -> Option<String> {
    match &r.config.network {
        NetworkMode::Default => Some(b.default_network.clone()),
        NetworkMode::Bridge(n) => Some(n.clone()),
        NetworkMode::Host | NetworkMode::None => None,
    }
}

/// `NetworkSettings.Networks`: the endpoints of a running container, or (as Docker shows
/// them before the first start) the network it is configured for, without addresses.
/// Aliases include the short id, which berth's DNS answers too.
fn networks_json(b: &Backend, r: &Record) -> serde_json::Map<String, Value> {
    let mut nets = serde_json::Map::new();
    let mut aliases = b.extra(&r.id).aliases;
    aliases.push(r.id[..12].to_string());
    let entry = |net: &str, ip: &str, gw: &str, prefix: u8, mac: &str| {
        json!({
            "IPAMConfig": null, "Links": null,
            "Aliases": aliases,
            "NetworkID": crate::networks::docker_id(b, net),
            "EndpointID": if ip.is_empty() { String::new() } else { hex::encode(sha2_of(&format!("{net}{}", r.id))) },
            "Gateway": gw, "IPAddress": ip, "IPPrefixLen": prefix,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": mac, "DriverOpts": null,
        })
    };
    for ep in &r.endpoints {
        nets.insert(
            crate::networks::docker_name(b, &ep.network),
            entry(&ep.network, &ep.ip, &ep.gateway, ep.prefix_len, &ep.mac),
        );
    }
    if nets.is_empty() {
        if let Some(net) = configured_network(b, r) {
            nets.insert(
                crate::networks::docker_name(b, &net),
                entry(&net, "", "", 0, ""),
            );
        }
    }
    nets
}

fn sha2_of(s: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes()).into()
}

fn network_mode(b: &Backend, r: &Record) -> String {
    match &r.config.network {
        NetworkMode::Default => "bridge".into(),
        NetworkMode::Bridge(n) => crate::networks::docker_name(b, n),
        NetworkMode::Host => "host".into(),
        NetworkMode::None => "none".into(),
    }
}

/// One entry of `GET /containers/json`.
fn summary(b: &Backend, r: &Record) -> Value {
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.config.image,
        "ImageID": r.image_id,
        "Command": shell_join(&r.args),
        "Created": time::unix_seconds(&r.created),
        "Ports": if r.state.status == Status::Running { port_list(r) } else { Vec::new() },
        "Labels": r.labels,
        "State": state_name(b, r),
        "Status": status_text(b, r),
        "HostConfig": {"NetworkMode": network_mode(b, r)},
        "NetworkSettings": {"Networks": networks_json(b, r)},
        "Mounts": mounts_json(r),
    })
}

fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every container with its live state, newest first. Unlike the container layer's `list`,
/// exited `AutoRemove` containers are left to their monitor, which removes them and tells
/// the clients waiting for the removal.
pub(crate) fn observed(b: &Backend) -> ApiResult<Vec<Record>> {
    let mut out = b.containers.records()?;
    for r in &mut out {
        b.containers.observe(r);
    }
    out.sort_by(|a, b| b.created.cmp(&a.created));
    Ok(out)
}

pub async fn list(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let filters = Filters::parse(q.get("filters"))?;
    let all = q.flag("all");
    let limit = q.int("limit")?.filter(|n| *n > 0);
    let b2 = b.clone();
    let records = blocking(move || crate::containers::observed(&b2)).await?;
    let mut out = Vec::new();
    for r in &records {
        let state = state_name(b, r);
        let explicit_status = filters.has("status");
        if !all && !explicit_status && state != "running" && state != "paused" {
            continue;
        }
        let network_ids: Vec<String> = r.endpoints.iter().map(|e| e.network.clone()).collect();
        let keep = filters.any("id", |v| r.id.starts_with(v))
            && filters.any("name", |v| r.name.contains(v.trim_start_matches('/')))
            && filters.labels_match(&r.labels)
            && filters.any("status", |v| v == state)
            && filters.any("health", |v| {
                v == health::status_word(if r.state.status == Status::Running {
                    b.health.health(&r.id)
                } else {
                    Health::None
                })
            })
            && filters.any("ancestor", |v| {
                r.config.image == v || r.image_id.contains(v) || r.image == v
            })
            && filters.any("exited", |v| {
                r.state.status == Status::Exited && v.parse() == Ok(r.state.exit_code)
            })
            && filters.any("network", |v| {
                network_ids
                    .iter()
                    .any(|n| n == v || crate::networks::docker_name(b, n) == v)
            })
            && filters.any("volume", |v| {
                r.mounts
                    .iter()
                    .any(|m| m.name.as_deref() == Some(v) || m.destination == v)
            });
        if keep {
            out.push(summary(b, r));
        }
    }
    if let Some(n) = limit {
        out.truncate(n as usize);
    }
    Ok(ok_json(&Value::Array(out)))
}

/// Fresh volume names and free host ports for `create`.
struct LiveSupplies;

impl Supplies for LiveSupplies {
    fn volume_name(&mut self) -> String {
        random_id()
    }

    fn free_port(&mut self, protocol: &str) -> Result<u16, ApiError> {
        let port = if protocol == "udp" {
            std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.local_addr())
        } else {
            std::net::TcpListener::bind("0.0.0.0:0").and_then(|s| s.local_addr())
        };
        port.map(|a| a.port())
            .map_err(|e| ApiError::internal(format!("no free host port: {e}")))
    }
}

pub async fn create(b: &Arc<Backend>, q: &Query, body: Bytes) -> ApiResult<Reply> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid container config: {e}")))?;
    let mut plan = create::translate(&v, q.get("name"), &mut LiveSupplies)?;
    if let NetworkMode::Bridge(n) = &plan.options.network {
        let id = crate::networks::resolve(b, n)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("network {n} not found")))?;
        plan.options.network = if id == b.default_network {
            NetworkMode::Default
        } else {
            NetworkMode::Bridge(id)
        };
    }
    let b2 = b.clone();
    let anonymous = plan.extra.anonymous_volumes.clone();
    let record = blocking(move || {
        resolve_references(&b2, &mut plan)?;
        let r = b2.containers.create(plan.options)?;
        if r.config.auto_remove {
            b2.put_meta_volatile("containers", &r.id, &plan.extra)?;
        } else {
            b2.put_meta("containers", &r.id, &plan.extra)?;
        }
        Ok(r)
    })
    .await?;
    for v in anonymous {
        crate::volumes::mark_anonymous(b, &v);
    }
    b.container_event("create", &record, &[]);
    Ok(http::json_reply(
        StatusCode::CREATED,
        &json!({"Id": record.id, "Warnings": []}),
    ))
}

/// Turns the container names a create refers to into ids (`NetworkMode`/`PidMode`
/// `container:x`), and `Links` into `/etc/hosts` entries: Docker's legacy links give the
/// linking container the target's address under the target's name and the alias; the
/// target must run, on the network the new container joins. The address is the one the
/// target has now (a target restarted later may get another).
fn resolve_references(b: &Backend, plan: &mut create::Plan) -> ApiResult<()> {
    let running = |what: &str, q: &str| -> ApiResult<Record> {
        let mut r = b.containers.resolve(q)?;
        b.containers.observe(&mut r);
        if r.state.status != Status::Running {
            return Err(ApiError::conflict(format!(
                "cannot {what} container {q}: it is not running"
            )));
        }
        Ok(r)
    };
    let o = &mut plan.options;
    if let Some(t) = o.network_from.clone() {
        o.network_from = Some(running("join the network of", &t)?.id);
    }
    if let Some(t) = o
        .pid_mode
        .clone()
        .and_then(|m| m.strip_prefix("container:").map(String::from))
    {
        o.pid_mode = Some(format!(
            "container:{}",
            running("join the PID namespace of", &t)?.id
        ));
    }
    let network = match &o.network {
        NetworkMode::Default => Some(b.default_network.clone()),
        NetworkMode::Bridge(id) => Some(id.clone()),
        NetworkMode::Host | NetworkMode::None => None,
    };
    o.add_host
        .extend(link_hosts(b, &plan.extra.links, network.as_deref())?);
    Ok(())
}

/// The `/etc/hosts` entries (`name:address`) of `links` (`target[:alias]`) for a container
/// on `network`: each target must run on it.
pub(crate) fn link_hosts(
    b: &Backend,
    links: &[String],
    network: Option<&str>,
) -> ApiResult<Vec<String>> {
    let mut hosts = Vec::new();
    for link in links {
        let (target, alias) = match link.split_once(':') {
            Some((t, a)) => (t, a.rsplit('/').next().unwrap_or(a)),
            None => (link.as_str(), link.as_str()),
        };
        let target = target.trim_start_matches('/');
        let alias = alias.trim_start_matches('/');
        let mut t = b.containers.resolve(target)?;
        b.containers.observe(&mut t);
        if t.state.status != Status::Running {
            return Err(ApiError::conflict(format!(
                "cannot link to container {target}: it is not running"
            )));
        }
        let ep = t
            .endpoints
            .iter()
            .find(|e| Some(e.network.as_str()) == network)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "HostConfig.Links: container {target} is not on the network this container joins"
                ))
            })?;
        for name in [alias, t.name.as_str()] {
            let entry = format!("{name}:{}", ep.ip);
            if !name.is_empty() && !hosts.contains(&entry) {
                hosts.push(entry);
            }
        }
    }
    Ok(hosts)
}

async fn resolve(b: &Arc<Backend>, q: &str) -> ApiResult<Record> {
    let b2 = b.clone();
    let q = q.to_string();
    blocking(move || {
        let mut r = b2.containers.resolve(&q)?;
        b2.containers.observe(&mut r);
        Ok(r)
    })
    .await
}

pub async fn inspect(b: &Arc<Backend>, q: &str) -> ApiResult<Reply> {
    let r = resolve(b, q).await?;
    let b2 = b.clone();
    let id = r.id.clone();
    let mut v = blocking(move || Ok(b2.containers.inspect(&id)?)).await?;
    let extra = b.extra(&r.id);
    let paused = r.state.status == Status::Running && is_paused(b, &r.id);
    v["State"]["Paused"] = json!(paused);
    v["State"]["Status"] = json!(state_name(b, &r));
    v["Created"] = json!(r.created);
    v["Image"] = json!(r.image_id);
    v["Platform"] = json!("linux");
    v["RestartCount"] = json!(extra.restart_count);
    v["Mounts"] = json!(mounts_json(&r));
    let hc = &mut v["HostConfig"];
    hc["NetworkMode"] = json!(network_mode(b, &r));
    hc["RestartPolicy"] = json!(extra.restart);
    hc["LogConfig"] = json!({"Type": extra.log_type, "Config": extra.log_config});
    hc["Privileged"] = json!(r.config.privileged);
    hc["Links"] = json!(extra.links);
    hc["Ulimits"] = json!(
        r.config
            .ulimits
            .iter()
            .map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard}))
            .collect::<Vec<_>>()
    );
    hc["SecurityOpt"] = json!(r.config.security_opt);
    hc["CpuShares"] = json!(r.config.cpu_shares.unwrap_or(0));
    hc["CpusetCpus"] = json!(r.config.cpuset_cpus.clone().unwrap_or_default());
    hc["CpusetMems"] = json!(r.config.cpuset_mems.clone().unwrap_or_default());
    hc["PidMode"] = json!(r.config.pid_mode.clone().unwrap_or_default());
    hc["IpcMode"] = json!(
        r.config
            .ipc_mode
            .clone()
            .unwrap_or_else(|| "private".into())
    );
    hc["VolumesFrom"] = json!(r.config.volumes_from);
    hc["Devices"] = json!(
        r.config
            .devices
            .iter()
            .map(|d| {
                let mut p = d.splitn(3, ':');
                let host = p.next().unwrap_or_default();
                let inside = p.next().unwrap_or(host);
                json!({"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": p.next().unwrap_or("rwm")})
            })
            .collect::<Vec<_>>()
    );
    hc["ShmSize"] = json!(r.config.shm_size.unwrap_or(64 << 20));
    hc["Sysctls"] = json!(r.config.sysctls);
    hc["GroupAdd"] = json!(r.config.group_add);
    hc["OomScoreAdj"] = json!(r.config.oom_score_adj.unwrap_or(0));
    hc["DnsSearch"] = json!(r.config.dns_search);
    hc["DnsOptions"] = json!(r.config.dns_opt);
    if let Some(target) = &r.config.network_from {
        hc["NetworkMode"] = json!(format!("container:{target}"));
    }

    let tmpfs: serde_json::Map<String, Value> = r
        .config
        .tmpfs
        .iter()
        .map(|t| {
            let (path, opts) = t.split_once(':').unwrap_or((t, ""));
            (path.to_string(), json!(opts))
        })
        .collect();
    hc["Tmpfs"] = Value::Object(tmpfs);
    hc["Binds"] = json!(
        r.config
            .mounts
            .iter()
            .map(|m| format!(
                "{}:{}{}",
                m.source,
                m.destination,
                if m.read_only { ":ro" } else { "" }
            ))
            .collect::<Vec<_>>()
    );
    let exposed: serde_json::Map<String, Value> = extra
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let cfg = &mut v["Config"];
    cfg["ExposedPorts"] = json!(exposed);
    cfg["AttachStdin"] = json!(false);
    cfg["AttachStdout"] = json!(false);
    cfg["AttachStderr"] = json!(false);
    cfg["StdinOnce"] = json!(false);
    cfg["Domainname"] = json!(r.config.domainname.clone().unwrap_or_default());
    if let Some(h) = &extra.healthcheck {
        cfg["Healthcheck"] = h.clone();
    }
    if cfg["Hostname"].is_null() {
        cfg["Hostname"] = json!(r.id[..12]);
    }
    v["NetworkSettings"]["Networks"] = Value::Object(networks_json(b, &r));
    v["NetworkSettings"]["Ports"] = ports_map(&r);
    if let Some(h) = b.health.inspect(&r.id) {
        v["State"]["Health"] = h;
    }
    Ok(ok_json(&v))
}

fn ports_map(r: &Record) -> Value {
    let mut m = serde_json::Map::new();
    for p in port_list(r) {
        let key = format!(
            "{}/{}",
            p["PrivatePort"],
            p["Type"].as_str().unwrap_or("tcp")
        );
        let e = m.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = e.as_array_mut() {
            a.push(json!({"HostIp": p["IP"], "HostPort": p["PublicPort"].to_string()}));
        }
    }
    Value::Object(m)
}

pub async fn start(b: &Arc<Backend>, q: &str) -> ApiResult<Reply> {
    let r = resolve(b, q).await?;
    if r.state.status == Status::Running {
        return Err(ApiError::not_modified());
    }
    start_record(b, &r).await?;
    Ok(http::no_content())
}

/// Starts a resolved container, handing its output to any attach request waiting for it,
/// and sets up its monitor.
pub(crate) async fn start_record(b: &Arc<Backend>, r: &Record) -> ApiResult<()> {
    let waiting = b
        .pending_attach
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&r.id)
        .unwrap_or_default();
    let b2 = b.clone();
    let id = r.id.clone();
    let attach = !waiting.is_empty();
    b.update_extra(&r.id, |e| e.stopped_by_user = false);
    let started = blocking(move || Ok(b2.containers.start(&id, attach)?)).await;
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            // attach requests waiting for this start learn of the failure by the drop
            drop(waiting);
            return Err(e);
        }
    };
    if let (true, Some((h, w))) = (started.record.config.tty, b.extra(&r.id).console_size) {
        let _ = started.shim.resize(h, w);
    }
    let mut waiting = waiting.into_iter();
    if let (Some(first), Some(a)) = (waiting.next(), started.attach) {
        let _ = first.send(AttachHandoff {
            shim: started.shim.clone(),
            attach: a,
        });
    }
    for w in waiting {
        if let Ok(a) = started.shim.attach(false, false) {
            let _ = w.send(AttachHandoff {
                shim: started.shim.clone(),
                attach: a,
            });
        }
    }
    b.container_event("start", &started.record, &[]);
    health::watch(b, &started.record);
    spawn_monitor(b.clone(), started.record.id.clone());
    Ok(())
}

/// Waits for the container's exit: publishes `die`, then removes an `AutoRemove`
/// container or applies the restart policy.
fn spawn_monitor(b: Arc<Backend>, id: String) {
    tokio::task::spawn_blocking(move || {
        loop {
            let Ok((record, code)) = b.containers.wait(&id) else {
                return;
            };
            if record.state.status == Status::Running {
                // the shim went away without an exit (it was replaced); nothing to report
                return;
            }
            b.container_event("die", &record, &[("exitCode", code.to_string())]);
            if record.config.auto_remove {
                // `destroy` goes out once the container can no longer be found, so a
                // `wait?condition=removed` (what `docker run --rm` waits on) answers without
                // waiting for the unmount and the endpoint teardown. Anonymous volumes are
                // removed after the container, so with some, `destroy` waits for them: a
                // client that lists volumes next must not see them.
                let early = b.extra(&id).anonymous_volumes.is_empty()
                    && record.mounts.iter().all(|m| m.kind != "volume");
                let mut announced = false;
                let _ = b.containers.remove_notifying(&id, true, true, |_| {
                    if early {
                        b.container_event("destroy", &record, &[]);
                        announced = true;
                    }
                });
                // `list` removes exited auto-remove containers too: whoever wins, the
                // container is gone and waiters for `removed` must hear of it
                if b.containers.resolve(&id).is_err() {
                    remove_side_state(&b, &id, true);
                    if !announced {
                        b.container_event("destroy", &record, &[]);
                    }
                }
                return;
            }
            let extra = b.extra(&id);
            if !extra
                .restart
                .should_restart(code, extra.restart_count, extra.stopped_by_user)
            {
                return;
            }
            // Docker waits 100 ms before the first restart, doubling each time; a short
            // fixed back-off keeps a crash-looping container from spinning the CPU
            std::thread::sleep(Duration::from_millis(100));
            if b.extra(&id).stopped_by_user {
                return;
            }
            match b.containers.start(&id, false) {
                Ok(s) => {
                    // counted once it runs, so "N restarts, exited" means the Nth is over
                    b.update_extra(&id, |e| e.restart_count += 1);
                    b.container_event("start", &s.record, &[]);
                    health::watch(&b, &s.record);
                }
                Err(_) => return,
            }
        }
    });
}

fn remove_side_state(b: &Backend, id: &str, volumes: bool) {
    let extra = b.extra(id);
    if volumes {
        for v in &extra.anonymous_volumes {
            if b.volumes.remove(v).is_ok() {
                crate::volumes::forget(b, v);
            }
        }
    }
    b.drop_meta("containers", id);
    b.health.forget(b, id);
}

fn stop_timeout(q: &Query, b: &Backend, id: &str) -> ApiResult<Duration> {
    let t = q
        .int("t")?
        .or(q.int("timeout")?)
        .or(b.extra(id).stop_timeout)
        .unwrap_or(10);
    Ok(Duration::from_secs(t.max(0) as u64))
}

pub async fn stop(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    if r.state.status != Status::Running {
        return Err(ApiError::not_modified());
    }
    let t = stop_timeout(q, b, &r.id)?;
    b.update_extra(&r.id, |e| e.stopped_by_user = true);
    let b2 = b.clone();
    let id = r.id.clone();
    let r = blocking(move || Ok(b2.containers.stop(&id, t)?)).await?;
    b.container_event("stop", &r, &[]);
    Ok(http::no_content())
}

pub async fn restart(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    if r.state.status == Status::Running {
        let t = stop_timeout(q, b, &r.id)?;
        b.update_extra(&r.id, |e| e.stopped_by_user = true);
        let b2 = b.clone();
        let id = r.id.clone();
        blocking(move || Ok(b2.containers.stop(&id, t)?)).await?;
    }
    let r = resolve(b, &r.id).await?;
    start_record(b, &r).await?;
    b.container_event("restart", &r, &[]);
    Ok(http::no_content())
}

fn not_running(r: &Record) -> ApiError {
    ApiError::conflict(format!("Container {} is not running", r.id))
}

pub async fn kill(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    if r.state.status != Status::Running {
        return Err(not_running(&r));
    }
    let sig = berth_node_agent::container::parse_signal(q.get("signal").unwrap_or("KILL"))?;
    b.update_extra(&r.id, |e| e.stopped_by_user = true);
    let b2 = b.clone();
    let id = r.id.clone();
    blocking(move || Ok(b2.containers.kill(&id, sig)?)).await?;
    b.container_event("kill", &r, &[("signal", sig.to_string())]);
    Ok(http::no_content())
}

pub async fn pause(b: &Arc<Backend>, q_id: &str, on: bool) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    if r.state.status != Status::Running {
        return Err(not_running(&r));
    }
    if is_paused(b, &r.id) == on {
        return Err(ApiError::conflict(format!(
            "Container {} is {}paused",
            r.id,
            if on { "already " } else { "not " }
        )));
    }
    let root = b.config.run_root.clone();
    let id = r.id.clone();
    blocking(move || {
        let res = if on {
            berth_runtime::ops::pause(&root, &id)
        } else {
            berth_runtime::ops::resume(&root, &id)
        };
        res.map_err(|e| ApiError::internal(format!("container {id}: {e}")))
    })
    .await?;
    b.container_event(if on { "pause" } else { "unpause" }, &r, &[]);
    Ok(http::no_content())
}

pub async fn remove(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    let force = q.flag("force");
    if r.state.status == Status::Running && !force {
        return Err(ApiError::conflict(format!(
            "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
            r.name
        )));
    }
    b.update_extra(&r.id, |e| e.stopped_by_user = true);
    let b2 = b.clone();
    let id = r.id.clone();
    let volumes = q.flag("v");
    blocking(move || {
        b2.containers.remove(&id, force)?;
        remove_side_state(&b2, &id, volumes);
        Ok(())
    })
    .await?;
    b.container_event("destroy", &r, &[]);
    Ok(http::no_content())
}

pub async fn rename(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let name = q
        .get("name")
        .ok_or_else(|| ApiError::bad_request("no new name given"))?
        .trim_start_matches('/')
        .to_string();
    if !berth_node_agent::container::options::valid_name(&name) {
        return Err(ApiError::bad_request(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let r = resolve(b, q_id).await?;
    let b2 = b.clone();
    let id = r.id.clone();
    let old = r.name.clone();
    let new = name.clone();
    blocking(move || {
        if let Some(other) = b2.containers.records()?.iter().find(|o| o.name == new) {
            return Err(ApiError::conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{}\"",
                other.id
            )));
        }
        let dir = b2.containers.container_dir(&id);
        let mut rec = Record::load(&dir)?;
        rec.name = new;
        rec.save(&dir)?;
        Ok(())
    })
    .await?;
    b.container_event("rename", &r, &[("oldName", format!("/{old}"))]);
    Ok(http::no_content())
}

pub async fn prune(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let filters = Filters::parse(q.get("filters"))?;
    let until = filters
        .get("until")
        .first()
        .and_then(|u| time::parse_timestamp(u));
    let b2 = b.clone();
    let removed = blocking(move || {
        let mut removed = Vec::new();
        for r in crate::containers::observed(&b2)? {
            if r.state.status == Status::Running || !filters.labels_match(&r.labels) {
                continue;
            }
            if until.is_some_and(|u| time::unix_seconds(&r.created) as f64 > u) {
                continue;
            }
            if b2.containers.remove(&r.id, false).is_ok() {
                remove_side_state(&b2, &r.id, false);
                b2.container_event("destroy", &r, &[]);
                removed.push(r.id);
            }
        }
        Ok(removed)
    })
    .await?;
    Ok(ok_json(
        &json!({"ContainersDeleted": removed, "SpaceReclaimed": 0}),
    ))
}

pub async fn top(b: &Arc<Backend>, q_id: &str) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    if r.state.status != Status::Running {
        return Err(not_running(&r));
    }
    let b2 = b.clone();
    let id = r.id.clone();
    let procs = blocking(move || Ok(b2.containers.top(&id)?)).await?;
    let rows: Vec<Value> = procs
        .iter()
        .map(|p| {
            json!([
                p.uid.to_string(),
                p.pid.to_string(),
                p.ppid.to_string(),
                p.command
            ])
        })
        .collect();
    Ok(ok_json(
        &json!({"Titles": ["UID", "PID", "PPID", "CMD"], "Processes": rows}),
    ))
}

/// Host CPU time in nanoseconds from `/proc/stat` (what Docker reports as
/// `system_cpu_usage`), and the number of online CPUs.
fn system_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut total = 0u64;
    let mut cpus = 0u64;
    for line in stat.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            total = rest
                .split_whitespace()
                .filter_map(|x| x.parse::<u64>().ok())
                .sum::<u64>();
        } else if line.starts_with("cpu") {
            cpus += 1;
        }
    }
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (total * (1_000_000_000 / hz), cpus.max(1))
}

fn stats_json(b: &Backend, r: &Record, prev: &Value) -> ApiResult<Value> {
    let s = b.containers.stats(&r.id)?;
    let (system, cpus) = system_cpu();
    let mem = &s.cgroup.memory;
    let networks: serde_json::Map<String, Value> = s
        .networks
        .iter()
        .map(|i| {
            let v = json!({
                "rx_bytes": i.rx_bytes, "rx_packets": i.rx_packets,
                "rx_errors": i.rx_errors, "rx_dropped": i.rx_dropped,
                "tx_bytes": i.tx_bytes, "tx_packets": i.tx_packets,
                "tx_errors": i.tx_errors, "tx_dropped": i.tx_dropped,
            });
            (i.name.clone(), v)
        })
        .collect();
    let blkio: Vec<Value> = s
        .cgroup
        .blkio
        .iter()
        .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
        .collect();
    Ok(json!({
        "read": berth_shim::time::now_rfc3339(),
        "preread": prev["read"].as_str().unwrap_or("0001-01-01T00:00:00Z"),
        "id": r.id,
        "name": format!("/{}", r.name),
        "pids_stats": {"current": s.cgroup.pids.current, "limit": s.cgroup.pids.limit},
        "cpu_stats": {
            "cpu_usage": {"total_usage": s.cgroup.cpu.usage_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": system,
            "online_cpus": cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": prev["cpu_stats"].clone(),
        "memory_stats": {
            "usage": mem.usage_bytes,
            "limit": mem.limit_bytes.unwrap_or_else(host_memory),
            "failcnt": mem.failcnt,
            "stats": {},
        },
        "networks": networks,
        "blkio_stats": {
            "io_service_bytes_recursive": blkio,
            "io_serviced_recursive": null,
            "io_queue_recursive": null,
            "io_service_time_recursive": null,
            "io_wait_time_recursive": null,
            "io_merged_recursive": null,
            "io_time_recursive": null,
            "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
    }))
}

pub(crate) fn host_memory() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub async fn stats(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    let stream = q.get("stream").is_none_or(|v| v == "1" || v == "true");
    let empty = json!({"cpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0}});
    if r.state.status != Status::Running {
        // Docker answers a stopped container with zeroed stats, not an error
        let v = json!({"read": "0001-01-01T00:00:00Z", "id": r.id, "name": format!("/{}", r.name),
            "cpu_stats": empty["cpu_stats"], "precpu_stats": empty["cpu_stats"], "memory_stats": {}, "pids_stats": {}});
        return Ok(ok_json(&v));
    }
    if !stream {
        let b2 = b.clone();
        let v = blocking(move || stats_json(&b2, &r, &empty)).await?;
        return Ok(ok_json(&v));
    }
    let (tx, body) = http::channel();
    let b2 = b.clone();
    tokio::spawn(async move {
        let mut prev = empty;
        loop {
            let (b3, r2, p) = (b2.clone(), r.clone(), prev.clone());
            let Ok(Ok(v)) = tokio::task::spawn_blocking(move || stats_json(&b3, &r2, &p)).await
            else {
                return;
            };
            if tx.send(http::json_line(&v)).await.is_err() {
                return;
            }
            prev = v;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(http::stream_reply("application/json", body))
}

pub async fn resize(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    if r.state.status != Status::Running {
        return Err(not_running(&r));
    }
    let dir = b.containers.shim_dir(&r.id);
    blocking(move || {
        let shim =
            berth_shim::ShimHandle::connect(&dir).map_err(|e| ApiError::internal(e.to_string()))?;
        shim.resize(h, w)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(ok_json(&Value::Null))
}

/// `GET /containers/{id}/wait?condition=not-running|next-exit|removed`: the status line
/// goes out at once (clients start the container after it), the body when the
/// condition holds.
pub async fn wait(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let mut events = b.events.subscribe();
    let r = resolve(b, q_id).await?;
    let condition = q.get("condition").unwrap_or("not-running").to_string();
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad_request(format!(
            "invalid condition {condition:?}"
        )));
    }
    let (tx, body) = http::channel();
    let b2 = b.clone();
    tokio::spawn(async move {
        let id = r.id.clone();
        let wait_exit = |b: Arc<Backend>, id: String| async move {
            tokio::task::spawn_blocking(move || b.containers.wait(&id).map(|(_, c)| c))
                .await
                .ok()
                .and_then(Result::ok)
        };
        let mut code: Option<i32> = None;
        let running = r.state.status == Status::Running;
        match condition.as_str() {
            "not-running" if !running => code = Some(r.state.exit_code),
            "not-running" => code = wait_exit(b2.clone(), id.clone()).await,
            _ if running => code = wait_exit(b2.clone(), id.clone()).await,
            _ => {
                // not running: wait for the next start (or a removal), then its exit
                while let Ok(e) = events.recv().await {
                    if e.id != id {
                        continue;
                    }
                    match e.action.as_str() {
                        "start" => {
                            code = wait_exit(b2.clone(), id.clone()).await;
                            break;
                        }
                        "die" => {
                            code = e.attributes.get("exitCode").and_then(|c| c.parse().ok());
                            break;
                        }
                        "destroy" => break,
                        _ => {}
                    }
                }
            }
        }
        if code.is_none() {
            // removed as it exited (`--rm`), before its exit could be read from the shim:
            // the exit watcher announced the code with `die` before removing it
            code = announced_exit(&mut events, &id).await;
        }
        if condition == "removed" {
            let gone = |b: &Backend| b.containers.resolve(&id).is_err();
            if !gone(&b2) {
                while let Ok(e) = events.recv().await {
                    if e.id == id && e.action == "die" {
                        code = code.or(e.attributes.get("exitCode").and_then(|c| c.parse().ok()));
                    }
                    if e.id == id && e.action == "destroy" {
                        break;
                    }
                }
            }
        }
        let v = json!({"StatusCode": code.unwrap_or(r.state.exit_code), "Error": null});
        let _ = tx
            .send(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
            .await;
    });
    Ok(http::stream_reply("application/json", body))
}

/// The exit code of container `id` from its `die` event (already received or still to
/// come), or `None` once it is destroyed without one or nothing comes for 10 s.
async fn announced_exit(
    events: &mut tokio::sync::broadcast::Receiver<crate::events::Event>,
    id: &str,
) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            _ => return None,
        };
        if e.id != id {
            continue;
        }
        match e.action.as_str() {
            "die" => return e.attributes.get("exitCode").and_then(|c| c.parse().ok()),
            "destroy" => return None,
            _ => {}
        }
    }
}

pub async fn logs(b: &Arc<Backend>, q_id: &str, q: &Query) -> ApiResult<Reply> {
    let r = resolve(b, q_id).await?;
    let (want_out, want_err) = (q.flag("stdout"), q.flag("stderr"));
    if !want_out && !want_err {
        return Err(ApiError::bad_request("you must choose at least one stream"));
    }
    let since = match q.get("since").and_then(time::parse_timestamp) {
        Some(s) if s > 0.0 => Some(berth_shim::time::format_rfc3339(
            std::time::UNIX_EPOCH + Duration::from_secs_f64(s),
        )),
        _ => None,
    };
    let until = q
        .get("until")
        .and_then(time::parse_timestamp)
        .filter(|u| *u > 0.0);
    let tail = match q.get("tail") {
        None | Some("all") => None,
        Some(t) => Some(
            t.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail {t:?}")))?,
        ),
    };
    let opts = LogOptions {
        follow: q.flag("follow"),
        tail,
        since,
    };
    let timestamps = q.flag("timestamps");
    let tty = r.config.tty;
    let (tx, body) = http::channel();
    let b2 = b.clone();
    tokio::task::spawn_blocking(move || {
        let _ = b2.containers.logs(&r.id, &opts, |rec| {
            if until.is_some_and(|u| time::parse_timestamp(&rec.time).is_some_and(|t| t > u)) {
                return true;
            }
            let stream = match rec.stream {
                berth_shim::log::Stream::Stdout if want_out => 1,
                berth_shim::log::Stream::Stderr if want_err => 2,
                _ => return true,
            };
            let mut line = Vec::new();
            if timestamps {
                line.extend_from_slice(rec.time.as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(rec.log.as_bytes());
            let chunk = if tty {
                Bytes::from(line)
            } else {
                frame(stream, &line)
            };
            tx.blocking_send(chunk).is_ok()
        });
    });
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(http::stream_reply(ct, body))
}
