//! Who is asking and what they may do: the session cookie, the synchroniser token every
//! state-changing form carries, role checks, and password hashing.
//!
//! [`session_layer`] runs before every handler. It loads the session from its cookie, and for every
//! request that is not GET/HEAD/OPTIONS it reads the form body (bounded) and refuses it unless its
//! `csrf` field equals the session's token (or, before sign-in, the pre-session cookie's). So a
//! handler cannot forget CSRF protection: an unprotected state change cannot reach it.
//! Handlers then ask for a [`Member<R>`], which refuses anyone below role `R` with 403.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use store::account::WebSession;
use store::secret::{Redacted, random_base62};
use store::{OrgId, Role, UserId};
use uuid::Uuid;

use crate::AppState;
use crate::error::{Error, Result};

/// The session cookie; its value is a `ghw_` token stored only as a hash.
pub(crate) const SESSION_COOKIE: &str = "gatehouse_session";
/// Before sign-in, forms are protected by a random token in this cookie (double submit).
pub(crate) const PRESESSION_COOKIE: &str = "gatehouse_presession";
/// The most a form body may hold (the policy editor's documents are the largest input).
pub(crate) const MAX_FORM_BYTES: usize = 1024 * 1024 + 16 * 1024;

/// What the session layer learned about the request, for handlers and extractors.
#[derive(Debug, Clone)]
pub(crate) struct Visitor {
    pub(crate) session: Option<Arc<WebSession>>,
    pub(crate) session_token: Option<Redacted<String>>,
    /// The token to put into forms rendered for this visitor.
    pub(crate) csrf: String,
    pub(crate) client_addr: Option<IpAddr>,
    pub(crate) user_agent: Option<String>,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Lax always, Secure when served over https.
pub(crate) fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("cookie names and base62 values are valid header text")
}

fn same_secret(a: &str, b: &str) -> bool {
    // Comparing digests keeps the comparison's timing independent of where the inputs differ.
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

fn plausible_token(value: &str) -> bool {
    (32..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Loads the session and enforces the synchroniser token; see the module documentation.
pub(crate) async fn session_layer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match guard(&state, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn guard(
    state: &AppState,
    request: Request,
    next: Next,
) -> std::result::Result<Response, Response> {
    let headers = request.headers();
    let session_token = cookie(headers, SESSION_COOKIE).map(str::to_owned);
    let session = match &session_token {
        Some(token) => state
            .store
            .web_session(token)
            .await
            .map_err(|e| Error::from(e).into_response())?
            .map(Arc::new),
        None => None,
    };
    let presession = cookie(headers, PRESESSION_COOKIE)
        .filter(|v| plausible_token(v))
        .map(str::to_owned);
    let mut new_presession = None;
    let csrf = match (&session, &presession) {
        (Some(s), _) => s.csrf_token.expose().clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => {
            let token = random_base62(43);
            new_presession = Some(token.clone());
            token
        }
    };
    let client_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(1000).collect());

    let mut request = request;
    if !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| Error::TooLarge.into_response())?;
        let submitted = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        // A pre-session token made just now cannot have been put into a form yet.
        let expected = match (&session, &presession) {
            (Some(s), _) => Some(s.csrf_token.expose().as_str()),
            (None, Some(p)) => Some(p.as_str()),
            (None, None) => None,
        };
        let valid =
            matches!((expected, submitted.as_deref()), (Some(e), Some(s)) if same_secret(e, s));
        if !valid {
            return Err(Error::Csrf.into_response());
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(Visitor {
        session,
        session_token: session_token.map(Redacted::new),
        csrf,
        client_addr,
        user_agent,
    });
    let mut response = next.run(request).await;
    if let Some(token) = new_presession {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(
                PRESESSION_COOKIE,
                &token,
                12 * 3600,
                state.config.secure_cookies,
            ),
        );
    }
    Ok(response)
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts
            .extensions
            .get::<Visitor>()
            .cloned()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("the session layer did not run")))
    }
}

/// A role bound for [`Member`].
pub(crate) trait MinRole: Send + Sync {
    const ROLE: Role;
}

/// Reads everything but secrets.
#[derive(Debug)]
pub(crate) struct Viewer;
/// Also edits policies and decides approvals.
#[derive(Debug)]
pub(crate) struct PolicyManager;
/// Also manages servers, grants and members.
#[derive(Debug)]
pub(crate) struct Admin;

impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for PolicyManager {
    const ROLE: Role = Role::PolicyManager;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// A signed-in member of the session's organisation with at least role `R`. Every page and action
/// of the organisation takes one; the bound in the handler's signature is the access rule.
#[derive(Debug)]
pub(crate) struct Member<R> {
    pub(crate) user: UserId,
    pub(crate) email: String,
    pub(crate) org: OrgId,
    pub(crate) org_name: String,
    pub(crate) role: Role,
    pub(crate) csrf: String,
    /// Approvals of the organisation waiting for a decision (the badge in the navigation).
    pub(crate) pending_approvals: i64,
    _bound: PhantomData<R>,
}

impl<R> Member<R> {
    pub(crate) fn actor(&self) -> store::Actor {
        store::Actor::User(self.user)
    }

    /// Whether the member could do what needs `role` (to show or hide buttons; the routes check
    /// again themselves).
    pub(crate) fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

impl<R: MinRole> FromRequestParts<AppState> for Member<R> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        let session = visitor.session.ok_or(Error::SignInRequired)?;
        let org = session.organisation.as_ref().ok_or(Error::NoOrganisation)?;
        if org.role < R::ROLE {
            return Err(Error::Forbidden { needed: R::ROLE });
        }
        // One indexed count (the partial index of pending approvals) for the navigation's badge.
        let mut tx = state.store.begin(org.organisation_id).await?;
        let pending_approvals = store::approval::pending_approval_count(&mut tx).await?;
        tx.commit().await?;
        Ok(Member {
            user: session.user_id,
            email: session.email.clone(),
            org: org.organisation_id,
            org_name: org.name.clone(),
            role: org.role,
            csrf: visitor.csrf,
            pending_approvals,
            _bound: PhantomData,
        })
    }
}

/// A signed-in person, member of an organisation or not (their own account pages).
#[derive(Debug)]
pub(crate) struct SignedIn {
    pub(crate) session: Arc<WebSession>,
}

impl SignedIn {
    pub(crate) fn web_session_id(&self) -> Uuid {
        self.session.web_session_id
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        let session = visitor.session.ok_or(Error::SignInRequired)?;
        Ok(SignedIn { session })
    }
}

/// Password rules: long enough to resist guessing, short enough that hashing stays cheap.
pub(crate) const MIN_PASSWORD_CHARS: usize = 10;
pub(crate) const MAX_PASSWORD_BYTES: usize = 512;

pub(crate) fn check_new_password(password: &str) -> std::result::Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "Use at least {MIN_PASSWORD_CHARS} characters for the password."
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "Use at most {MAX_PASSWORD_BYTES} bytes for the password."
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id (the crate's defaults are OWASP's recommended parameters), on
/// the blocking pool so a burst of sign-ins never stalls the async runtime.
pub(crate) async fn hash_password(password: String) -> Result<Redacted<String>> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| Redacted::new(h.to_string()))
            .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

/// A hash of a random password, checked against when the email is unknown so that a sign-in takes
/// as long whether or not the account exists.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(random_base62(24).as_bytes(), &salt)
        .expect("hashing a random password")
        .to_string()
});

/// Verifies a password against a stored hash, or against the dummy hash when there is none; on the
/// blocking pool.
pub(crate) async fn verify_password(
    password: String,
    stored: Option<Redacted<String>>,
) -> Result<bool> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let (hash, real) = match &stored {
            Some(h) => (h.expose().as_str(), true),
            None => (DUMMY_HASH.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && real
    })
    .await
    .map_err(|e| Error::Internal(e.into()))
}

/// Forces the dummy hash to be computed at start-up rather than during the first sign-in.
pub(crate) fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}
