//! One daemon per data root: an exclusive `flock` on `<data-root>/berthd.pid`, held for the
//! daemon's life and released by the kernel when the process dies (even by `kill -9`), so a
//! stale file never blocks a restart. The file also tells the operator which pid holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another berthd (pid {pid}) already uses the data root {data_root}; stop it or choose another --data-root"
    )]
    Held { data_root: PathBuf, pid: String },
}

/// The held lock; dropping it releases the data root.
#[derive(Debug)]
pub struct DataRootLock {
    _file: File,
    path: PathBuf,
}

impl DataRootLock {
    pub fn acquire(data_root: &Path) -> Result<DataRootLock, LockError> {
        let path = data_root.join("berthd.pid");
        let io = |op| {
            let path = path.clone();
            move |source| LockError::Io { op, path, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open"))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    data_root: data_root.to_owned(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            return Err(io("flock")(error));
        }
        file.set_len(0).map_err(io("truncate"))?;
        file.seek(SeekFrom::Start(0)).map_err(io("seek"))?;
        writeln!(file, "{}", std::process::id()).map_err(io("write"))?;
        Ok(DataRootLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataRootLock::acquire(dir.path()).unwrap();
        let err = DataRootLock::acquire(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("another berthd"), "{text}");
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        drop(first);
        DataRootLock::acquire(dir.path()).unwrap();
    }
}
