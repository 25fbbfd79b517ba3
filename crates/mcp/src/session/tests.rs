use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const GRANT: &str = "e3a1c2d4-9b8f-4e6d-a1b2-c3d4e5f60718";
const SERVER: &str = "7d1e9a44-2c55-4a9b-8b7e-31c0d1a2b3c4";
const BINDING: Binding<'static> = Binding {
    grant_id: GRANT,
    server_id: SERVER,
};
const NOW: u64 = 1_790_000_000;

fn key() -> SessionKey {
    SessionKey::derive(SECRET)
}

#[test]
fn seals_and_opens() {
    let sealed = seal(&key(), "up-123", BINDING, NOW, None).unwrap();
    let session = open(&key(), &sealed, BINDING, NOW + 86_400 * 365).unwrap();
    assert_eq!(
        session,
        Session {
            upstream_session_id: "up-123".into(),
            issued_at: NOW,
            expires_at: None
        }
    );
}

#[test]
fn any_replica_with_the_secret_opens_it() {
    let sealed = seal(&SessionKey::derive(SECRET), "up", BINDING, NOW, None).unwrap();
    assert!(open(&SessionKey::derive(SECRET), &sealed, BINDING, NOW).is_ok());
    assert_eq!(
        open(
            &SessionKey::derive(b"another secret"),
            &sealed,
            BINDING,
            NOW
        ),
        Err(SessionError::NotOurs)
    );
}

#[test]
fn bound_to_grant_and_server() {
    let sealed = seal(&key(), "up", BINDING, NOW, None).unwrap();
    let other_grant = Binding {
        grant_id: "11111111-9b8f-4e6d-a1b2-c3d4e5f60718",
        ..BINDING
    };
    let other_server = Binding {
        server_id: "22222222-2c55-4a9b-8b7e-31c0d1a2b3c4",
        ..BINDING
    };
    assert_eq!(
        open(&key(), &sealed, other_grant, NOW),
        Err(SessionError::OtherGrant)
    );
    assert_eq!(
        open(&key(), &sealed, other_server, NOW),
        Err(SessionError::OtherServer)
    );
}

#[test]
fn expiry() {
    let sealed = seal(&key(), "up", BINDING, NOW, Some(NOW + 60)).unwrap();
    assert_eq!(
        open(&key(), &sealed, BINDING, NOW + 59).unwrap().expires_at,
        Some(NOW + 60)
    );
    assert_eq!(
        open(&key(), &sealed, BINDING, NOW + 60),
        Err(SessionError::Expired)
    );
}

#[test]
fn refuses_bad_upstream_ids() {
    for bad in [
        "",
        "has space",
        "tab\t",
        "caf\u{e9}",
        "nl\n",
        &"x".repeat(MAX_UPSTREAM_SESSION_ID + 1),
    ] {
        assert_eq!(
            seal(&key(), bad, BINDING, NOW, None),
            Err(SessionError::InvalidUpstreamId),
            "{bad:?}"
        );
    }
    assert!(seal(&key(), "!~", BINDING, NOW, None).is_ok());
}

#[test]
fn tampering_is_detected() {
    let sealed = seal(&key(), "up-1", BINDING, NOW, None).unwrap();
    let parts: Vec<&str> = sealed.split('.').collect();
    assert_eq!(parts.len(), 3);

    // Claims rewritten to another upstream session, signature kept.
    let forged_claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"usid":"up-2","grant":"{GRANT}","srv":"{SERVER}","iat":{NOW}}}"#
    ));
    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    assert_eq!(
        open(&key(), &forged, BINDING, NOW),
        Err(SessionError::NotOurs)
    );

    // "alg": "none" with no signature.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    assert_eq!(
        open(&key(), &unsigned, BINDING, NOW),
        Err(SessionError::NotOurs)
    );

    for garbage in [
        "",
        "abc",
        "a.b.c",
        "..",
        &format!("{sealed}x"),
        &"a".repeat(MAX_SEALED_LEN + 1),
    ] {
        assert_eq!(
            open(&key(), garbage, BINDING, NOW),
            Err(SessionError::NotOurs),
            "{garbage:?}"
        );
    }
}

#[test]
fn key_debug_is_redacted() {
    assert_eq!(format!("{:?}", key()), "SessionKey(redacted)");
}

proptest! {
    /// Any valid upstream id round-trips, and the sealed id is a valid header value of visible
    /// ASCII only.
    #[test]
    fn round_trip_and_visible_ascii(upstream in "[!-~]{1,64}", iat in 0u64..4_000_000_000) {
        let sealed = seal(&key(), &upstream, BINDING, iat, None).unwrap();
        prop_assert!(sealed.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        prop_assert!(http::HeaderValue::from_str(&sealed).is_ok());
        let session = open(&key(), &sealed, BINDING, iat).unwrap();
        prop_assert_eq!(session.upstream_session_id, upstream);
    }

    /// Flipping any one character of a sealed id makes it unopenable (or, at worst, an
    /// equivalent base64 spelling of the same token, which opens to the same session).
    #[test]
    fn single_character_changes_are_refused(position in 0usize..200, replacement in "[A-Za-z0-9_.-]") {
        let sealed = seal(&key(), "up-1", BINDING, NOW, None).unwrap();
        let position = position % sealed.len();
        let mut changed = sealed.clone();
        changed.replace_range(position..=position, &replacement);
        match open(&key(), &changed, BINDING, NOW) {
            Ok(session) => prop_assert_eq!(session.upstream_session_id, "up-1"),
            Err(e) => prop_assert_eq!(e, SessionError::NotOurs),
        }
    }
}
