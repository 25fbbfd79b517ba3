//! Secrets at rest and in transit through this crate: sealed upstream credentials, bearer tokens
//! (grants, API keys) stored only as hashes, and wrappers whose `Debug` never shows the secret.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A value that must not appear in logs: `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The secret itself; every call site is a place where it leaves this wrapper.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The HKDF label of the key that seals secrets at rest. `GATEHOUSE_SECRET_KEY` also keys other
/// things (session ids, in `mcp`), each under its own label, so no two purposes share a key.
const SEALING_KEY_LABEL: &[u8] = b"gatehouse/v1/sealed-secrets-at-rest";

/// The key that seals secrets at rest, derived from the deployment's secret, with the version
/// recorded beside every row it seals.
#[derive(Clone)]
pub struct SealingKey {
    version: i32,
    key: [u8; 32],
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("version", &self.version)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl SealingKey {
    /// The sealing key derived (HKDF-SHA256) from the deployment's 32-byte secret.
    pub fn from_secret(version: i32, secret: &[u8; 32]) -> Result<Self, String> {
        if version <= 0 {
            return Err(format!(
                "key version must be a positive integer, got {version}"
            ));
        }
        let mut key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, secret)
            .expand(SEALING_KEY_LABEL, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Ok(Self { version, key })
    }

    /// The sealing key for a secret in its base64 form (standard alphabet, padding optional), as
    /// `GATEHOUSE_SECRET_KEY` holds it.
    pub fn from_base64(version: i32, text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = BASE64
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| "not valid base64".to_owned())?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("must decode to 32 bytes, got {}", b.len()))?;
        Self::from_secret(version, &secret)
    }

    /// A fresh 32-byte secret in the base64 form `GATEHOUSE_SECRET_KEY` holds.
    pub fn generate_secret_base64() -> String {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        BASE64.encode(secret)
    }

    /// A key from a fresh random secret, for tests and for commands that never seal.
    pub fn generate(version: i32) -> Self {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Self::from_secret(version, &secret).expect("callers pass a positive version")
    }

    pub fn version(&self) -> i32 {
        self.version
    }
}

/// The current sealing key and the older ones still needed to open rows sealed before a rotation.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: SealingKey,
    previous: BTreeMap<i32, SealingKey>,
}

/// Sealed bytes as stored: a 24-byte random nonce followed by the XChaCha20-Poly1305 ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_version: i32,
    pub bytes: Vec<u8>,
}

impl Keyring {
    pub fn new(current: SealingKey) -> Self {
        Self {
            current,
            previous: BTreeMap::new(),
        }
    }

    /// Adds a key that only opens (rows sealed before the rotation to the current key).
    pub fn with_previous(mut self, key: SealingKey) -> Self {
        if key.version != self.current.version {
            self.previous.insert(key.version, key);
        }
        self
    }

    pub fn current_version(&self) -> i32 {
        self.current.version
    }

    /// Seals `plaintext` under the current key. `context` is authenticated but not stored (the row's
    /// id), so a sealed value copied into another row does not open there.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Sealed {
        let cipher = XChaCha20Poly1305::new((&self.current.key).into());
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_version: self.current.version,
            bytes,
        }
    }

    /// Opens a value sealed by [`Keyring::seal`] under any key of the ring.
    pub fn open(&self, sealed: &Sealed, context: &[u8]) -> Result<Redacted<Vec<u8>>> {
        let key = if sealed.key_version == self.current.version {
            &self.current
        } else {
            self.previous.get(&sealed.key_version).ok_or_else(|| {
                Error::Secret(format!(
                    "key version {} is not configured",
                    sealed.key_version
                ))
            })?
        };
        if sealed.bytes.len() < 24 {
            return Err(Error::Secret("sealed value is truncated".into()));
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().expect("split at 24 bytes");
        XChaCha20Poly1305::new((&key.key).into())
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map(Redacted)
            .map_err(|_| Error::Secret("authentication failed (wrong key or altered data)".into()))
    }

    /// Opens `sealed` under whichever key sealed it and seals it again under the current key.
    pub fn reseal(&self, sealed: &Sealed, context: &[u8]) -> Result<Sealed> {
        let plain = self.open(sealed, context)?;
        Ok(self.seal(plain.expose(), context))
    }
}

/// The kind of bearer token, which decides its recognisable prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `ghg_`: a grant token sent by agents to the gateway.
    Grant,
    /// `gha_`: an organisation API key for the admin API.
    ApiKey,
    /// `ghw_`: a web session cookie of the admin app.
    WebSession,
    /// `ghi_`: the secret of an invitation link.
    Invitation,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Grant => "ghg_",
            TokenKind::ApiKey => "gha_",
            TokenKind::WebSession => "ghw_",
            TokenKind::Invitation => "ghi_",
        }
    }
}

/// Base62 keeps a token one "word" for double-click selection and safe in URLs and headers.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 44 base62 characters carry 44 * log2(62) ≈ 262 bits of randomness.
const TOKEN_RANDOM_CHARS: usize = 44;
/// How many characters (prefix included) are kept in clear to tell tokens apart in lists.
const DISPLAY_PREFIX_CHARS: usize = 10;

/// A newly minted bearer token: shown once to its owner, then only its hash is kept.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: Redacted<String>,
    pub hash: TokenHash,
    pub display_prefix: String,
}

/// SHA-256 of a bearer token: what the database stores and looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

/// `chars` uniformly random base62 characters from the operating system's generator.
pub fn random_base62(chars: usize) -> String {
    let mut out = String::with_capacity(chars);
    let mut buf = [0u8; 64];
    while out.len() < chars {
        OsRng.fill_bytes(&mut buf);
        // Rejection sampling keeps every character uniform: 248 = 4 * 62.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == chars {
                break;
            }
            out.push(BASE62[usize::from(*b % 62)] as char);
        }
    }
    out
}

impl NewToken {
    pub fn generate(kind: TokenKind) -> Self {
        let mut token = String::with_capacity(4 + TOKEN_RANDOM_CHARS);
        token.push_str(kind.prefix());
        token.push_str(&random_base62(TOKEN_RANDOM_CHARS));
        let hash = TokenHash::of(&token);
        let display_prefix = token[..DISPLAY_PREFIX_CHARS].to_owned();
        Self {
            token: Redacted(token),
            hash,
            display_prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_prefix_and_enough_randomness() {
        let a = NewToken::generate(TokenKind::Grant);
        let b = NewToken::generate(TokenKind::Grant);
        assert!(a.token.expose().starts_with("ghg_"));
        assert_eq!(a.token.expose().len(), 48);
        assert_ne!(a.token.expose(), b.token.expose());
        assert_eq!(a.hash, TokenHash::of(a.token.expose()));
        assert!(a.token.expose().starts_with(&a.display_prefix));
        assert_eq!(format!("{:?}", a.token), "[redacted]");
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let old = SealingKey::generate(1);
        let ring = Keyring::new(old.clone());
        let sealed = ring.seal(b"Authorization: Bearer x", b"server-1");
        assert_eq!(
            ring.open(&sealed, b"server-1").unwrap().expose(),
            b"Authorization: Bearer x"
        );
        assert!(ring.open(&sealed, b"server-2").is_err());
        let rotated = Keyring::new(SealingKey::generate(2)).with_previous(old);
        assert!(rotated.open(&sealed, b"server-1").is_ok());
        assert!(
            Keyring::new(SealingKey::generate(2))
                .open(&sealed, b"server-1")
                .is_err()
        );
        assert!(!format!("{ring:?}").contains(&format!("{:?}", ring.current.key)));
    }

    #[test]
    fn the_same_secret_gives_the_same_key_and_a_derived_one() {
        let secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let a = Keyring::new(SealingKey::from_base64(1, secret).unwrap());
        let b = Keyring::new(SealingKey::from_base64(1, secret).unwrap());
        assert!(b.open(&a.seal(b"x", b"c"), b"c").is_ok());
        assert_ne!(
            &a.current.key, b"0123456789abcdef0123456789abcdef",
            "the secret is not used as the key"
        );
        assert!(SealingKey::from_base64(1, "c2hvcnQ=").is_err());
        assert!(SealingKey::from_base64(0, secret).is_err());
    }
}
