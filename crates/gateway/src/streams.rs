//! Every SSE stream the gateway proxies: GET streams (resumed with `Last-Event-ID` or not) and the
//! streams that answer a POST.
//!
//! - **Bounded.** Each stream holds a [`Slot`]: at most `max_streams` per replica and
//!   `max_streams_per_org` per organisation, so one tenant cannot take every slot (503 beyond).
//!   A GET stream that stays silent for `stream_idle_timeout` ends; a request's stream that stays
//!   silent for the response timeout ends with that request's timeout error; no stream outlives
//!   `stream_max_lifetime` (clients resume GET streams with `Last-Event-ID`).
//! - **Re-checked.** Each slot follows its grant's configuration: after every invalidation (and
//!   every configuration TTL, in case a message was missed) the grants of open streams are read
//!   again. A stream whose grant was revoked or expired, or whose server now points elsewhere or
//!   with other credentials, is closed (a request still owed its answer gets an error event
//!   first); a changed policy is applied to the stream's following events.
//! - **Filtered.** Every stream is parsed event by event (`mcp::SseParser`), and any JSON-RPC
//!   response carrying `result.tools` is filtered like a `tools/list` answer, so a `tools/list`
//!   response replayed on a resumed stream cannot show a hidden tool. An event that might carry a
//!   tool list the gateway cannot read (a batch with one, duplicated members) ends the stream
//!   instead of passing unfiltered. Everything else passes byte for byte.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use http::StatusCode;
use mcp::message::{Kind, Outcome, OwnedId};
use mcp::reply::{self, UpstreamFailure};
use mcp::{SseEvent, SseParser};
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
use tokio::sync::{Notify, watch};

use crate::GatewayError;
use crate::cache::{GrantView, Lookup};

/// The open streams of one replica.
#[derive(Debug)]
pub(crate) struct Streams {
    max_total: usize,
    max_per_org: usize,
    state: Mutex<State>,
    /// Poked on every configuration invalidation: the open streams' grants are read again.
    changed: Notify,
    /// Set when the replica stops: its GET streams end at once.
    stopping: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    per_org: HashMap<String, usize>,
    open: HashMap<u64, Open>,
}

#[derive(Debug)]
struct Open {
    token: [u8; 32],
    organisation: String,
    /// The stream's current configuration; `None` closes it.
    view: watch::Sender<Option<Arc<GrantView>>>,
}

/// One stream's place; given back when dropped (when the client's response body is dropped).
#[derive(Debug)]
pub(crate) struct Slot {
    streams: Arc<Streams>,
    id: u64,
    view: watch::Receiver<Option<Arc<GrantView>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.streams.state.lock().expect("streams lock");
        if let Some(open) = state.open.remove(&self.id)
            && let Some(count) = state.per_org.get_mut(&open.organisation)
        {
            *count -= 1;
            if *count == 0 {
                state.per_org.remove(&open.organisation);
            }
        }
    }
}

impl Streams {
    pub(crate) fn new(max_total: usize, max_per_org: usize) -> Self {
        Streams {
            max_total,
            max_per_org,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            stopping: watch::Sender::new(false),
        }
    }

    /// Ends every GET stream, now and any opened later, because the replica is stopping: they
    /// would otherwise hold its drain until it runs out, and their clients resume on another
    /// replica with `Last-Event-ID` either way. Streams answering a request are left to finish
    /// within the drain, like any call in flight.
    pub(crate) fn stop_get_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// A slot for a stream of `view`'s grant, or 503 when the replica or the organisation has
    /// no more.
    pub(crate) fn open(self: &Arc<Self>, view: &Arc<GrantView>) -> Result<Slot, GatewayError> {
        let mut state = self.state.lock().expect("streams lock");
        if state.open.len() >= self.max_total {
            return Err(GatewayError::TooManyStreams);
        }
        let org_count = state.per_org.get(&view.organisation).copied().unwrap_or(0);
        if org_count >= self.max_per_org {
            return Err(GatewayError::TooManyOrgStreams(self.max_per_org));
        }
        state.next += 1;
        let id = state.next;
        let (tx, rx) = watch::channel(Some(view.clone()));
        state.open.insert(
            id,
            Open {
                token: view.token_key,
                organisation: view.organisation.clone(),
                view: tx,
            },
        );
        *state.per_org.entry(view.organisation.clone()).or_default() += 1;
        Ok(Slot {
            streams: self.clone(),
            id,
            view: rx,
        })
    }

    /// Asks for the open streams' grants to be read again (after an invalidation).
    pub(crate) fn recheck_soon(&self) {
        self.changed.notify_one();
    }

    /// Reads the grant of every open stream again and closes or updates the streams.
    async fn recheck(&self, cache: &Arc<crate::cache::ConfigCache>) {
        let tokens: HashSet<[u8; 32]> = {
            let state = self.state.lock().expect("streams lock");
            state.open.values().map(|o| o.token).collect()
        };
        for token in tokens {
            let lookup = match cache.lookup_key(token).await {
                Ok(lookup) => lookup,
                Err(e) => {
                    // Streams stay as they are; the next invalidation or TTL tries again.
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot re-check an open stream's grant"
                    );
                    continue;
                }
            };
            let state = self.state.lock().expect("streams lock");
            for open in state.open.values().filter(|o| o.token == token) {
                open.view
                    .send_if_modified(|current| match (&lookup, current.as_ref()) {
                        (Lookup::Active(new), Some(old)) if old.same_upstream(new) => {
                            if Arc::ptr_eq(old, new) {
                                false
                            } else {
                                *current = Some(new.clone());
                                true
                            }
                        }
                        (_, None) => false,
                        _ => {
                            *current = None;
                            true
                        }
                    });
            }
        }
    }
}

/// Re-checks open streams after every invalidation, and every `every` anyway (an invalidation
/// message can be missed), for as long as the gateway lives.
pub(crate) async fn recheck_forever(
    gateway: Weak<crate::Inner>,
    streams: Arc<Streams>,
    every: Duration,
) {
    loop {
        let _ = tokio::time::timeout(every, streams.changed.notified()).await;
        let Some(inner) = gateway.upgrade() else {
            return;
        };
        let empty = streams.state.lock().expect("streams lock").open.is_empty();
        if !empty {
            streams.recheck(&inner.cache).await;
        }
    }
}

/// How one proxied stream is run.
#[derive(Debug)]
pub(crate) struct Proxied {
    pub(crate) slot: Slot,
    /// The request this stream answers (POST); `None` for GET streams.
    pub(crate) request: Option<OwnedId>,
    /// The request is a `tools/list`: its answer must carry a tools array.
    pub(crate) tools_list: bool,
    /// Silence after which the stream ends.
    pub(crate) idle: Duration,
    /// The longest the stream stays open.
    pub(crate) lifetime: Duration,
    pub(crate) max_event_bytes: usize,
    /// Live tool definitions seen on the stream are checked against the pins and learnt here.
    pub(crate) pinning: Arc<crate::pinning::Registry>,
}

/// Why a stream ends early.
#[derive(Debug, Clone, Copy)]
enum End {
    Idle,
    Lifetime,
    Revoked,
    Unreadable,
    /// The replica is stopping (GET streams only).
    Stopping,
}

/// The upstream's stream as the client gets it (see the module documentation).
pub(crate) fn body(
    upstream: reqwest::Response,
    proxied: Proxied,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    struct St {
        upstream: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
        parser: SseParser,
        view: Arc<GrantView>,
        answered: bool,
        deadline: tokio::time::Instant,
        stopping: watch::Receiver<bool>,
        done: bool,
        p: Proxied,
    }
    let view = proxied
        .slot
        .view
        .borrow()
        .clone()
        .expect("a slot opens with a view");
    let st = St {
        upstream: upstream.bytes_stream().boxed(),
        parser: SseParser::new(proxied.max_event_bytes),
        view,
        answered: false,
        deadline: tokio::time::Instant::now() + proxied.lifetime,
        stopping: proxied.slot.streams.stopping.subscribe(),
        done: false,
        p: proxied,
    };
    /// The last bytes of a stream ended early: an error event when a request is still owed its
    /// answer, else nothing.
    fn end(st: &mut St, why: End) -> Option<Result<Bytes, std::io::Error>> {
        st.done = true;
        tracing::info!(?why, "stream ended by the gateway");
        let id = st.p.request.as_ref().filter(|_| !st.answered)?;
        let reply = match why {
            End::Idle | End::Lifetime | End::Stopping => {
                reply::upstream_failed(Some(id.as_id()), UpstreamFailure::Timeout)
            }
            End::Unreadable => {
                reply::upstream_failed(Some(id.as_id()), UpstreamFailure::BadResponse)
            }
            End::Revoked => reply::error(
                Some(id.as_id()),
                mcp::code::INTERNAL_ERROR,
                "Gatehouse closed this stream: the grant was revoked or has expired, or its server was changed",
                None,
                StatusCode::OK,
            ),
        };
        Some(Ok(Bytes::from(reply.sse_event())))
    }
    enum Step {
        Changed(bool),
        Stopping,
        Lifetime,
        Idle,
        Upstream(Option<reqwest::Result<Bytes>>),
    }
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let step = tokio::select! {
                biased;
                changed = st.p.slot.view.changed() => Step::Changed(changed.is_ok()),
                _ = st.stopping.wait_for(|stopping| *stopping), if st.p.request.is_none() => Step::Stopping,
                () = tokio::time::sleep_until(st.deadline) => Step::Lifetime,
                item = tokio::time::timeout(st.p.idle, st.upstream.next()) => match item {
                    Ok(item) => Step::Upstream(item),
                    Err(_) => Step::Idle,
                },
            };
            let out = match step {
                Step::Changed(alive) => {
                    let current = st.p.slot.view.borrow_and_update().clone();
                    match current {
                        Some(view) if alive => {
                            st.view = view;
                            continue;
                        }
                        _ => end(&mut st, End::Revoked),
                    }
                }
                Step::Stopping => end(&mut st, End::Stopping),
                Step::Lifetime => end(&mut st, End::Lifetime),
                Step::Idle => end(&mut st, End::Idle),
                Step::Upstream(Some(Ok(chunk))) => match st.parser.feed(&chunk) {
                    Ok(events) => match pass_all(&mut st.answered, &st.view, &st.p, &events) {
                        Ok(bytes) if bytes.is_empty() => continue,
                        Ok(bytes) => Some(Ok(bytes)),
                        Err(why) => {
                            tracing::warn!(why, "SSE stream refused");
                            end(&mut st, End::Unreadable)
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable SSE stream");
                        end(&mut st, End::Unreadable)
                    }
                },
                Step::Upstream(Some(Err(e))) => {
                    if st.p.request.is_some() && !st.answered {
                        end(&mut st, End::Unreadable)
                    } else {
                        st.done = true;
                        Some(Err(std::io::Error::other(e)))
                    }
                }
                Step::Upstream(None) => {
                    st.done = true;
                    match st.parser.finish() {
                        // An event without its blank line is discarded by clients; it passes
                        // only when it could not show anything the grant may not see.
                        Ok(Some(event)) => match inspect(&st.view, &st.p, &event) {
                            Ok(Inspected { replace: None, .. }) => Some(Ok(event.raw().clone())),
                            _ => None,
                        },
                        Ok(None) => None,
                        Err(_) => None,
                    }
                }
            };
            return out.map(|item| (item, st));
        }
    })
}

fn pass_all(
    answered: &mut bool,
    view: &Arc<GrantView>,
    p: &Proxied,
    events: &[SseEvent],
) -> Result<Bytes, &'static str> {
    if let [event] = events {
        let inspected = inspect(view, p, event)?;
        *answered |= inspected.answers;
        return Ok(inspected.replace.unwrap_or_else(|| event.raw().clone()));
    }
    let mut out = BytesMut::new();
    for event in events {
        let inspected = inspect(view, p, event)?;
        *answered |= inspected.answers;
        match inspected.replace {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => out.extend_from_slice(event.raw()),
        }
    }
    Ok(out.freeze())
}

struct Inspected {
    /// The bytes to forward instead of the event's own.
    replace: Option<Bytes>,
    /// The event is the response to the stream's request.
    answers: bool,
}

/// Looks at one event: passes it, replaces it with its filtered version, or refuses it (`Err`,
/// the stream ends) when it may carry a tool list the gateway cannot filter.
fn inspect(
    view: &Arc<GrantView>,
    p: &Proxied,
    event: &SseEvent,
) -> Result<Inspected, &'static str> {
    let pass = Inspected {
        replace: None,
        answers: false,
    };
    let Some(data) = event.message_data() else {
        return Ok(pass);
    };
    if data.trim_start().starts_with('[') {
        // A batch in one event (2025-03-26): passed only when no element carries a result with
        // tools, since the gateway does not splice filtered elements back into an array.
        let Ok(items) = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(data) else {
            return Ok(pass); // Not JSON: no client reads a tool list from it.
        };
        for item in items {
            if has_member(item.get(), "result") {
                let result =
                    mcp::message::parse_message(item.get())
                        .ok()
                        .and_then(|m| match m.kind {
                            Kind::Response(r) => match r.outcome {
                                Outcome::Result(raw) => Some(has_member(raw.get(), "tools")),
                                Outcome::Error(_) => Some(false),
                            },
                            _ => None,
                        });
                if result != Some(false) {
                    return Err("a batch of messages that may carry a tool list");
                }
            }
        }
        return Ok(pass);
    }
    let message = match mcp::message::parse_message(data) {
        Ok(message) => message,
        // A response the gateway cannot read (duplicated members, say) could still be read by a
        // lenient client; anything else that is not a message is passed as it came.
        Err(_) if has_member(data, "result") => {
            return Err("a response that is not a readable JSON-RPC message");
        }
        Err(_) => return Ok(pass),
    };
    let response = match &message.kind {
        Kind::Response(response) => response,
        Kind::Notification(n) if n.method == mcp::method::NOTIFICATION_TOOLS_LIST_CHANGED => {
            // Passed on to the client (which lists again); the replica re-checks too.
            p.pinning.list_changed(view.clone());
            return Ok(pass);
        }
        _ => return Ok(pass),
    };
    let answers = match (&p.request, response.id) {
        (Some(request), Some(id)) => request.as_id().raw() == id.raw(),
        _ => false,
    };
    let Outcome::Result(result) = response.outcome else {
        return Ok(Inspected {
            replace: None,
            answers,
        });
    };
    if !has_member(result.get(), "tools") {
        if p.tools_list && answers {
            return Err("a tools/list answer without a tools array");
        }
        return Ok(Inspected {
            replace: None,
            answers,
        });
    }
    if !event.terminated {
        // Discarded by clients; never forwarded unfiltered either.
        return Err("an unterminated event carrying a tool list");
    }
    let listed = mcp::tools_list::filter(data.as_bytes(), |name, definition| {
        view.policy.visible(name) && crate::pinning::admits(view, name, definition)
    });
    if let Ok(filtered) = &listed {
        p.pinning.observe(view, &filtered.tools);
    }
    match listed {
        Ok(filtered) if !filtered.changed() => Ok(Inspected {
            replace: None,
            answers,
        }),
        Ok(filtered) => {
            let text = std::str::from_utf8(&filtered.bytes)
                .map_err(|_| "a filtered tool list that is not UTF-8")?;
            let bytes = event
                .with_data(text)
                .map_err(|_| "an event that cannot be rewritten")?;
            Ok(Inspected {
                replace: Some(bytes),
                answers,
            })
        }
        Err(_) => Err("a result with tools that is not a readable tool list"),
    }
}

/// Whether the JSON object `text` has a member named `key` (escapes decoded; repeated members
/// count). `false` for anything that is not a JSON object.
pub(crate) fn has_member(text: &str, key: &str) -> bool {
    struct Probe<'k>(&'k str);
    impl<'de> Visitor<'de> for Probe<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut found = false;
            while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                found |= name == self.0;
                map.next_value::<IgnoredAny>()?;
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(Probe(key)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::has_member;

    #[test]
    fn members_are_found_escaped_and_repeated() {
        assert!(has_member(r#"{"a":1,"tools":[]}"#, "tools"));
        assert!(has_member(r#"{"\u0074ools":{}}"#, "tools"));
        assert!(has_member(r#"{"tools":[],"tools":[1]}"#, "tools"));
        assert!(!has_member(r#"{"nested":{"tools":[]}}"#, "tools"));
        assert!(!has_member(r#"["tools"]"#, "tools"));
        assert!(!has_member("not json", "tools"));
    }
}
