//! `start`: launch the container's shim (which runs the runtime's `create`), connect its
//! network namespace, optionally attach to its output, then let its process run. A
//! container that ran before is first cleaned of its old runtime state and endpoint, so
//! `start` after `stop` (or after a reboot) works like Docker's.

use berth_shim::{Attach, Shim, ShimArgs, ShimHandle, ShimOptions, Status as ShimStatus};

use std::path::PathBuf;

use berth_network::dns::DnsEntry;
use berth_network::firewall::parse_ports;
use berth_network::ipam::EndpointRequest;
use berth_network::networks::Connect;

use super::record::{EndpointRecord, Status};
use super::{ContainerError, Containers, Record};

/// A container launched but not yet running (see [`Containers::launch`]).
pub struct Launched {
    record: Record,
    shim: ShimHandle,
    pid: i32,
}

impl Launched {
    pub fn id(&self) -> &str {
        &self.record.id
    }
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched")
            .field("id", &self.record.id)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// A started container: its shim, and the attach stream when one was asked for.
pub struct Started {
    pub record: Record,
    pub shim: ShimHandle,
    pub attach: Option<Attach>,
}

/// Maps a runtime error that means "the command could not be run" to Docker's codes.
pub(crate) fn exec_error(message: &str) -> Option<i32> {
    let m = message.to_ascii_lowercase();
    let about_exec = m.contains("exec") || m.contains("executable") || m.contains("command");
    if !about_exec {
        return None;
    }
    if m.contains("no such file") || m.contains("not found") {
        Some(127)
    } else if m.contains("permission denied")
        || m.contains("is a directory")
        || m.contains("exec format")
    {
        Some(126)
    } else {
        None
    }
}

impl Containers {
    fn shim_error(&self, id: &str, e: berth_shim::ShimError) -> ContainerError {
        let message = e.to_string();
        match exec_error(&message) {
            Some(code) => ContainerError::Exec { message, code },
            None => ContainerError::Shim {
                id: id.to_string(),
                source: e,
            },
        }
    }

    /// Starts container `query`. With `attach`, the returned stream is connected before the
    /// process runs, so no output is missed; with `stdin` too, input is forwarded.
    pub fn start(&self, query: &str, attach: bool) -> Result<Started, ContainerError> {
        let launched = self.launch(query)?;
        self.run_launched(launched, attach)
    }

    /// The first half of [`Containers::start`]: the shim runs the runtime's `create` (the
    /// process exists, stopped before the user's program) and the networks are attached.
    /// [`Containers::run_launched`] lets it run. The agent launches a whole dependency chain
    /// at once and only runs the processes wave by wave, so the slow half is not on the
    /// chain's critical path.
    pub fn launch(&self, query: &str) -> Result<Launched, ContainerError> {
        let mut record = self.resolve(query)?;
        let id = record.id.clone();
        let shim_dir = self.shim_dir(&id);
        if let Ok(h) = ShimHandle::connect(&shim_dir) {
            let st = h.state().map_err(|e| self.shim_error(&id, e))?;
            match st.status {
                ShimStatus::Running => {
                    return Err(ContainerError::State {
                        id: record.short_id().into(),
                        state: "running",
                        hint: "it is already started",
                    });
                }
                ShimStatus::Created | ShimStatus::Stopped => {
                    self.observe(&mut record);
                    let _ = h.delete(true);
                    wait_shim_gone(&shim_dir);
                }
            }
        }
        // a runtime container left by a shim that died
        self.runtime_delete(&id);
        self.ensure_rootfs(&record)?;
        if !record.endpoints.is_empty() {
            let _ = self.disconnect_network(&record);
            record.endpoints.clear();
        }
        let mut joins = Vec::new();
        if let Some(target) = record.config.network_from.clone() {
            joins.push(("network", target));
        }
        if let Ok(Some(Some(target))) =
            super::options::namespace_mode("pid", record.config.pid_mode.as_deref())
        {
            joins.push(("pid", target.to_string()));
        }
        if !joins.is_empty() {
            self.join_namespaces_of(&record, &joins)?;
        }
        std::fs::create_dir_all(&shim_dir).map_err(super::io_err("create directory", &shim_dir))?;
        let args = ShimArgs {
            id: id.clone(),
            bundle: self.bundle_dir(&id),
            state_dir: shim_dir.clone(),
            runtime: self.config.runtime.clone(),
            runtime_root: self.config.run_root.clone(),
            log_max_size: 0,
            log_max_files: 1,
            tty: record.config.tty,
            stdin: record.config.stdin,
            exit_with_container: false,
        };
        let shim = Shim::spawn(&ShimOptions {
            binary: self.config.shim.clone(),
            args,
        })
        .map_err(|e| self.shim_error(&id, e))?;
        let result = (|| -> Result<i32, ContainerError> {
            let st = shim.state().map_err(|e| self.shim_error(&id, e))?;
            record.endpoints = if record.config.networks.is_empty() {
                self.connect_network(&record, st.pid)?
            } else {
                self.connect_endpoints(&record, st.pid)?
            };
            self.write_hosts(&record)?;
            Ok(st.pid)
        })();
        match result {
            Ok(pid) => Ok(Launched { record, shim, pid }),
            Err(e) => Err(self.start_failed(&shim, record, e)),
        }
    }

    /// The second half of [`Containers::start`]: attach if asked, let the process run,
    /// record it.
    pub fn run_launched(
        &self,
        launched: Launched,
        attach: bool,
    ) -> Result<Started, ContainerError> {
        let Launched {
            mut record,
            shim,
            pid,
        } = launched;
        let id = record.id.clone();
        let result = (|| -> Result<Option<Attach>, ContainerError> {
            let attach = if attach {
                Some(
                    shim.attach(record.config.stdin, true)
                        .map_err(|e| self.shim_error(&id, e))?,
                )
            } else {
                None
            };
            shim.start().map_err(|e| self.shim_error(&id, e))?;
            Ok(attach)
        })();
        match result {
            Ok(attach) => {
                record.state.status = Status::Running;
                record.state.pid = pid;
                record.state.started_at = berth_shim::time::now_rfc3339();
                record.state.finished_at.clear();
                record.state.exit_code = 0;
                record.state.oom_killed = false;
                record.state.error.clear();
                let _lock = self.record_lock(&id)?;
                // see `create`: an auto-remove container's record is not worth an fsync
                if record.config.auto_remove {
                    self.save_state(&record)?;
                } else {
                    self.save(&record)?;
                }
                Ok(Started {
                    record,
                    shim,
                    attach,
                })
            }
            Err(e) => Err(self.start_failed(&shim, record, e)),
        }
    }

    /// Undoes a start that failed half-way and records why.
    fn start_failed(
        &self,
        shim: &ShimHandle,
        mut record: Record,
        e: ContainerError,
    ) -> ContainerError {
        let _ = shim.delete(true);
        let _ = self.disconnect_network(&record);
        record.endpoints.clear();
        record.state.status = Status::Exited;
        record.state.exit_code = e.exit_code();
        record.state.error = e.to_string();
        if let Ok(_lock) = self.record_lock(&record.id) {
            let _ = self.save(&record);
        }
        e
    }

    /// Connects the container to each of its Compose networks (`eth0`, `eth1`, … in
    /// priority order; the first carries the default route and the published ports), with
    /// its service name and aliases in DNS and its static addresses.
    fn connect_endpoints(
        &self,
        record: &Record,
        pid: i32,
    ) -> Result<Vec<EndpointRecord>, ContainerError> {
        let id = record.id.clone();
        let err = |reason: String| ContainerError::Network {
            id: id[..12].to_string(),
            reason,
        };
        let mut ports = Vec::new();
        for p in &record.config.ports {
            ports.extend(parse_ports(p).map_err(|e| err(e.to_string()))?);
        }
        let mut requests = Vec::new();
        for att in &record.config.networks {
            let ipv4 = att
                .ipv4
                .as_deref()
                .map(|a| {
                    a.parse()
                        .map_err(|_| err(format!("ipv4_address {a:?} is not an IPv4 address")))
                })
                .transpose()?;
            let ipv6 = att
                .ipv6
                .as_deref()
                .map(|a| {
                    a.parse()
                        .map_err(|_| err(format!("ipv6_address {a:?} is not an IPv6 address")))
                })
                .transpose()?;
            requests.push(EndpointRequest { ipv4, ipv6 });
        }
        let upstreams: Vec<std::net::IpAddr> = record
            .config
            .dns
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        self.with_networks(&record.id, async |nets| {
            let mut out = Vec::new();
            for (i, (att, addresses)) in record.config.networks.iter().zip(requests).enumerate() {
                let connected = async {
                    let net = nets
                        .network(&att.network)
                        .ok_or_else(|| err(format!("network {} not found", att.network)))?;
                    let mut aliases = att.aliases.clone();
                    aliases.push(id[..12].to_string());
                    let a = nets
                        .connect(
                            &att.network,
                            &Connect {
                                endpoint_id: id.clone(),
                                netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
                                ifname: format!("eth{i}"),
                                addresses,
                                default_route: i == 0,
                                names: DnsEntry {
                                    container_name: record.name.clone(),
                                    service: att.service.clone(),
                                    aliases,
                                    upstreams: upstreams.clone(),
                                    ..Default::default()
                                },
                                ports: if i == 0 { ports.clone() } else { Vec::new() },
                            },
                        )
                        .await
                        .map_err(|e| err(format!("network {}: {e}", att.network)))?;
                    Ok::<_, ContainerError>(EndpointRecord {
                        network: att.network.clone(),
                        ip: a.ipv4.to_string(),
                        gateway: net.gateway_v4.to_string(),
                        prefix_len: net.subnet_v4.prefix(),
                        mac: a
                            .mac
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<Vec<_>>()
                            .join(":"),
                        ports: if i == 0 {
                            record.config.ports.clone()
                        } else {
                            Vec::new()
                        },
                    })
                }
                .await;
                match connected {
                    Ok(ep) => out.push(ep),
                    Err(e) => {
                        // leave no half-connected container behind
                        for ep in &out {
                            let _ = nets.disconnect(&ep.network, &id).await;
                        }
                        return Err(e);
                    }
                }
            }
            Ok(out)
        })
    }

    /// `network_mode: service:x|container:x`: points the bundle's network namespace at the
    /// running target's, looked up now (its pid changes when it restarts).
    fn join_namespaces_of(
        &self,
        record: &Record,
        joins: &[(&str, String)],
    ) -> Result<(), ContainerError> {
        let mut paths = Vec::new();
        for (kind, target) in joins {
            let mut t = self.resolve(target)?;
            self.observe(&mut t);
            if t.state.status != Status::Running || t.state.pid <= 0 {
                return Err(ContainerError::State {
                    id: t.short_id().into(),
                    state: "not running",
                    hint: if *kind == "pid" {
                        "the container whose PID namespace this one joins must run first"
                    } else {
                        "the container whose network this one joins must run first"
                    },
                });
            }
            let proc_name = if *kind == "network" { "net" } else { kind };
            paths.push((*kind, format!("/proc/{}/ns/{proc_name}", t.state.pid)));
        }
        let path = self.bundle_dir(&record.id).join("config.json");
        let bytes = std::fs::read(&path).map_err(super::io_err("read", &path))?;
        let mut spec: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ContainerError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
            for (kind, ns_path) in paths {
                list.retain(|n| n["type"] != kind);
                list.push(serde_json::json!({"type": kind, "path": ns_path}));
            }
        }
        let json =
            serde_json::to_vec_pretty(&spec).map_err(|e| ContainerError::Spec(e.to_string()))?;
        super::record::write_atomic(&path, &json)
    }

    /// Mounts the root filesystem again if it is not (after a reboot): an empty mount point.
    fn ensure_rootfs(&self, record: &Record) -> Result<(), ContainerError> {
        let rootfs = self.rootfs_of(&record.id)?;
        let empty = std::fs::read_dir(&rootfs).map_or(true, |mut d| d.next().is_none());
        if !empty {
            return Ok(());
        }
        let image_err = |source| ContainerError::Image {
            image: record.image.clone(),
            source,
        };
        let digest = berth_image::Digest::parse(&record.image_digest).map_err(|e| {
            ContainerError::Corrupt {
                path: self.container_dir(&record.id),
                reason: e.to_string(),
            }
        })?;
        let image = self.store.image(&digest).map_err(image_err)?;
        self.snapshotter()?
            .prepare(&record.id, &image)
            .map_err(|source| ContainerError::Snapshot {
                id: record.id.clone(),
                source,
            })?;
        Ok(())
    }

    /// The runtime's `delete --force ID` when it still has state for the container, run
    /// in-process (berth-runc's own code, without a re-exec).
    pub(crate) fn runtime_delete(&self, id: &str) {
        if self.config.run_root.join(id).exists() {
            let _ = berth_runtime::ops::delete(&self.config.run_root, id, true);
        }
    }
}

/// Waits (bounded) for a shim told to delete to remove its socket.
pub(crate) fn wait_shim_gone(shim_dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let sock = shim_dir.join(berth_shim::state::SOCKET);
    while sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::exec_error;

    #[test]
    fn exec_errors_map_to_docker_codes() {
        assert_eq!(
            exec_error("exec: \"nope\": executable file not found in $PATH"),
            Some(127)
        );
        assert_eq!(exec_error("exec /etc: permission denied"), Some(126));
        assert_eq!(exec_error("mount /proc: permission denied"), None);
    }
}
