//! The Manager's server process: named values in one map behind one mutex (every request
//! is applied atomically), a thread per client connection — at most
//! `ManagerConfig::max_connections` of them; a client past the limit, or one whose thread
//! cannot start, gets a `Response::Refused` naming the reason and is disconnected, while
//! the server goes on — and an accept loop that ends the process's entry on shutdown.
//!
//! A connection's thread waits for a request in `poll`, takes it in one `recv` and
//! answers in one `sendmsg` (`link`), with its receive and reply buffers kept for the
//! connection's life: one wake of the server per request (a thread asleep in a blocking
//! `recv` would also be woken each time the client takes a reply; see `link`).

use super::link::Link;
use super::protocol::{Key, Request, Response};
use super::ManagerConfig;
use crate::ipc::pipe::{PipeError, DEFAULT_TIMEOUT};
use crate::register_entry;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server entry receives: the listening socket, inherited from the parent
/// (which bound it, so the address is live before the server even starts).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ServerArgs {
    pub(crate) listener_fd: RawFd,
    #[serde(default)]
    pub(crate) config: ManagerConfig,
}

/// How often the accept loop looks at the shutdown flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// An idle client is kept; this only bounds each wait so the thread can re-check.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Bound on sending a refusal from the accept loop (a fresh socket's buffer is empty, so
/// the small frame goes out at once; this only keeps a stuck peer from stalling accept).
const REFUSAL_BOUND: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Server {
    config: ManagerConfig,
    values: Mutex<BTreeMap<String, Value>>,
    shutdown: AtomicBool,
    served: AtomicU64,
    /// Connections being served (each holds a [`Slot`]).
    active: AtomicUsize,
}

/// The server entry point: serves until a Shutdown request; returns requests served.
pub(crate) fn serve(args: ServerArgs) -> Result<u64, String> {
    crate::ipc::pipe::ignore_sigpipe();
    // SAFETY: the parent handed this fd to this process (inherit_fd) for it to own.
    let fd = unsafe { OwnedFd::from_raw_fd(args.listener_fd) };
    let listener = UnixListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("manager listener: {e}"))?;
    crate::ipc::frame::check_max_payload(args.config.max_message)
        .map_err(|e| format!("manager config: {e}"))?;
    let server = Arc::new(Server {
        config: args.config,
        ..Server::default()
    });
    let listen_fd = OwnedFd::from(listener.try_clone().map_err(|e| e.to_string())?);
    while !server.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => server.admit(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = crate::ipc::pipe::wait_fd(
                    &listen_fd,
                    libc::POLLIN,
                    Some(std::time::Instant::now() + ACCEPT_POLL),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The client gave up before we accepted, or the process is out of fds for a
            // moment: that connection is lost, the server is not.
            Err(e) if is_transient_accept_error(&e) => {
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(e) => {
                return Err(format!(
                    "manager accept on fd {}: {e}",
                    listen_fd.as_raw_fd()
                ))
            }
        }
    }
    Ok(server.served.load(Ordering::SeqCst))
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EPROTO
                | libc::EPERM
        )
    )
}

/// Holds one of the server's [`ManagerConfig::max_connections`] places; given back when
/// the connection's thread ends, or when its thread could not start.
struct Slot(Arc<Server>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

register_entry!("manager-server", serve);

impl Server {
    /// Serves an accepted connection on a thread of its own, within the connection limit.
    /// Past the limit, or when no thread can be started, the client gets a refusal that
    /// says why and its connection is closed; the server goes on either way (it never
    /// panics on a client's account).
    fn admit(self: &Arc<Self>, stream: std::os::unix::net::UnixStream) {
        // A frame that has started gets the pipes' own bound to finish, as before.
        let Ok(mut conn) = Link::new(
            OwnedFd::from(stream),
            DEFAULT_TIMEOUT,
            self.config.max_message,
        ) else {
            return; // dropping it closes it; the client sees the connection end
        };
        let max = self.config.max_connections;
        if self.active.fetch_add(1, Ordering::SeqCst) >= max {
            self.active.fetch_sub(1, Ordering::SeqCst);
            refuse(
                &mut conn,
                format!(
                    "the server is at its limit of {max} connections (max_connections); \
                     try again once a client disconnects"
                ),
            );
            return;
        }
        let slot = Slot(Arc::clone(self));
        // The thread takes the connection from here; if it cannot start, the closure is
        // dropped (giving the slot back) and the connection is still here to refuse.
        let handoff = Arc::new(Mutex::new(Some(conn)));
        let theirs = Arc::clone(&handoff);
        let spawned = std::thread::Builder::new()
            .name("manager-client".into())
            .stack_size(self.config.connection_stack)
            .spawn(move || {
                let slot = slot;
                let conn = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(conn) = conn {
                    slot.0.serve_client(conn);
                }
            });
        if let Err(e) = spawned {
            let conn = handoff.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(mut conn) = conn {
                refuse(
                    &mut conn,
                    format!("cannot start a thread for this connection: {e}"),
                );
            }
        }
    }

    fn serve_client(&self, mut conn: Link) {
        // The reply's bytes, reused from one request to the next.
        let mut reply = Vec::new();
        loop {
            let decoded = match conn.recv(IDLE_POLL) {
                Ok(bytes) => super::protocol::decode_request(bytes),
                Err(PipeError::Timeout(_)) => {
                    if self.shutdown.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                Err(PipeError::Corrupt(e)) => {
                    // The stream lost its frame boundaries: answer, then drop this client
                    // (the others are untouched).
                    let _ = send(
                        &mut conn,
                        &mut reply,
                        &Response::Err(format!("malformed frame: {e}")),
                    );
                    return;
                }
                Err(_) => return, // the client went away
            };
            self.served.fetch_add(1, Ordering::Relaxed);
            let (response, stop) = match decoded {
                Ok(Request::Shutdown) => (Response::Ok(Value::Null), true),
                Ok(request) => (self.apply(request), false),
                Err(message) => (Response::Err(message), false),
            };
            let sent = match send(&mut conn, &mut reply, &response) {
                // Nothing was sent: the client still gets an answer, naming the limit.
                Err(PipeError::TooLarge { len, max }) => send(
                    &mut conn,
                    &mut reply,
                    &Response::Err(format!(
                        "reply of {len} bytes exceeds the maximum message size of {max} bytes"
                    )),
                ),
                other => other,
            };
            if stop {
                self.shutdown.store(true, Ordering::SeqCst);
                return;
            }
            if sent.is_err() {
                return;
            }
        }
    }

    fn apply(&self, request: Request) -> Response {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        match apply(&mut values, request) {
            Ok(value) => Response::Ok(value),
            Err(message) => Response::Err(message),
        }
    }
}

/// Sends `response` in one frame, encoded into `bytes` (cleared first, kept for the next
/// reply), bounded by the pipes' own bound.
fn send(conn: &mut Link, bytes: &mut Vec<u8>, response: &Response) -> Result<(), PipeError> {
    bytes.clear();
    serde_json::to_writer(&mut *bytes, response).map_err(|e| PipeError::Encode(e.to_string()))?;
    let sent = conn.send(bytes, DEFAULT_TIMEOUT);
    // A large reply's buffer is not kept for the connection's life.
    if bytes.capacity() > super::link::BUFFER {
        *bytes = Vec::new();
    }
    sent
}

/// Tells a client it will not be served, and why; the caller then drops (closes) it.
fn refuse(conn: &mut Link, reason: String) {
    if let Ok(bytes) = serde_json::to_vec(&Response::Refused(reason)) {
        let _ = conn.send(&bytes, REFUSAL_BOUND);
    }
}

fn describe(name: &str, key: &Option<Key>) -> String {
    match key {
        None => format!("{name:?}"),
        Some(key) => format!("{name:?}{key}"),
    }
}

/// The slot a request addresses, if it exists.
fn slot<'a>(
    values: &'a mut BTreeMap<String, Value>,
    name: &str,
    key: &Option<Key>,
) -> Result<Option<&'a mut Value>, String> {
    let Some(value) = values.get_mut(name) else {
        return Ok(None);
    };
    Ok(match key {
        None => Some(value),
        Some(Key::Field(field)) => match value {
            Value::Object(map) => map.get_mut(field),
            _ => return Err(format!("{name:?} is not a dict")),
        },
        Some(Key::Index(index)) => match value {
            Value::Array(list) => list.get_mut(*index),
            _ => return Err(format!("{name:?} is not a list")),
        },
    })
}

/// The slot a request writes, created where that makes sense (a whole value, a dict
/// field); a list index must exist.
fn slot_for_write<'a>(
    values: &'a mut BTreeMap<String, Value>,
    name: &str,
    key: &Option<Key>,
) -> Result<&'a mut Value, String> {
    let value = values.entry(name.to_string()).or_insert_with(|| match key {
        Some(Key::Field(_)) => json!({}),
        _ => Value::Null,
    });
    match key {
        None => Ok(value),
        Some(Key::Field(field)) => match value {
            Value::Object(map) => Ok(map.entry(field.clone()).or_insert(Value::Null)),
            _ => Err(format!("{name:?} is not a dict")),
        },
        Some(Key::Index(index)) => match value {
            Value::Array(list) => {
                let len = list.len();
                list.get_mut(*index)
                    .ok_or_else(|| format!("{name:?}[{index}]: index out of range (len {len})"))
            }
            _ => Err(format!("{name:?} is not a list")),
        },
    }
}

fn apply(values: &mut BTreeMap<String, Value>, request: Request) -> Result<Value, String> {
    match request {
        Request::Get { name, key } => slot(values, &name, &key)?
            .cloned()
            .ok_or_else(|| format!("no value {}", describe(&name, &key))),
        Request::Set { name, key, value } => {
            *slot_for_write(values, &name, &key)? = value;
            Ok(Value::Null)
        }
        Request::Delete { name, key } => {
            let missing = || format!("no value {}", describe(&name, &key));
            match &key {
                None => values
                    .remove(&name)
                    .map(|_| Value::Null)
                    .ok_or_else(missing),
                Some(Key::Field(field)) => match values.get_mut(&name) {
                    Some(Value::Object(map)) => {
                        map.remove(field).map(|_| Value::Null).ok_or_else(missing)
                    }
                    Some(_) => Err(format!("{name:?} is not a dict")),
                    None => Err(missing()),
                },
                Some(Key::Index(index)) => match values.get_mut(&name) {
                    Some(Value::Array(list)) if *index < list.len() => {
                        list.remove(*index);
                        Ok(Value::Null)
                    }
                    Some(Value::Array(_)) | None => Err(missing()),
                    Some(_) => Err(format!("{name:?} is not a list")),
                },
            }
        }
        Request::Keys { name } => match values.get(&name) {
            Some(Value::Object(map)) => Ok(json!(map.keys().collect::<Vec<_>>())),
            Some(_) => Err(format!("{name:?} is not a dict")),
            None => Err(format!("no value {name:?}")),
        },
        Request::Len { name } => match values.get(&name) {
            Some(Value::Object(map)) => Ok(json!(map.len())),
            Some(Value::Array(list)) => Ok(json!(list.len())),
            Some(_) => Err(format!("{name:?} is neither a dict nor a list")),
            None => Err(format!("no value {name:?}")),
        },
        Request::Increment { name, key, by } => {
            let target = slot_for_write(values, &name, &key)?;
            let current = match &*target {
                Value::Null => 0,
                other => other
                    .as_i64()
                    .ok_or_else(|| format!("{} is not an integer", describe(&name, &key)))?,
            };
            let next = current
                .checked_add(by)
                .ok_or_else(|| format!("{} + {by} overflows", describe(&name, &key)))?;
            *target = json!(next);
            Ok(json!(next))
        }
        Request::CompareAndSet {
            name,
            key,
            expected,
            new,
        } => {
            let current = slot(values, &name, &key)?.cloned().unwrap_or(Value::Null);
            if current != expected {
                return Ok(json!(false));
            }
            *slot_for_write(values, &name, &key)? = new;
            Ok(json!(true))
        }
        Request::Push { name, value } => {
            match values.entry(name.clone()).or_insert_with(|| json!([])) {
                Value::Array(list) => {
                    list.push(value);
                    Ok(json!(list.len()))
                }
                _ => Err(format!("{name:?} is not a list")),
            }
        }
        Request::Ping => Ok(json!("pong")),
        Request::Shutdown => Ok(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &mut BTreeMap<String, Value>, request: Value) -> Result<Value, String> {
        apply(values, serde_json::from_value(request).unwrap())
    }

    #[test]
    fn operations_on_counters_dicts_and_lists() {
        let mut v = BTreeMap::new();
        assert_eq!(
            run(
                &mut v,
                json!({"op":"increment","name":"n","key":null,"by":2})
            ),
            Ok(json!(2))
        );
        assert_eq!(
            run(
                &mut v,
                json!({"op":"compare-and-set","name":"n","key":null,"expected":2,"new":5})
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                &mut v,
                json!({"op":"compare-and-set","name":"n","key":null,"expected":2,"new":7})
            ),
            Ok(json!(false))
        );
        assert_eq!(
            run(&mut v, json!({"op":"set","name":"d","key":"a","value":[1]})),
            Ok(Value::Null)
        );
        assert_eq!(
            run(&mut v, json!({"op":"keys","name":"d"})),
            Ok(json!(["a"]))
        );
        assert_eq!(
            run(&mut v, json!({"op":"push","name":"l","value":"x"})),
            Ok(json!(1))
        );
        assert_eq!(
            run(&mut v, json!({"op":"get","name":"l","key":0})),
            Ok(json!("x"))
        );
        assert!(run(&mut v, json!({"op":"get","name":"l","key":3}))
            .unwrap_err()
            .contains("no value"));
        assert!(run(
            &mut v,
            json!({"op":"increment","name":"d","key":null,"by":1})
        )
        .unwrap_err()
        .contains("not an integer"));
        assert_eq!(
            run(&mut v, json!({"op":"delete","name":"d","key":"a"})),
            Ok(Value::Null)
        );
        assert_eq!(run(&mut v, json!({"op":"len","name":"d"})), Ok(json!(0)));
    }
}
