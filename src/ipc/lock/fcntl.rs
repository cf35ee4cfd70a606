//! fcntl(2) record-lock flavor, with open-file-description locks (`F_OFD_SETLK`) over
//! the whole file. Classic POSIX record locks (`F_SETLK`) belong to the process: two
//! handles in one process would not exclude each other, and closing *any* fd of the file
//! drops them — OFD locks have neither trap and are released by the kernel when the
//! holder dies, like flock.

use super::lockfile::{FileLock, FileLockKind};
use super::LockAddress;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

pub(crate) struct Fcntl;

/// An fcntl OFD record lock on a file.
pub(crate) type FcntlLock = FileLock<Fcntl>;

fn set_lock(file: &File, lock_type: libc::c_short) -> std::io::Result<bool> {
    // SAFETY: an all-zero flock struct is valid; the fields that matter are set below.
    let mut spec: libc::flock = unsafe { std::mem::zeroed() };
    spec.l_type = lock_type;
    spec.l_whence = libc::SEEK_SET as libc::c_short;
    spec.l_start = 0;
    spec.l_len = 0; // to the end of the file, however it grows
                    // SAFETY: F_OFD_SETLK reads one valid flock struct; the fd is owned by `file`.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &spec) };
    if r == 0 {
        return Ok(true);
    }
    // No EINTR case: F_OFD_SETLK never sleeps, so a signal cannot interrupt it (only the
    // waiting F_OFD_SETLKW can, which this module does not use).
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

impl FileLockKind for Fcntl {
    fn try_lock(file: &File) -> std::io::Result<bool> {
        set_lock(file, libc::F_WRLCK as libc::c_short)
    }
    fn unlock(file: &File) -> std::io::Result<()> {
        set_lock(file, libc::F_UNLCK as libc::c_short).map(|_| ())
    }
    fn address(path: &Path) -> LockAddress {
        LockAddress::Fcntl(path.to_path_buf())
    }
}
