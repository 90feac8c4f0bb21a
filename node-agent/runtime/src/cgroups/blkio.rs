//! Block I/O controller: weight (v1 `blkio.weight`, v2 `io.weight`) and throttling.

use std::path::Path;

use oci_spec::runtime::LinuxBlockIo;

use super::{CgroupError, write};

pub fn apply_v1(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // Weight 0 means "unset" (dockerd always sends the field).
    if let Some(w) = b.weight().filter(|w| *w > 0) {
        // CFQ's file when present, BFQ's otherwise (modern kernels only have the latter).
        let file = if dir.join("blkio.weight").exists() {
            "blkio.weight"
        } else {
            "blkio.bfq.weight"
        };
        write(dir, file, w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|w| *w > 0) {
            write(
                dir,
                "blkio.weight_device",
                format!("{}:{} {}", d.major(), d.minor(), w),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            write(
                dir,
                file,
                format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

pub fn apply_v2(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    if let Some(w) = b.weight().filter(|w| *w > 0) {
        write(
            dir,
            "io.weight",
            format!("default {}", blkio_to_io_weight(w)),
        )?;
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for t in list.iter().flatten() {
            write(
                dir,
                "io.max",
                format!("{}:{} {}={}", t.major(), t.minor(), key, t.rate()),
            )?;
        }
    }
    Ok(())
}

/// runc's mapping of blkio weight [10, 1000] onto io.weight [1, 10000].
pub fn blkio_to_io_weight(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxBlockIoBuilder;

    #[test]
    fn weights() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(blkio_to_io_weight(500), 4950);
        let b = LinuxBlockIoBuilder::default()
            .weight(500u16)
            .build()
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        apply_v2(d.path(), &b).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("io.weight")).unwrap(),
            "default 4950"
        );
        let d1 = tempfile::tempdir().unwrap();
        std::fs::write(d1.path().join("blkio.weight"), "").unwrap();
        apply_v1(d1.path(), &b).unwrap();
        assert_eq!(
            std::fs::read_to_string(d1.path().join("blkio.weight")).unwrap(),
            "500"
        );
    }
}
