//! Classifying a JSON-RPC body without re-serialising it.
//!
//! [`parse`] reads a POST body (one message, or a 2025-03-26 batch) and returns borrowed views of
//! what a decision needs: the kind of message, its `method`, its `id` as raw JSON text (so a reply
//! echoes it exactly), and for the methods the gateway decides on, `params.name`,
//! `params.arguments`, `params.uri`, `params._meta.progressToken` and the 2026-07-28 per-request
//! protocol version. Everything else is skipped, never copied, and the caller forwards the original
//! bytes.
//!
//! Members that the decision reads are never ambiguous: a duplicated `method`, `id`, `params`,
//! `name`, `uri`, `arguments` or `_meta` member, or a duplicated key anywhere inside `arguments`,
//! is rejected, because another JSON parser upstream might keep the other copy.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::code;
use crate::method;

/// The `_meta` key of the 2026-07-28 per-request protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// A parsed POST body.
#[derive(Debug)]
pub enum Body<'a> {
    /// One JSON-RPC message (every revision).
    Single(Message<'a>),
    /// A JSON array of messages (2025-03-26 only; later revisions removed batching). Each element
    /// is classified on its own, so the caller can answer the invalid ones individually and forward
    /// the raw text of the others.
    Batch(Vec<Result<Message<'a>, MessageError>>),
}

/// Classifies a POST body: one message or a batch. Never panics, whatever the input; nesting is
/// bounded by serde_json's recursion limit where values are built, and skipped iteratively elsewhere.
pub fn parse(body: &[u8]) -> Result<Body<'_>, MessageError> {
    let text = std::str::from_utf8(body).map_err(|_| MessageError::new(ErrorKind::NotUtf8))?;
    match first_byte(text) {
        Some(b'[') => {
            let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(not_json)?;
            if elements.is_empty() {
                return Err(MessageError::new(ErrorKind::EmptyBatch));
            }
            Ok(Body::Batch(
                elements
                    .into_iter()
                    .map(|raw| parse_raw(raw.get()))
                    .collect(),
            ))
        }
        _ => parse_message(text).map(Body::Single),
    }
}

/// Classifies exactly one message (an SSE event's data, a JSON response body). A JSON array is an
/// invalid message here.
pub fn parse_message(text: &str) -> Result<Message<'_>, MessageError> {
    match first_byte(text) {
        Some(b'{') => {}
        _ => {
            // Syntax first: a JSON-RPC peer reports broken JSON as a parse error, even when it
            // would also be an invalid request.
            serde_json::from_str::<IgnoredAny>(text).map_err(not_json)?;
            return Err(MessageError::new(ErrorKind::NotAnObject));
        }
    }
    match serde_json::from_str::<Envelope<'_>>(text) {
        Ok(envelope) => classify(text.trim_matches(is_json_whitespace), envelope),
        Err(e) if e.is_data() => {
            serde_json::from_str::<IgnoredAny>(text).map_err(not_json)?;
            Err(MessageError::new(ErrorKind::Malformed(without_position(
                &e,
            ))))
        }
        Err(e) => Err(not_json(e)),
    }
}

/// One element of a batch: already known to be valid JSON.
fn parse_raw(text: &str) -> Result<Message<'_>, MessageError> {
    if first_byte(text) != Some(b'{') {
        return Err(MessageError::new(ErrorKind::NotAnObject));
    }
    let envelope = serde_json::from_str::<Envelope<'_>>(text)
        .map_err(|e| MessageError::new(ErrorKind::Malformed(without_position(&e))))?;
    classify(text, envelope)
}

fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn first_byte(text: &str) -> Option<u8> {
    text.bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// serde_json's message without " at line L column C": inside a member, the position would be
/// relative to the member, which would only mislead the client.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => text,
    }
}

fn not_json(e: serde_json::Error) -> MessageError {
    MessageError::new(ErrorKind::NotJson(e.to_string()))
}

/// The members of a JSON-RPC object, each kept as raw JSON (a `null` member is `Some("null")`,
/// distinct from an absent one). Unknown members are skipped; duplicated known ones are an error.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "keep_null")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    error: Option<&'a RawValue>,
}

fn keep_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn classify<'a>(raw: &'a str, env: Envelope<'a>) -> Result<Message<'a>, MessageError> {
    match env.jsonrpc.map(|v| v.get()) {
        Some("\"2.0\"") => {}
        Some(other) => return Err(MessageError::new(ErrorKind::WrongVersion(other.to_owned()))),
        None => return Err(MessageError::new(ErrorKind::MissingVersion)),
    }
    let only_error = env.error.is_some() && env.method.is_none() && env.result.is_none();
    let id = match env.id {
        None => None,
        Some(raw_id) => match Id::new(raw_id) {
            Some(id) => Some(id),
            // JSON-RPC 2.0 answers a message whose id could not be read with `"id": null`;
            // that is the only place a null id is allowed.
            None if only_error && raw_id.get() == "null" => None,
            None => return Err(MessageError::new(ErrorKind::InvalidId)),
        },
    };
    let kind = match (env.method, env.result, env.error) {
        (Some(m), None, None) => {
            let method = decode_str(m).ok_or(MessageError {
                kind: ErrorKind::MethodNotString,
                id: id.map(|i| i.to_owned()),
            })?;
            let params = Params::parse(&method, env.params).map_err(|kind| MessageError {
                kind,
                id: id.map(|i| i.to_owned()),
            })?;
            match id {
                Some(id) => Kind::Request(Request { id, method, params }),
                None => Kind::Notification(Notification { method, params }),
            }
        }
        (None, Some(result), None) => Kind::Response(Response {
            id: Some(id.ok_or(MessageError::new(ErrorKind::ResponseWithoutId))?),
            outcome: Outcome::Result(result),
        }),
        (None, None, Some(error)) => Kind::Response(Response {
            id,
            outcome: Outcome::Error(error),
        }),
        _ => {
            return Err(MessageError {
                kind: ErrorKind::NotAMessage,
                id: id.map(|i| i.to_owned()),
            });
        }
    };
    Ok(Message { raw, kind })
}

/// One JSON-RPC message, borrowed from the body.
#[derive(Debug)]
pub struct Message<'a> {
    raw: &'a str,
    /// What the message is.
    pub kind: Kind<'a>,
}

impl<'a> Message<'a> {
    /// The exact text of this message (without surrounding whitespace), for forwarding one
    /// element of a batch.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request(r) => Some(&r.method),
            Kind::Notification(n) => Some(&n.method),
            Kind::Response(_) => None,
        }
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<Id<'a>> {
        match &self.kind {
            Kind::Request(r) => Some(r.id),
            Kind::Response(r) => r.id,
            Kind::Notification(_) => None,
        }
    }

    /// The params of a request or notification, as far as they were read.
    pub fn params(&self) -> Option<&Params<'a>> {
        match &self.kind {
            Kind::Request(r) => Some(&r.params),
            Kind::Notification(n) => Some(&n.params),
            Kind::Response(_) => None,
        }
    }

    /// The tool call, when this is a `tools/call` request.
    pub fn tool_call(&self) -> Option<ToolCall<'_>> {
        match &self.kind {
            Kind::Request(Request {
                id,
                params:
                    Params {
                        target: Target::Tool { name, arguments },
                        ..
                    },
                ..
            }) => Some(ToolCall {
                id: *id,
                name,
                arguments: arguments.as_ref(),
            }),
            _ => None,
        }
    }
}

/// The three kinds of JSON-RPC message.
#[derive(Debug)]
pub enum Kind<'a> {
    /// Has an `id` and a `method`: expects a response.
    Request(Request<'a>),
    /// Has a `method` and no `id`: expects nothing.
    Notification(Notification<'a>),
    /// Has a `result` or an `error`.
    Response(Response<'a>),
}

/// A request: the only kind the gateway decides on.
#[derive(Debug)]
pub struct Request<'a> {
    /// The id to echo in a reply.
    pub id: Id<'a>,
    /// The method, unescaped.
    pub method: Cow<'a, str>,
    /// What was read of the params.
    pub params: Params<'a>,
}

/// A notification.
#[derive(Debug)]
pub struct Notification<'a> {
    /// The method, unescaped.
    pub method: Cow<'a, str>,
    /// What was read of the params.
    pub params: Params<'a>,
}

/// A response: the client's answer to a server→client request, or the server's answer.
#[derive(Debug)]
pub struct Response<'a> {
    /// The id of the request answered; `None` only for an error response with `"id": null` or
    /// no id (the answer to a message whose id could not be read).
    pub id: Option<Id<'a>>,
    /// The result or the error, as raw JSON.
    pub outcome: Outcome<'a>,
}

/// The payload of a response, unparsed.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// `result`, raw.
    Result(&'a RawValue),
    /// `error`, raw.
    Error(&'a RawValue),
}

impl Outcome<'_> {
    /// The `error.code`, when this is an error with an integer code.
    pub fn error_code(&self) -> Option<i64> {
        #[derive(Deserialize)]
        struct Code {
            code: i64,
        }
        match self {
            Outcome::Error(raw) => serde_json::from_str::<Code>(raw.get()).ok().map(|c| c.code),
            Outcome::Result(_) => None,
        }
    }
}

/// What the gateway read of a message's `params`.
#[derive(Debug, Default)]
pub struct Params<'a> {
    /// The whole `params` member, raw, when present.
    pub raw: Option<&'a RawValue>,
    /// `params._meta.progressToken`, when it is a string or an integer.
    pub progress_token: Option<Id<'a>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28), when a string.
    pub protocol_version: Option<Cow<'a, str>>,
    /// The named target of the methods that have one.
    pub target: Target<'a>,
}

/// The object a request acts on, for the methods whose target the gateway must know
/// (and that 2026-07-28 mirrors into `Mcp-Name`).
#[derive(Debug, Default, PartialEq)]
pub enum Target<'a> {
    /// Any other method.
    #[default]
    None,
    /// `tools/call`: `params.name` and `params.arguments` (absent or `null` → `None`).
    Tool {
        /// The tool's name, unescaped.
        name: Cow<'a, str>,
        /// The arguments object.
        arguments: Option<Value>,
    },
    /// `resources/read`: `params.uri`.
    Resource {
        /// The resource URI, unescaped.
        uri: Cow<'a, str>,
    },
    /// `prompts/get`: `params.name`.
    Prompt {
        /// The prompt's name, unescaped.
        name: Cow<'a, str>,
    },
}

impl Target<'_> {
    /// The value 2026-07-28 mirrors into the `Mcp-Name` header.
    pub fn mcp_name(&self) -> Option<&str> {
        match self {
            Target::None => None,
            Target::Tool { name, .. } | Target::Prompt { name } => Some(name),
            Target::Resource { uri } => Some(uri),
        }
    }
}

/// A `tools/call`, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct ToolCall<'m> {
    /// The request id.
    pub id: Id<'m>,
    /// The tool's name.
    pub name: &'m str,
    /// The arguments object, when given.
    pub arguments: Option<&'m Value>,
}

#[derive(Deserialize)]
struct RawParams<'a> {
    #[serde(borrow, default, deserialize_with = "keep_null")]
    name: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    uri: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null", rename = "_meta")]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMeta<'a> {
    #[serde(borrow, default, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<&'a RawValue>,
}

impl<'a> Params<'a> {
    fn parse(method: &str, raw: Option<&'a RawValue>) -> Result<Params<'a>, ErrorKind> {
        let mut params = Params {
            raw,
            ..Params::default()
        };
        let decided = matches!(
            method,
            method::TOOLS_CALL | method::RESOURCES_READ | method::PROMPTS_GET
        );
        let Some(raw) = raw.filter(|r| r.get().starts_with('{')) else {
            // Params of other methods are the upstream's business, whatever their shape.
            return if decided {
                Err(ErrorKind::InvalidParams(format!(
                    "{method} needs a params object"
                )))
            } else {
                Ok(params)
            };
        };
        let fields: RawParams<'a> = match serde_json::from_str(raw.get()) {
            Ok(fields) => fields,
            Err(e) if decided => {
                return Err(ErrorKind::InvalidParams(format!(
                    "params: {}",
                    without_position(&e)
                )));
            }
            Err(_) => return Ok(params),
        };
        if let Some(meta) = fields.meta {
            if !meta.get().starts_with('{') && decided {
                return Err(ErrorKind::InvalidParams(
                    "params._meta must be an object".into(),
                ));
            }
            match serde_json::from_str::<RawMeta<'a>>(meta.get()) {
                Ok(meta) => {
                    params.progress_token = meta.progress_token.and_then(Id::new);
                    params.protocol_version = meta.protocol_version.and_then(decode_str);
                }
                Err(e) if decided => {
                    return Err(ErrorKind::InvalidParams(format!(
                        "params._meta: {}",
                        without_position(&e)
                    )));
                }
                Err(_) => {}
            }
        }
        let string = |member: Option<&'a RawValue>, what: &str| {
            member
                .and_then(decode_str)
                .ok_or_else(|| ErrorKind::InvalidParams(format!("{method} needs a string {what}")))
        };
        params.target = match method {
            method::TOOLS_CALL => Target::Tool {
                name: string(fields.name, "params.name")?,
                arguments: match fields.arguments {
                    None => None,
                    Some(a) if a.get() == "null" => None,
                    Some(a) => Some(parse_arguments(a)?),
                },
            },
            method::RESOURCES_READ => Target::Resource {
                uri: string(fields.uri, "params.uri")?,
            },
            method::PROMPTS_GET => Target::Prompt {
                name: string(fields.name, "params.name")?,
            },
            _ => Target::None,
        };
        Ok(params)
    }
}

fn parse_arguments(raw: &RawValue) -> Result<Value, ErrorKind> {
    if !raw.get().starts_with('{') {
        return Err(ErrorKind::ArgumentsNotObject);
    }
    value_with_unique_keys(raw.get()).map_err(|e| {
        ErrorKind::InvalidParams(format!("params.arguments: {}", without_position(&e)))
    })
}

/// Parses JSON text into a `Value`, refusing objects with a repeated key (see [`UniqueKeys`]).
pub(crate) fn value_with_unique_keys(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = UniqueKeys.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a `Value` like serde_json does, but refuses an object with a repeated key: the policy
/// and the upstream must see the same arguments, and JSON parsers disagree on which copy wins.
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueKeys)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(UniqueKeys)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A JSON string member, unescaped; borrowed when it has no escapes.
fn decode_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    let inner = &text[1..text.len() - 1];
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// A JSON-RPC id (or progress token): a string or an integer, kept as its exact JSON text so
/// that a reply echoes it byte for byte. Never `null`, a fraction, an exponent, a boolean, an
/// array or an object.
#[derive(Clone, Copy)]
pub struct Id<'a>(&'a RawValue);

impl<'a> Id<'a> {
    /// Validates a raw JSON value as an id.
    pub fn new(raw: &'a RawValue) -> Option<Id<'a>> {
        is_id_text(raw.get()).then_some(Id(raw))
    }

    /// Parses an id from its JSON text (e.g. `7` or `"abc"`).
    pub fn parse(text: &'a str) -> Option<Id<'a>> {
        let raw: &RawValue = serde_json::from_str(text).ok()?;
        Id::new(raw)
    }

    /// The exact JSON text.
    pub fn raw(&self) -> &'a str {
        self.0.get()
    }

    /// The id as a raw JSON value, for serialising into a reply.
    pub fn as_raw_value(&self) -> &'a RawValue {
        self.0
    }

    /// Whether the id is a JSON string (otherwise an integer).
    pub fn is_string(&self) -> bool {
        self.raw().starts_with('"')
    }

    /// An owned copy, for keeping beyond the body's lifetime.
    pub fn to_owned(&self) -> OwnedId {
        OwnedId(self.0.to_owned())
    }
}

fn is_id_text(text: &str) -> bool {
    match text.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => !text.contains(['.', 'e', 'E']),
        _ => false,
    }
}

impl fmt::Debug for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.raw())
    }
}

impl PartialEq for Id<'_> {
    /// Ids compare by their JSON text: `1` and `"1"` differ, as JSON-RPC says.
    fn eq(&self, other: &Self) -> bool {
        self.raw() == other.raw()
    }
}
impl Eq for Id<'_> {}

/// An owned [`Id`].
#[derive(Clone)]
pub struct OwnedId(Box<RawValue>);

impl OwnedId {
    /// Borrows it as an [`Id`].
    pub fn as_id(&self) -> Id<'_> {
        Id(&self.0)
    }
}

impl fmt::Debug for OwnedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnedId({})", self.0.get())
    }
}

impl PartialEq for OwnedId {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}
impl Eq for OwnedId {}

/// A body or message the gateway cannot accept, with the JSON-RPC code to answer it with and,
/// when it could be read, the id to echo.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct MessageError {
    kind: ErrorKind,
    id: Option<OwnedId>,
}

impl MessageError {
    fn new(kind: ErrorKind) -> MessageError {
        MessageError { kind, id: None }
    }

    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The id of the offending request, when it could be read (answer with `"id": null` otherwise).
    pub fn id(&self) -> Option<Id<'_>> {
        self.id.as_ref().map(OwnedId::as_id)
    }

    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i64 {
        self.kind.code()
    }
}

/// Why a message was refused. The message (`Display`) is safe to show the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    /// -32700: the body is not UTF-8.
    #[error("the body is not UTF-8 text")]
    NotUtf8,
    /// -32700: the body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// -32600: JSON, but not an object (nor, for a body, an array of them).
    #[error("a JSON-RPC message must be a JSON object")]
    NotAnObject,
    /// -32600: `[]`.
    #[error("a batch must not be empty")]
    EmptyBatch,
    /// -32600: the object's members could not be read (a duplicated member, say).
    #[error("invalid JSON-RPC message: {0}")]
    Malformed(String),
    /// -32600: no `jsonrpc` member.
    #[error("the jsonrpc member is missing; it must be \"2.0\"")]
    MissingVersion,
    /// -32600: `jsonrpc` is not `"2.0"` (the raw JSON found).
    #[error("jsonrpc must be \"2.0\", not {0}")]
    WrongVersion(String),
    /// -32600: the id is `null`, a fraction, a boolean, an array or an object.
    #[error("the id must be a string or an integer")]
    InvalidId,
    /// -32600: `method` is present but not a string.
    #[error("the method must be a string")]
    MethodNotString,
    /// -32600: a `result` or `error` without an `id`.
    #[error("a result must carry the id of the request it answers")]
    ResponseWithoutId,
    /// -32600: none of, or more than one of, `method`, `result` and `error`.
    #[error("a JSON-RPC message has exactly one of method, result and error")]
    NotAMessage,
    /// -32602: `tools/call` arguments that are not an object.
    #[error("tools/call arguments must be an object")]
    ArgumentsNotObject,
    /// -32602: other params problems of the methods the gateway decides on.
    #[error("invalid params: {0}")]
    InvalidParams(String),
}

impl ErrorKind {
    /// The JSON-RPC error code for this kind.
    pub fn code(&self) -> i64 {
        match self {
            ErrorKind::NotUtf8 | ErrorKind::NotJson(_) => code::PARSE_ERROR,
            ErrorKind::NotAnObject
            | ErrorKind::EmptyBatch
            | ErrorKind::Malformed(_)
            | ErrorKind::MissingVersion
            | ErrorKind::WrongVersion(_)
            | ErrorKind::InvalidId
            | ErrorKind::MethodNotString
            | ErrorKind::ResponseWithoutId
            | ErrorKind::NotAMessage => code::INVALID_REQUEST,
            ErrorKind::ArgumentsNotObject | ErrorKind::InvalidParams(_) => code::INVALID_PARAMS,
        }
    }
}

#[cfg(test)]
mod tests;
