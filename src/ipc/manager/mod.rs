//! Manager (Python's `multiprocessing.Manager`): a server process holding named values —
//! counters, dicts (string -> JSON value), lists — and proxies that reach it from any
//! process that has its address, over a Unix socket with the suite's frame codec
//! (`ipc::frame`): a send is one `sendmsg`, a receive one `poll` and one `recv` (`link`).
//!
//! * Every call is bounded by the client's timeout (`DEFAULT_CALL_TIMEOUT` unless set).
//! * Every request is applied atomically on the server, so [`Counter::increment`] and
//!   `compare_and_set` are safe from any number of clients; a proxy `get` then `set` is
//!   not (the lost update of the `manager-lost-update` scenario).
//! * The server's death is [`ManagerError::ServerGone`] in every call, at once (the
//!   kernel closes its sockets): never a hang.
//! * A malformed request gets an error reply; the server keeps serving (a frame that
//!   fails its checks also closes that one connection, whose stream is no longer in
//!   step).
//! * Sizes are bounded: a request or reply over [`ManagerConfig::max_message`]
//!   ([`DEFAULT_MAX_MESSAGE`], 16 MiB, unless set) is refused with an error naming the
//!   limit, and a header's claimed length is never allocated up front (see `ipc::frame`).
//! * [`Manager::shutdown`] ends the server process; dropping the [`Manager`] kills it.

mod link;
pub(crate) mod protocol;
pub(crate) mod server;

pub use protocol::{decode_request, decode_response, Key, Request, Response};

use crate::ipc::pipe::PipeError;
use crate::process::{self, hygiene, Child, Options, StartMethod};
use link::Link;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request or reply (payload bytes of one frame) a Manager server and its clients
/// accept by default: 16 MiB, far below a pipe's default, since any local process that
/// can reach the socket may send a header. Set with [`ManagerConfig::max_message`] and
/// [`ManagerClient::with_max_message`].
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

/// How a Manager server is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerConfig {
    /// Largest request the server reads and reply it sends (at most
    /// [`frame::MAX_PAYLOAD_LIMIT`](crate::ipc::frame::MAX_PAYLOAD_LIMIT)). A larger
    /// request's header gets an error reply naming this limit and that connection is
    /// closed; a larger reply is replaced by an error reply.
    pub max_message: usize,
    /// Most client connections served at once (at least 1). A connection past the limit
    /// is refused — [`ManagerError::Refused`] naming the limit in that client — and
    /// closed; a client that disconnects frees its place.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Stack size of each connection's thread. A connection whose thread cannot start
    /// is refused (with the reason) and the server goes on.
    #[serde(default = "default_connection_stack")]
    pub connection_stack: usize,
}

/// Stack of each connection's thread by default: Rust's own default, 2 MiB.
pub(crate) const DEFAULT_CONNECTION_STACK: usize = 2 << 20;

fn default_connection_stack() -> usize {
    DEFAULT_CONNECTION_STACK
}

/// Most client connections a Manager server serves at once by default.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 64;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            max_message: DEFAULT_MAX_MESSAGE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connection_stack: DEFAULT_CONNECTION_STACK,
        }
    }
}

/// Why a Manager call failed. The server's death is its own variant, never a hang.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The server process is gone (connection refused, reset or closed).
    #[error("manager server at {address} is gone: {reason}")]
    ServerGone {
        /// The server's socket.
        address: String,
        /// What the connection said.
        reason: String,
    },
    /// The server did not answer within the client's bound.
    #[error("manager server at {address} did not answer within {timeout:?}")]
    Timeout {
        /// The server's socket.
        address: String,
        /// The bound that passed.
        timeout: Duration,
    },
    /// The server ran the request and it failed there (a missing name, a wrong type).
    #[error("manager server at {address} refused the request: {message}")]
    Remote {
        /// The server's socket.
        address: String,
        /// The server's error.
        message: String,
    },
    /// The server would not serve this connection (at its connection limit, or out of
    /// threads); it is alive. The next call on the client connects again.
    #[error("manager server at {address} refused the connection: {reason}")]
    Refused {
        /// The server's socket.
        address: String,
        /// The server's reason.
        reason: String,
    },
    /// A reply that does not decode, or not the reply the request calls for.
    #[error("manager at {address}: unexpected reply: {reason}")]
    Protocol {
        /// The server's socket.
        address: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The server process could not be started or did not come up.
    #[error("cannot start the manager server: {0}")]
    Start(String),
}

impl ManagerError {
    /// True when the server process is gone (its socket closed or refused): every later call
    /// will fail the same way, so a caller stops rather than retries.
    pub fn is_server_gone(&self) -> bool {
        matches!(self, ManagerError::ServerGone { .. })
    }
}

/// The server's socket path (serde, to pass to a child).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerAddress {
    /// The server's Unix socket.
    pub socket: PathBuf,
}

impl std::fmt::Display for ManagerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.socket.display())
    }
}

/// The server process, owned by the process that started it.
pub struct Manager {
    child: Child,
    address: ManagerAddress,
    dir: PathBuf,
}

impl Manager {
    /// Starts a server process (a daemon: it dies with its parent). The parent binds the
    /// socket and hands it over, so the address accepts connections at once.
    pub fn start(method: StartMethod) -> Result<Manager, ManagerError> {
        Self::start_on(method, None)
    }

    /// As [`Manager::start`], with the server pinned to `cpu` (for placement-labelled
    /// measurements).
    pub(crate) fn start_on(
        method: StartMethod,
        cpu: Option<usize>,
    ) -> Result<Manager, ManagerError> {
        Self::start_with(method, cpu, ManagerConfig::default())
    }

    /// As `Manager::start_on`, with the server's limits set by `config`.
    pub fn start_with(
        method: StartMethod,
        cpu: Option<usize>,
        config: ManagerConfig,
    ) -> Result<Manager, ManagerError> {
        let start_error = |e: &dyn std::fmt::Display| ManagerError::Start(e.to_string());
        crate::ipc::frame::check_max_payload(config.max_message).map_err(|e| start_error(&e))?;
        if config.max_connections == 0 {
            return Err(start_error(&"max_connections must be at least 1"));
        }
        let dir = hygiene::temp_dir().map_err(|e| start_error(&e))?;
        let socket = dir.join("manager.sock");
        let started = (|| {
            let listener = UnixListener::bind(&socket).map_err(|e| start_error(&e))?;
            let fd = OwnedFd::from(listener);
            let args = server::ServerArgs {
                listener_fd: fd.as_raw_fd(),
                config,
            };
            process::start(
                "manager-server",
                &args,
                Options::new("manager-server")
                    .method(method)
                    .daemon(true)
                    .cpu(cpu)
                    .inherit_fd(fd.as_raw_fd()),
            )
            .map_err(|e| start_error(&e))
        })();
        match started {
            Ok(child) => Ok(Manager {
                child,
                address: ManagerAddress { socket },
                dir,
            }),
            Err(e) => {
                hygiene::remove_temp(&dir);
                Err(e)
            }
        }
    }

    /// Where clients connect, to pass to a child.
    pub fn address(&self) -> &ManagerAddress {
        &self.address
    }

    /// The server process (to kill it in a test, or read its pid).
    pub fn process(&mut self) -> &mut Child {
        &mut self.child
    }

    /// A new client of this server, in this process.
    pub fn client(&self) -> Result<ManagerClient, ManagerError> {
        ManagerClient::connect(&self.address)
    }

    /// Asks the server to stop and waits for its process to end; returns the number of
    /// requests it served.
    ///
    /// The request needs a connection of its own: while the server is at its connection
    /// limit it is retried (a client that disconnects frees a place) until `timeout`.
    pub fn shutdown(mut self, timeout: Duration) -> Result<u64, ManagerError> {
        let deadline = std::time::Instant::now() + timeout;
        let client = ManagerClient::connect(&self.address)?.with_timeout(timeout);
        loop {
            match client.call(&Request::Shutdown) {
                Err(ManagerError::Refused { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        self.child
            .result::<u64>(Some(timeout))
            .map_err(|e| ManagerError::ServerGone {
                address: self.address.to_string(),
                reason: format!("did not end cleanly: {e}"),
            })
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.join(Some(Duration::from_secs(5)));
        hygiene::remove_temp(&self.dir);
    }
}

/// A connection to a Manager server. Calls from several threads are serialised, so each
/// reply meets its request. After a timeout the connection is dropped (its late reply
/// would answer the next request) and the next call reconnects.
pub struct ManagerClient {
    address: ManagerAddress,
    conn: Mutex<Connected>,
    timeout: Duration,
    max_message: usize,
}

/// A client's connection, if it has one, and its request bytes, reused from one call to
/// the next.
#[derive(Default)]
struct Connected {
    link: Option<Link>,
    request: Vec<u8>,
}

impl ManagerClient {
    /// Connects to the server at `address` (one connection per client; its calls are
    /// bounded by the default timeout).
    pub fn connect(address: &ManagerAddress) -> Result<ManagerClient, ManagerError> {
        let client = ManagerClient {
            address: address.clone(),
            conn: Mutex::new(Connected::default()),
            timeout: DEFAULT_CALL_TIMEOUT,
            max_message: DEFAULT_MAX_MESSAGE,
        };
        client.conn.lock().unwrap_or_else(|p| p.into_inner()).link = Some(client.open()?);
        Ok(client)
    }

    /// Sets the bound on every call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = slot.link.as_mut() {
            link.set_bound(timeout);
        }
        drop(slot);
        self
    }

    /// Sets the largest request this client sends and reply it accepts (default
    /// [`DEFAULT_MAX_MESSAGE`]; at most `frame::MAX_PAYLOAD_LIMIT`). Match the server's
    /// [`ManagerConfig::max_message`].
    pub fn with_max_message(mut self, max: usize) -> Self {
        self.max_message = max.min(crate::ipc::frame::MAX_PAYLOAD_LIMIT);
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = slot.link.as_mut() {
            link.set_max_payload(self.max_message);
        }
        drop(slot);
        self
    }

    /// The server this client talks to.
    pub fn address(&self) -> &ManagerAddress {
        &self.address
    }

    fn open(&self) -> Result<Link, ManagerError> {
        let stream = UnixStream::connect(&self.address.socket).map_err(|e| self.gone(e))?;
        Link::new(OwnedFd::from(stream), self.timeout, self.max_message).map_err(|e| self.gone(e))
    }

    fn gone(&self, reason: impl std::fmt::Display) -> ManagerError {
        ManagerError::ServerGone {
            address: self.address.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Sends one request and returns the server's value (an error reply is `Remote`).
    pub(crate) fn call(&self, request: &Request) -> Result<Value, ManagerError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Connected {
            link: slot,
            request: bytes,
        } = &mut *guard;
        bytes.clear();
        serde_json::to_writer(&mut *bytes, request).map_err(|e| ManagerError::Protocol {
            address: self.address.to_string(),
            reason: format!("cannot encode request: {e}"),
        })?;
        let response = self.exchange(slot, bytes);
        // A large request's buffer is not kept for the client's life.
        if bytes.capacity() > link::BUFFER {
            *bytes = Vec::new();
        }
        drop(guard);
        match response? {
            Response::Ok(value) => Ok(value),
            Response::Err(message) => Err(ManagerError::Remote {
                address: self.address.to_string(),
                message,
            }),
            // call_raw turns a refusal into an error.
            Response::Refused(reason) => Err(ManagerError::Refused {
                address: self.address.to_string(),
                reason,
            }),
        }
    }

    /// Sends `payload` as one frame, whatever it holds, and decodes the reply: for tests
    /// of the server's handling of malformed requests, and the raw-bytes benchmark. A
    /// refusal of the connection is [`ManagerError::Refused`], never returned as a reply.
    pub fn call_raw(&self, payload: &[u8]) -> Result<Response, ManagerError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        self.exchange(&mut guard.link, payload)
    }

    /// One request and its reply on the connection in `slot` (connecting first if there
    /// is none): one `sendmsg` and one `recv` when the reply fits the link's buffer.
    fn exchange(&self, slot: &mut Option<Link>, payload: &[u8]) -> Result<Response, ManagerError> {
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let conn = slot.as_mut().expect("connected above");
        let sent = conn.send(payload, self.timeout);
        let result = match sent {
            Ok(()) => conn.recv(self.timeout).map(decode_response),
            // A server that refused this connection wrote why before closing it: the
            // refusal is already here to read.
            Err(PipeError::PeerGone) => match conn.recv(Duration::ZERO) {
                Ok(bytes) => Ok(decode_response(bytes)),
                Err(_) => Err(PipeError::PeerGone),
            },
            Err(e) => Err(e),
        };
        let decoded = match result {
            Ok(decoded) => decoded,
            // Refused before a byte was sent: the connection is still in step.
            Err(PipeError::TooLarge { len, max }) => {
                return Err(ManagerError::Protocol {
                    address: self.address.to_string(),
                    reason: format!(
                        "request of {len} bytes exceeds the maximum message size of {max} bytes"
                    ),
                })
            }
            Err(e) => {
                *slot = None;
                return Err(match e {
                    PipeError::Timeout(_) => ManagerError::Timeout {
                        address: self.address.to_string(),
                        timeout: self.timeout,
                    },
                    PipeError::Corrupt(e @ crate::ipc::frame::FrameError::TooLong { .. }) => {
                        ManagerError::Protocol {
                            address: self.address.to_string(),
                            reason: format!("reply refused: {e}"),
                        }
                    }
                    other => self.gone(other),
                });
            }
        };
        match decoded {
            Ok(Response::Refused(reason)) => {
                *slot = None;
                Err(ManagerError::Refused {
                    address: self.address.to_string(),
                    reason,
                })
            }
            Ok(response) => Ok(response),
            Err(reason) => Err(ManagerError::Protocol {
                address: self.address.to_string(),
                reason,
            }),
        }
    }

    fn typed<T: serde::de::DeserializeOwned>(&self, request: Request) -> Result<T, ManagerError> {
        let value = self.call(&request)?;
        serde_json::from_value(value.clone()).map_err(|e| ManagerError::Protocol {
            address: self.address.to_string(),
            reason: format!("reply {value} to {request:?}: {e}"),
        })
    }

    /// Asks the server to answer at once: whether it is alive and serving.
    pub fn ping(&self) -> Result<(), ManagerError> {
        self.call(&Request::Ping).map(|_| ())
    }

    /// A proxy for the named integer (nothing is sent until a call).
    pub fn counter(&self, name: &str) -> Counter<'_> {
        Counter {
            client: self,
            name: name.to_string(),
        }
    }
    /// A proxy for the named dict (nothing is sent until a call).
    pub fn dict(&self, name: &str) -> Dict<'_> {
        Dict {
            client: self,
            name: name.to_string(),
        }
    }
    /// A proxy for the named list (nothing is sent until a call).
    pub fn list(&self, name: &str) -> List<'_> {
        List {
            client: self,
            name: name.to_string(),
        }
    }
}

/// A named integer on the server.
pub struct Counter<'a> {
    client: &'a ManagerClient,
    name: String,
}

impl Counter<'_> {
    /// Reads the counter (one round trip; stale as soon as it returns).
    pub fn get(&self) -> Result<i64, ManagerError> {
        self.client.typed(Request::Get {
            name: self.name.clone(),
            key: None,
        })
    }
    /// Replaces the counter's value. A get then set from two clients loses an update: use
    /// `increment` or `compare_and_set`.
    pub fn set(&self, value: i64) -> Result<(), ManagerError> {
        self.client
            .call(&Request::Set {
                name: self.name.clone(),
                key: None,
                value: json!(value),
            })
            .map(|_| ())
    }
    /// Server-side add (a missing counter starts at 0); returns the new value.
    pub fn increment(&self, by: i64) -> Result<i64, ManagerError> {
        self.client.typed(Request::Increment {
            name: self.name.clone(),
            key: None,
            by,
        })
    }
    /// Server-side: sets `new` if the counter holds `expected`; returns whether it did.
    pub fn compare_and_set(&self, expected: i64, new: i64) -> Result<bool, ManagerError> {
        self.client.typed(Request::CompareAndSet {
            name: self.name.clone(),
            key: None,
            expected: json!(expected),
            new: json!(new),
        })
    }
    /// Removes the counter.
    pub fn delete(&self) -> Result<(), ManagerError> {
        self.client
            .call(&Request::Delete {
                name: self.name.clone(),
                key: None,
            })
            .map(|_| ())
    }
}

/// A named dict (string -> JSON value) on the server.
pub struct Dict<'a> {
    client: &'a ManagerClient,
    name: String,
}

impl Dict<'_> {
    fn key(key: &str) -> Option<Key> {
        Some(Key::Field(key.to_string()))
    }
    /// Reads the field `key`.
    pub fn get(&self, key: &str) -> Result<Value, ManagerError> {
        self.client.call(&Request::Get {
            name: self.name.clone(),
            key: Self::key(key),
        })
    }
    /// Sets the field `key` (the dict is created if missing).
    pub fn set(&self, key: &str, value: Value) -> Result<(), ManagerError> {
        self.client
            .call(&Request::Set {
                name: self.name.clone(),
                key: Self::key(key),
                value,
            })
            .map(|_| ())
    }
    /// Removes the field `key`.
    pub fn delete(&self, key: &str) -> Result<(), ManagerError> {
        self.client
            .call(&Request::Delete {
                name: self.name.clone(),
                key: Self::key(key),
            })
            .map(|_| ())
    }
    /// The dict's fields.
    pub fn keys(&self) -> Result<Vec<String>, ManagerError> {
        self.client.typed(Request::Keys {
            name: self.name.clone(),
        })
    }
    /// How many fields the dict has.
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.client.typed(Request::Len {
            name: self.name.clone(),
        })
    }
    /// True when the dict has no field.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
    /// Server-side add to the integer field `key` (a missing one counts as 0); returns the new
    /// value.
    pub fn increment(&self, key: &str, by: i64) -> Result<i64, ManagerError> {
        self.client.typed(Request::Increment {
            name: self.name.clone(),
            key: Self::key(key),
            by,
        })
    }
    /// Sets `new` if the field equals `expected` (null: missing); returns whether it did.
    pub fn compare_and_set(
        &self,
        key: &str,
        expected: Value,
        new: Value,
    ) -> Result<bool, ManagerError> {
        self.client.typed(Request::CompareAndSet {
            name: self.name.clone(),
            key: Self::key(key),
            expected,
            new,
        })
    }
}

/// A named list on the server.
pub struct List<'a> {
    client: &'a ManagerClient,
    name: String,
}

impl List<'_> {
    /// Reads the item at `index`.
    pub fn get(&self, index: usize) -> Result<Value, ManagerError> {
        self.client.call(&Request::Get {
            name: self.name.clone(),
            key: Some(Key::Index(index)),
        })
    }
    /// Replaces the item at `index`.
    pub fn set(&self, index: usize, value: Value) -> Result<(), ManagerError> {
        self.client
            .call(&Request::Set {
                name: self.name.clone(),
                key: Some(Key::Index(index)),
                value,
            })
            .map(|_| ())
    }
    /// Appends; returns the new length.
    pub fn push(&self, value: Value) -> Result<usize, ManagerError> {
        self.client.typed(Request::Push {
            name: self.name.clone(),
            value,
        })
    }
    /// Removes the item at `index` (later items move down).
    pub fn delete(&self, index: usize) -> Result<(), ManagerError> {
        self.client
            .call(&Request::Delete {
                name: self.name.clone(),
                key: Some(Key::Index(index)),
            })
            .map(|_| ())
    }
    /// How many items the list has.
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.client.typed(Request::Len {
            name: self.name.clone(),
        })
    }
    /// True when the list has no item.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
    /// The whole list.
    pub fn items(&self) -> Result<Vec<Value>, ManagerError> {
        self.client.typed(Request::Get {
            name: self.name.clone(),
            key: None,
        })
    }
}
