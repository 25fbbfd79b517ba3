//! Signing up, in and out, and the person's own account.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use store::account::{MAX_EMAIL_CHARS, validate_email};
use time::{Duration, OffsetDateTime};

use crate::AppState;
use crate::auth::{
    self, MAX_PASSWORD_BYTES, Member, PRESESSION_COOKIE, SESSION_COOKIE, SignedIn, Viewer, Visitor,
    set_cookie,
};
use crate::error::{Error, Result};
use crate::pages::check_len;
use crate::views::{AccountPage, LoginPage, Page, SignupPage, render};

/// How long a sign-in lasts.
const SESSION_LIFETIME: Duration = Duration::days(7);
/// Sign-in throttling: failures counted over this window...
const THROTTLE_WINDOW: Duration = Duration::minutes(15);
/// ...at most this many for one email from one address (password guessing)...
const MAX_FAILURES_PER_EMAIL_AND_ADDR: i64 = 5;
/// ...and this many from one address for any emails (password spraying).
const MAX_FAILURES_PER_ADDR: i64 = 50;

/// The one message for every failed sign-in, so it never tells whether the email has an account.
const BAD_CREDENTIALS: &str = "Email or password is incorrect.";

pub(crate) async fn home(visitor: Visitor) -> Redirect {
    match visitor.session {
        Some(_) => Redirect::to("/servers"),
        None => Redirect::to("/login"),
    }
}

pub(crate) async fn signup_form(visitor: Visitor) -> Response {
    render(&SignupPage {
        page: Page::bare("Sign up"),
        csrf: visitor.csrf,
        email: String::new(),
        organisation: String::new(),
        errors: Vec::new(),
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    organisation: String,
}

pub(crate) async fn signup(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<SignupForm>,
) -> Result<Response> {
    let mut errors = Vec::new();
    check_len("Email", &form.email, 1, MAX_EMAIL_CHARS, &mut errors);
    if errors.is_empty() && validate_email(&form.email).is_err() {
        errors.push("Enter an email address like name@example.com.".into());
    }
    if let Err(e) = auth::check_new_password(&form.password) {
        errors.push(e);
    }
    check_len("Organisation name", &form.organisation, 1, 200, &mut errors);
    let again = |errors: Vec<String>, status: StatusCode| {
        let page = SignupPage {
            page: Page::bare("Sign up"),
            csrf: visitor.csrf.clone(),
            email: form.email.chars().take(MAX_EMAIL_CHARS).collect(),
            organisation: form.organisation.chars().take(200).collect(),
            errors,
        };
        (status, render(&page)).into_response()
    };
    if !errors.is_empty() {
        return Ok(again(errors, StatusCode::UNPROCESSABLE_ENTITY));
    }
    let hash = auth::hash_password(form.password.clone()).await?;
    let signed_up = match state
        .store
        .sign_up(&form.email, &hash, &form.organisation)
        .await
    {
        Ok(s) => s,
        // Saying "this email is taken" would tell anyone which emails have accounts.
        Err(store::Error::Conflict { .. }) => {
            return Ok(again(
                vec![
                    "This account could not be created. If you already have one, log in instead."
                        .into(),
                ],
                StatusCode::UNPROCESSABLE_ENTITY,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    start_session(
        &state,
        &visitor,
        signed_up.user_id,
        Some(signed_up.organisation_id),
    )
    .await
}

/// Signs the person in (a new session cookie) and sends them to the servers page.
pub(crate) async fn start_session(
    state: &AppState,
    visitor: &Visitor,
    user: store::UserId,
    org: Option<store::OrgId>,
) -> Result<Response> {
    start_session_to(state, visitor, user, org, "/servers").await
}

/// `next` as a place on this site to go after signing in: a local path, never another origin.
fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 300
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    ok.then_some(next)
}

async fn start_session_to(
    state: &AppState,
    visitor: &Visitor,
    user: store::UserId,
    org: Option<store::OrgId>,
    to: &str,
) -> Result<Response> {
    let session = state
        .store
        .create_web_session(
            user,
            org,
            visitor.user_agent.as_deref(),
            visitor.client_addr,
            SESSION_LIFETIME,
        )
        .await?;
    let secure = state.config.secure_cookies;
    let mut response = Redirect::to(to).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            session.token.expose(),
            SESSION_LIFETIME.whole_seconds(),
            secure,
        ),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(PRESESSION_COOKIE, "", 0, secure),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    /// Where to go after signing in (a local path), e.g. back to an invitation.
    #[serde(default)]
    next: String,
}

pub(crate) async fn login_form(visitor: Visitor, Query(q): Query<LoginQuery>) -> Response {
    render(&LoginPage {
        page: Page::bare("Log in"),
        csrf: visitor.csrf,
        email: String::new(),
        next: local_path(&q.next).unwrap_or_default().to_owned(),
        error: None,
        notice: None,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<LoginForm>,
) -> Result<Response> {
    let email: String = form.email.trim().chars().take(MAX_EMAIL_CHARS).collect();
    let next = local_path(&form.next).unwrap_or("/servers").to_owned();
    let failed = |status: StatusCode, message: &str| {
        let page = LoginPage {
            page: Page::bare("Log in"),
            csrf: visitor.csrf.clone(),
            email: email.clone(),
            next: local_path(&form.next).unwrap_or_default().to_owned(),
            error: Some(message.to_owned()),
            notice: None,
        };
        (status, render(&page)).into_response()
    };
    if email.is_empty() || form.password.is_empty() {
        return Ok(failed(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your email and password.",
        ));
    }
    if form.password.len() > MAX_PASSWORD_BYTES {
        return Ok(failed(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS));
    }
    let since = OffsetDateTime::now_utc() - THROTTLE_WINDOW;
    let failures = state
        .store
        .login_failures_since(&email, visitor.client_addr, since)
        .await?;
    if failures.email_and_addr >= MAX_FAILURES_PER_EMAIL_AND_ADDR
        || failures.addr >= MAX_FAILURES_PER_ADDR
    {
        return Err(Error::Throttled {
            retry_after_secs: THROTTLE_WINDOW.whole_seconds().unsigned_abs(),
        });
    }
    let credentials = state.store.credentials_by_email(&email).await?;
    let (user, stored) = match credentials {
        Some(c) => (Some(c.user_id), c.password_hash),
        None => (None, None),
    };
    let valid = auth::verify_password(form.password, stored).await?;
    let Some(user) = user.filter(|_| valid) else {
        state
            .store
            .record_login_failure(&email, visitor.client_addr)
            .await?;
        return Ok(failed(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS));
    };
    state
        .store
        .clear_login_failures(&email, visitor.client_addr)
        .await?;
    start_session_to(&state, &visitor, user, None, &next).await
}

pub(crate) async fn logout(State(state): State<AppState>, visitor: Visitor) -> Result<Response> {
    if let Some(token) = &visitor.session_token {
        state.store.delete_web_session(token.expose()).await?;
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, state.config.secure_cookies),
    );
    Ok(response)
}

fn account_page(m: &Member<Viewer>, errors: Vec<String>, notice: Option<String>) -> AccountPage {
    AccountPage {
        page: Page::member("Your account", "account", m),
        csrf: m.csrf.clone(),
        email: m.email.clone(),
        errors,
        notice,
    }
}

pub(crate) async fn account(m: Member<Viewer>) -> Response {
    render(&account_page(&m, Vec::new(), None))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub(crate) async fn change_password(
    State(state): State<AppState>,
    m: Member<Viewer>,
    me: SignedIn,
    Form(form): Form<PasswordForm>,
) -> Result<Response> {
    let mut errors = Vec::new();
    if let Err(e) = auth::check_new_password(&form.new) {
        errors.push(e);
    }
    if form.new != form.confirm {
        errors.push("The new password and its repetition differ.".into());
    }
    if form.current.len() > MAX_PASSWORD_BYTES {
        errors.push("The current password is incorrect.".into());
    }
    if errors.is_empty() {
        let stored = state.store.credentials_of_user(m.user).await?.password_hash;
        if !auth::verify_password(form.current, stored).await? {
            errors.push("The current password is incorrect.".into());
        }
    }
    if !errors.is_empty() {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&account_page(&m, errors, None)),
        )
            .into_response());
    }
    let hash = auth::hash_password(form.new).await?;
    state
        .store
        .change_password(m.user, &hash, me.web_session_id())
        .await?;
    Ok(render(&account_page(
        &m,
        Vec::new(),
        Some("Your password was changed. Your other sessions were signed out.".into()),
    )))
}
