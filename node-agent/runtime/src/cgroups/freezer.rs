//! Freezer: pause/resume (v1 `freezer.state`, v2 `cgroup.freeze`).

use std::path::Path;
use std::time::{Duration, Instant};

use super::{CgroupError, read, write};

const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn freeze(dir: &Path, v2: bool) -> Result<(), CgroupError> {
    if v2 {
        write(dir, "cgroup.freeze", "1")?;
    } else {
        write(dir, "freezer.state", "FROZEN")?;
    }
    let start = Instant::now();
    // Freezing is asynchronous: the state says FREEZING (v1) or events say frozen 0 (v2)
    // until every task has stopped.
    while !is_frozen(dir, v2) {
        if start.elapsed() > FREEZE_TIMEOUT {
            let _ = thaw(dir, v2);
            return Err(CgroupError::FreezeTimeout {
                path: dir.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
        if !v2 {
            // A v1 freeze can stall on a task in an uninterruptible sleep; asking again helps.
            write(dir, "freezer.state", "FROZEN")?;
        }
    }
    Ok(())
}

pub fn thaw(dir: &Path, v2: bool) -> Result<(), CgroupError> {
    if v2 {
        write(dir, "cgroup.freeze", "0")
    } else {
        write(dir, "freezer.state", "THAWED")
    }
}

pub fn is_frozen(dir: &Path, v2: bool) -> bool {
    if v2 {
        read(dir, "cgroup.events")
            .map(|e| e.lines().any(|l| l.trim() == "frozen 1"))
            .unwrap_or(false)
    } else {
        read(dir, "freezer.state")
            .map(|s| s == "FROZEN")
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_state_file() {
        // A plain file behaves like an instantly-freezing cgroup.
        let d = tempfile::tempdir().unwrap();
        freeze(d.path(), false).unwrap();
        assert!(is_frozen(d.path(), false));
        thaw(d.path(), false).unwrap();
        assert!(!is_frozen(d.path(), false));
    }

    #[test]
    fn v2_reads_events() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        freeze(d.path(), true).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("cgroup.freeze")).unwrap(),
            "1"
        );
        std::fs::write(d.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(!is_frozen(d.path(), true));
    }
}
