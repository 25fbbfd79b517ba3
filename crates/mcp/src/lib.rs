//! What the gateway must know of the MCP wire (Streamable HTTP, revisions 2025-03-26 to 2026-07-28):
//! JSON-RPC envelopes read only as far as a policy decision needs, the replies the gateway writes
//! itself, Server-Sent Events framing for proxying event by event, `tools/list` filtering that keeps
//! every byte it does not remove, sealed session ids, and the protocol-revision header rules.
//!
//! This crate must never do I/O, hold policy, or read a clock: every function is a pure
//! transformation of the bytes and values it is given (time arrives as an argument), so the gateway
//! can call it on any replica and tests can call it without a network. It must never re-serialise a
//! message the gateway forwards: readers borrow from the original bytes and leave unknown fields
//! untouched. The protocol edge cases it relies on are written down in `README.md` beside it.
#![forbid(unsafe_code)]

pub mod headers;
pub mod message;
pub mod pin;
pub mod reply;
pub mod session;
pub mod sse;
pub mod tools_list;

pub use headers::Revision;
pub use message::{Body, Id, Message, MessageError, OwnedId};
pub use reply::Reply;
pub use sse::{SseEvent, SseParser};

/// JSON-RPC error codes the gateway reads or writes.
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC 2.0 message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist (or is not available).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params are invalid; MCP also uses it for "Unknown tool".
    pub const INVALID_PARAMS: i64 = -32602;
    /// An internal error; the gateway uses it when the upstream failed or a dependency is down.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// 2026-07-28: the HTTP headers disagree with the body, or a required header is missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the request needs a client capability the client did not declare.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// 2026-07-28: the protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// Method names the gateway looks at.
pub mod method {
    /// The session-era handshake (2025-03-26 to 2025-11-25).
    pub const INITIALIZE: &str = "initialize";
    /// Lists tools; the gateway filters its result.
    pub const TOOLS_LIST: &str = "tools/list";
    /// Calls a tool; the gateway decides it.
    pub const TOOLS_CALL: &str = "tools/call";
    /// Reads a resource (`params.uri`; `Mcp-Name` in 2026-07-28).
    pub const RESOURCES_READ: &str = "resources/read";
    /// Gets a prompt (`params.name`; `Mcp-Name` in 2026-07-28).
    pub const PROMPTS_GET: &str = "prompts/get";
    /// Progress of a request that carried `_meta.progressToken`.
    pub const NOTIFICATION_PROGRESS: &str = "notifications/progress";
    /// Cancels a request by id.
    pub const NOTIFICATION_CANCELLED: &str = "notifications/cancelled";
    /// The server's tool list changed: re-list and re-check pins.
    pub const NOTIFICATION_TOOLS_LIST_CHANGED: &str = "notifications/tools/list_changed";
    /// Server→client request: sampling.
    pub const SAMPLING_CREATE_MESSAGE: &str = "sampling/createMessage";
    /// Server→client request: elicitation.
    pub const ELICITATION_CREATE: &str = "elicitation/create";
    /// Server→client request: roots.
    pub const ROOTS_LIST: &str = "roots/list";
}
