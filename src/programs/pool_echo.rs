//! The seed's servers as workloads: a loopback TCP echo server served (a) by one process
//! per connection and (b) by a [`Pool`] of workers, and a driver of N client processes.
//!
//! The pool server is a pre-forked server: every worker inherits the listening socket and
//! each pool task accepts one connection and echoes on it until the client closes. A
//! worker is busy for the whole connection, so a pool of 4 serves at most 4 clients at
//! once and a fifth waits, connected (the kernel's backlog accepted it) but unanswered,
//! until a worker is free — which is what the seed observed. The servers count the
//! clients in service in shared memory, so the limit is observed, not inferred from
//! timing.

use crate::ipc::pipe::{pipe, Connection, ConnectionHandle, PipeKind};
use crate::ipc::pool::{AsyncResult, Pool, PoolOptions};
use crate::process::{self, Child, Options, StartMethod};
use crate::register_entry;
use crate::sys::shm::Shared;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bound on every socket read, write, connect and accept of the servers and clients.
pub(crate) const IO_BOUND: Duration = Duration::from_secs(60);

/// How connections are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerKind {
    /// One new process per accepted connection.
    ProcessPerConnection,
    /// A pool of this many workers, each serving one connection at a time.
    Pool {
        /// Worker processes, each serving one connection at a time.
        workers: usize,
    },
}

impl ServerKind {
    /// The label the figures carry (`process-per-connection`, `pool-N`).
    pub fn name(self) -> String {
        match self {
            ServerKind::ProcessPerConnection => "process-per-connection".into(),
            ServerKind::Pool { workers } => format!("pool-{workers}"),
        }
    }
}

/// Counters shared by every serving process: [clients in service now, most at once].
type Counters = [AtomicU64; 2];

#[derive(Debug, Serialize, Deserialize)]
struct ServeArgs {
    /// The connected socket (per connection) or the listening socket (pool task).
    fd: RawFd,
    counters: String,
}

/// Echoes on `stream` until the client closes; counts the client in service meanwhile.
fn serve_stream(mut stream: TcpStream, counters: &Counters) -> Result<u64, String> {
    let now = counters[0].fetch_add(1, Ordering::SeqCst) + 1;
    counters[1].fetch_max(now, Ordering::SeqCst);
    let result = echo_until_eof(&mut stream);
    counters[0].fetch_sub(1, Ordering::SeqCst);
    result
}

fn echo_until_eof(stream: &mut TcpStream) -> Result<u64, String> {
    let setup = |e: std::io::Error| format!("echo server: socket setup: {e}");
    stream.set_nonblocking(false).map_err(setup)?;
    stream.set_read_timeout(Some(IO_BOUND)).map_err(setup)?;
    stream.set_write_timeout(Some(IO_BOUND)).map_err(setup)?;
    stream.set_nodelay(true).map_err(setup)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut echoed = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(echoed),
            Ok(n) => {
                stream
                    .write_all(&buf[..n])
                    .map_err(|e| format!("echo server: write: {e}"))?;
                echoed += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("echo server: read: {e}")),
        }
    }
}

fn open_counters(name: &str) -> Result<Shared<Counters>, String> {
    Shared::open(name).map_err(|e| format!("echo server: counters {name:?}: {e}"))
}

/// One process per connection: this child owns the connected socket it was handed.
fn serve_connection(args: ServeArgs) -> Result<u64, String> {
    let counters = open_counters(&args.counters)?;
    // SAFETY: the parent handed this process the connected socket under this number
    // (`inherit_fd`) for it to own; nothing else here uses it.
    let stream = unsafe { TcpStream::from_raw_fd(args.fd) };
    serve_stream(stream, &counters)
}
register_entry!("ipcbench-echo-serve-connection", serve_connection);

/// A pool task: accept one connection on the listening socket every worker shares, serve
/// it to the end.
fn accept_and_serve(args: ServeArgs) -> Result<u64, String> {
    let counters = open_counters(&args.counters)?;
    // SAFETY: the worker inherited the listening socket under this number and keeps it
    // for its whole life; ManuallyDrop keeps this task from closing it.
    let listener = ManuallyDrop::new(unsafe { TcpListener::from_raw_fd(args.fd) });
    let deadline = Instant::now() + IO_BOUND;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return serve_stream(stream, &counters),
            // Another worker took the connection, or none has come yet.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !wait_readable(args.fd, deadline) {
                    return Err(format!("echo server: no client within {IO_BOUND:?}"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("echo server: accept: {e}")),
        }
    }
}
register_entry!("ipcbench-echo-accept-and-serve", accept_and_serve);

/// Waits until `fd` is readable or the deadline passes; false on timeout.
fn wait_readable(fd: RawFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, ms) } > 0 {
            return true;
        }
    }
}

enum Engine {
    PerConnection {
        stop: Arc<AtomicBool>,
        acceptor: JoinHandle<Result<u64, String>>,
    },
    Pool {
        pool: Pool,
        tasks: Vec<AsyncResult<u64>>,
    },
}

/// A loopback echo server that serves a given number of connections.
pub struct EchoServer {
    addr: SocketAddr,
    counters: Shared<Counters>,
    engine: Engine,
    /// Kept open while the server runs: pool workers inherit it.
    _listener: TcpListener,
}

impl EchoServer {
    /// Listens on 127.0.0.1 (a free port) and serves `connections` connections.
    pub fn start(
        kind: ServerKind,
        method: StartMethod,
        connections: usize,
    ) -> Result<EchoServer, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("echo server: bind 127.0.0.1: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("echo server: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("echo server: {e}"))?;
        let counters: Shared<Counters> =
            Shared::create("echo", 0).map_err(|e| format!("echo server: counters: {e}"))?;
        let counters_name = counters.name().to_string();
        let engine = match kind {
            ServerKind::ProcessPerConnection => {
                let stop = Arc::new(AtomicBool::new(false));
                let listener = listener
                    .try_clone()
                    .map_err(|e| format!("echo server: {e}"))?;
                let stop_flag = Arc::clone(&stop);
                let acceptor = std::thread::Builder::new()
                    .name("echo-acceptor".into())
                    .spawn(move || {
                        accept_loop(listener, counters_name, method, connections, stop_flag)
                    })
                    .map_err(|e| format!("echo server: acceptor thread: {e}"))?;
                Engine::PerConnection { stop, acceptor }
            }
            ServerKind::Pool { workers } => {
                let pool = Pool::new(
                    PoolOptions::new()
                        .name("echo")
                        .size(workers)
                        .method(method)
                        .timeout(IO_BOUND)
                        .inherit_fd(listener.as_raw_fd()),
                )
                .map_err(|e| format!("echo server: {e}"))?;
                let args = ServeArgs {
                    fd: listener.as_raw_fd(),
                    counters: counters_name,
                };
                let tasks = (0..connections)
                    .map(|_| pool.apply_async("ipcbench-echo-accept-and-serve", &args))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("echo server: {e}"))?;
                Engine::Pool { pool, tasks }
            }
        };
        Ok(EchoServer {
            addr,
            counters,
            engine,
            _listener: listener,
        })
    }

    /// The address the server listens on, for the clients to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Clients being served now.
    pub fn in_service(&self) -> u64 {
        self.counters[0].load(Ordering::SeqCst)
    }

    /// Most clients served at once so far.
    pub fn most_in_service(&self) -> u64 {
        self.counters[1].load(Ordering::SeqCst)
    }

    /// Waits for every connection to be served to its end (each wait bounded); returns
    /// the bytes echoed in all.
    pub fn finish(self) -> Result<u64, String> {
        match self.engine {
            Engine::PerConnection { stop, acceptor } => {
                stop.store(true, Ordering::SeqCst);
                acceptor
                    .join()
                    .map_err(|_| "echo server: the acceptor thread panicked".to_string())?
            }
            Engine::Pool { mut pool, tasks } => {
                let mut echoed = 0;
                let mut first_error = None;
                for task in tasks {
                    match task.get(IO_BOUND) {
                        Ok(n) => echoed += n,
                        Err(e) => {
                            first_error.get_or_insert(format!("echo server: {e}"));
                        }
                    }
                }
                pool.close();
                pool.join(None).map_err(|e| format!("echo server: {e}"))?;
                first_error.map_or(Ok(echoed), Err)
            }
        }
    }
}

/// Accepts up to `connections` connections (until told to stop) and starts one process
/// for each; then waits for them all.
fn accept_loop(
    listener: TcpListener,
    counters: String,
    method: StartMethod,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> Result<u64, String> {
    let mut children: Vec<Child> = Vec::new();
    let mut accepted = 0;
    while accepted < connections && !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted += 1;
                let fd = stream.as_raw_fd();
                // Daemon: dies with this thread, which waits for it below.
                let child = process::start(
                    "ipcbench-echo-serve-connection",
                    &ServeArgs {
                        fd,
                        counters: counters.clone(),
                    },
                    Options::new(format!("echo-connection-{accepted}"))
                        .method(method)
                        .daemon(true)
                        .inherit_fd(fd),
                )
                .map_err(|e| format!("echo server: {e}"))?;
                drop(stream); // the child has its own copy
                children.push(child);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait_readable(
                    listener.as_raw_fd(),
                    Instant::now() + Duration::from_millis(50),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("echo server: accept: {e}")),
        }
    }
    let mut echoed = 0;
    for mut child in children {
        echoed += child
            .result::<u64>(Some(IO_BOUND))
            .map_err(|e| format!("echo server: {e}"))?;
    }
    Ok(echoed)
}

/// What a client tells the driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientEvent {
    /// Connected (the server may not have accepted it yet).
    Connected,
    /// Its first echo came back: a server is serving it.
    Served,
    /// Every round trip done, in this many nanoseconds from `Go`.
    Done {
        /// Nanoseconds from `Go` to the last reply.
        elapsed_ns: u64,
    },
}

/// What the driver tells a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientCommand {
    /// Start the round trips.
    Go,
    /// Close the connection (only for clients started with `hold`).
    Release,
}

#[derive(Debug, Serialize, Deserialize)]
struct ClientArgs {
    addr: SocketAddr,
    conn: ConnectionHandle,
    rounds: usize,
    size: usize,
    hold: bool,
}

fn client_main(args: ClientArgs) -> Result<(), String> {
    let conn = Connection::adopt(args.conn).map_err(|e| format!("echo client: {e}"))?;
    let io = |e: std::io::Error| format!("echo client: {e}");
    let mut stream = TcpStream::connect_timeout(&args.addr, IO_BOUND).map_err(io)?;
    stream.set_read_timeout(Some(IO_BOUND)).map_err(io)?;
    stream.set_write_timeout(Some(IO_BOUND)).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let tell = |event: ClientEvent| conn.send(&event).map_err(|e| format!("echo client: {e}"));
    tell(ClientEvent::Connected)?;
    expect_command(&conn, ClientCommand::Go)?;
    let message: Vec<u8> = (0..args.size).map(|i| (i % 251) as u8).collect();
    let mut echo = vec![0u8; args.size];
    let started = Instant::now();
    for round in 0..args.rounds {
        stream.write_all(&message).map_err(io)?;
        stream.read_exact(&mut echo).map_err(io)?;
        if echo != message {
            return Err(format!(
                "echo client: round {round}: the echo differs from what was sent"
            ));
        }
        if round == 0 {
            tell(ClientEvent::Served)?;
        }
    }
    tell(ClientEvent::Done {
        elapsed_ns: started.elapsed().as_nanos() as u64,
    })?;
    if args.hold {
        expect_command(&conn, ClientCommand::Release)?;
    }
    Ok(())
}
register_entry!("ipcbench-echo-client", client_main);

fn expect_command(conn: &Connection, expected: ClientCommand) -> Result<(), String> {
    match conn.recv_timeout::<ClientCommand>(IO_BOUND) {
        Ok(command) if command == expected => Ok(()),
        Ok(other) => Err(format!("echo client: expected {expected:?}, got {other:?}")),
        Err(e) => Err(format!("echo client: waiting for {expected:?}: {e}")),
    }
}

/// N client processes, each with a pipe to the driver.
pub struct Clients {
    clients: Vec<(Child, Connection)>,
}

impl Clients {
    /// Starts `n` clients of `addr`, each to do `rounds` round trips of `size` bytes
    /// after `Go`; with `hold` each keeps its connection until `Release`.
    pub fn start(
        addr: SocketAddr,
        n: usize,
        rounds: usize,
        size: usize,
        hold: bool,
        method: StartMethod,
    ) -> Result<Clients, String> {
        if rounds == 0 || size == 0 {
            return Err("echo clients: rounds and size must be at least 1".into());
        }
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let (driver_end, client_end) =
                pipe(PipeKind::Duplex).map_err(|e| format!("echo clients: {e}"))?;
            let handle = client_end.handle().map_err(|e| e.to_string())?;
            let args = ClientArgs {
                addr,
                conn: handle,
                rounds,
                size,
                hold,
            };
            let child = process::start(
                "ipcbench-echo-client",
                &args,
                Options::new(format!("echo-client-{i}"))
                    .method(method)
                    .inherit_fd(handle.fd),
            )
            .map_err(|e| format!("echo clients: {e}"))?;
            drop(client_end);
            clients.push((child, driver_end));
        }
        Ok(Clients { clients })
    }

    /// How many client processes were started.
    pub fn len(&self) -> usize {
        self.clients.len()
    }
    /// True when no client was started.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The next event from client `i`, waiting at most `timeout`.
    pub fn next_event(&self, i: usize, timeout: Duration) -> Result<ClientEvent, String> {
        self.clients[i]
            .1
            .recv_timeout(timeout)
            .map_err(|e| format!("echo client {i}: {e}"))
    }

    /// Whether client `i` has an event waiting (within `timeout`).
    pub fn has_event(&self, i: usize, timeout: Duration) -> bool {
        self.clients[i].1.poll(timeout).unwrap_or(false)
    }

    /// Sends `command` to client `i` (through its driver connection).
    pub fn command(&self, i: usize, command: ClientCommand) -> Result<(), String> {
        self.clients[i]
            .1
            .send(&command)
            .map_err(|e| format!("echo client {i}: {e}"))
    }

    /// Waits for every client to exit and checks it succeeded.
    pub fn join(self) -> Result<(), String> {
        for (mut child, _) in self.clients {
            child
                .result::<()>(Some(IO_BOUND))
                .map_err(|e| format!("echo client: {e}"))?;
        }
        Ok(())
    }
}

/// Runs `clients` clients of `addr` (no hold), each doing `rounds` round trips of `size`
/// bytes; returns the time from `Go` until the last client is done.
pub(crate) fn drive(
    addr: SocketAddr,
    clients: usize,
    rounds: usize,
    size: usize,
    method: StartMethod,
) -> Result<Duration, String> {
    let driver = Clients::start(addr, clients, rounds, size, false, method)?;
    for i in 0..clients {
        match driver.next_event(i, IO_BOUND)? {
            ClientEvent::Connected => {}
            other => {
                return Err(format!(
                    "echo client {i}: expected Connected, got {other:?}"
                ))
            }
        }
    }
    let started = Instant::now();
    for i in 0..clients {
        driver.command(i, ClientCommand::Go)?;
    }
    for i in 0..clients {
        loop {
            match driver.next_event(i, IO_BOUND)? {
                ClientEvent::Done { .. } => break,
                ClientEvent::Served => {}
                other => return Err(format!("echo client {i}: unexpected {other:?}")),
            }
        }
    }
    let elapsed = started.elapsed();
    driver.join()?;
    Ok(elapsed)
}

/// Serves `clients` clients doing `rounds` round trips each with a server of `kind`;
/// the time from `Go` to the last client done (server and clients started beforehand).
pub fn round_trips(
    kind: ServerKind,
    clients: usize,
    rounds: usize,
    size: usize,
    method: StartMethod,
) -> Result<Duration, String> {
    let server = EchoServer::start(kind, method, clients)?;
    let elapsed = drive(server.addr(), clients, rounds, size, method)?;
    server.finish()?;
    Ok(elapsed)
}
