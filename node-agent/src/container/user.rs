//! `-u user[:group]` against the image's `/etc/passwd` and `/etc/group`. The parsing is
//! pure ([`lookup`]); [`resolve`] only reads the two files from the container's rootfs.

use std::path::Path;

use super::ContainerError;

/// uid, gid and supplementary gids.
pub type Ids = (u32, u32, Vec<u32>);

pub fn resolve(rootfs: &Path, user: Option<&str>) -> Result<Ids, ContainerError> {
    let user = user.filter(|u| !u.is_empty()).unwrap_or("0");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    lookup(user, &passwd, &group)
}

pub fn lookup(spec: &str, passwd: &str, group: &str) -> Result<Ids, ContainerError> {
    let err = |reason: &str| ContainerError::User {
        user: spec.into(),
        reason: reason.into(),
    };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let entry = users
        .iter()
        .find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let (uid, name, default_gid) = match (u.parse::<u32>(), entry) {
        (Ok(uid), e) => (
            uid,
            e.map(|f| f[0].to_string()),
            e.and_then(|f| f[3].parse().ok()).unwrap_or(0),
        ),
        (Err(_), Some(f)) => (
            f[2].parse().map_err(|_| err("bad uid in /etc/passwd"))?,
            Some(f[0].to_string()),
            f[3].parse().map_err(|_| err("bad gid in /etc/passwd"))?,
        ),
        (Err(_), None) => return Err(err("no matching entries in passwd file")),
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let gid = match g {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| err("no matching entries in group file"))?,
        },
    };
    let extra = match &name {
        Some(name) => groups
            .iter()
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect(),
        None => Vec::new(),
    };
    Ok((uid, gid, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nlog:x:4:www\n";

    #[test]
    fn users_and_groups() {
        assert_eq!(lookup("0", PASSWD, GROUP).unwrap(), (0, 0, vec![]));
        assert_eq!(lookup("www", PASSWD, GROUP).unwrap(), (33, 33, vec![4]));
        assert_eq!(
            lookup("1000:1000", PASSWD, GROUP).unwrap(),
            (1000, 1000, vec![])
        );
        assert_eq!(lookup("www:root", PASSWD, GROUP).unwrap(), (33, 0, vec![4]));
        assert!(lookup("nobody", PASSWD, GROUP).is_err());
        assert!(lookup("www:nogroup", PASSWD, GROUP).is_err());
    }
}
