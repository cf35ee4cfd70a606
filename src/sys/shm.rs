//! Shared-memory segments over POSIX `shm_open` + `mmap` (nix), and typed views of them.
//!
//! Why not the `shared_memory` crate: it leaks the /dev/shm name and its "flink" file
//! when a process is SIGKILLed, a leftover flink makes the next create fail, and a forked
//! child that drops its inherited handle deletes the parent's segment (the fork-owner
//! trap, docs/dependencies.md; `ipcbench check --scenario segment-cleanup` reruns each one,
//! caught on the crate and holding here). Here every name starts with `ipcbench-`, is
//! tracked by the hygiene registry (so an interrupted parent still unlinks it), and is unlinked
//! only by the process that created it — never by a forked copy — so the trap cannot
//! happen. Callers that do not need a name can `Segment::unlink` as soon as every
//! process has mapped it, or pass the fd to children, and then nothing can leak at all.

use crate::process::hygiene;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// A mapped shared-memory segment.
#[derive(Debug)]
pub(crate) struct Segment {
    name: String,
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    /// pid of the process that created the name (None: opened, not created).
    creator: Option<u32>,
    unlinked: bool,
}

// SAFETY: the segment is plain shared memory; what is stored in it decides thread safety,
// and typed access goes through `Shared<T>` with `T: ShmSafe` (which requires Sync).
unsafe impl Send for Segment {}
// SAFETY: as above; `Segment` itself only hands out raw pointers.
unsafe impl Sync for Segment {}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh name: `ipcbench-<run>-<tag>-<pid>-<n>` (see `hygiene::run_tag`).
pub fn unique_name(tag: &str) -> String {
    format!(
        "{}{}-{}-{}",
        hygiene::run_prefix(),
        tag,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Segment {
    /// Creates a zero-filled segment of `len` bytes under a fresh name.
    pub(crate) fn create(tag: &str, len: usize) -> std::io::Result<Segment> {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        let name = unique_name(tag);
        let fd = nix::sys::mman::shm_open(
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        hygiene::track_shm(&name);
        let creator = Some(std::process::id());
        let unlink_on_error = |e: nix::Error| {
            let _ = nix::sys::mman::shm_unlink(name.as_str());
            hygiene::untrack_shm(&name);
            std::io::Error::from(e)
        };
        nix::unistd::ftruncate(&fd, len as libc::off_t).map_err(unlink_on_error)?;
        let ptr = map(&fd, len).map_err(unlink_on_error)?;
        Ok(Segment {
            name,
            ptr,
            len,
            fd,
            creator,
            unlinked: false,
        })
    }

    /// Maps an existing segment by name (for processes that did not create it).
    pub(crate) fn open(name: &str) -> std::io::Result<Segment> {
        let fd = nix::sys::mman::shm_open(
            name,
            nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("shared memory {name}: {e}"),
            )
        })?;
        Self::from_owned_fd(name, fd)
    }

    /// Maps a segment from an inherited fd (see [`Segment::raw_fd`]); no name is needed.
    ///
    /// # Safety
    /// `fd` must be an open shared-memory fd that this process owns and nothing else will
    /// close.
    pub(crate) unsafe fn from_raw_fd(name: &str, fd: RawFd) -> std::io::Result<Segment> {
        // SAFETY: the caller hands over ownership of an open fd.
        Self::from_owned_fd(name, unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn from_owned_fd(name: &str, fd: OwnedFd) -> std::io::Result<Segment> {
        let stat = nix::sys::stat::fstat(&fd)?;
        let len = stat.st_size as usize;
        let ptr = map(&fd, len)?;
        Ok(Segment {
            name: name.to_string(),
            ptr,
            len,
            fd,
            creator: None,
            unlinked: false,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    /// The fd, to hand to a child through `Options::inherit_fd`.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Removes the name now (the mapping stays valid in every process that has it). Only
    /// the creating process unlinks; elsewhere this is a no-op.
    pub(crate) fn unlink(&mut self) {
        if self.unlinked || self.creator != Some(std::process::id()) {
            return;
        }
        let _ = nix::sys::mman::shm_unlink(self.name.as_str());
        hygiene::untrack_shm(&self.name);
        self.unlinked = true;
    }
}

fn map(fd: &OwnedFd, len: usize) -> nix::Result<NonNull<u8>> {
    use nix::sys::mman::{MapFlags, ProtFlags};
    let len = NonZeroUsize::new(len).ok_or(nix::errno::Errno::EINVAL)?;
    // SAFETY: a fresh shared mapping of an fd we hold; nothing else aliases it in this
    // process until we hand out pointers.
    let ptr = unsafe {
        nix::sys::mman::mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )?
    };
    Ok(ptr.cast())
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this Segment created; no reference derived from it
        // outlives the Segment (typed views borrow it).
        unsafe {
            let _ = nix::sys::mman::munmap(self.ptr.cast(), self.len);
        }
        self.unlink();
    }
}

/// Types that may live in shared memory and be used from several processes at once:
/// no pointers or references (addresses differ between processes), no heap ownership,
/// valid when all bytes are zero, and `Sync` (atomics or otherwise synchronised).
///
/// # Safety
/// Implementors guarantee the properties above.
pub unsafe trait ShmSafe: Sync {}

// SAFETY: atomics are plain memory with process-independent meaning; zero is valid.
unsafe impl ShmSafe for std::sync::atomic::AtomicU32 {}
// SAFETY: as above.
unsafe impl ShmSafe for std::sync::atomic::AtomicU64 {}
// SAFETY: as above.
unsafe impl ShmSafe for std::sync::atomic::AtomicI32 {}
// SAFETY: as above.
unsafe impl ShmSafe for std::sync::atomic::AtomicI64 {}
// SAFETY: as above.
unsafe impl ShmSafe for std::sync::atomic::AtomicUsize {}
// SAFETY: arrays of shm-safe values are shm-safe.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

/// A value of type `T` in a shared-memory segment, followed optionally by `extra` bytes
/// of trailing space (for rings and buffers).
#[derive(Debug)]
pub struct Shared<T: ShmSafe> {
    segment: Segment,
    _marker: PhantomData<T>,
}

impl<T: ShmSafe> Shared<T> {
    /// Creates a zero-initialised `T` (plus `extra` trailing bytes) under a fresh name.
    pub fn create(tag: &str, extra: usize) -> std::io::Result<Shared<T>> {
        let segment = Segment::create(tag, std::mem::size_of::<T>().max(1) + extra)?;
        Ok(Shared {
            segment,
            _marker: PhantomData,
        })
    }

    /// Opens a `T` created elsewhere, checking that the segment is large enough.
    pub fn open(name: &str) -> std::io::Result<Shared<T>> {
        Self::checked(Segment::open(name)?)
    }

    /// # Safety
    /// As [`Segment::from_raw_fd`].
    pub(crate) unsafe fn from_raw_fd(name: &str, fd: RawFd) -> std::io::Result<Shared<T>> {
        // SAFETY: forwarded from the caller.
        Self::checked(unsafe { Segment::from_raw_fd(name, fd) }?)
    }

    fn checked(segment: Segment) -> std::io::Result<Shared<T>> {
        if segment.len() < std::mem::size_of::<T>() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "shared memory {} is {} bytes, smaller than the {} it should hold",
                    segment.name(),
                    segment.len(),
                    std::mem::size_of::<T>()
                ),
            ));
        }
        Ok(Shared {
            segment,
            _marker: PhantomData,
        })
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }
    pub(crate) fn segment_mut(&mut self) -> &mut Segment {
        &mut self.segment
    }
    /// The segment's /dev/shm name, which another process passes to [`Shared::open`] to
    /// map the same value.
    pub fn name(&self) -> &str {
        self.segment.name()
    }

    /// Pointer to the trailing bytes after `T`, and their length.
    pub(crate) fn trailing(&self) -> (*mut u8, usize) {
        let offset = std::mem::size_of::<T>().max(1);
        // SAFETY: offset <= len, checked at create/open.
        (
            unsafe { self.segment.as_ptr().add(offset) },
            self.segment.len() - offset,
        )
    }
}

impl<T: ShmSafe> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the segment is at least size_of::<T>() bytes, page-aligned, zero-filled
        // at creation (valid for ShmSafe types), and T is Sync so shared references from
        // several processes are sound.
        unsafe { &*(self.segment.as_ptr() as *const T) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn create_open_unlink() {
        let mut a: Shared<[AtomicU32; 4]> = Shared::create("test", 16).unwrap();
        a[1].store(42, Ordering::SeqCst);
        let b: Shared<[AtomicU32; 4]> = Shared::open(a.name()).unwrap();
        assert_eq!(b[1].load(Ordering::SeqCst), 42);
        assert_eq!(b.trailing().1, 16);
        assert!(hygiene::shm_names().contains(a.name()));
        a.segment_mut().unlink();
        assert!(!hygiene::shm_names().contains(a.name()));
        b[2].store(7, Ordering::SeqCst);
        assert_eq!(a[2].load(Ordering::SeqCst), 7, "mapping survives unlink");
    }

    #[test]
    fn drop_unlinks_and_open_of_missing_names_it() {
        let name = {
            let a: Shared<AtomicU32> = Shared::create("test", 0).unwrap();
            a.name().to_string()
        };
        assert!(!hygiene::shm_names().contains(&name));
        let err = Shared::<AtomicU32>::open(&name).unwrap_err().to_string();
        assert!(err.contains(&name), "{err}");
    }
}
