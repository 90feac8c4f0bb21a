//! `create`: resolve the image, pick an id and a name, mount the root filesystem, prepare
//! volumes and `/etc` files, write the OCI bundle and the record. No process is started:
//! the shim and the runtime come in with `start`.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_image::{Digest, Image, Reference};

use super::network::resolv_conf;
use super::options::{MountKind, NetworkMode, RunOptions, valid_name};
use super::record::{MountRecord, Record, StateRecord};
use super::spec::{self, EtcFiles, HostMount, SpecInputs};
use super::{ContainerError, Containers, io_err, names, user};
use crate::volume::{self, Volumes};

impl Containers {
    /// Resolves an image the way `run` names it: a reference (`busybox` means
    /// `docker.io/library/busybox:latest`) or an image id prefix.
    pub fn resolve_image(&self, query: &str) -> Result<(String, Digest, Image), ContainerError> {
        let not_found = || ContainerError::ImageNotFound(query.to_string());
        let name = Reference::parse(query)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| query.to_string());
        let target = match self.store.lookup(query) {
            Ok(t) => t,
            Err(berth_image::StoreError::ImageNotFound { .. }) => return Err(not_found()),
            Err(source) => {
                return Err(ContainerError::Image {
                    image: query.into(),
                    source,
                });
            }
        };
        let image = self
            .store
            .image(&target)
            .map_err(|source| ContainerError::Image {
                image: query.into(),
                source,
            })?;
        Ok((name, target, image))
    }

    /// Creates a container from `opts`; it is left in the `created` state.
    pub fn create(&self, opts: RunOptions) -> Result<Record, ContainerError> {
        if let Some(n) = &opts.name {
            if !valid_name(n) {
                return Err(ContainerError::BadOption {
                    option: "--name".into(),
                    value: n.clone(),
                    reason: "a name may use [a-zA-Z0-9][a-zA-Z0-9_.-]*".into(),
                });
            }
        }
        let dns: Vec<IpAddr> = opts
            .dns
            .iter()
            .map(|d| {
                d.parse().map_err(|_| ContainerError::BadOption {
                    option: "--dns".into(),
                    value: d.clone(),
                    reason: "not an IP address".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        let (image_name, target, image) = self.resolve_image(&opts.image)?;
        let id = names::new_id().map_err(io_err("read", Path::new("/dev/urandom")))?;
        let dir = self.container_dir(&id);

        let lock = self.names_lock()?;
        let records = self.records()?;
        let name = match &opts.name {
            Some(n) => {
                if let Some(other) = records.iter().find(|r| &r.name == n) {
                    return Err(ContainerError::NameInUse {
                        name: n.clone(),
                        id: other.id.clone(),
                    });
                }
                n.clone()
            }
            None => names::generate_name(&id, &|n| records.iter().any(|r| r.name == n)),
        };
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        // Reserve the name at once: a placeholder record, replaced (durably) below; if a
        // crash loses it, nothing else refers to it yet.
        let mut record = Record {
            id: id.clone(),
            name,
            image: image_name,
            image_digest: target.to_string(),
            image_id: image.id().to_string(),
            labels: opts.labels.clone(),
            config: opts,
            args: Vec::new(),
            stop_signal: None,
            created: berth_shim::time::now_rfc3339(),
            endpoints: Vec::new(),
            mounts: Vec::new(),
            state: StateRecord::default(),
        };
        self.save_state(&record)?;
        drop(lock);

        match self.build(&mut record, &image, &dns) {
            Ok(()) => Ok(record),
            Err(e) => {
                if let Ok(snap) = self.snapshotter() {
                    let _ = snap.remove(&id);
                }
                // anonymous volumes made for this container have no other user
                self.remove_anonymous_volumes(&record);
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn build(
        &self,
        record: &mut Record,
        image: &Image,
        dns: &[IpAddr],
    ) -> Result<(), ContainerError> {
        let id = record.id.clone();
        let opts = record.config.clone();
        let rootfs = self
            .snapshotter()?
            .prepare(&id, image)
            .map_err(|source| ContainerError::Snapshot {
                id: id.clone(),
                source,
            })?
            .path;
        let image_config = image.config.config().as_ref();
        let image_volumes = image_config
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default();
        let planned = self.plan_mounts(&opts, &image_volumes)?;

        let mut mounts = Vec::new();
        for m in &planned {
            let source = match m.kind {
                MountKind::Bind => {
                    let p = std::path::absolute(&m.source)
                        .map_err(io_err("resolve", Path::new(&m.source)))?;
                    if !p.exists() {
                        if !m.create_host_path {
                            return Err(ContainerError::BadOption {
                                option: "--mount".into(),
                                value: m.source.clone(),
                                reason: "bind source path does not exist".into(),
                            });
                        }
                        // Docker creates a missing bind source (short syntax) as a directory.
                        fs::create_dir_all(&p).map_err(io_err("create directory", &p))?;
                    }
                    record.mounts.push(MountRecord {
                        kind: "bind".into(),
                        name: None,
                        source: p.display().to_string(),
                        destination: m.destination.clone(),
                        read_only: m.read_only,
                    });
                    p
                }
                MountKind::Volume => {
                    let vol_err = |name: &str, e: &dyn std::fmt::Display| ContainerError::Volume {
                        name: name.to_string(),
                        reason: e.to_string(),
                    };
                    let vols = Volumes::open(&self.config.data_root)
                        .map_err(|e| vol_err(&m.source, &e))?;
                    let anonymous = m.source.is_empty();
                    let name = if anonymous {
                        volume::anonymous_name()
                            .map_err(io_err("read", Path::new("/dev/urandom")))?
                    } else {
                        m.source.clone()
                    };
                    let meta = volume::VolumeMeta {
                        created: berth_shim::time::now_rfc3339(),
                        labels: Default::default(),
                        anonymous,
                    };
                    let (data, created) = vols
                        .ensure_with(&name, &meta)
                        .map_err(|e| vol_err(&name, &e))?;
                    // recorded at once, so a failure below removes an anonymous one
                    record.mounts.push(MountRecord {
                        kind: "volume".into(),
                        name: Some(name.clone()),
                        source: data.display().to_string(),
                        destination: m.destination.clone(),
                        read_only: m.read_only,
                    });
                    if created && !m.no_copy {
                        let inside = safe_join(&rootfs, &m.destination);
                        if let Some(inside) = inside.filter(|p| p.is_dir()) {
                            volume::copy_up(&inside, &data).map_err(|e| vol_err(&name, &e))?;
                        }
                    }
                    data
                }
            };
            mounts.push(HostMount {
                source,
                destination: m.destination.clone(),
                read_only: m.read_only,
                propagation: m.propagation.clone(),
            });
        }

        let user_spec = opts
            .user
            .clone()
            .or_else(|| image_config.and_then(|c| c.user().clone()));
        let (uid, gid, mut additional_gids) = user::resolve(&rootfs, user_spec.as_deref())?;
        for g in &opts.group_add {
            let gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_id(&rootfs, g)?,
            };
            if !additional_gids.contains(&gid) {
                additional_gids.push(gid);
            }
        }

        let etc = self.container_dir(&id).join("etc");
        fs::create_dir_all(&etc).map_err(io_err("create directory", &etc))?;
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let etc_files = EtcFiles {
            resolv_conf: etc.join("resolv.conf"),
            hosts: etc.join("hosts"),
            hostname: etc.join("hostname"),
        };
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| spec::default_hostname(&id).to_string());
        let write = |p: &PathBuf, s: String| fs::write(p, s).map_err(io_err("write", p));
        write(
            &etc_files.resolv_conf,
            container_resolv_conf(&opts, &host_resolv, dns)?,
        )?;
        write(
            &etc_files.hostname,
            berth_network::etc_files::hostname_file(&hostname).map_err(|e| {
                ContainerError::BadOption {
                    option: "--hostname".into(),
                    value: hostname.clone(),
                    reason: e.to_string(),
                }
            })?,
        )?;
        self.write_hosts(record)?;

        let init_binary = opts.init.then(|| self.config.init.clone());
        if let Some(init) = &init_binary {
            if is_dynamic_elf(init) {
                return Err(ContainerError::BadOption {
                    option: "--init".into(),
                    value: init.display().to_string(),
                    reason: "berth-init is dynamically linked and cannot run inside an image; \
                             build it static (RUSTFLAGS='-C target-feature=+crt-static' cargo build \
                             --release -p berth-shim --bin berth-init --target x86_64-unknown-linux-gnu) \
                             and point BERTH_INIT at it"
                        .into(),
                });
            }
        }
        let mut spec = spec::build(&SpecInputs {
            id: &id,
            rootfs,
            image: image_config,
            options: &opts,
            uid,
            gid,
            additional_gids,
            mounts,
            etc_files: Some(etc_files),
            init_binary,
            devices: opts
                .devices
                .iter()
                .map(|d| device_node(d))
                .collect::<Result<_, _>>()?,
        })?;
        if opts.privileged {
            if let Some(bounding) = own_bounding_set() {
                spec = spec::within_bounding_set(spec, bounding)?;
            }
        }
        let bundle = self.bundle_dir(&id);
        fs::create_dir_all(&bundle).map_err(io_err("create directory", &bundle))?;
        let json =
            serde_json::to_vec_pretty(&spec).map_err(|e| ContainerError::Spec(e.to_string()))?;
        // An auto-remove container is removed when it exits and does not outlive a crash
        // in any useful way (Docker removes those left behind), so its files skip the
        // fsyncs: they are still replaced atomically, and listing skips a record a crash
        // left unreadable.
        let durable = !opts.auto_remove;
        if durable {
            super::record::write_atomic(&bundle.join("config.json"), &json)?;
        } else {
            super::record::write_volatile(&bundle.join("config.json"), &json)?;
        }
        record.args = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        record.stop_signal = opts
            .stop_signal
            .clone()
            .or_else(|| image_config.and_then(|c| c.stop_signal().clone()));
        if durable {
            self.save(record)
        } else {
            self.save_state(record)
        }
    }
}

/// This process's capability bounding set (`CapBnd`), what a privileged container can get.
fn own_bounding_set() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Looks up `HOST[:CONTAINER[:PERMISSIONS]]` (`devices:`) on the host.
fn device_node(spec: &str) -> Result<spec::DeviceNode, ContainerError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let bad = |reason: String| ContainerError::BadOption {
        option: "devices".into(),
        value: spec.into(),
        reason,
    };
    let mut parts = spec.splitn(3, ':');
    let host = parts.next().unwrap_or_default();
    let inside = parts.next().filter(|p| !p.is_empty()).unwrap_or(host);
    let access = parts.next().unwrap_or("rwm");
    if !inside.starts_with('/') || access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(bad(
            "expected HOST[:CONTAINER[:rwm]] with absolute paths".into()
        ));
    }
    let meta = fs::metadata(host).map_err(|e| bad(e.to_string()))?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Err(bad("not a device node".into()));
    };
    let rdev = meta.rdev();
    Ok(spec::DeviceNode {
        path: inside.to_string(),
        kind,
        major: libc::major(rdev) as i64,
        minor: libc::minor(rdev) as i64,
        file_mode: meta.mode() & 0o777,
        uid: meta.uid(),
        gid: meta.gid(),
        access: access.to_string(),
    })
}

/// The gid of group `name` in the image's `/etc/group` (`group_add`).
fn group_id(rootfs: &Path, name: &str) -> Result<u32, ContainerError> {
    let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| ContainerError::User {
            user: name.into(),
            reason: "no such group in the image's /etc/group".into(),
        })
}

/// `/etc/resolv.conf`: on Compose networks, the embedded DNS server (the `dns` servers are
/// its upstreams); otherwise `--dns` or the host's resolvers. `dns_search` and `dns_opt`
/// apply either way.
fn container_resolv_conf(
    opts: &RunOptions,
    host: &str,
    dns: &[IpAddr],
) -> Result<String, ContainerError> {
    let bad = |e: berth_network::etc_files::EtcError| ContainerError::BadOption {
        option: "dns".into(),
        value: String::new(),
        reason: e.to_string(),
    };
    let resolver = opts
        .resolver
        .as_deref()
        .map(|r| {
            r.parse::<IpAddr>().map_err(|_| ContainerError::BadOption {
                option: "resolver".into(),
                value: r.into(),
                reason: "not an IP address".into(),
            })
        })
        .transpose()?;
    if resolver.is_none() && opts.dns_search.is_empty() && opts.dns_opt.is_empty() {
        return Ok(resolv_conf(host, dns, opts.network == NetworkMode::Host));
    }
    let search = if opts.dns_search.is_empty() {
        berth_network::etc_files::search_domains(host)
    } else {
        opts.dns_search.clone()
    };
    let servers: Vec<IpAddr> = if dns.is_empty() {
        berth_network::etc_files::nameservers(&resolv_conf(host, &[], false))
    } else {
        dns.to_vec()
    };
    berth_network::etc_files::resolv_conf(resolver, &servers, &search, &opts.dns_opt).map_err(bad)
}

/// Whether `path` is an ELF executable with a program interpreter (`PT_INTERP`), i.e. needs
/// the host's dynamic loader and libraries. Anything unreadable counts as static: the
/// runtime reports its own error then.
pub(crate) fn is_dynamic_elf(path: &Path) -> bool {
    let Ok(b) = fs::read(path) else {
        return false;
    };
    elf_has_interp(&b)
}

/// Pure: 64-bit little-endian ELF with a `PT_INTERP` program header.
fn elf_has_interp(b: &[u8]) -> bool {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff.saturating_add(i.saturating_mul(phentsize));
        b.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == 3)
    })
}

/// `root` joined with an absolute container path, refusing `..` components (the path is
/// user input; symlinks inside the image are not followed by `copy_up`'s caller either,
/// since only a directory found at exactly this path is copied).
fn safe_join(root: &Path, inside: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for c in Path::new(inside).components() {
        match c {
            std::path::Component::Normal(n) => p.push(n),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    // a symlink anywhere on the way could lead outside the rootfs
    let mut q = root.to_path_buf();
    for c in Path::new(inside).components() {
        if let std::path::Component::Normal(n) = c {
            q.push(n);
            if q.is_symlink() {
                return None;
            }
        }
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_elves_are_told_apart() {
        // this test binary is linked dynamically
        let me = std::env::current_exe().unwrap();
        assert!(is_dynamic_elf(&me));
        assert!(!elf_has_interp(b"#!/bin/sh\n"));
        let mut fake = vec![0u8; 64];
        fake[..4].copy_from_slice(b"\x7fELF");
        fake[4] = 2;
        fake[5] = 1;
        assert!(!elf_has_interp(&fake));
    }

    #[test]
    fn safe_join_refuses_escapes() {
        let root = Path::new("/r");
        assert_eq!(safe_join(root, "/a/b"), Some(PathBuf::from("/r/a/b")));
        assert_eq!(safe_join(root, "/a/../../etc"), None);
    }
}
