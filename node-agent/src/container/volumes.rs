//! Volumes as containers see them: which mounts a new container gets (its `-v`/`--mount`,
//! `--volumes-from`, the image's `VOLUME`s), which containers use a volume, and the volume
//! commands (`create`, `ls`, `inspect`, `rm`, `prune`) that must know that. The directories
//! themselves belong to [`crate::volume`]. A volume is deleted only on request: `volume rm`,
//! `volume prune`, or `rm -v`/`--rm` for the container's own anonymous volumes.

use std::collections::BTreeMap;

use super::options::{MountKind, MountSpec, RunOptions};
use super::{ContainerError, Containers, Record};
use crate::volume::{self, VolumeInfo, VolumeMeta, Volumes};

fn vol_err(name: &str, e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Volume {
        name: name.to_string(),
        reason: e.to_string(),
    }
}

/// Pure: the mounts of a container, by precedence — its own mounts, then those of the
/// `--volumes-from` containers (`from`: each one's mounts with the mode asked for), then the
/// image's `VOLUME`s as anonymous volumes; one mount per destination.
pub fn plan(
    own: &[MountSpec],
    from: &[(Vec<MountSpec>, Option<bool>)],
    image_volumes: &[String],
) -> Vec<MountSpec> {
    let mut out: Vec<MountSpec> = Vec::new();
    let taken = |out: &Vec<MountSpec>, d: &str| {
        out.iter()
            .any(|m| m.destination.trim_end_matches('/') == d.trim_end_matches('/'))
    };
    for m in own {
        if !taken(&out, &m.destination) {
            out.push(m.clone());
        }
    }
    for (mounts, read_only) in from {
        for m in mounts {
            if !taken(&out, &m.destination) {
                let mut m = m.clone();
                if let Some(ro) = read_only {
                    m.read_only = *ro;
                }
                out.push(m);
            }
        }
    }
    for d in image_volumes {
        if d.starts_with('/') && !taken(&out, d) {
            out.push(MountSpec::parse(d).expect("an absolute path is an anonymous volume"));
        }
    }
    out
}

impl Containers {
    /// The mounts a container created with `opts` gets (see [`plan`]).
    pub(crate) fn plan_mounts(
        &self,
        opts: &RunOptions,
        image_volumes: &[String],
    ) -> Result<Vec<MountSpec>, ContainerError> {
        let mut from = Vec::new();
        for spec in &opts.volumes_from {
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, "ro")) => (n, Some(true)),
                Some((n, "rw")) => (n, Some(false)),
                _ => (spec.as_str(), None),
            };
            let other = self.resolve(name)?;
            let mounts = other
                .mounts
                .iter()
                .map(|m| MountSpec {
                    kind: if m.kind == "bind" {
                        MountKind::Bind
                    } else {
                        MountKind::Volume
                    },
                    source: match (&m.name, m.kind.as_str()) {
                        (Some(n), "volume") => n.clone(),
                        _ => m.source.clone(),
                    },
                    destination: m.destination.clone(),
                    read_only: m.read_only,
                    propagation: None,
                    create_host_path: false,
                    // the volume exists already: nothing to fill
                    no_copy: true,
                })
                .collect();
            from.push((mounts, mode));
        }
        Ok(plan(&opts.mounts, &from, image_volumes))
    }

    /// Names of the containers (other than `except`) that mount volume `name`.
    pub fn volume_users(&self, name: &str, except: &str) -> Result<Vec<String>, ContainerError> {
        Ok(self
            .records()?
            .into_iter()
            .filter(|r| r.id != except)
            .filter(|r| r.mounts.iter().any(|m| m.name.as_deref() == Some(name)))
            .map(|r| r.name)
            .collect())
    }

    /// Deletes the anonymous volumes of `record` that no other container mounts.
    pub(crate) fn remove_anonymous_volumes(&self, record: &Record) {
        let Ok(vols) = Volumes::open(&self.config.data_root) else {
            return;
        };
        for m in &record.mounts {
            let Some(name) = &m.name else { continue };
            let anonymous = vols.inspect(name).is_ok_and(|v| v.meta.anonymous);
            let unused = self
                .volume_users(name, &record.id)
                .is_ok_and(|u| u.is_empty());
            if anonymous && unused {
                let _ = vols.remove(name);
            }
        }
    }

    fn volumes(&self) -> Result<Volumes, ContainerError> {
        Volumes::open(&self.config.data_root).map_err(|e| vol_err("store", e))
    }

    /// `volume create [NAME]`: a named volume (an anonymous-style random name when none is
    /// given). Creating an existing volume returns it, as Docker does.
    pub fn volume_create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<VolumeInfo, ContainerError> {
        let vols = self.volumes()?;
        let name = match name {
            Some(n) => n.to_string(),
            None => volume::anonymous_name().map_err(|e| vol_err("new", e))?,
        };
        let meta = VolumeMeta {
            created: berth_shim::time::now_rfc3339(),
            labels,
            anonymous: false,
        };
        vols.ensure_with(&name, &meta)
            .map_err(|e| vol_err(&name, e))?;
        vols.inspect(&name).map_err(|e| vol_err(&name, e))
    }

    pub fn volume_inspect(&self, name: &str) -> Result<VolumeInfo, ContainerError> {
        self.volumes()?
            .inspect(name)
            .map_err(|_| ContainerError::NotFound(format!("volume {name}")))
    }

    /// Every volume, by name.
    pub fn volume_list(&self) -> Result<Vec<VolumeInfo>, ContainerError> {
        let vols = self.volumes()?;
        Ok(vols
            .list()
            .map_err(|e| vol_err("store", e))?
            .iter()
            .filter_map(|n| vols.inspect(n).ok())
            .collect())
    }

    /// `volume rm`: refused while any container (running or not) mounts it; with `force`,
    /// a missing volume is not an error.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<(), ContainerError> {
        let vols = self.volumes()?;
        if vols.inspect(name).is_err() {
            return if force {
                Ok(())
            } else {
                Err(ContainerError::NotFound(format!("volume {name}")))
            };
        }
        let users = self.volume_users(name, "")?;
        if !users.is_empty() {
            return Err(vol_err(
                name,
                format!("volume is in use by container(s) {}", users.join(", ")),
            ));
        }
        vols.remove(name).map_err(|e| vol_err(name, e))
    }

    /// `volume prune`: removes unused anonymous volumes, or every unused volume with `all`,
    /// keeping those whose labels lack one of `labels` (`--filter label=K[=V]`). Returns
    /// the names removed.
    pub fn volume_prune(
        &self,
        all: bool,
        labels: &[(String, Option<String>)],
    ) -> Result<Vec<String>, ContainerError> {
        let vols = self.volumes()?;
        let records = self.records()?;
        let mut removed = Vec::new();
        for v in self.volume_list()? {
            let in_use = records
                .iter()
                .any(|r| r.mounts.iter().any(|m| m.name.as_deref() == Some(&v.name)));
            let selected = labels.iter().all(|(k, want)| {
                v.meta
                    .labels
                    .get(k)
                    .is_some_and(|have| want.as_ref().is_none_or(|w| w == have))
            });
            if !in_use && selected && (all || v.meta.anonymous) {
                vols.remove(&v.name).map_err(|e| vol_err(&v.name, e))?;
                removed.push(v.name);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_mounts_win_over_volumes_from_and_image_volumes() {
        let own = vec![MountSpec::parse("data:/data").unwrap()];
        let from = vec![(
            vec![
                MountSpec::parse("other:/data").unwrap(),
                MountSpec::parse("/h:/shared").unwrap(),
            ],
            Some(true),
        )];
        let image = vec![
            "/data/".to_string(),
            "/cache".to_string(),
            "rel".to_string(),
        ];
        let p = plan(&own, &from, &image);
        let dests: Vec<&str> = p.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, ["/data", "/shared", "/cache"]);
        assert_eq!(p[0].source, "data");
        assert!(p[1].read_only, "mode of --volumes-from applies");
        assert_eq!(
            (p[2].kind, p[2].source.as_str()),
            (MountKind::Volume, ""),
            "image VOLUME is anonymous"
        );
    }
}
