//! A fork while another thread of the parent sets ipc-channel's lazy send-buffer size.
//! The value is set once per process, by the first send or receive; a child forked while
//! another thread is setting it inherits it half-set and its first send waits for ever
//! (the queue-channel stress target hung this way about one quick run in four, a worker
//! in an untimed futex wait in the program's static data).
//!
//! The window is a few microseconds, so the test holds it open: a seccomp user
//! notification filter stops the parent's consumer thread inside `socketpair(2)`, the
//! first thing setting the value does, while the test forks a producer. Its own process
//! (its own test binary): the value must not have been set by another test.

use ipcbench::ipc::queue::{self, Config, Flavor, QueueHandle, Role};
use ipcbench::process::{self as proc, Options, StartMethod};
use ipcbench::register_entry;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn put_one(handle: QueueHandle) -> Result<(), String> {
    let queue = queue::open(handle).map_err(|e| e.to_string())?;
    queue
        .put(b"after the fork", Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())
}
register_entry!("test-fork-ipc-channel-put", put_one);

/// Installs, on the calling thread (and the threads and processes it starts from now
/// on), a filter that turns every `socketpair` into a user notification; returns the
/// listener.
fn stop_socketpairs_for_supervision() -> OwnedFd {
    let nr = libc::SYS_socketpair as u32;
    // SAFETY: BPF_STMT and BPF_JUMP only build plain structs.
    let program = unsafe {
        [
            libc::BPF_STMT((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0),
            libc::BPF_JUMP(
                (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                nr,
                0,
                1,
            ),
            libc::BPF_STMT(
                (libc::BPF_RET | libc::BPF_K) as u16,
                libc::SECCOMP_RET_USER_NOTIF,
            ),
            libc::BPF_STMT(
                (libc::BPF_RET | libc::BPF_K) as u16,
                libc::SECCOMP_RET_ALLOW,
            ),
        ]
    };
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl and seccomp read only their arguments; `fprog` points at `program`,
    // both alive for the call. The kernel returns a new fd, owned from here on.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let fd = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        );
        assert!(
            fd >= 0,
            "seccomp user notification: {}",
            std::io::Error::last_os_error()
        );
        OwnedFd::from_raw_fd(fd as i32)
    }
}

/// Lets the notified system call `id` run.
fn let_continue(listener: &OwnedFd, id: u64) {
    let mut response = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: NOTIF_SEND reads the response struct, valid for the call. It fails only if
    // the notifying thread is gone, which leaves nothing to do.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut response,
        )
    };
}

/// Lets every `socketpair` run at once, except the first one made by the thread whose
/// tid is in `hold_tid`: that one waits until `release` (its thread stays inside
/// ipc-channel's lazy initialisation meanwhile); `held` says it is being held.
fn supervise(
    listener: OwnedFd,
    hold_tid: Arc<AtomicI32>,
    held: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let mut holding: Option<u64> = None;
    while !stop.load(Ordering::SeqCst) || holding.is_some() {
        if let (Some(id), true) = (holding, release.load(Ordering::SeqCst)) {
            let_continue(&listener, id);
            holding = None;
        }
        let mut poll = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, valid for the call.
        if unsafe { libc::poll(&mut poll, 1, 5) } <= 0 {
            continue;
        }
        // SAFETY: NOTIF_RECV wants a zeroed struct and writes the notification into it.
        let mut notification: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: as above; the struct lives across the call.
        if unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notification,
            )
        } != 0
        {
            continue;
        }
        let from_held_thread = notification.pid as i32 == hold_tid.load(Ordering::SeqCst);
        if from_held_thread && holding.is_none() && !held.load(Ordering::SeqCst) {
            holding = Some(notification.id);
            held.store(true, Ordering::SeqCst);
        } else {
            let_continue(&listener, notification.id);
        }
    }
}

/// Whether thread `tid` of this process sleeps in the kernel now.
fn sleeping(tid: i32) -> bool {
    let wchan = std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).unwrap_or_default();
    !wchan.is_empty() && wchan != "0"
}

#[test]
fn a_producer_forked_while_the_consumer_thread_first_receives_can_send() {
    let listener = stop_socketpairs_for_supervision();
    let hold_tid = Arc::new(AtomicI32::new(0));
    let (held, release, stop) = (
        Arc::default(),
        Arc::<AtomicBool>::default(),
        Arc::<AtomicBool>::default(),
    );
    let supervisor = {
        let (hold_tid, held, release, stop) = (
            hold_tid.clone(),
            Arc::clone(&held),
            release.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || supervise(listener, hold_tid, held, release, stop))
    };

    let config = Config::default().block_limit(Duration::from_secs(5));
    let queue = Flavor::Channel.create(&config).unwrap();
    let producer = queue.handle(Role::Producer).unwrap();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let consumer = {
        let (queue, hold_tid) = (queue.clone(), hold_tid.clone());
        std::thread::spawn(move || {
            // SAFETY: gettid takes nothing and returns this thread's id.
            hold_tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
            queue.lock().unwrap().get(Some(Duration::from_secs(8)))
        })
    };
    // The consumer is either held inside ipc-channel's first-use setup or, with the
    // value set beforehand, already waiting for a message.
    let limit = Instant::now() + Duration::from_secs(5);
    let consumer_ready = || {
        let tid = hold_tid.load(Ordering::SeqCst);
        held.load(Ordering::SeqCst) || (tid != 0 && sleeping(tid))
    };
    while !consumer_ready() {
        assert!(
            Instant::now() < limit,
            "the consumer thread neither started its setup nor waited"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let setup_in_progress = held.load(Ordering::SeqCst);

    let options = Options::new("producer").method(StartMethod::Fork);
    let mut child = proc::start("test-fork-ipc-channel-put", &producer, options).unwrap();
    let put = child.result::<()>(Some(Duration::from_secs(3)));
    if put.is_err() {
        let _ = child.kill();
    }
    release.store(true, Ordering::SeqCst);
    let got = consumer.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    supervisor.join().unwrap();

    assert!(
        put.is_ok(),
        "a producer forked while the consumer thread was {} could not send: {put:?}",
        if setup_in_progress {
            "inside ipc-channel's first-use setup"
        } else {
            "waiting"
        }
    );
    assert_eq!(got.unwrap(), b"after the fork");
}
