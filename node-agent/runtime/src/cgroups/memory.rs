//! Memory controller: limit, swap, reservation, swappiness, OOM killer switch.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::{CgroupError, limit_v2, write};

/// v1: `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes` (limit + swap, as the spec
/// means it). Raising and lowering need different orders, so retry the other way round.
pub fn apply_v1(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    if let Some(r) = m.reservation() {
        write(dir, "memory.soft_limit_in_bytes", r.to_string())?;
    }
    // Without swap accounting (no memsw files) the swap figure cannot be enforced; Docker
    // warns and drops it in that case, and so do we.
    let swap = m
        .swap()
        .filter(|_| dir.join("memory.memsw.limit_in_bytes").exists());
    match (m.limit(), swap) {
        (Some(l), Some(s)) => {
            let first = write(dir, "memory.limit_in_bytes", l.to_string());
            write(dir, "memory.memsw.limit_in_bytes", s.to_string())?;
            if first.is_err() {
                write(dir, "memory.limit_in_bytes", l.to_string())?;
            }
        }
        (Some(l), None) => {
            write(dir, "memory.limit_in_bytes", l.to_string())?;
            // Docker's default: swap equal to the limit doubles it unless told otherwise;
            // runc leaves memsw alone, and so do we.
        }
        (None, Some(s)) => write(dir, "memory.memsw.limit_in_bytes", s.to_string())?,
        (None, None) => {}
    }
    if let Some(sw) = m.swappiness() {
        if sw <= 100 {
            write(dir, "memory.swappiness", sw.to_string())?;
        }
    }
    if let Some(true) = m.disable_oom_killer() {
        write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

/// v2: `memory.max`, `memory.swap.max` (swap alone = spec swap − limit, as runc converts),
/// `memory.low`.
pub fn apply_v2(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    if let Some(r) = m.reservation() {
        write(dir, "memory.low", limit_v2(r))?;
    }
    if let Some(l) = m.limit() {
        write(dir, "memory.max", limit_v2(l))?;
    }
    if let Some(s) = swap_v2(m.limit(), m.swap()) {
        write(dir, "memory.swap.max", s)?;
    }
    Ok(())
}

/// The `memory.swap.max` value for a spec's limit and (memory+swap) figure.
pub fn swap_v2(limit: Option<i64>, swap: Option<i64>) -> Option<String> {
    let s = swap?;
    if s < 0 {
        return Some("max".into());
    }
    match limit {
        Some(l) if l >= 0 => Some(s.saturating_sub(l).max(0).to_string()),
        _ => Some(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxMemoryBuilder;

    #[test]
    fn v1_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("memory.memsw.limit_in_bytes"), "").unwrap();
        let m = LinuxMemoryBuilder::default()
            .limit(1 << 20)
            .swap(2 << 20)
            .reservation(512)
            .build()
            .unwrap();
        apply_v1(d.path(), &m).unwrap();
        let r = |f| std::fs::read_to_string(d.path().join(f)).unwrap();
        assert_eq!(r("memory.limit_in_bytes"), "1048576");
        assert_eq!(r("memory.memsw.limit_in_bytes"), "2097152");
        assert_eq!(r("memory.soft_limit_in_bytes"), "512");
    }

    #[test]
    fn v2_files_and_swap_conversion() {
        let d = tempfile::tempdir().unwrap();
        let m = LinuxMemoryBuilder::default()
            .limit(100)
            .swap(150)
            .build()
            .unwrap();
        apply_v2(d.path(), &m).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("memory.max")).unwrap(),
            "100"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("memory.swap.max")).unwrap(),
            "50"
        );
        assert_eq!(swap_v2(Some(100), Some(-1)).as_deref(), Some("max"));
        assert_eq!(swap_v2(None, None), None);
    }
}
