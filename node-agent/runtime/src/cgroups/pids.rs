//! Pids controller: the task limit that stops fork bombs.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use super::{CgroupError, limit_v2, write};

pub fn apply(dir: &Path, p: &LinuxPids) -> Result<(), CgroupError> {
    let l = p.limit();
    write(dir, "pids.max", limit_v2(if l <= 0 { -1 } else { l }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxPidsBuilder;

    #[test]
    fn writes_limit_or_max() {
        let d = tempfile::tempdir().unwrap();
        apply(
            d.path(),
            &LinuxPidsBuilder::default().limit(20).build().unwrap(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("pids.max")).unwrap(),
            "20"
        );
        apply(
            d.path(),
            &LinuxPidsBuilder::default().limit(0).build().unwrap(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("pids.max")).unwrap(),
            "max"
        );
    }
}
