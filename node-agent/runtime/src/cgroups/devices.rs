//! Devices controller (v1): the spec's allow/deny list, then the default devices every
//! container gets (null, zero, full, tty, random, urandom, ptmx, pts, and mknod).

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{CgroupError, write};

/// One v1 rule line, e.g. `c 1:3 rwm`.
pub fn rule_line(d: &LinuxDeviceCgroup) -> String {
    let ty = match d.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::P) => "p",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let num = |n: Option<i64>| n.map(|v| v.to_string()).unwrap_or_else(|| "*".into());
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    if ty == "a" && d.major().is_none() && d.minor().is_none() {
        return "a".into();
    }
    format!("{ty} {}:{} {access}", num(d.major()), num(d.minor()))
}

/// Rules granted to every container (what the OCI spec says runtimes supply).
pub const DEFAULT_ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

pub fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    for r in rules {
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(dir, file, rule_line(r))?;
    }
    for r in DEFAULT_ALLOWED {
        write(dir, "devices.allow", r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn lines() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(rule_line(&deny_all), "a");
        let null = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap();
        assert_eq!(rule_line(&null), "c 1:3 rw");
        let d = tempfile::tempdir().unwrap();
        apply_v1(d.path(), &[deny_all]).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("devices.deny")).unwrap(),
            "a"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("devices.allow")).unwrap(),
            "c 10:200 rwm"
        );
    }
}
