//! CVE-2019-5736 hardening: before entering a container, re-exec from a sealed memfd copy of
//! our own binary, so a container process that opens `/proc/PID/exe` of a runtime process
//! can only reach an immutable anonymous copy, never the binary on the host.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Set in the environment of the re-executed copy so it happens once.
pub const GUARD_ENV: &str = "_BERTH_RUNC_SEALED";

#[derive(Debug, thiserror::Error)]
#[error("re-exec from sealed memfd: {step}: {source}")]
pub struct MemfdError {
    pub step: &'static str,
    pub source: io::Error,
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> MemfdError {
    move |source| MemfdError { step, source }
}

/// Whether this process already runs from the sealed copy.
pub fn is_sealed() -> bool {
    std::env::var_os(GUARD_ENV).is_some()
}

/// Copies `/proc/self/exe` into a sealed memfd and `fexecve`s it with the same argv.
/// Returns only on failure.
pub fn reexec() -> MemfdError {
    match reexec_inner() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn reexec_inner() -> Result<std::convert::Infallible, MemfdError> {
    let name = CString::new("berth-runc").expect("static name");
    // SAFETY: name is a valid C string; the result is a new fd.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(step("memfd_create")(io::Error::last_os_error()));
    }
    // SAFETY: fd is fresh and owned by us from here on.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut src = std::fs::File::open("/proc/self/exe").map_err(step("open /proc/self/exe"))?;
    let mut dst = std::fs::File::from(memfd);
    // std::io::copy uses copy_file_range/sendfile where it can.
    io::copy(&mut src, &mut dst).map_err(step("copy"))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    seal(&dst, seals)?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()).unwrap_or_default())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.into_encoded_bytes();
            b.push(b'=');
            b.extend(v.into_encoded_bytes());
            CString::new(b).unwrap_or_default()
        })
        .collect();
    env.push(CString::new(format!("{GUARD_ENV}=1")).expect("static"));
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings; dst is an executable memfd.
    unsafe { libc::fexecve(dst.as_raw_fd(), argv.as_ptr(), envp.as_ptr()) };
    Err(step("fexecve")(io::Error::last_os_error()))
}

/// Adds `seals`, retrying while the kernel reports the memfd's pages busy. `F_SEAL_WRITE`
/// fails with EBUSY while any page holds an extra reference; the pages just written sit in
/// the per-CPU LRU batch of the CPU that wrote them until it drains, and the kernel's own
/// wait (about 75 ms) drains only the current CPU's — a thread moved to another CPU under
/// load can see EBUSY although nothing maps the memfd. The other CPU drains soon after.
fn seal(memfd: &std::fs::File, seals: libc::c_int) -> Result<(), MemfdError> {
    let mut attempt = 0;
    loop {
        // SAFETY: fcntl on our own memfd.
        if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) || attempt == 20 {
            return Err(step("F_ADD_SEALS")(err));
        }
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(5 * attempt));
    }
}

/// Whether `/proc/self/exe` is a sealed memfd (for tests and `--debug`).
pub fn running_from_memfd() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().starts_with("/memfd:"))
        .unwrap_or(false)
}
