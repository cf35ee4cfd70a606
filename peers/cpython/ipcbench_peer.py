#!/usr/bin/env python3
"""ipcbench's CPython peer: runs ipcbench's workloads with Python's own multiprocessing.

Started by the harness as `python3 ipcbench_peer.py`; it speaks JSON lines over its
stdin/stdout as PROTOCOL.md (beside this file) describes. Standard library only, Python
3.8 or later.

Why it is built the way it is:

* Every blocking call that takes a timeout gets one (Queue.get, Connection.poll,
  Lock.acquire, Event.wait, Process.join, AsyncResult.get). Those that take none (a
  Manager proxy's RPC, SimpleQueue.put, Pool.join) are bounded by the request's watchdog:
  `faulthandler.dump_traceback_later(bound, exit=True)` prints every thread's Python stack
  to stderr and ends the peer, and the harness then kills the peer's process group.
* The synchronisation objects come from the `fork` context unless the request names
  another start method for its processes: a fork-context semaphore is unlinked from
  /dev/shm as soon as it is created, so a peer killed at any instruction leaves no
  `sem.mp-*` name behind. The `spawn` and `forkserver` processes of the start+join
  workloads create no semaphore; their helper processes (resource tracker, fork server)
  are stopped after the workload, so the peer has no child between requests.
* Protocol lines go to a private duplicate of stdout and fd 1 is pointed at stderr, so
  a stray print (from this program or a child) can never corrupt the protocol.
"""

import faulthandler
import json
import multiprocessing
import os
import platform
import select
import signal
import sys
import time
import warnings
from multiprocessing.managers import BaseManager, SyncManager

PROTOCOL = 1

# Seconds the peer waits for its next request before giving up on a silent harness.
IDLE_TIMEOUT = float(os.environ.get("IPCBENCH_PEER_IDLE_TIMEOUT", "600"))

# Python 3.12+ warns when a process with threads (a Queue's feeder) forks; the fork is
# the point of the fork workloads.
warnings.filterwarnings("ignore", category=DeprecationWarning)


class WorkloadError(Exception):
    """A workload that could not run as asked; the message goes back to the harness."""


# ---------------------------------------------------------------------------------------
# Placement


def pin(cpu):
    """Pins the calling thread (and the threads and processes it starts later) to `cpu`,
    and checks that it took: a placement that did not take is an error, never a figure
    under the wrong label. None leaves the affinity alone."""
    if cpu is None:
        return
    os.sched_setaffinity(0, {cpu})
    now = os.sched_getaffinity(0)
    if now != {cpu}:
        raise WorkloadError("pinned to CPU %d, but the affinity is %s" % (cpu, sorted(now)))


class Placed:
    """Pins this process to the initiator's CPU for one workload and restores the
    previous affinity afterwards (the peer serves many workloads)."""

    def __init__(self, cpus):
        self.initiator, self.responder = (cpus or [None, None])[:2]
        self.previous = os.sched_getaffinity(0)

    def __enter__(self):
        pin(self.initiator)
        return self

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.previous)
        return False

    def report(self):
        mine = sorted(os.sched_getaffinity(0))
        theirs = [self.responder] if self.responder is not None else sorted(self.previous)
        return {"initiator": mine, "responder": theirs}


# ---------------------------------------------------------------------------------------
# Child bodies (module level, so that spawn and forkserver children can find them)


def _empty():
    pass


def short_task(x):
    """The pool's short task: trivial arithmetic, so that what is measured is the pool's
    own cost of getting a task to a worker and its result back (ipcbench's task is a few
    microseconds of Rust; the same loop in Python would measure the interpreter)."""
    return x * 2 + 1


def _queue_get(q, bound):
    """get() with a bound, for every queue kind (SimpleQueue.get takes no timeout: poll
    its reader first)."""
    if hasattr(q, "_poll") and not hasattr(q, "get_nowait"):
        if not q._poll(bound):
            raise WorkloadError("SimpleQueue.get: nothing within %.0f s" % bound)
        return q.get()
    return q.get(timeout=bound)


def _queue_echo(requests, replies, joinable, cpu, trips, bound):
    pin(cpu)
    for _ in range(trips):
        item = _queue_get(requests, bound)
        if joinable:
            requests.task_done()
        replies.put(item)


def _pipe_echo(recv_end, send_end, cpu, trips, bound):
    pin(cpu)
    for _ in range(trips):
        if not recv_end.poll(bound):
            raise WorkloadError("pipe echo: nothing within %.0f s" % bound)
        send_end.send_bytes(recv_end.recv_bytes())


def _wake_echo(kind, ping, pong, cpu, trips, bound):
    pin(cpu)
    for _ in range(trips):
        if kind == "semaphore":
            if not ping.acquire(True, bound):
                raise WorkloadError("semaphore ping: not released within %.0f s" % bound)
            pong.release()
        else:
            if not ping.wait(bound):
                raise WorkloadError("event ping: not set within %.0f s" % bound)
            ping.clear()
            pong.set()


def _producer(kind, q, start, count, size, bound, done):
    payload = b"x" * size
    if not start.wait(bound):
        raise WorkloadError("producer: never started")
    for _ in range(count):
        if kind == "pipe":
            q.send_bytes(payload)
        else:
            q.put(payload)
    done.put(("producer", count))


def _consumer(kind, q, start, count, bound, done):
    if not start.wait(bound):
        raise WorkloadError("consumer: never started")
    got = 0
    for _ in range(count):
        if kind == "pipe":
            if not q.poll(bound):
                raise WorkloadError("pipe consumer: nothing within %.0f s" % bound)
            got += len(q.recv_bytes())
        else:
            got += len(_queue_get(q, bound))
            if kind == "joinablequeue":
                q.task_done()
    done.put(("consumer", got))


def _lock_contender(lock, start, count, bound, done):
    if not start.wait(bound):
        raise WorkloadError("contender: never started")
    for _ in range(count):
        if not lock.acquire(True, bound):
            raise WorkloadError("lock not acquired within %.0f s" % bound)
        lock.release()
    done.put(("contender", count))


def _manager_client(counter, start, count, bound, done):
    if not start.wait(bound):
        raise WorkloadError("client: never started")
    for _ in range(count):
        counter.increment(1)
    done.put(("client", count))


class Counter:
    """A server-side counter: one RPC per increment, as ipcbench's Manager counter."""

    def __init__(self):
        self.n = 0

    def increment(self, by):
        self.n += by
        return self.n


class CounterManager(BaseManager):
    pass


CounterManager.register("Counter", Counter)


# ---------------------------------------------------------------------------------------
# Helpers


def timed(trips, one):
    """One untimed warm-up call (the peer is known to be running after it), then `trips`
    calls timed one by one, in nanoseconds."""
    one()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(trips):
        started = clock()
        one()
        samples.append(clock() - started)
    return samples


class Children:
    """The processes a workload starts: each joined within the bound, and any still
    running at the end (an error path) terminated, then killed, then joined, so that no
    child outlives its workload."""

    def __init__(self, ctx, bound):
        self.ctx, self.bound, self.procs = ctx, bound, []

    def start(self, target, *args):
        proc = self.ctx.Process(target=target, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def join(self):
        for proc in self.procs:
            proc.join(self.bound)
            if proc.exitcode is None:
                raise WorkloadError("child %d still running after %.0f s" % (proc.pid, self.bound))
            if proc.exitcode != 0:
                raise WorkloadError("child %d exited with %d (its traceback is on stderr)"
                                    % (proc.pid, proc.exitcode))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            if proc.exitcode is None:
                proc.terminate()
                proc.join(1.0)
            if proc.exitcode is None:
                proc.kill()
                proc.join(5.0)
        return False


def close_queue(q):
    """Closes a queue without waiting on a feeder thread that may be stuck on a full pipe
    (error paths); in the normal path everything was consumed and nothing is lost."""
    if hasattr(q, "cancel_join_thread"):
        q.cancel_join_thread()
    if hasattr(q, "close"):
        q.close()
    else:  # SimpleQueue before Python 3.9 has no close(): close its two ends
        q._reader.close()
        q._writer.close()


def make_queue(ctx, kind):
    if kind == "queue":
        return ctx.Queue()
    if kind == "simplequeue":
        return ctx.SimpleQueue()
    if kind == "joinablequeue":
        return ctx.JoinableQueue()
    raise WorkloadError("no queue kind %r" % kind)


def collect(done, expected, bound):
    """Waits for `expected` done messages; returns them."""
    return [done.get(timeout=bound) for _ in range(expected)]


# ---------------------------------------------------------------------------------------
# Workloads: each takes the request and returns a result dict


def queue_roundtrip(req, ctx, placed, bound):
    kind, size, ops = req["mechanism"], req["size"], req["ops"]
    requests, replies = make_queue(ctx, kind), make_queue(ctx, kind)
    joinable = kind == "joinablequeue"
    payload = b"x" * size
    try:
        with Children(ctx, bound) as children:
            children.start(_queue_echo, requests, replies, joinable, placed.responder,
                           ops + 1, bound)

            def trip():
                requests.put(payload)
                reply = _queue_get(replies, bound)
                if joinable:
                    replies.task_done()
                if len(reply) != size:
                    raise WorkloadError("reply of %d bytes, sent %d" % (len(reply), size))

            samples = timed(ops, trip)
            children.join()
    finally:
        close_queue(requests)
        close_queue(replies)
    return {"kind": "times", "samples_ns": samples}


def pipe_roundtrip(req, ctx, placed, bound):
    size, ops = req["size"], req["ops"]
    if req.get("variant") == "simplex":
        r1, w1 = ctx.Pipe(duplex=False)
        r2, w2 = ctx.Pipe(duplex=False)
        mine_send, mine_recv, theirs = w1, r2, (r1, w2)
        ends = [r1, w1, r2, w2]
    else:
        a, b = ctx.Pipe(duplex=True)
        mine_send, mine_recv, theirs = a, a, (b, b)
        ends = [a, b]
    payload = b"x" * size
    try:
        with Children(ctx, bound) as children:
            children.start(_pipe_echo, theirs[0], theirs[1], placed.responder, ops + 1, bound)

            def trip():
                mine_send.send_bytes(payload)
                if not mine_recv.poll(bound):
                    raise WorkloadError("pipe: no reply within %.0f s" % bound)
                if len(mine_recv.recv_bytes()) != size:
                    raise WorkloadError("pipe: short reply")

            samples = timed(ops, trip)
            children.join()
    finally:
        for end in ends:
            end.close()
    return {"kind": "times", "samples_ns": samples}


def stream(req, ctx, placed, bound):
    """`ops` messages of `size` bytes from `producers` to `consumers` processes, all
    started and waiting before the clock starts; the time from the start signal to the
    last consumer done."""
    kind, size, ops = req["mechanism"], req["size"], req["ops"]
    producers, consumers = req.get("producers", 1), req.get("consumers", 1)
    if ops % producers or ops % consumers:
        raise WorkloadError("%d messages do not split evenly among %dx%d" % (ops, producers, consumers))
    if kind == "pipe":
        if producers != 1 or consumers != 1:
            raise WorkloadError("a pipe stream is one producer to one consumer")
        a, b = ctx.Pipe(duplex=True)
        sides, ends = (a, b), [a, b]
    else:
        q = make_queue(ctx, kind)
        sides, ends = (q, q), []
    start, done = ctx.Event(), ctx.Queue()
    try:
        with Children(ctx, bound) as children:
            for _ in range(producers):
                children.start(_producer, kind, sides[0], start, ops // producers, size, bound, done)
            for _ in range(consumers):
                children.start(_consumer, kind, sides[1], start, ops // consumers, bound, done)
            started = time.perf_counter_ns()
            start.set()
            reports = collect(done, producers + consumers, bound)
            elapsed = time.perf_counter_ns() - started
            children.join()
    finally:
        for end in ends:
            end.close()
        if kind != "pipe":
            close_queue(q)
        close_queue(done)
    got = sum(n for who, n in reports if who == "consumer")
    if got != ops * size:
        raise WorkloadError("consumers got %d bytes, %d sent" % (got, ops * size))
    return {"kind": "moved", "ops": ops, "bytes": ops * size, "elapsed_ns": elapsed}


def lock_acquire_release(req, ctx, placed, bound):
    ops, procs = req["ops"], req.get("producers", 1)
    lock = ctx.Lock()
    if procs <= 1:
        started = time.perf_counter_ns()
        for _ in range(ops):
            if not lock.acquire(True, bound):
                raise WorkloadError("lock not acquired within %.0f s" % bound)
            lock.release()
        return {"kind": "moved", "ops": ops, "bytes": 0, "elapsed_ns": time.perf_counter_ns() - started}
    return crowd(ctx, bound, procs, ops, _lock_contender, lock)


def crowd(ctx, bound, procs, ops, body, shared):
    """`ops` operations shared among `procs` processes started beforehand; the time from
    the start signal to the last one done."""
    start, done = ctx.Event(), ctx.Queue()
    shares = [ops // procs + (1 if i < ops % procs else 0) for i in range(procs)]
    try:
        with Children(ctx, bound) as children:
            for share in shares:
                children.start(body, shared, start, share, bound, done)
            started = time.perf_counter_ns()
            start.set()
            collect(done, procs, bound)
            elapsed = time.perf_counter_ns() - started
            children.join()
    finally:
        close_queue(done)
    return {"kind": "moved", "ops": ops, "bytes": 0, "elapsed_ns": elapsed}


def wake_roundtrip(req, ctx, placed, bound):
    kind, ops = req["mechanism"], req["ops"]
    if kind == "semaphore":
        ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)

        def trip():
            ping.release()
            if not pong.acquire(True, bound):
                raise WorkloadError("semaphore pong: not released within %.0f s" % bound)
    else:
        ping, pong = ctx.Event(), ctx.Event()

        def trip():
            ping.set()
            if not pong.wait(bound):
                raise WorkloadError("event pong: not set within %.0f s" % bound)
            pong.clear()

    with Children(ctx, bound) as children:
        children.start(_wake_echo, kind, ping, pong, placed.responder, ops + 1, bound)
        samples = timed(ops, trip)
        children.join()
    return {"kind": "times", "samples_ns": samples}


def start_manager(ctx, variant, cpu):
    """A Manager server process pinned to `cpu` (the responder's), as ipcbench's is."""
    manager = (CounterManager if variant == "counter" else SyncManager)(ctx=ctx)
    manager.start(pin, (cpu,))
    return manager


def manager_rpc(req, ctx, placed, bound):
    variant, ops = req.get("variant") or "counter", req["ops"]
    manager = start_manager(ctx, variant, placed.responder)
    try:
        if variant == "counter":
            counter = manager.Counter()

            def op():
                counter.increment(1)
        elif variant == "value":
            value = manager.Value("i", 0)

            def op():
                value.value = value.value + 1
        elif variant == "dict":
            d = manager.dict()
            d["n"] = 0

            def op():
                d["n"] = d["n"] + 1
        else:
            raise WorkloadError("no manager variant %r" % variant)
        samples = timed(ops, op)
    finally:
        manager.shutdown()
    return {"kind": "times", "samples_ns": samples}


def manager_increments(req, ctx, placed, bound):
    ops, clients = req["ops"], max(1, req.get("producers", 1))
    manager = start_manager(ctx, "counter", None)
    try:
        counter = manager.Counter()
        result = crowd(ctx, bound, clients, ops, _manager_client, counter)
        total = counter.increment(0)
        if total != ops:
            raise WorkloadError("the counter reads %d after %d increments" % (total, ops))
    finally:
        manager.shutdown()
    return result


def pool_work(req, ctx, placed, bound):
    what, ops = req["what"], req["ops"]
    pool = ctx.Pool(req.get("workers") or 2)
    try:
        # A first task outside the clock: the workers are known to be running.
        pool.apply_async(short_task, (0,)).get(bound)
        if what == "map":
            started = time.perf_counter_ns()
            results = pool.map_async(short_task, range(ops), req.get("chunksize")).get(bound)
            elapsed = time.perf_counter_ns() - started
            if len(results) != ops:
                raise WorkloadError("map gave %d results for %d tasks" % (len(results), ops))
            return {"kind": "moved", "ops": ops, "bytes": 0, "elapsed_ns": elapsed}
        if what == "apply-async-latency":
            samples, clock = [], time.perf_counter_ns
            for i in range(ops):
                started = clock()
                pool.apply_async(short_task, (i,)).get(bound)
                samples.append(clock() - started)
            return {"kind": "times", "samples_ns": samples}
        if what == "apply-async-round-trip":
            started = time.perf_counter_ns()
            for i in range(ops):
                pool.apply_async(short_task, (i,)).get(bound)
            return {"kind": "moved", "ops": ops, "bytes": 0,
                    "elapsed_ns": time.perf_counter_ns() - started}
        if what == "apply-async-pipelined":
            called = []
            started = time.perf_counter_ns()
            handles = [pool.apply_async(short_task, (i,), callback=called.append) for i in range(ops)]
            for handle in handles:
                handle.get(bound)
            elapsed = time.perf_counter_ns() - started
            # The callback runs on the pool's result thread before get() returns.
            if len(called) != ops:
                raise WorkloadError("%d callbacks for %d tasks" % (len(called), ops))
            return {"kind": "moved", "ops": ops, "bytes": 0, "elapsed_ns": elapsed}
        raise WorkloadError("no pool workload %r" % what)
    finally:
        pool.close()
        pool.join()


def start_join(req, ctx, placed, bound):
    def one():
        proc = ctx.Process(target=_empty)
        proc.start()
        proc.join(bound)
        if proc.exitcode is None:
            proc.kill()
            proc.join(5.0)
            raise WorkloadError("empty child still running after %.0f s" % bound)
        if proc.exitcode != 0:
            raise WorkloadError("empty child exited with %d" % proc.exitcode)

    return {"kind": "times", "samples_ns": timed(req["ops"], one)}


WORKLOADS = {
    ("queue", "roundtrip"): queue_roundtrip,
    ("simplequeue", "roundtrip"): queue_roundtrip,
    ("joinablequeue", "roundtrip"): queue_roundtrip,
    ("queue", "stream"): stream,
    ("simplequeue", "stream"): stream,
    ("joinablequeue", "stream"): stream,
    ("pipe", "roundtrip"): pipe_roundtrip,
    ("pipe", "stream"): stream,
    ("lock", "acquire-release"): lock_acquire_release,
    ("semaphore", "wake-roundtrip"): wake_roundtrip,
    ("event", "wake-roundtrip"): wake_roundtrip,
    ("manager", "rpc-increment"): manager_rpc,
    ("manager", "increments"): manager_increments,
    ("pool", "map"): pool_work,
    ("pool", "apply-async-latency"): pool_work,
    ("pool", "apply-async-round-trip"): pool_work,
    ("pool", "apply-async-pipelined"): pool_work,
    ("process", "start-join"): start_join,
}


# ---------------------------------------------------------------------------------------
# Housekeeping between requests


def stop_helpers():
    """Stops the fork server and the resource tracker a spawn or forkserver workload
    started, so that the peer has no child between requests."""
    for module, name, pid in (("multiprocessing.forkserver", "_forkserver", "_forkserver_pid"),
                              ("multiprocessing.resource_tracker", "_resource_tracker", "_pid")):
        helper = getattr(sys.modules.get(module), name, None)
        stop = getattr(helper, "_stop", None)
        if stop is not None and getattr(helper, pid, None) is not None:
            try:
                stop()
            except Exception as e:  # a helper that cannot stop is reported below
                print("ipcbench peer: cannot stop %s: %s" % (name, e), file=sys.stderr)


def own_children():
    """Pids of this process's live children, from /proc (multiprocessing's own list
    misses helpers such as a Manager's server or the resource tracker)."""
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/children" % task) as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return sorted(set(pids))


def reap_leftovers(bound=5.0):
    """Waits, within `bound`, for children that are exiting; returns those that stay."""
    deadline = time.monotonic() + bound
    while True:
        multiprocessing.active_children()  # joins finished multiprocessing children
        left = []
        for pid in own_children():
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done == 0:
                left.append(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------
# The protocol loop


def hello():
    return {
        "ok": True,
        "op": "hello",
        "protocol": PROTOCOL,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "start_methods": multiprocessing.get_all_start_methods(),
        "cpu_count": os.cpu_count(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "pid": os.getpid(),
    }


def run(req):
    key = (req.get("mechanism"), req.get("what"))
    body = WORKLOADS.get(key)
    if body is None:
        raise WorkloadError("no workload %s/%s; the peer knows %s" % (
            key[0], key[1], ", ".join("%s/%s" % k for k in sorted(WORKLOADS))))
    method = req.get("start_method") or "fork"
    if method not in multiprocessing.get_all_start_methods():
        raise WorkloadError("start method %r is not available here" % method)
    bound = float(req.get("bound_s") or 60)
    ctx = multiprocessing.get_context(method)
    with Placed(req.get("cpus")) as placed:
        result = body(req, ctx, placed, bound)
        result["cpus"] = placed.report()
    result["start_method"] = method
    return result


def respond(out, message):
    out.write(json.dumps(message, separators=(",", ":")) + "\n")
    out.flush()


class Requests:
    """Request lines from fd 0, read unbuffered (a buffered reader could hold a line that
    select() then never reports) and each wait bounded by IDLE_TIMEOUT."""

    def __init__(self, fd):
        self.fd, self.pending = fd, b""

    def next(self):
        """The next line, or None at EOF or after IDLE_TIMEOUT without one."""
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.fd], [], [], IDLE_TIMEOUT)
            if not ready:
                print("ipcbench peer: no request within %.0f s; exiting" % IDLE_TIMEOUT,
                      file=sys.stderr)
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line


def main():
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # SIGUSR1 prints every thread's Python stack: the harness asks for it before it kills
    # a peer that passed its bound. Forked children inherit the handler.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    requests = Requests(sys.stdin.fileno())
    while True:
        line = requests.next()
        if line is None:
            break
        try:
            req = json.loads(line)
        except ValueError as e:
            respond(out, {"ok": False, "error": "not a JSON request: %s" % e})
            continue
        op = req.get("op")
        if op == "hello":
            respond(out, hello())
            continue
        if op == "bye":
            respond(out, {"ok": True, "op": "bye"})
            break
        if op != "run":
            respond(out, {"ok": False, "error": "unknown op %r (hello, run, bye)" % op})
            continue
        name = req.get("workload", "?")
        bound = float(req.get("bound_s") or 60)
        faulthandler.dump_traceback_later(bound, exit=True, file=sys.stderr)
        try:
            result = run(req)
            result["ok"] = True
        except Exception as e:
            result = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        finally:
            stop_helpers()
            left = reap_leftovers()
            faulthandler.cancel_dump_traceback_later()
        if left and result.get("ok"):
            result = {"ok": False, "error": "children left running: %s" % left}
        result["workload"] = name
        respond(out, result)
    stop_helpers()
    reap_leftovers()


if __name__ == "__main__":
    main()
