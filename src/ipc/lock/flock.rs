//! flock(2) flavor: a whole-file lock on a lock file. The kernel drops it when the last
//! fd of the holder's open file description closes — including when the holder is
//! killed — so a dead holder never blocks the others; the owner marker (see
//! `lockfile`) tells the next holder that it died.

use super::lockfile::{FileLock, FileLockKind};
use super::LockAddress;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

pub(crate) struct Flock;

/// A flock(2) lock on a file.
pub(crate) type FlockLock = FileLock<Flock>;

fn flock(file: &File, operation: libc::c_int) -> std::io::Result<bool> {
    loop {
        // SAFETY: flock on an fd owned by `file` for the duration of the call.
        let r = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

impl FileLockKind for Flock {
    fn try_lock(file: &File) -> std::io::Result<bool> {
        flock(file, libc::LOCK_EX | libc::LOCK_NB)
    }
    fn unlock(file: &File) -> std::io::Result<()> {
        flock(file, libc::LOCK_UN).map(|_| ())
    }
    fn address(path: &Path) -> LockAddress {
        LockAddress::Flock(path.to_path_buf())
    }
}
