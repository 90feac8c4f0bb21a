//! What this machine is, as the controller registers it: a stable node id kept in
//! `<data-root>/node-id`, hostname, platform, cpus and memory from `/proc`.

use std::path::Path;

use berth_controller::store::{Availability, Node, NodeResources, NodeStatus, Platform, Role};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the node id, creating one (random, hex) on first start.
pub fn node_id(data_root: &Path) -> Result<String, HostError> {
    let path = data_root.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(HostError::Io {
                op: "read",
                path,
                source,
            });
        }
    }
    let mut bytes = [0u8; 12];
    {
        use std::io::Read;
        let mut f = std::fs::File::open("/dev/urandom").map_err(|source| HostError::Io {
            op: "open",
            path: "/dev/urandom".into(),
            source,
        })?;
        f.read_exact(&mut bytes).map_err(|source| HostError::Io {
            op: "read",
            path: "/dev/urandom".into(),
            source,
        })?;
    }
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| HostError::Io {
            op: "write",
            path: path.clone(),
            source,
        })?;
    Ok(id)
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Go's names for the architecture, as images and placement constraints use them.
pub fn platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Platform::new(std::env::consts::OS, arch)
}

/// MemTotal of `/proc/meminfo`, in bytes.
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_meminfo(&text))
        .unwrap_or(0)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// This machine as a ready, active manager node.
pub fn node(id: &str) -> Node {
    Node {
        id: id.to_owned(),
        hostname: hostname(),
        role: Role::Manager,
        availability: Availability::Active,
        labels: Default::default(),
        platform: platform(),
        resources: NodeResources {
            nano_cpus: u64::from(cpus()) * 1_000_000_000,
            memory: memory_bytes(),
        },
        status: NodeStatus::Ready,
        address: String::new(),
        raft_id: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parses() {
        let text = "MemTotal:        8048576 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo(text), Some(8048576 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn the_node_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = node_id(dir.path()).unwrap();
        assert_eq!(a.len(), 24);
        assert_eq!(node_id(dir.path()).unwrap(), a);
        let node = node(&a);
        assert!(node.resources.memory > 0);
        assert!(node.resources.nano_cpus >= 1_000_000_000);
        assert_eq!(node.platform.os, "linux");
    }
}
