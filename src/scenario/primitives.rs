//! The few lock primitives the scenarios need in *try* form (a forced schedule cannot let a
//! worker block inside its turn) and in deliberately broken forms (a mutex that is not
//! robust). Minimal on purpose: the library's Lock family (`ipc::lock`, being built on
//! branch `sync`) is the mechanism under test once it lands; these stand in until then
//! and keep the broken variants out of the library.

use crate::ipc::shm::{Shared, ShmSafe};
use std::cell::UnsafeCell;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

/// A kernel file lock on a file every worker opens itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FileLockKind {
    /// flock(2): per open file description; the kernel drops it when the holder dies.
    Flock,
    /// fcntl(2) F_SETLK record lock over the whole file: per process.
    Fcntl,
}

/// A file lock held through this process's own open of the file.
pub struct FileLock {
    file: std::fs::File,
    kind: FileLockKind,
}

impl FileLock {
    pub fn open(path: &Path, kind: FileLockKind) -> std::io::Result<FileLock> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(FileLock { file, kind })
    }

    fn fcntl_lock(&self, command: libc::c_int, lock_type: libc::c_int) -> std::io::Result<()> {
        // SAFETY: a zeroed flock is valid; fcntl reads it for the duration of the call.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = lock_type as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: fcntl on an fd we own with a valid flock struct.
        if unsafe { libc::fcntl(self.file.as_raw_fd(), command, &fl) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn flock(&self, operation: libc::c_int) -> std::io::Result<()> {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(self.file.as_raw_fd(), operation) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Takes the lock if it is free; Ok(false) if another holds it.
    pub fn try_lock(&self) -> std::io::Result<bool> {
        let r = match self.kind {
            FileLockKind::Flock => self.flock(libc::LOCK_EX | libc::LOCK_NB),
            FileLockKind::Fcntl => self.fcntl_lock(libc::F_SETLK, libc::F_WRLCK),
        };
        match r {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EWOULDBLOCK) | Some(libc::EACCES)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Blocks until the lock is taken (callers run under a watchdog).
    pub fn lock(&self) -> std::io::Result<()> {
        loop {
            let r = match self.kind {
                FileLockKind::Flock => self.flock(libc::LOCK_EX),
                FileLockKind::Fcntl => self.fcntl_lock(libc::F_SETLKW, libc::F_WRLCK),
            };
            match r {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    pub fn unlock(&self) -> std::io::Result<()> {
        match self.kind {
            FileLockKind::Flock => self.flock(libc::LOCK_UN),
            FileLockKind::Fcntl => self.fcntl_lock(libc::F_SETLK, libc::F_UNLCK),
        }
    }
}

/// A pthread mutex in shared memory, process-shared; robust or (deliberately) not.
#[repr(C)]
pub struct MutexCell {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is designed to be used from several processes
// and threads at once; it holds no pointers. It is initialised by `ShmMutex::create`
// before any other process maps it.
unsafe impl Sync for MutexCell {}
// SAFETY: as above.
unsafe impl ShmSafe for MutexCell {}

/// How a lock call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locked {
    Acquired,
    /// The previous holder died holding it (robust mutexes only); now ours and consistent.
    OwnerDied,
    Busy,
}

pub struct ShmMutex {
    shared: Shared<MutexCell>,
}

impl ShmMutex {
    /// A mutex in a fresh segment whose name is removed at once (children get the fd).
    pub fn create(robust: bool) -> std::io::Result<ShmMutex> {
        let mut shared: Shared<MutexCell> = Shared::create("mutex", 0)?;
        shared.segment_mut().unlink();
        // SAFETY: attr and mutex are initialised by the pthread calls before use; the
        // mutex lives in shared memory that stays mapped as long as `shared`.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            if robust {
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            }
            let r = libc::pthread_mutex_init(shared.mutex.get(), &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            if r != 0 {
                return Err(std::io::Error::from_raw_os_error(r));
            }
        }
        Ok(ShmMutex { shared })
    }

    pub fn fd(&self) -> RawFd {
        self.shared.segment().raw_fd()
    }

    /// Maps the mutex from an inherited fd, in a worker.
    pub fn adopt(fd: RawFd) -> std::io::Result<ShmMutex> {
        // SAFETY: the fd was handed to this child by `inherit_fd`, for it alone to own.
        let shared = unsafe { Shared::from_raw_fd("mutex", fd) }?;
        Ok(ShmMutex { shared })
    }

    fn settle(&self, r: libc::c_int) -> std::io::Result<Locked> {
        match r {
            0 => Ok(Locked::Acquired),
            libc::EBUSY => Ok(Locked::Busy),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD hands it over); marking it
                // consistent is the documented recovery.
                unsafe { libc::pthread_mutex_consistent(self.shared.mutex.get()) };
                Ok(Locked::OwnerDied)
            }
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    pub fn try_lock(&self) -> std::io::Result<Locked> {
        // SAFETY: an initialised process-shared mutex in mapped shared memory.
        self.settle(unsafe { libc::pthread_mutex_trylock(self.shared.mutex.get()) })
    }

    /// Blocks until acquired. A plain mutex whose holder died blocks forever: that is the
    /// bug the lock-holder-killed scenario shows (its watchdog bounds the wait).
    pub fn lock(&self) -> std::io::Result<Locked> {
        // SAFETY: as in try_lock.
        self.settle(unsafe { libc::pthread_mutex_lock(self.shared.mutex.get()) })
    }

    pub fn unlock(&self) -> std::io::Result<()> {
        // SAFETY: as in try_lock; called by the holder.
        match unsafe { libc::pthread_mutex_unlock(self.shared.mutex.get()) } {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}
