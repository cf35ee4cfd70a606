//! The seed's ticket database: a JSON file of named counts (`{"stock": 100, "sold": 0}`)
//! read-modify-written by many processes, with a choice of lock — none, flock, fcntl
//! record lock, or a robust mutex in shared memory.
//!
//! # Writes survive a writer killed mid-write
//! A write goes to a temp file beside the store (`<file>.tmp-<pid>-<tid>`), which is then
//! `rename(2)`d over the store. rename is atomic: every reader sees either the old whole
//! file or the new whole file, never a torn one, even when the writer is SIGKILLed half
//! way through — at worst a stray temp file is left, which readers ignore (and which goes
//! with the store's directory). The temp file is not fsynced: this protects against a
//! killed process, not against power loss (add `sync_all` before the rename for that).
//!
//! Because rename replaces the store's inode, the file locks are taken on a separate lock
//! file (`<file>.lock`): a lock on the data file itself would be on the old inode after
//! the first write, and two processes could "hold" it on different inodes at once.
//!
//! The read and the write are separate steps ([`FileStore::read`], [`FileStore::write`],
//! [`FileStore::lock`]) so that a scenario can pause a buyer between them; [`update`]
//! does lock + read + change + write + unlock in one call.
//!
//! [`update`]: FileStore::update

use crate::ipc::lock::{fcntl::FcntlLock, flock::FlockLock, LockGuard};
use crate::ipc::lock::{robust::RobustMutex, Lock, LockAddress, LockError, LockExt};
use crate::process::hygiene;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The store's content: named counts.
pub type Counts = BTreeMap<String, i64>;

/// Which lock guards the read-modify-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoreLockKind {
    /// No lock at all: concurrent updates lose writes (the race the oversell scenario
    /// must catch).
    Unlocked,
    /// A `flock(2)` lock on a lock file beside the store.
    Flock,
    /// An `fcntl(2)` record lock on a lock file beside the store.
    Fcntl,
    /// A robust process-shared mutex in shared memory.
    ShmMutex,
}

impl StoreLockKind {
    /// Every kind, the unlocked one first.
    pub const ALL: [StoreLockKind; 4] = [
        StoreLockKind::Unlocked,
        StoreLockKind::Flock,
        StoreLockKind::Fcntl,
        StoreLockKind::ShmMutex,
    ];
    /// The kinds that guard the update (every one but `Unlocked`).
    pub const LOCKED: [StoreLockKind; 3] = [
        StoreLockKind::Flock,
        StoreLockKind::Fcntl,
        StoreLockKind::ShmMutex,
    ];

    /// The variant names the scenarios use.
    pub fn name(self) -> &'static str {
        match self {
            StoreLockKind::Unlocked => "unlocked",
            StoreLockKind::Flock => "flock",
            StoreLockKind::Fcntl => "fcntl",
            StoreLockKind::ShmMutex => "shm-mutex",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<StoreLockKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store file is gone (its creator dropped it, or the path is wrong).
    #[error("store file {path} does not exist")]
    Missing {
        /// The store file.
        path: PathBuf,
    },
    /// The store file does not parse as counts (a torn write would show here).
    #[error("store file {path} is corrupt: {reason}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What does not parse.
        reason: String,
    },
    /// An update or read named a count the store does not hold.
    #[error("store file {path} has no count named {key:?}")]
    NoSuchKey {
        /// The store file.
        path: PathBuf,
        /// The count asked for.
        key: String,
    },
    /// Reading, writing or renaming the store file failed.
    #[error("store file {path}: {op}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// The operation that failed ("read", "write", …).
        op: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store's lock failed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// How another process opens the same store (serde, to pass to a child).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreAddress {
    pub(crate) path: PathBuf,
    pub(crate) lock: Option<LockAddress>,
}

/// Named counts in a file, read and rewritten whole by any process that opens it, under
/// a lock of its [`StoreLockKind`]: the shared state of the ticket-oversell scenario.
pub struct FileStore {
    path: PathBuf,
    lock: Option<Box<dyn Lock>>,
    /// The temp directory holding the store, and the pid that created it (only it
    /// removes it, so a forked copy cannot).
    owned_dir: Option<(PathBuf, u32)>,
}

/// Holds the store's lock (if it has one) until dropped.
pub struct StoreGuard<'a> {
    guard: Option<LockGuard<'a, dyn Lock>>,
}

impl StoreGuard<'_> {
    /// True when the previous holder died inside its update: the counts may be stale
    /// (its write never landed), though never torn.
    pub(crate) fn owner_died(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.owner_died())
    }
}

/// What [`FileStore::update`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Updated<R> {
    /// What the update function returned.
    pub value: R,
    /// True when the lock's previous holder died inside its update, so the counts may
    /// miss its write.
    pub owner_died: bool,
}

impl FileStore {
    /// A new store in a fresh temp directory (removed when this handle drops in this
    /// process), holding `initial`, guarded by a lock of `kind`.
    pub fn create(kind: StoreLockKind, initial: &Counts) -> Result<FileStore, StoreError> {
        let dir = hygiene::temp_dir().map_err(|source| StoreError::Io {
            path: std::env::temp_dir(),
            op: "create temp directory",
            source,
        })?;
        let path = dir.join("store.json");
        let made = (|| {
            let lock_path = dir.join("store.json.lock");
            let lock: Option<Box<dyn Lock>> = match kind {
                StoreLockKind::Unlocked => None,
                StoreLockKind::Flock => Some(Box::new(FlockLock::open(&lock_path)?)),
                StoreLockKind::Fcntl => Some(Box::new(FcntlLock::open(&lock_path)?)),
                StoreLockKind::ShmMutex => Some(Box::new(RobustMutex::create()?)),
            };
            let store = FileStore {
                path: path.clone(),
                lock,
                owned_dir: None,
            };
            store.write(initial)?;
            Ok::<_, StoreError>(store)
        })();
        match made {
            Ok(mut store) => {
                store.owned_dir = Some((dir, std::process::id()));
                Ok(store)
            }
            Err(e) => {
                hygiene::remove_temp(&dir);
                Err(e)
            }
        }
    }

    /// Opens a store created elsewhere. The file must exist and parse.
    pub fn open(address: &StoreAddress) -> Result<FileStore, StoreError> {
        let store = FileStore {
            path: address.path.clone(),
            lock: address.lock.as_ref().map(|a| a.open()).transpose()?,
            owned_dir: None,
        };
        store.read()?;
        Ok(store)
    }

    /// How a child opens this store ([`FileStore::open`]).
    pub fn address(&self) -> StoreAddress {
        StoreAddress {
            path: self.path.clone(),
            lock: self.lock.as_ref().map(|l| l.address()),
        }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock that guards the store's updates.
    pub fn lock_kind(&self) -> StoreLockKind {
        use crate::ipc::lock::LockFlavor;
        match self.lock.as_ref().map(|l| l.address().flavor()) {
            None => StoreLockKind::Unlocked,
            Some(LockFlavor::Flock) => StoreLockKind::Flock,
            Some(LockFlavor::Fcntl) => StoreLockKind::Fcntl,
            Some(LockFlavor::Robust) | Some(LockFlavor::Plain) => StoreLockKind::ShmMutex,
        }
    }

    /// Takes the store's lock (a no-op guard for an unlocked store).
    pub fn lock(&self, timeout: Duration) -> Result<StoreGuard<'_>, StoreError> {
        Ok(StoreGuard {
            guard: match &self.lock {
                None => None,
                Some(lock) => Some(lock.as_ref().lock(timeout)?),
            },
        })
    }

    /// Reads every count. Takes no lock: call it under [`FileStore::lock`] for a
    /// read-modify-write.
    pub fn read(&self) -> Result<Counts, StoreError> {
        let bytes = std::fs::read(&self.path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::Missing {
                    path: self.path.clone(),
                }
            } else {
                StoreError::Io {
                    path: self.path.clone(),
                    op: "read",
                    source,
                }
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            reason: format!("not a JSON object of integer counts: {e}"),
        })
    }

    /// One count.
    pub(crate) fn get(&self, key: &str) -> Result<i64, StoreError> {
        self.read()?
            .get(key)
            .copied()
            .ok_or_else(|| StoreError::NoSuchKey {
                path: self.path.clone(),
                key: key.to_string(),
            })
    }

    /// Replaces the whole content, atomically (temp file + rename; see the module docs).
    pub fn write(&self, counts: &Counts) -> Result<(), StoreError> {
        let io = |op: &'static str| {
            let path = self.path.clone();
            move |source| StoreError::Io { path, op, source }
        };
        let bytes = serde_json::to_vec_pretty(counts).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        let mut temp = self.path.clone().into_os_string();
        temp.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            nix::unistd::gettid()
        ));
        let temp = PathBuf::from(temp);
        if let Err(e) = std::fs::write(&temp, &bytes).map_err(io("write temp file")) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        std::fs::rename(&temp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            io("rename temp file over the store")(e)
        })
    }

    /// Lock, read, let `change` modify the counts (and return a value), write, unlock.
    pub fn update<R>(
        &self,
        timeout: Duration,
        change: impl FnOnce(&mut Counts) -> R,
    ) -> Result<Updated<R>, StoreError> {
        let guard = self.lock(timeout)?;
        let mut counts = self.read()?;
        let value = change(&mut counts);
        self.write(&counts)?;
        Ok(Updated {
            value,
            owner_died: guard.owner_died(),
        })
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // The lock goes first: a robust mutex unmaps, a lock file closes, before the
        // directory holding them is removed.
        self.lock = None;
        if let Some((dir, creator)) = &self.owned_dir {
            if *creator == std::process::id() {
                hygiene::remove_temp(dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_corrupt_files_are_clear_errors_naming_the_file() {
        let store =
            FileStore::create(StoreLockKind::Flock, &Counts::from([("stock".into(), 3)])).unwrap();
        assert_eq!(store.get("stock").unwrap(), 3);
        let err = store.get("sold").unwrap_err().to_string();
        assert!(err.contains("sold") && err.contains("store.json"), "{err}");
        std::fs::write(store.path(), b"{\"stock\": 3,").unwrap();
        let err = store.read().unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("store.json"),
            "{err}"
        );
        std::fs::remove_file(store.path()).unwrap();
        let err = FileStore::open(&store.address()).err().unwrap().to_string();
        assert!(
            err.contains("does not exist") && err.contains("store.json"),
            "{err}"
        );
    }
}
