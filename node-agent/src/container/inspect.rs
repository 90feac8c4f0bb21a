//! `inspect`: the record and the live state in the shape of `docker inspect`'s JSON (the
//! fields tools most often read: `Id`, `Name`, `State`, `Config`, `HostConfig`, `Mounts`,
//! `NetworkSettings`), so scripts written for Docker keep working.

use serde_json::{Value, json};

use super::record::Status;
use super::{ContainerError, Containers};

impl Containers {
    pub fn inspect(&self, query: &str) -> Result<Value, ContainerError> {
        let mut r = self.resolve(query)?;
        self.observe(&mut r);
        let c = &r.config;
        let s = &r.state;
        let status = match s.status {
            Status::Running => "running",
            Status::Created => "created",
            Status::Exited => "exited",
        };
        let mut networks = serde_json::Map::new();
        for ep in &r.endpoints {
            networks.insert(
                ep.network.clone(),
                json!({
                    "IPAddress": ep.ip, "Gateway": ep.gateway, "IPPrefixLen": ep.prefix_len,
                    "MacAddress": ep.mac, "NetworkID": ep.network,
                }),
            );
        }
        let first = r.endpoints.first();
        let mut ports = serde_json::Map::new();
        for spec in &c.ports {
            if let Ok(maps) = berth_network::firewall::parse_ports(spec) {
                for m in maps {
                    let key = format!(
                        "{}/{}",
                        m.container_port,
                        format!("{:?}", m.protocol).to_ascii_lowercase()
                    );
                    let host_ip = m
                        .host_ip
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "0.0.0.0".into());
                    let entry = ports.entry(key).or_insert_with(|| json!([]));
                    if let Some(a) = entry.as_array_mut() {
                        a.push(json!({"HostIp": host_ip, "HostPort": m.host_port.to_string()}));
                    }
                }
            }
        }
        let mounts: Vec<Value> = r
            .mounts
            .iter()
            .map(|m| {
                json!({
                    "Type": m.kind, "Name": m.name, "Source": m.source,
                    "Destination": m.destination, "RW": !m.read_only,
                })
            })
            .collect();
        let network_mode = match &c.network {
            super::NetworkMode::Default => "bridge".to_string(),
            super::NetworkMode::Bridge(n) => n.clone(),
            super::NetworkMode::Host => "host".into(),
            super::NetworkMode::None => "none".into(),
        };
        Ok(json!({
            "Id": r.id,
            "Created": r.created,
            "Path": r.args.first(),
            "Args": r.args.iter().skip(1).collect::<Vec<_>>(),
            "State": {
                "Status": status,
                "Running": s.status == Status::Running,
                "Paused": false,
                "Restarting": false,
                "OOMKilled": s.oom_killed,
                "Dead": false,
                "Pid": s.pid,
                "ExitCode": s.exit_code,
                "Error": s.error,
                "StartedAt": s.started_at,
                "FinishedAt": s.finished_at,
            },
            "Image": r.image_id,
            "ResolvConfPath": self.container_dir(&r.id).join("etc/resolv.conf"),
            "HostnamePath": self.container_dir(&r.id).join("etc/hostname"),
            "HostsPath": self.container_dir(&r.id).join("etc/hosts"),
            "LogPath": self.shim_dir(&r.id).join(berth_shim::state::LOG),
            "Name": format!("/{}", r.name),
            "Driver": "overlay2",
            "HostConfig": {
                "Binds": c.mounts.iter().map(|m| format!("{}:{}{}", m.source, m.destination, if m.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
                "NetworkMode": network_mode,
                "PortBindings": ports,
                "AutoRemove": c.auto_remove,
                "CapAdd": c.cap_add,
                "CapDrop": c.cap_drop,
                "Dns": c.dns,
                "ExtraHosts": c.add_host,
                "ReadonlyRootfs": c.read_only,
                "Tmpfs": c.tmpfs,
                "Memory": c.memory.unwrap_or(0),
                "NanoCpus": c.cpus.map(|x| (x * 1e9) as i64).unwrap_or(0),
                "PidsLimit": c.pids_limit,
                "Init": c.init,
            },
            "Mounts": mounts,
            "Config": {
                "Hostname": c.hostname.clone().unwrap_or_else(|| r.id[..12].to_string()),
                "User": c.user.clone().unwrap_or_default(),
                "Tty": c.tty,
                "OpenStdin": c.stdin,
                "Env": c.env,
                "Cmd": c.cmd,
                "Image": c.image,
                "WorkingDir": c.workdir.clone().unwrap_or_default(),
                "Entrypoint": c.entrypoint,
                "Labels": r.labels,
                "StopSignal": r.stop_signal,
            },
            "NetworkSettings": {
                "IPAddress": first.map(|e| e.ip.clone()).unwrap_or_default(),
                "Gateway": first.map(|e| e.gateway.clone()).unwrap_or_default(),
                "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
                "Ports": ports,
                "Networks": networks,
            },
        }))
    }
}
