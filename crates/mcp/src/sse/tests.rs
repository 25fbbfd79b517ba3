use super::*;
use proptest::prelude::*;

const MAX: usize = 1 << 16;

/// Parses a whole stream fed in the given chunk sizes (cycled), including the final flush.
fn parse_chunked(input: &[u8], sizes: &[usize]) -> Result<Vec<SseEvent>, SseError> {
    let mut parser = SseParser::new(MAX);
    let mut events = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        events.extend(parser.feed(&rest[..n])?);
        rest = &rest[n..];
    }
    events.extend(parser.finish()?);
    Ok(events)
}

/// What a client sees of the events: their fields, not where a CRLF split between chunks put
/// its LF (see `SseParser`), nor the empty events such a LF may become.
fn fields(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| !e.is_empty())
        .map(|e| field_parts(e).join(" "))
        .collect()
}

fn describe(e: &SseEvent) -> String {
    let mut parts = field_parts(e);
    parts.push(format!("raw={:?}", String::from_utf8_lossy(e.raw())));
    parts.join(" ")
}

fn field_parts(e: &SseEvent) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(id) = &e.id {
        parts.push(format!("id={id:?}"));
    }
    if let Some(ev) = &e.event {
        parts.push(format!("event={ev:?}"));
    }
    if let Some(d) = &e.data {
        parts.push(format!("data={d:?}"));
    }
    if let Some(r) = e.retry {
        parts.push(format!("retry={r}"));
    }
    if !e.comments.is_empty() {
        parts.push(format!("comments={:?}", e.comments));
    }
    if e.is_empty() {
        parts.push("empty".into());
    }
    if e.is_priming() {
        parts.push("priming".into());
    }
    if e.is_comment_only() {
        parts.push("comment-only".into());
    }
    if !e.terminated {
        parts.push("unterminated".into());
    }
    parts
}

#[test]
fn parses_streams() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "one message event",
            "event: message\ndata: {\"jsonrpc\":\"2.0\"}\n\n",
            &[
                r#"event="message" data="{\"jsonrpc\":\"2.0\"}" raw="event: message\ndata: {\"jsonrpc\":\"2.0\"}\n\n""#,
            ],
        ),
        (
            "CRLF line ends",
            "id: 1\r\ndata: a\r\n\r\n",
            &[r#"id="1" data="a" raw="id: 1\r\ndata: a\r\n\r\n""#],
        ),
        (
            "CR line ends",
            "id: 1\rdata: a\r\rdata: b\r\r",
            &[
                r#"id="1" data="a" raw="id: 1\rdata: a\r\r""#,
                r#"data="b" raw="data: b\r\r""#,
            ],
        ),
        (
            "mixed line ends",
            "data: a\r\ndata: b\rdata: c\n\r\n",
            &[r#"data="a\nb\nc" raw="data: a\r\ndata: b\rdata: c\n\r\n""#],
        ),
        (
            "multi-line data",
            "data: {\ndata:  \"a\": 1\ndata: }\n\n",
            &[r#"data="{\n \"a\": 1\n}" raw="data: {\ndata:  \"a\": 1\ndata: }\n\n""#],
        ),
        (
            "priming event: id and empty data",
            "id: 0-abc\ndata:\n\n",
            &[r#"id="0-abc" data="" priming raw="id: 0-abc\ndata:\n\n""#],
        ),
        (
            "priming event: id only",
            "id: 5\n\n",
            &[r#"id="5" priming raw="id: 5\n\n""#],
        ),
        (
            "retry then close",
            "id: 7\nretry: 1000\ndata:\n\n",
            &[r#"id="7" data="" retry=1000 priming raw="id: 7\nretry: 1000\ndata:\n\n""#],
        ),
        (
            "comments: keep-alive",
            ": ping\n\n:\n\n",
            &[
                r#"comments=["ping"] comment-only raw=": ping\n\n""#,
                r#"comments=[""] comment-only raw=":\n\n""#,
            ],
        ),
        (
            "comment inside an event",
            "data: a\n: note\ndata: b\n\n",
            &[r#"data="a\nb" comments=["note"] raw="data: a\n: note\ndata: b\n\n""#],
        ),
        (
            "field without colon",
            "data\n\n",
            &[r#"data="" raw="data\n\n""#],
        ),
        (
            "only one space after the colon is removed",
            "data:   x \n\n",
            &[r#"data="  x " raw="data:   x \n\n""#],
        ),
        (
            "no space after the colon",
            "event:ping\ndata:x\n\n",
            &[r#"event="ping" data="x" raw="event:ping\ndata:x\n\n""#],
        ),
        (
            "last event and id fields win",
            "event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n",
            &[r#"id="2" event="b" data="x" raw="event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n""#],
        ),
        (
            "id with NUL is ignored",
            "id: 1\nid: a\0b\ndata: x\n\n",
            &[r#"id="1" data="x" raw="id: 1\nid: a\0b\ndata: x\n\n""#],
        ),
        (
            "empty id resets",
            "id:\ndata: x\n\n",
            &[r#"id="" data="x" raw="id:\ndata: x\n\n""#],
        ),
        (
            "bad retry values are ignored",
            "retry: 10a\nretry: -1\nretry:\nretry: 99999999999999999999999\ndata: x\n\n",
            &[
                r#"data="x" raw="retry: 10a\nretry: -1\nretry:\nretry: 99999999999999999999999\ndata: x\n\n""#,
            ],
        ),
        (
            "unknown fields are kept in raw, not parsed",
            "foo: bar\ndata: x\n\n",
            &[r#"data="x" raw="foo: bar\ndata: x\n\n""#],
        ),
        (
            "extra blank lines are empty events",
            "\n\ndata: x\n\n\n",
            &[
                r#"empty raw="\n""#,
                r#"empty raw="\n""#,
                r#"data="x" raw="data: x\n\n""#,
                r#"empty raw="\n""#,
            ],
        ),
        (
            "byte order mark at the start",
            "\u{feff}data: x\n\n",
            &[r#"data="x" raw="\u{feff}data: x\n\n""#],
        ),
        (
            "final event without blank line",
            "data: a\n\ndata: b\n",
            &[
                r#"data="a" raw="data: a\n\n""#,
                r#"data="b" unterminated raw="data: b\n""#,
            ],
        ),
        (
            "final line without line end",
            "data: a\n\ndata: b",
            &[
                r#"data="a" raw="data: a\n\n""#,
                r#"data="b" unterminated raw="data: b""#,
            ],
        ),
        (
            "UTF-8 text",
            "data: \u{e9}\n\n",
            &["data=\"\u{e9}\" raw=\"data: \u{e9}\\n\\n\""],
        ),
        ("empty stream", "", &[]),
    ];
    let mut failures = Vec::new();
    for (name, input, expected) in cases {
        let whole = parse_chunked(input.as_bytes(), &[usize::MAX]).unwrap();
        let got: Vec<String> = whole.iter().map(describe).collect();
        if got != *expected {
            failures.push(format!(
                "{name}\n  expected: {expected:#?}\n  got:      {got:#?}"
            ));
        }
        for sizes in [&[1][..], &[2, 3], &[7]] {
            let chunked = parse_chunked(input.as_bytes(), sizes).unwrap();
            let rebuilt: Vec<u8> = chunked.iter().flat_map(|e| e.raw().to_vec()).collect();
            if fields(&chunked) != fields(&whole) || rebuilt != input.as_bytes() {
                failures.push(format!(
                    "{name} (chunks {sizes:?})\n  expected: {:#?}\n  got:      {:#?}",
                    fields(&whole),
                    fields(&chunked)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn crlf_split_between_chunks_is_one_line_end() {
    let mut p = SseParser::new(MAX);
    // The CR that ends the blank line arrives alone: the event is complete at once, without
    // waiting for the next chunk.
    let events = p.feed(b"data: a\r\n\r").unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.as_deref(), Some("a"));
    // Its LF arrives with the next event and is not a blank line of its own.
    let events = p.feed(b"\ndata: b\r").unwrap();
    assert!(events.is_empty());
    let events = p.feed(b"\n\r\n").unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.as_deref(), Some("b"));
    assert_eq!(&events[0].raw()[..], b"\ndata: b\r\n\r\n");
    assert_eq!(p.finish().unwrap(), None);
}

#[test]
fn invalid_utf8_is_replaced_in_fields_and_kept_in_raw() {
    let events = parse_chunked(b"data: a\xffb\n\n", &[usize::MAX]).unwrap();
    assert_eq!(events[0].data.as_deref(), Some("a\u{fffd}b"));
    assert_eq!(&events[0].raw()[..], b"data: a\xffb\n\n");
}

#[test]
fn utf8_split_across_chunks() {
    let text = "data: h\u{e9}llo \u{1F600}\n\n".as_bytes();
    for cut in 0..text.len() {
        let events = parse_chunked(text, &[cut.max(1), usize::MAX]).unwrap();
        assert_eq!(
            events[0].data.as_deref(),
            Some("h\u{e9}llo \u{1F600}"),
            "cut at {cut}"
        );
    }
}

#[test]
fn oversized_event_is_refused_and_the_parser_stays_failed() {
    let mut p = SseParser::new(32);
    assert!(p.feed(b"data: 0123456789\n\n").is_ok());
    // An event that never ends: refused as soon as it passes the limit.
    assert!(p.feed(b"data: 0123456789").is_ok());
    assert_eq!(
        p.feed(b"0123456789012345678901234567890123456789"),
        Err(SseError::EventTooLarge { max: 32 })
    );
    assert!(p.feed(b"\n\n").is_err());
    assert!(p.finish().is_err());

    // A complete event that arrives in one chunk larger than the limit is refused too.
    let mut p = SseParser::new(32);
    let big = format!("data: {}\n\n", "x".repeat(40));
    assert_eq!(
        p.feed(big.as_bytes()),
        Err(SseError::EventTooLarge { max: 32 })
    );

    // Many small comment lines without a blank line are one growing event.
    let mut p = SseParser::new(64);
    let mut result = Ok(Vec::new());
    for _ in 0..100 {
        result = p.feed(b":\n");
        if result.is_err() {
            break;
        }
    }
    assert!(result.is_err());
    assert!(p.buffered() <= 64 + 2);
}

#[test]
fn buffering_is_only_the_current_event() {
    let mut p = SseParser::new(64);
    for _ in 0..1000 {
        let events = p.feed(b"data: 0123456789\n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(p.buffered(), 0);
    }
}

#[test]
fn message_data_only_for_message_events() {
    let events = parse_chunked(
        b"data: {}\n\nevent: message\ndata: {}\n\nevent: endpoint\ndata: /x\n\nid: 1\ndata:\n\n",
        &[usize::MAX],
    )
    .unwrap();
    let data: Vec<Option<&str>> = events.iter().map(SseEvent::message_data).collect();
    assert_eq!(data, [Some("{}"), Some("{}"), None, None]);
}

#[test]
fn encodes_events() {
    let cases: &[(OutgoingEvent<'_>, &str)] = &[
        (
            OutgoingEvent {
                event: Some("message"),
                data: r#"{"a":1}"#,
                ..Default::default()
            },
            "event: message\ndata: {\"a\":1}\n\n",
        ),
        (
            OutgoingEvent {
                id: Some("s1-4"),
                event: Some("message"),
                retry: Some(500),
                data: "a\r\nb\rc\nd",
            },
            "id: s1-4\nevent: message\nretry: 500\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
        ),
        (
            OutgoingEvent {
                id: Some("1"),
                data: "",
                ..Default::default()
            },
            "id: 1\ndata: \n\n",
        ),
    ];
    for (event, expected) in cases {
        assert_eq!(
            String::from_utf8(encode(event).unwrap()).unwrap(),
            *expected
        );
    }
    assert_eq!(
        encode(&OutgoingEvent {
            id: Some("a\nb"),
            ..Default::default()
        }),
        Err(EncodeError::BadId)
    );
    assert_eq!(
        encode(&OutgoingEvent {
            id: Some("a\0"),
            ..Default::default()
        }),
        Err(EncodeError::BadId)
    );
    assert_eq!(
        encode(&OutgoingEvent {
            event: Some("a\r"),
            ..Default::default()
        }),
        Err(EncodeError::BadEventType)
    );
    assert_eq!(comment("keep-alive"), b": keep-alive\n\n");
    assert_eq!(comment(""), b":\n\n");
    assert_eq!(comment("a\nb"), b": a\n: b\n\n");
    assert_eq!(message_event("{}"), b"event: message\ndata: {}\n\n");
}

#[test]
fn with_data_keeps_id_type_and_retry() {
    let events = parse_chunked(
        b"id: 9\nevent: message\nretry: 5\n: c\ndata: old\n\n",
        &[usize::MAX],
    )
    .unwrap();
    let new = events[0].with_data("new").unwrap();
    assert_eq!(&new[..], b"id: 9\nevent: message\nretry: 5\ndata: new\n\n");
}

fn stream_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("data: {\"jsonrpc\":\"2.0\"}".to_owned()),
        Just("data:".to_owned()),
        Just("id: 12".to_owned()),
        Just("event: message".to_owned()),
        Just("retry: 3000".to_owned()),
        Just(": keep-alive".to_owned()),
        Just("data: h\u{e9}\u{1F600}".to_owned()),
        "[a-z:\\- ]{0,12}",
        Just(String::new()),
    ]
}

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

proptest! {
    /// Any chunking of any stream gives the same events as one chunk, and the events' bytes put
    /// back together are exactly the input.
    #[test]
    fn chunking_never_changes_the_events(
        lines in prop::collection::vec((stream_piece(), line_end()), 0..24),
        tail in "[a-z: ]{0,5}",
        sizes in prop::collection::vec(1usize..9, 1..8),
    ) {
        let mut input = String::new();
        for (line, end) in &lines {
            input.push_str(line);
            input.push_str(end);
        }
        input.push_str(&tail);
        let whole = parse_chunked(input.as_bytes(), &[usize::MAX]).unwrap();
        let chunked = parse_chunked(input.as_bytes(), &sizes).unwrap();
        prop_assert_eq!(fields(&whole), fields(&chunked));
        for events in [&whole, &chunked] {
            let rebuilt: Vec<u8> = events.iter().flat_map(|e| e.raw().to_vec()).collect();
            prop_assert_eq!(rebuilt, input.as_bytes());
        }
    }

    /// An event rewritten with `with_data` fits its neighbours however the stream was chunked:
    /// rewriting every data event with new data gives the same bytes for every chunking, and
    /// those bytes parse to the original events with the new data.
    #[test]
    fn rewritten_events_fit_whatever_the_chunking(
        lines in prop::collection::vec((stream_piece(), line_end()), 0..24),
        sizes in prop::collection::vec(1usize..9, 1..8),
    ) {
        let mut input = String::new();
        for (line, end) in &lines {
            input.push_str(line);
            input.push_str(end);
        }
        let rewrite = |events: &[SseEvent]| -> Vec<u8> {
            events
                .iter()
                .flat_map(|e| match &e.data {
                    Some(_) if e.terminated => e.with_data("new").unwrap().to_vec(),
                    _ => e.raw().to_vec(),
                })
                .collect()
        };
        let whole = rewrite(&parse_chunked(input.as_bytes(), &[usize::MAX]).unwrap());
        let chunked = rewrite(&parse_chunked(input.as_bytes(), &sizes).unwrap());
        prop_assert_eq!(&whole, &chunked);
        let reparsed = parse_chunked(&whole, &[usize::MAX]).unwrap();
        let original = parse_chunked(input.as_bytes(), &[usize::MAX]).unwrap();
        let with_data: Vec<(Option<String>, Option<String>, Option<String>)> = original
            .iter()
            .filter(|e| e.data.is_some() && e.terminated)
            .map(|e| (e.id.clone(), e.event.clone(), Some("new".to_owned())))
            .collect();
        let reparsed_data: Vec<(Option<String>, Option<String>, Option<String>)> = reparsed
            .iter()
            .filter(|e| e.data.is_some() && e.terminated)
            .map(|e| (e.id.clone(), e.event.clone(), e.data.clone()))
            .collect();
        prop_assert_eq!(with_data, reparsed_data);
    }

    /// Arbitrary bytes in arbitrary chunks: never a panic, and the bytes still add up.
    #[test]
    fn arbitrary_bytes_never_panic(
        input in prop::collection::vec(any::<u8>(), 0..300),
        sizes in prop::collection::vec(1usize..17, 1..5),
    ) {
        let events = parse_chunked(&input, &sizes).unwrap();
        let rebuilt: Vec<u8> = events.iter().flat_map(|e| e.raw().to_vec()).collect();
        prop_assert_eq!(rebuilt, input);
    }

    /// What the encoder writes, the parser reads back (line ends in data become LF).
    #[test]
    fn encode_then_parse(
        id in proptest::option::of("[a-z0-9\\-]{0,8}"),
        event in proptest::option::of("[a-z]{1,8}"),
        retry in proptest::option::of(0u64..100_000),
        data in "[a-z\u{e9}{}\"\r\n ]{0,40}",
    ) {
        let bytes = encode(&OutgoingEvent {
            id: id.as_deref(),
            event: event.as_deref(),
            retry,
            data: &data,
        }).unwrap();
        let events = parse_chunked(&bytes, &[usize::MAX]).unwrap();
        prop_assert_eq!(events.len(), 1);
        let e = &events[0];
        prop_assert_eq!(&e.id, &id);
        prop_assert_eq!(&e.event, &event);
        prop_assert_eq!(e.retry, retry);
        let expected = data.replace("\r\n", "\n").replace('\r', "\n");
        prop_assert_eq!(e.data.as_deref(), Some(expected.as_str()));
        prop_assert!(e.terminated);
    }
}
