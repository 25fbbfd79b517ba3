//! Server-Sent Events, for proxying a stream event by event.
//!
//! [`SseParser`] is fed the upstream's body in whatever chunks the network delivers and hands back
//! each complete event with its exact bytes (forward those, unchanged) and its parsed fields (look
//! at those only where the gateway must: `tools/list` results, server→client requests). The
//! concatenation of every event's bytes is exactly the input, so forwarding them all forwards the
//! stream unchanged: comments, `retry:`, `id:`, priming events with empty data and unknown fields
//! included.
//!
//! An event is handed back as soon as its blank line is complete, never held for the next chunk.
//! So when a chunk ends between the CR and the LF of a CRLF, the event ends with the CR and the LF
//! starts the next event's bytes (or is an [empty](SseEvent::is_empty) event of its own at the end
//! of the stream). The fields are the same however the stream is chunked; only where that LF lands
//! differs, and a client reading the forwarded bytes sees the same line ends either way.
//!
//! Parsing follows the WHATWG HTML "event stream interpretation": lines end at CRLF, LF or CR
//! (a CRLF split across two chunks is still one line end); a blank line ends an event; a line
//! starting with `:` is a comment; `field: value` loses one space after the colon; `data` lines join
//! with LF; an `id` containing NUL is ignored; `retry` is read only when it is all ASCII digits;
//! a UTF-8 byte order mark at the very start is skipped. Values are decoded as UTF-8 with
//! replacement, always from whole lines, so a character split across chunks decodes intact.
//!
//! Memory is bounded: an event (the bytes of one block, up to and including its blank line)
//! larger than the configured maximum is an error, and the parser refuses further input, so a
//! hostile upstream cannot make the gateway buffer without end.

use bytes::{Bytes, BytesMut};

/// Incremental SSE parser. See the module documentation.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the event being read: complete lines already parsed, then a partial line.
    buf: BytesMut,
    /// Start of the partial line in `buf`.
    line_start: usize,
    /// The previous line ended with CR at the end of a chunk: a LF that follows belongs to it.
    skip_lf: bool,
    /// No line of the stream has been parsed yet (for the byte order mark).
    first_line: bool,
    /// The event being read starts with the LF of a CRLF whose CR ended the previous event.
    lf_remnant: bool,
    pending: Pending,
    max_event_bytes: usize,
    failed: bool,
}

/// The fields of the event being read.
#[derive(Debug, Default)]
struct Pending {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comments: Vec<String>,
    has_fields: bool,
}

/// One event (one block of lines ended by a blank line), as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    raw: Bytes,
    /// The last `id` field, if any (`Some("")` for an empty `id:`, which resets the last event id).
    pub id: Option<String>,
    /// The last `event` field (the event type), if any; clients treat absence as `message`.
    pub event: Option<String>,
    /// The `data` lines joined with LF; `None` when there was no `data` line, `Some("")` for one
    /// empty `data:` line.
    pub data: Option<String>,
    /// The last valid `retry` field, in milliseconds.
    pub retry: Option<u64>,
    /// Comment lines, without the colon and one following space.
    pub comments: Vec<String>,
    /// Whether the event ended with a blank line. `false` only for what [`SseParser::finish`]
    /// returns: a client would discard such an event, so the gateway should not act on it, only
    /// forward it.
    pub terminated: bool,
    has_fields: bool,
    /// `raw` starts with the LF of a CRLF split from the previous event.
    lf_remnant: bool,
}

impl SseEvent {
    /// The exact bytes of this event, from the first byte after the previous event up to and
    /// including the blank line that ended it.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The event type a client sees: the `event` field, or `message`.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// Only comments (keep-alives such as `: ping`), no field at all.
    pub fn is_comment_only(&self) -> bool {
        !self.has_fields && !self.comments.is_empty()
    }

    /// No line at all: a stray blank line.
    pub fn is_empty(&self) -> bool {
        !self.has_fields && self.comments.is_empty()
    }

    /// A 2025-11-25 priming event: an id with empty (or no) data, sent so the client can resume
    /// with `Last-Event-ID`. It carries no message.
    pub fn is_priming(&self) -> bool {
        self.id.is_some() && self.data.as_deref().is_none_or(str::is_empty)
    }

    /// The JSON-RPC message this event carries, if it is a `message` event with non-empty data.
    pub fn message_data(&self) -> Option<&str> {
        match self.data.as_deref() {
            Some(data) if !data.is_empty() && self.event_type() == "message" => Some(data),
            _ => None,
        }
    }

    /// The same event with other data (a filtered `tools/list` result, say), to forward in its
    /// place: its id, event type and retry are kept (in that order), comments and unknown fields
    /// are dropped, and its line ends are the original's (CRLF, LF or CR), including the halves of
    /// a CRLF split with its neighbours, so the bytes around it still fit.
    pub fn with_data(&self, data: &str) -> Result<Bytes, EncodeError> {
        let body = if self.lf_remnant {
            &self.raw[1..]
        } else {
            &self.raw[..]
        };
        // Line ends as the original's: the blank line ends as it did (a lone CR stays a lone CR,
        // whose LF, if the chunk split a CRLF there, starts the next event's bytes), and every
        // other line as the original's last line did. Those two never merged into one line end
        // in the original, so they cannot here.
        let blank_end: &[u8] = if body.ends_with(b"\r\n") {
            b"\r\n"
        } else if body.ends_with(b"\r") {
            b"\r"
        } else {
            b"\n"
        };
        let lines = &body[..body.len().saturating_sub(blank_end.len())];
        let line_end = if lines.ends_with(b"\r\n") {
            "\r\n"
        } else if lines.ends_with(b"\r") {
            "\r"
        } else if lines.ends_with(b"\n") {
            "\n"
        } else {
            std::str::from_utf8(blank_end).unwrap_or("\n")
        };
        let mut out = Vec::with_capacity(data.len() + 64);
        if self.lf_remnant {
            out.push(b'\n');
        }
        encode_into(
            &mut out,
            &OutgoingEvent {
                id: self.id.as_deref(),
                event: self.event.as_deref(),
                retry: self.retry,
                data,
            },
            line_end,
        )?;
        out.truncate(out.len() - line_end.len());
        out.extend_from_slice(blank_end);
        Ok(Bytes::from(out))
    }
}

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event exceeded the maximum size: the upstream is broken or hostile. The gateway
    /// should end the client's stream (after a JSON-RPC error if the response is still owed).
    #[error("an SSE event from the upstream exceeds {max} bytes")]
    EventTooLarge {
        /// The configured maximum.
        max: usize,
    },
}

impl SseParser {
    /// A parser that refuses events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> SseParser {
        SseParser {
            buf: BytesMut::new(),
            line_start: 0,
            skip_lf: false,
            first_line: true,
            lf_remnant: false,
            pending: Pending::default(),
            max_event_bytes,
            failed: false,
        }
    }

    /// Feeds the next chunk of the stream; returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let too_large = SseError::EventTooLarge {
            max: self.max_event_bytes,
        };
        if self.failed {
            return Err(too_large);
        }
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut scan = self.line_start;
        loop {
            if self.skip_lf {
                match self.buf.get(scan) {
                    None => break,
                    Some(b'\n') => {
                        // At the start of the buffer, the CR ended the previous event.
                        if scan == 0 {
                            self.lf_remnant = true;
                        }
                        scan += 1;
                        self.line_start = scan;
                    }
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            let Some(offset) = memchr::memchr2(b'\r', b'\n', &self.buf[scan..]) else {
                break;
            };
            let end = scan + offset;
            let mut next = end + 1;
            if self.buf[end] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            let first_line = std::mem::take(&mut self.first_line);
            if end == self.line_start {
                let raw = self.buf.split_to(next).freeze();
                if raw.len() > self.max_event_bytes {
                    self.failed = true;
                    return Err(too_large);
                }
                let mut event = std::mem::take(&mut self.pending).into_event(raw, true);
                event.lf_remnant = std::mem::take(&mut self.lf_remnant);
                events.push(event);
                self.line_start = 0;
                scan = 0;
            } else {
                let mut line = &self.buf[self.line_start..end];
                if first_line {
                    line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
                }
                self.pending.line(line);
                self.line_start = next;
                scan = next;
            }
        }
        if self.buf.len() > self.max_event_bytes {
            self.failed = true;
            return Err(too_large);
        }
        Ok(events)
    }

    /// The stream ended: returns what is left (an event without its blank line, possibly with
    /// a last line without its line end) so it can be forwarded too. `None` when nothing is left.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        if self.failed {
            return Err(SseError::EventTooLarge {
                max: self.max_event_bytes,
            });
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        if self.line_start < self.buf.len() {
            let mut line = &self.buf[self.line_start..];
            if std::mem::take(&mut self.first_line) {
                line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            }
            self.pending.line(line);
        }
        // Only the LF of a CRLF whose CR ended the last event: line-end bytes, not an event cut short.
        let terminated = self.line_start == self.buf.len()
            && self.pending.comments.is_empty()
            && !self.pending.has_fields;
        let raw = self.buf.split().freeze();
        self.line_start = 0;
        self.skip_lf = false;
        let mut event = std::mem::take(&mut self.pending).into_event(raw, terminated);
        event.lf_remnant = std::mem::take(&mut self.lf_remnant);
        Ok(Some(event))
    }

    /// Bytes held for the event being read.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

impl Pending {
    fn line(&mut self, line: &[u8]) {
        if let Some(comment) = line.strip_prefix(b":") {
            let comment = comment.strip_prefix(b" ").unwrap_or(comment);
            self.comments
                .push(String::from_utf8_lossy(comment).into_owned());
            return;
        }
        self.has_fields = true;
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // All digits, so only overflow can fail; an absurd retry is ignored like a bad one.
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or_default().parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn into_event(self, raw: Bytes, terminated: bool) -> SseEvent {
        SseEvent {
            raw,
            id: self.id,
            event: self.event,
            data: self.data,
            retry: self.retry,
            comments: self.comments,
            terminated,
            has_fields: self.has_fields,
            lf_remnant: false,
        }
    }
}

/// An event the gateway writes itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutgoingEvent<'a> {
    /// `id:`; must not contain CR, LF or NUL.
    pub id: Option<&'a str>,
    /// `event:`; must not contain CR or LF.
    pub event: Option<&'a str>,
    /// `retry:` in milliseconds.
    pub retry: Option<u64>,
    /// The data; each of its lines (split at CRLF, LF or CR) becomes one `data:` line.
    pub data: &'a str,
}

/// A field value that cannot be written into an SSE event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The `id` contains CR, LF or NUL (a client would misread or ignore it).
    #[error("an SSE id must not contain CR, LF or NUL")]
    BadId,
    /// The event type contains CR or LF.
    #[error("an SSE event type must not contain CR or LF")]
    BadEventType,
}

/// Encodes one event, ending with a blank line. Lines end with LF.
pub fn encode(event: &OutgoingEvent<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(event.data.len() + 32);
    encode_into(&mut out, event, "\n")?;
    Ok(out)
}

fn encode_into(
    out: &mut Vec<u8>,
    event: &OutgoingEvent<'_>,
    line_end: &str,
) -> Result<(), EncodeError> {
    let line_end = line_end.as_bytes();
    if let Some(id) = event.id {
        if id.contains(['\r', '\n', '\0']) {
            return Err(EncodeError::BadId);
        }
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(line_end);
    }
    if let Some(kind) = event.event {
        if kind.contains(['\r', '\n']) {
            return Err(EncodeError::BadEventType);
        }
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(line_end);
    }
    if let Some(retry) = event.retry {
        out.extend_from_slice(format!("retry: {retry}").as_bytes());
        out.extend_from_slice(line_end);
    }
    for line in split_lines(event.data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(line_end);
    }
    out.extend_from_slice(line_end);
    Ok(())
}

/// One `event: message` event carrying a JSON-RPC message, as MCP servers send them.
pub fn message_event(json: &str) -> Vec<u8> {
    encode(&OutgoingEvent {
        event: Some("message"),
        data: json,
        ..OutgoingEvent::default()
    })
    .expect("a constant event type is valid")
}

/// A comment-only event (a keep-alive): `: text` lines and a blank line.
pub fn comment(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 4);
    for line in split_lines(text) {
        out.push(b':');
        if !line.is_empty() {
            out.push(b' ');
            out.extend_from_slice(line.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Splits at CRLF, LF or CR; an empty text is one empty line.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(i) => {
                let skip = if text[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[i + skip..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests;
