//! CPU controller: shares/weight and CFS quota/period.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::{CgroupError, write};

pub fn apply_v1(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = c.shares() {
        if s > 0 {
            write(dir, "cpu.shares", s.to_string())?;
        }
    }
    // The period first: a quota is checked against the current period.
    if let Some(p) = c.period() {
        if p > 0 {
            write(dir, "cpu.cfs_period_us", p.to_string())?;
        }
    }
    if let Some(q) = c.quota() {
        write(
            dir,
            "cpu.cfs_quota_us",
            if q > 0 { q.to_string() } else { "-1".into() },
        )?;
    }
    if let Some(r) = c.realtime_period() {
        if r > 0 {
            write(dir, "cpu.rt_period_us", r.to_string())?;
        }
    }
    if let Some(r) = c.realtime_runtime() {
        if r != 0 {
            write(dir, "cpu.rt_runtime_us", r.to_string())?;
        }
    }
    Ok(())
}

pub fn apply_v2(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = c.shares() {
        if s > 0 {
            write(dir, "cpu.weight", shares_to_weight(s).to_string())?;
        }
    }
    if c.quota().is_some() || c.period().is_some() {
        write(dir, "cpu.max", cpu_max(c.quota(), c.period()))?;
    }
    Ok(())
}

/// runc's mapping of v1 shares [2, 262144] onto v2 weight [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// `cpu.max`: "QUOTA PERIOD", with "max" for no quota; the period defaults to 100ms.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> String {
    let period = period.filter(|p| *p > 0).unwrap_or(100_000);
    match quota {
        Some(q) if q > 0 => format!("{q} {period}"),
        _ => format!("max {period}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxCpuBuilder;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(cpu_max(Some(50_000), Some(100_000)), "50000 100000");
        assert_eq!(cpu_max(None, Some(20_000)), "max 20000");
    }

    #[test]
    fn v1_and_v2_files() {
        let c = LinuxCpuBuilder::default()
            .shares(512u64)
            .quota(25_000i64)
            .period(50_000u64)
            .build()
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        apply_v1(d.path(), &c).unwrap();
        let r = |f| std::fs::read_to_string(d.path().join(f)).unwrap();
        assert_eq!(r("cpu.shares"), "512");
        assert_eq!(r("cpu.cfs_quota_us"), "25000");
        assert_eq!(r("cpu.cfs_period_us"), "50000");
        let d2 = tempfile::tempdir().unwrap();
        apply_v2(d2.path(), &c).unwrap();
        assert_eq!(
            std::fs::read_to_string(d2.path().join("cpu.max")).unwrap(),
            "25000 50000"
        );
        assert_eq!(
            std::fs::read_to_string(d2.path().join("cpu.weight")).unwrap(),
            "20"
        );
    }
}
