//! Size limits on the wire: a peer's frame header cannot make a reader allocate what it
//! claims. This binary counts, per thread, the largest single allocation request (a
//! global allocator wrapping the system one), so a test can prove that reading a frame
//! allocated no more than the bytes that actually arrived.

use ipcbench::ipc::frame::{self, FrameError, HEADER_LEN};
use ipcbench::ipc::pipe::{pipe, Connection, PipeError, PipeKind};
use ipcbench::process::hygiene;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| {
        if size > largest.get() {
            largest.set(size);
        }
    });
}

/// The system allocator, noting the largest request made on each thread.
struct LargestAllocation;

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping
// only touches a const-initialised thread-local Cell (no allocation, no destructor).
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: LargestAllocation = LargestAllocation;

/// Runs `f` and returns its value with the largest single allocation it requested on
/// this thread.
fn largest_allocation_in<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let value = f();
    (value, LARGEST.with(|l| l.get()))
}

/// Serialises the tests of this binary (fds are process-wide) and checks for leaks.
fn leak_checked(body: impl FnOnce()) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = hygiene::Snapshot::take();
    body();
    let leaks = before.leaks_since();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}

/// Writes raw bytes on a write end, bypassing the framing.
fn write_raw(conn: &Connection, bytes: &[u8]) {
    let fd = conn.raw_fd().unwrap();
    // SAFETY: writes from a valid slice to an fd the connection holds open.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, bytes.len() as isize);
}

/// A header with a good magic claiming `len` bytes of payload.
fn header_claiming(len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&frame::MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h
}

const CLAIM: u32 = 200 << 20;
/// What reading a frame may allocate whatever its header claims: far below the claim.
const ALLOCATION_BOUND: usize = 1 << 20;

#[test]
fn a_header_claiming_200_mib_then_end_of_stream_allocates_nothing_like_it() {
    leak_checked(|| {
        for kind in PipeKind::ALL {
            let (reader, mut writer) = pipe(kind).unwrap();
            write_raw(&writer, &header_claiming(CLAIM));
            write_raw(&writer, &[5u8; 1000]);
            writer.close();
            let (got, largest) =
                largest_allocation_in(|| reader.recv_bytes_timeout(Duration::from_secs(30)));
            assert!(
                matches!(
                    got,
                    Err(PipeError::Corrupt(FrameError::Truncated { read, expected }))
                        if read == HEADER_LEN + 1000 && expected == HEADER_LEN + CLAIM as usize
                ),
                "{kind:?}: {got:?}"
            );
            assert!(
                largest <= ALLOCATION_BOUND,
                "{kind:?}: reading a frame whose header claimed {CLAIM} bytes (1000 arrived) allocated {largest} bytes at once"
            );
        }
    });
}

#[test]
fn a_header_claiming_200_mib_then_a_stall_is_cut_at_the_bound_without_allocating_it() {
    leak_checked(|| {
        for kind in PipeKind::ALL {
            let (mut reader, writer) = pipe(kind).unwrap();
            // The bound on a frame that has started (a safety net for the stalled peer).
            reader.set_timeout(Duration::from_millis(300));
            write_raw(&writer, &header_claiming(CLAIM));
            write_raw(&writer, &[5u8; 3000]);
            let (got, largest) = largest_allocation_in(|| reader.recv_bytes());
            assert!(
                matches!(
                    got,
                    Err(PipeError::Corrupt(FrameError::Truncated { read, .. })) if read == HEADER_LEN + 3000
                ),
                "{kind:?}: {got:?}"
            );
            assert!(
                largest <= ALLOCATION_BOUND,
                "{kind:?}: a stalled frame claiming {CLAIM} bytes allocated {largest} bytes at once"
            );
            drop(writer);
        }
    });
}
