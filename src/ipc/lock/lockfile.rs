//! What the flock and fcntl flavors share: the lock file, the owner marker that reveals
//! a holder's death, the held flag that makes an extra release an error, and removal of
//! the file by the process that created it.

use super::{retry_with_backoff, Acquired, LockAddress, LockError};
use crate::process::hygiene;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The system call pair behind one file-lock flavor.
pub(crate) trait FileLockKind: Send + Sync + 'static {
    /// Tries to take the exclusive lock without blocking: Ok(false) when another holds it.
    fn try_lock(file: &File) -> std::io::Result<bool>;
    fn unlock(file: &File) -> std::io::Result<()>;
    fn address(path: &Path) -> LockAddress;
}

/// A file lock of kind `K`. Each handle opens the file itself, so two handles — in one
/// process or in two — exclude each other. Do not share one handle across fork: the
/// copy would share the open file description and with it the lock.
pub(crate) struct FileLock<K: FileLockKind> {
    file: File,
    path: PathBuf,
    held: AtomicBool,
    /// The temp directory to remove, and the pid that created it (only it removes).
    owned_dir: Option<(PathBuf, u32)>,
    _kind: std::marker::PhantomData<K>,
}

impl<K: FileLockKind> FileLock<K> {
    /// A fresh lock file in a new temp directory owned by this process.
    pub(crate) fn create() -> Result<Self, LockError> {
        let dir = hygiene::temp_dir().map_err(|e| LockError::Open {
            address: "new lock file".into(),
            message: e.to_string(),
        })?;
        match Self::open(&dir.join("lock")) {
            Ok(mut lock) => {
                lock.owned_dir = Some((dir, std::process::id()));
                Ok(lock)
            }
            Err(e) => {
                hygiene::remove_temp(&dir);
                Err(e)
            }
        }
    }

    /// Opens (creating if missing) the lock file at `path`. The file is not removed on
    /// drop: it belongs to whoever made it.
    pub(crate) fn open(path: &Path) -> Result<Self, LockError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| LockError::Open {
                address: K::address(path).to_string(),
                message: e.to_string(),
            })?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
            held: AtomicBool::new(false),
            owned_dir: None,
            _kind: std::marker::PhantomData,
        })
    }

    fn sys(&self, what: &str, e: std::io::Error) -> LockError {
        LockError::Sys {
            address: K::address(&self.path).to_string(),
            message: format!("{what}: {e}"),
        }
    }

    /// Reads the marker left by the previous holder, then stamps ours.
    fn take_over(&self) -> Result<Acquired, LockError> {
        let mut marker = [0u8; 4];
        let previous = match self.file.read_at(&mut marker, 0) {
            Ok(4) => u32::from_le_bytes(marker),
            Ok(_) => 0,
            Err(e) => return Err(self.sys("read owner marker", e)),
        };
        self.file
            .write_at(&std::process::id().to_le_bytes(), 0)
            .map_err(|e| self.sys("write owner marker", e))?;
        self.held.store(true, Ordering::Release);
        Ok(if previous == 0 {
            Acquired::Clean
        } else {
            Acquired::OwnerDied
        })
    }

    fn attempt(&self) -> Result<Option<Acquired>, LockError> {
        if K::try_lock(&self.file).map_err(|e| self.sys("lock", e))? {
            self.take_over().map(Some)
        } else {
            Ok(None)
        }
    }
}

impl<K: FileLockKind> super::Lock for FileLock<K> {
    fn acquire(&self, timeout: Duration) -> Result<Acquired, LockError> {
        retry_with_backoff(timeout, || self.attempt())?.ok_or_else(|| LockError::Timeout {
            address: K::address(&self.path).to_string(),
            timeout,
        })
    }

    fn try_acquire(&self) -> Result<Option<Acquired>, LockError> {
        self.attempt()
    }

    fn release(&self) -> Result<(), LockError> {
        if !self.held.swap(false, Ordering::AcqRel) {
            return Err(LockError::NotHeld {
                address: K::address(&self.path).to_string(),
            });
        }
        // Clear the marker while still holding the lock: a release that completes leaves
        // no trace; a holder killed before this line leaves its pid for the next one.
        self.file
            .write_at(&0u32.to_le_bytes(), 0)
            .map_err(|e| self.sys("clear owner marker", e))?;
        K::unlock(&self.file).map_err(|e| self.sys("unlock", e))
    }

    fn address(&self) -> LockAddress {
        K::address(&self.path)
    }
}

impl<K: FileLockKind> Drop for FileLock<K> {
    fn drop(&mut self) {
        if self.held.load(Ordering::Acquire) {
            let _ = super::Lock::release(self);
        }
        if let Some((dir, creator)) = &self.owned_dir {
            if *creator == std::process::id() {
                hygiene::remove_temp(dir);
            }
        }
    }
}
