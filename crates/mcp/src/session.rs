//! Sealed session ids (DESIGN.md §6): the `Mcp-Session-Id` a client sees is a token the gateway
//! signs, carrying the upstream's session id and bound to one grant on one server, so any replica
//! holding the shared secret can open it and nothing about the session lives in a replica.
//!
//! The token is a JWT (HS256, via `jsonwebtoken`) with claims `usid` (the upstream's session id),
//! `grant`, `srv` (server), `iat` and an optional `exp`. It is signed, not encrypted: the client
//! can read the upstream's session id, its own grant id and the server id, none of which is a
//! credential; it cannot change them. The signing key is derived from `GATEHOUSE_SECRET_KEY` with
//! HKDF-SHA256 and a label of its own, so it differs from every other key taken from that secret
//! (the credential-sealing key, other token kinds).
//!
//! Only a session the upstream created is sealed: a stateless upstream (no `Mcp-Session-Id` in
//! its `initialize` response, or 2026-07-28, which has no sessions) gets no session id from the
//! gateway either. Time arrives as an argument (Unix seconds); this module reads no clock.

use std::fmt;

use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The HKDF label of the session-id key. Changing it invalidates every session id in use.
const KEY_LABEL: &[u8] = b"gatehouse/mcp-session-id/v1";

/// The longest upstream session id accepted for sealing (the specification sets no limit; a
/// header has to fit in the client's and the gateway's header limits).
pub const MAX_UPSTREAM_SESSION_ID: usize = 1024;

/// The longest sealed id opened; anything longer is refused before it is decoded.
pub const MAX_SEALED_LEN: usize = 4096;

/// The key that seals and opens session ids. Its `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct SessionKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl SessionKey {
    /// Derives the session-id key from the deployment's secret (the decoded bytes of
    /// `GATEHOUSE_SECRET_KEY`). Every replica given the same secret derives the same key.
    pub fn derive(secret: &[u8]) -> SessionKey {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, secret)
            .expand(KEY_LABEL, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SessionKey {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
        }
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(redacted)")
    }
}

/// What a session id is bound to: checked on every request that presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The grant whose token opened the session.
    pub grant_id: &'a str,
    /// The server (the proxy URL's `server_id`).
    pub server_id: &'a str,
}

/// The claims of a sealed session id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    usid: String,
    grant: String,
    srv: String,
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

/// An opened session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The upstream's own session id, to send upstream as `Mcp-Session-Id`.
    pub upstream_session_id: String,
    /// When the gateway sealed it (Unix seconds).
    pub issued_at: u64,
    /// When it stops being accepted, if it was sealed with an expiry.
    pub expires_at: Option<u64>,
}

/// Why a session id could not be sealed or opened. For opening, every variant means the same to
/// the client: this session does not exist for you (the gateway answers `404`, after which MCP
/// clients start a new session); the variants are for logs and the audit event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Sealing: the upstream's session id is empty, too long, or not visible ASCII (0x21–0x7E),
    /// as the specification requires. The upstream is broken; do not pass it on.
    #[error(
        "the upstream's session id is not 1 to {MAX_UPSTREAM_SESSION_ID} visible ASCII characters"
    )]
    InvalidUpstreamId,
    /// Opening: not a session id this deployment sealed (malformed, tampered with, another key).
    #[error("the session id is not one Gatehouse issued")]
    NotOurs,
    /// Opening: sealed for another grant.
    #[error("the session id belongs to another grant")]
    OtherGrant,
    /// Opening: sealed for another server.
    #[error("the session id belongs to another server")]
    OtherServer,
    /// Opening: past its expiry.
    #[error("the session id has expired")]
    Expired,
}

/// Seals the upstream's session id for a client: the result is the `Mcp-Session-Id` to send the
/// client, visible ASCII only.
pub fn seal(
    key: &SessionKey,
    upstream_session_id: &str,
    binding: Binding<'_>,
    issued_at: u64,
    expires_at: Option<u64>,
) -> Result<String, SessionError> {
    if !is_visible_ascii(upstream_session_id) || upstream_session_id.len() > MAX_UPSTREAM_SESSION_ID
    {
        return Err(SessionError::InvalidUpstreamId);
    }
    let claims = Claims {
        usid: upstream_session_id.to_owned(),
        grant: binding.grant_id.to_owned(),
        srv: binding.server_id.to_owned(),
        iat: issued_at,
        exp: expires_at,
    };
    Ok(
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key.encoding)
            .expect("HS256 signing of plain claims cannot fail"),
    )
}

/// Opens a session id a client presented with `binding`'s grant on `binding`'s server, at time
/// `now` (Unix seconds).
pub fn open(
    key: &SessionKey,
    sealed: &str,
    binding: Binding<'_>,
    now: u64,
) -> Result<Session, SessionError> {
    if sealed.len() > MAX_SEALED_LEN {
        return Err(SessionError::NotOurs);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is optional and checked below against the `now` we were given, not the system clock.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(sealed, &key.decoding, &validation)
        .map_err(|_| SessionError::NotOurs)?
        .claims;
    if claims.grant != binding.grant_id {
        return Err(SessionError::OtherGrant);
    }
    if claims.srv != binding.server_id {
        return Err(SessionError::OtherServer);
    }
    if claims.exp.is_some_and(|exp| now >= exp) {
        return Err(SessionError::Expired);
    }
    if !is_visible_ascii(&claims.usid) {
        // Signed by us, so only a bug could put it there; refuse rather than forward it.
        return Err(SessionError::NotOurs);
    }
    Ok(Session {
        upstream_session_id: claims.usid,
        issued_at: claims.iat,
        expires_at: claims.exp,
    })
}

fn is_visible_ascii(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests;
