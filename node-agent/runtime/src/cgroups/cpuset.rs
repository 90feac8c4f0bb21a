//! Cpuset controller: allowed CPUs and memory nodes.

use std::fs;
use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::{CgroupError, io_err, read, write};

pub fn apply(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// v1 cpuset directories start with empty `cpus`/`mems`, and a task cannot join one in that
/// state: create each level and copy the parent's values down.
pub fn create_v1(root: &Path, rel: &Path) -> Result<(), CgroupError> {
    let mut cur = root.to_path_buf();
    for comp in rel.components().skip(1) {
        let parent = cur.clone();
        cur.push(comp);
        if !cur.exists() {
            fs::create_dir(&cur).map_err(io_err(&cur))?;
        }
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if read(&cur, f).map(|v| v.is_empty()).unwrap_or(true) {
                let v = read(&parent, f)?;
                write(&cur, f, v)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_parent_values_down() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(d.path().join("cpuset.mems"), "0\n").unwrap();
        create_v1(d.path(), Path::new("/a/b")).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("a/b/cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert_eq!(
            fs::read_to_string(d.path().join("a/b/cpuset.mems")).unwrap(),
            "0"
        );
    }
}
