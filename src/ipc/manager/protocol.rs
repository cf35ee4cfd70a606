//! The Manager's wire protocol: one JSON request per frame, one JSON response per frame.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where inside a named value an operation applies: a dict field or a list index. None
/// (in the requests) means the whole value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    /// A dict's field.
    Field(String),
    /// A list's index, from 0.
    Index(usize),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Field(k) => write!(f, "[{k:?}]"),
            Key::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// What a client asks of the server: one operation on one named value, done whole in
/// the server, so `Increment` and `CompareAndSet` are atomic across clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Reads the value (null when missing).
    Get {
        /// The named value.
        name: String,
        /// Where inside it (None: the whole value).
        key: Option<Key>,
    },
    /// Creates the named value (or dict field) if missing.
    Set {
        /// The named value.
        name: String,
        /// Where inside it (None: the whole value).
        key: Option<Key>,
        /// The value to store.
        value: Value,
    },
    /// Removes the named value (or dict field, or list item).
    Delete {
        /// The named value.
        name: String,
        /// Where inside it (None: the whole value).
        key: Option<Key>,
    },
    /// A dict's keys.
    Keys {
        /// The named value.
        name: String,
    },
    /// A dict's or list's length.
    Len {
        /// The named value.
        name: String,
    },
    /// Atomic add on an integer (a missing one counts as 0); returns the new value.
    Increment {
        /// The named value.
        name: String,
        /// Where inside it (None: the whole value).
        key: Option<Key>,
        /// The amount added (may be negative).
        by: i64,
    },
    /// Atomic: sets `new` if the current value (null when missing) equals `expected`;
    /// returns whether it did.
    CompareAndSet {
        /// The named value.
        name: String,
        /// Where inside it (None: the whole value).
        key: Option<Key>,
        /// The value it must hold now (null: missing).
        expected: Value,
        /// The value it gets if so.
        new: Value,
    },
    /// Appends to a list (created if missing); returns the new length.
    Push {
        /// The named value.
        name: String,
        /// The item to append.
        value: Value,
    },
    /// Replies at once: is the server alive and serving?
    Ping,
    /// Replies, then ends the server process.
    Shutdown,
}

/// The server's reply to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    /// The operation's result (the value read, the new count, `true`, …).
    Ok(Value),
    /// The operation failed in the server (a missing name, a value of the wrong type).
    Err(String),
    /// Sent by the server instead of serving a new connection (at its connection limit,
    /// or out of threads), which it then closes. Clients report it as
    /// `ManagerError::Refused`.
    Refused(String),
}

/// Decodes a request frame's payload (the server's decoder). Untrusted bytes: any input
/// is either a request or an error saying why not (serde_json bounds nesting at 128
/// levels, so no input can exhaust the stack).
pub fn decode_request(bytes: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("malformed request: {e}"))
}

/// Decodes a reply frame's payload (the client's decoder).
pub fn decode_response(bytes: &[u8]) -> Result<Response, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("reply does not decode: {e}"))
}
