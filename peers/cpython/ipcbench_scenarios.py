#!/usr/bin/env python3
"""ipcbench's race scenarios on CPython's own multiprocessing: one case per run.

Started by the harness (`ipcbench check --peer cpython`) as `python3
ipcbench_scenarios.py`, once per case, in the case's process group. It reads one JSON
request from stdin, runs the scenario's processes with `multiprocessing` (the `fork`
context), and writes one JSON answer to stdout. PROTOCOL.md, beside this file, describes
both, and the step protocol below. Standard library only, Python 3.8 or later.

Why it is built the way it is:

* The harness judges, this program only acts and reports. It returns what it saw (the
  tickets each buyer sold, the counter's final value, the frames that arrived torn) and
  the harness's oracle, the same function that judges ipcbench's own mechanisms, gives the
  verdict.
* A hang is the finding, not an accident: a consumer left without a sentinel blocks in
  `Queue.get()` for ever, exactly as a user's program would. Such calls take no timeout
  here; the harness's watchdog reads every process's wait from /proc at its deadline and
  kills the case's process group. `faulthandler` is registered on SIGUSR1 so that the
  harness can ask a blocked process for its Python stack.
* Forced interleavings: a worker that takes part in a schedule gets a socket (its fd in
  the request) to the harness's turnstile. Before each racy operation it asks for its
  turn ("step LABEL"), waits for "go", does the operation and reports "done VALUE
  PROGRESSED". The harness grants the turns in the order the case's schedule says, so a
  Python race is reproduced exactly and shrinks like a Rust one. An operation inside a
  step never blocks: a lock is tried (`acquire(block=False)`), and a failed try is a
  step that made no progress, which passes the turn on.
"""

import ctypes
import faulthandler
import fcntl
import json
import multiprocessing
import os
import signal
import socket
import struct
import sys
import time
import traceback
import warnings

# Python 3.12+ warns when a process with threads (a Queue's feeder) forks.
warnings.filterwarnings("ignore", category=DeprecationWarning)

CTX = multiprocessing.get_context("fork")

# Every step socket of the case: a process that is not the worker owning one closes it,
# so that the harness sees end-of-file when that worker ends.
STEP_FDS = []


class TurnstileGone(Exception):
    """The harness's turnstile stopped answering (it reports why)."""


def name_process(name):
    """Sets the kernel's name of this process (/proc/PID/comm), which the harness's hang
    report shows: "buyer 1" says more than "python3"."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def close_step_fds(keep=None):
    """Closes every step socket but `keep` (a process's own)."""
    for fd in STEP_FDS:
        if fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


class Turnstile:
    """A worker's end of the harness's turnstile (see the module's docstring)."""

    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)
        self.lines = self.sock.makefile("rb")

    def _send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def _expect(self, word):
        line = self.lines.readline()
        if not line:
            raise TurnstileGone("the harness's turnstile ended; its error says why")
        if line.strip() != word.encode():
            raise TurnstileGone("the turnstile answered %r, not %r" % (line, word))

    def step(self, label, action):
        """Runs `action` (returning (result, value, progressed)) as one step."""
        self._send("step " + label)
        self._expect("go")
        result, value, progressed = action()
        self._send("done %d %d" % (value, 1 if progressed else 0))
        return result

    def step_value(self, label, action):
        """A step recording the number `action` returns."""
        return self.step(label, lambda: (lambda v: (v, v, True))(action()))

    def try_step(self, label, action):
        """A step that may find itself blocked: `action` returns whether it progressed."""
        return self.step(label, lambda: (lambda ok: (ok, 1 if ok else 0, ok))(action()))

    def record(self, label, value):
        """An event outside the schedule."""
        self._send("record %s %d" % (label, value))

    def finish(self):
        """After the worker's last step: the schedule skips it from now on."""
        self._send("finish")


def worker_main(index, name, body, *args):
    """A worker process: named, holding only its own step socket (if any), reporting
    its result in its own file for the main process to read."""
    name_process(name)
    fd = STEP_FDS[index] if index < len(STEP_FDS) else None
    close_step_fds(keep=fd)
    turnstile = Turnstile(fd) if fd is not None else None
    result = body(turnstile, *args)
    with open(os.path.join(CASE_DIR, "result-%s.json" % name.replace(" ", "-")), "w") as f:
        json.dump(result, f)


def result_of(name):
    path = os.path.join(CASE_DIR, "result-%s.json" % name.replace(" ", "-"))
    with open(path) as f:
        return json.load(f)


def start(name, index, body, *args, daemon=False):
    p = CTX.Process(target=worker_main, args=(index, name, body) + args, name=name)
    p.daemon = daemon
    p.start()
    return p


def join_all(processes):
    """Joins every worker with no timeout (a hang is the finding; the harness bounds it)
    and fails when one did not end well."""
    for p in processes:
        p.join()
    failed = ["%s exited with %s" % (p.name, p.exitcode) for p in processes if p.exitcode != 0]
    if failed:
        raise ScenarioError("; ".join(failed) + " (tracebacks on stderr)")


class ScenarioError(Exception):
    """A case that could not run as asked; the message goes back to the harness."""


# ---------------------------------------------------------------------------------------
# ticket-oversell: buyers decrement a stock kept in a JSON file, with or without mp.Lock.


def read_stock(path):
    with open(path) as f:
        return json.load(f)["stock"]


def write_stock(path, stock):
    temp = path + ".%d" % os.getpid()
    with open(temp, "w") as f:
        json.dump({"stock": stock}, f)
    os.replace(temp, path)


def buyer(ts, path, attempts, lock):
    sold = 0
    for _ in range(attempts):
        if lock is not None:
            while not ts.try_step("lock", lambda: lock.acquire(block=False)):
                pass
        while True:
            seen = ts.step_value("read-stock", lambda: read_stock(path))
            if seen <= 0:
                break
            ts.step_value("write-stock", lambda: (write_stock(path, seen - 1), seen - 1)[1])
            sold += 1
            break
        if lock is not None:
            ts.step("unlock", lambda: (lock.release(), 0, True))
    ts.finish()
    return sold


def ticket_oversell(variant, params):
    path = os.path.join(CASE_DIR, "tickets.json")
    write_stock(path, params["tickets"])
    lock = CTX.Lock() if variant == "mp-lock" else None
    names = ["buyer %d" % i for i in range(params["buyers"])]
    buyers = [start(n, i, buyer, path, params["attempts"], lock) for i, n in enumerate(names)]
    close_step_fds()
    join_all(buyers)
    return {"sold": [result_of(n) for n in names], "left": read_stock(path)}


# ---------------------------------------------------------------------------------------
# manager-lost-update: `d[k] = d[k] + 1` on a Manager dict, with or without mp.Lock.


def client(ts, d, increments, lock):
    for _ in range(increments):
        if lock is not None:
            while not ts.try_step("lock", lambda: lock.acquire(block=False)):
                pass
        seen = ts.step_value("get", lambda: d["n"])
        ts.step_value("set", lambda: (d.__setitem__("n", seen + 1), seen + 1)[1])
        if lock is not None:
            ts.step("unlock", lambda: (lock.release(), 0, True))
    ts.finish()
    return 0


def manager_lost_update(variant, params):
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=CTX)
    # The server must not hold the workers' step sockets, or a worker's end is never seen.
    manager.start(initializer=close_step_fds)
    try:
        d = manager.dict({"n": 0})
        lock = CTX.Lock() if variant == "locked" else None
        names = ["client %d" % i for i in range(params["clients"])]
        clients = [start(n, i, client, d, params["increments"], lock) for i, n in enumerate(names)]
        close_step_fds()
        join_all(clients)
        return {"total": d["n"]}
    finally:
        manager.shutdown()


# ---------------------------------------------------------------------------------------
# pipe-same-end: several processes `send_bytes` on one end of one Pipe.


def frame(writer, seq, size):
    head = struct.pack("<II", writer, seq)
    return head + bytes([(writer * 67 + 1) % 251]) * (size - len(head))


def writer_body(ts, w, index, frames, size, lock):
    for seq in range(frames):
        data = frame(index, seq, size)
        if lock is not None:
            with lock:
                w.send_bytes(data)
        else:
            w.send_bytes(data)
    return frames


def pipe_same_end(variant, params):
    size = params["frame_bytes"]
    writers, frames = params["writers"], params["frames_each"]
    r, w = CTX.Pipe(duplex=False)
    lock = CTX.Lock() if variant == "writer-lock" else None
    names = ["writer %d" % i for i in range(writers)]
    procs = [start(n, len(STEP_FDS), writer_body, w, i, frames, size, lock) for i, n in enumerate(names)]
    w.close()
    # A bad length makes recv_bytes close the connection: a duplicate lets the rest be
    # drained after it, so that the writers can finish.
    raw = os.dup(r.fileno())
    received, torn, first = 0, 0, None
    expected_next = [0] * writers
    while True:
        try:
            data = r.recv_bytes(maxlength=size)
        except EOFError:
            break
        except OSError as e:  # a torn header read as a length: "bad message length"
            torn += 1
            first = first or "a frame's header read as a length: %s" % e
            # The stream has lost its framing: read the rest raw, so that the writers
            # can finish, and count nothing more.
            while os.read(raw, 1 << 16):
                pass
            break
        ok = len(data) == size
        if ok:
            who, seq = struct.unpack("<II", data[:8])
            ok = who < writers and data == frame(who, seq, size) and seq == expected_next[who]
            if ok:
                expected_next[who] += 1
        if ok:
            received += 1
        else:
            torn += 1
            first = first or "frame %d arrived torn (%d bytes, mixing writers' bytes)" % (
                received + torn,
                len(data),
            )
    os.close(raw)
    if not r.closed:
        r.close()
    join_all(procs)
    return {"sent": writers * frames, "whole": received, "torn": torn, "first": first}


# ---------------------------------------------------------------------------------------
# queue-end-signal: consumers read until a None sentinel; fewer sentinels than consumers.


def consumer_body(ts, q, joinable):
    got = []
    while True:
        item = q.get()
        if item is None:
            return got
        got.append(item)
        if joinable:
            # Recorded before task_done: once join() returns, every item is on disk.
            with open(os.path.join(CASE_DIR, "got-%d-%d" % (os.getpid(), item)), "w"):
                pass
            q.task_done()


def queue_end_signal(variant, params):
    joinable = variant == "joinable"
    q = CTX.JoinableQueue() if joinable else CTX.Queue()
    consumers = params["consumers"]
    names = ["consumer %d" % i for i in range(consumers)]
    procs = [start(n, len(STEP_FDS), consumer_body, q, joinable, daemon=joinable) for n in names]
    items = params["items"]
    for item in range(items):
        q.put(item)
    if joinable:
        q.join()  # every item's task_done: then the daemons may go
        got = [int(f.split("-")[2]) for f in os.listdir(CASE_DIR) if f.startswith("got-")]
        for p in procs:
            p.terminate()
            p.join()
        return {"items": items, "got": sorted(got)}
    sentinels = consumers - params["missing"] if variant == "missing-sentinel" else consumers
    for _ in range(sentinels):
        q.put(None)
    join_all(procs)
    got = sorted(x for n in names for x in result_of(n))
    return {"items": items, "got": got}


# ---------------------------------------------------------------------------------------
# join-before-drain: join a child that put a large item on a Queue, then read it.


def put_large(ts, q, size):
    q.put(b"x" * size)
    return size


def join_before_drain(variant, params):
    q = CTX.Queue()
    child = start("putter", len(STEP_FDS), put_large, q, params["item_bytes"])
    if variant == "join-first":
        child.join()  # the child's exit waits for its feeder thread to flush: never
        item = q.get()
    else:
        item = q.get()
        child.join()
    join_all([child])
    return {"item_bytes": params["item_bytes"], "received": len(item)}


# ---------------------------------------------------------------------------------------
# pool-worker-death: a Pool worker is SIGKILLed in the middle of a task.


def task(x):
    if x == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 2


def pool_worker_death(variant, params):
    workers, tasks = params["workers"], params["tasks"]
    if variant == "naive":
        with CTX.Pool(workers, initializer=name_process, initargs=("pool worker",)) as pool:
            results = pool.map(task, range(tasks))  # never returns: task 0 is lost
        return {"tasks": tasks, "results": len(results), "reported": None}
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(workers, mp_context=CTX) as pool:
        try:
            results = list(pool.map(task, range(tasks)))
            return {"tasks": tasks, "results": len(results), "reported": None}
        except BrokenProcessPool as e:
            return {"tasks": tasks, "results": 0, "reported": "BrokenProcessPool: %s" % e}


# ---------------------------------------------------------------------------------------
# lock-holder-killed: the holder of a lock is killed; do the waiters get it?


class FileLock:
    """fcntl.flock on a file: the kernel drops a dead holder's lock."""

    def __init__(self, path):
        self.path = path

    def acquire(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def holder_body(ts, lock, held):
    lock.acquire()
    held.set()
    time.sleep(60)  # killed long before
    return 0


def waiter_body(ts, lock):
    lock.acquire()  # no timeout: a lock whose holder died is never released
    lock.release()
    return 1


def lock_holder_killed(variant, params):
    lock = FileLock(os.path.join(CASE_DIR, "lock")) if variant == "flock" else CTX.Lock()
    held = CTX.Event()
    holder = start("holder", len(STEP_FDS), holder_body, lock, held)
    if not held.wait(10):
        raise ScenarioError("the holder did not take the lock within 10 s")
    names = ["waiter %d" % i for i in range(params["waiters"])]
    waiters = [start(n, len(STEP_FDS), waiter_body, lock) for n in names]
    if params["signal"] == signal.SIGTERM:
        holder.terminate()  # the lesson's own words: terminate() a process holding a Lock
    else:
        holder.kill()
    holder.join()
    join_all(waiters)
    return {"waiters": params["waiters"], "acquired": sum(result_of(n) for n in names)}


# ---------------------------------------------------------------------------------------
# daemon-children: does a daemon child end with its parent?


def sleeper_body(ts):
    time.sleep(30)
    return 0


def parent_body(ts, killed):
    child = CTX.Process(target=worker_main, args=(len(STEP_FDS), "daemon child", sleeper_body))
    child.daemon = True
    child.start()
    with open(os.path.join(CASE_DIR, "child.pid"), "w") as f:
        f.write(str(child.pid))
    if killed:
        os.kill(os.getpid(), signal.SIGKILL)
    return 0  # a normal exit: multiprocessing terminates its daemon children


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def daemon_children(variant, params):
    killed = variant == "parent-killed"
    parent = start("parent", len(STEP_FDS), parent_body, killed)
    parent.join()
    with open(os.path.join(CASE_DIR, "child.pid")) as f:
        child = int(f.read())
    grace = params["grace_ms"] / 1000.0
    until = time.monotonic() + grace
    while alive(child) and time.monotonic() < until:
        time.sleep(0.005)
    outlived = alive(child)
    if outlived:
        os.kill(child, signal.SIGKILL)
    return {"parent_exit": parent.exitcode, "child_outlived_ms": params["grace_ms"] if outlived else 0}


SCENARIOS = {
    "ticket-oversell": ticket_oversell,
    "manager-lost-update": manager_lost_update,
    "pipe-same-end": pipe_same_end,
    "queue-end-signal": queue_end_signal,
    "join-before-drain": join_before_drain,
    "pool-worker-death": pool_worker_death,
    "lock-holder-killed": lock_holder_killed,
    "daemon-children": daemon_children,
}

CASE_DIR = None


def main():
    global CASE_DIR
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    name_process("python main")
    answer_path = None
    try:
        request = json.loads(sys.stdin.read())
        CASE_DIR, answer_path = request["dir"], request["answer"]
        STEP_FDS.extend(request.get("steps", []))
        run = SCENARIOS.get(request["scenario"])
        if run is None:
            raise ScenarioError("no scenario %r; this peer has %s" % (request["scenario"], sorted(SCENARIOS)))
        answer = {"ok": True, "observed": run(request["variant"], request["params"])}
    except Exception as e:  # every failure is an answer, with its traceback on stderr
        traceback.print_exc()
        answer = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        # Whatever still runs would keep this process at its exit (multiprocessing joins
        # its children there): the failure is the answer, not a hang.
        for child in multiprocessing.active_children():
            child.kill()
    if answer_path is None:
        sys.exit(2)
    # A file, not stdout: a descendant that outlives this process (the daemon child the
    # harness is looking for) would keep a pipe open and the harness reading.
    with open(answer_path + ".tmp", "w") as f:
        json.dump(answer, f)
    os.replace(answer_path + ".tmp", answer_path)


if __name__ == "__main__":
    main()
