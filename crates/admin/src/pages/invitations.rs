//! Invitations by link: admins invite an email with a role (the link shown once, its secret
//! stored as a hash) and revoke open invitations; whoever holds the link joins with that email,
//! signing in first or creating the account on the spot.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use store::Role;
use store::invitation::OpenInvitation;
use time::Duration;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{self, Admin, Member, SignedIn, Visitor};
use crate::error::{Error, Result};
use crate::pages::account::start_session;
use crate::pages::shown_once::{DoneQuery, commit_or_refuse, refused};
use crate::pages::when;
use crate::views::{Page, render};

/// How long a link stays valid unless the admin says otherwise.
pub(crate) const DEFAULT_LIFETIME_DAYS: i64 = 7;
/// The choices the form offers, in days.
const LIFETIME_CHOICES: [i64; 4] = [1, 7, 14, 30];

/// The link that accepts an invitation. Its origin is the one the admin is using (the `Host` of
/// their request), so it works for however this deployment is reached; without a usable `Host`
/// the link is the path alone.
pub(crate) fn accept_url(state: &AppState, headers: &HeaderMap, token: &str) -> String {
    let path = format!("/join/{token}");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    match host {
        Some(host) => {
            let scheme = if state.config.secure_cookies {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}{path}")
        }
        None => path,
    }
}

/// One invitation as the list shows it.
#[derive(Debug)]
pub(crate) struct InvitationRow {
    id: String,
    email: String,
    role: Role,
    status: &'static str,
    invited_by: String,
    expires: String,
    created: String,
}

#[derive(Template)]
#[template(path = "invitations.html")]
pub(crate) struct InvitationsPage {
    page: Page,
    csrf: String,
    invitations: Vec<InvitationRow>,
    roles: Vec<Role>,
    lifetimes: Vec<i64>,
    default_lifetime: i64,
    email: String,
    errors: Vec<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "invitation_link.html")]
pub(crate) struct InvitationLinkPage {
    page: Page,
    email: String,
    role: Role,
    link: String,
    expires: String,
}

async fn invitations_page(
    state: &AppState,
    m: &Member<Admin>,
    email: String,
    errors: Vec<String>,
    notice: Option<String>,
) -> Result<InvitationsPage> {
    let mut tx = state.store.begin(m.org).await?;
    let invitations = store::invitation::list_invitations(&mut tx).await?;
    tx.commit().await?;
    Ok(InvitationsPage {
        page: Page::member("Invitations", "members", m),
        csrf: m.csrf.clone(),
        invitations: invitations
            .into_iter()
            .map(|i| InvitationRow {
                id: i.invitation_id.to_string(),
                email: i.email,
                role: i.role,
                status: i.status.as_str(),
                invited_by: i.invited_by.unwrap_or_default(),
                expires: when(i.expires_at),
                created: when(i.created_at),
            })
            .collect(),
        roles: Role::ALL.to_vec(),
        lifetimes: LIFETIME_CHOICES.to_vec(),
        default_lifetime: DEFAULT_LIFETIME_DAYS,
        email,
        errors,
        notice,
    })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    m: Member<Admin>,
    Query(q): Query<DoneQuery>,
) -> Result<Response> {
    let notice = q.notice("revoked", "Invitation revoked: its link stopped working.");
    Ok(render(
        &invitations_page(&state, &m, String::new(), Vec::new(), notice).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    days: String,
}

pub(crate) async fn invite(
    State(state): State<AppState>,
    m: Member<Admin>,
    headers: HeaderMap,
    Form(f): Form<InviteForm>,
) -> Result<Response> {
    let mut errors = Vec::new();
    let role = f.role.parse::<Role>().ok();
    if role.is_none() {
        errors.push("Choose a role from the list.".to_owned());
    }
    let days = f
        .days
        .parse::<i64>()
        .ok()
        .filter(|d| LIFETIME_CHOICES.contains(d));
    if days.is_none() {
        errors.push("Choose how long the link stays valid from the list.".to_owned());
    }
    if let (Some(role), Some(days)) = (role, days) {
        let mut tx = state.store.begin(m.org).await?;
        let created = store::invitation::create_invitation(
            &mut tx,
            m.actor(),
            &f.email,
            role,
            Duration::days(days),
        )
        .await;
        if let Some(new) = commit_or_refuse(tx, created, &mut errors, |e| match e {
            store::Error::Invalid { reason, .. } => Some(format!("The email {reason}.")),
            _ => None,
        })
        .await?
        {
            return Ok(render(&InvitationLinkPage {
                page: Page::member("Invitation", "members", &m),
                link: accept_url(&state, &headers, new.token.expose()),
                email: new.invitation.email,
                role: new.invitation.role,
                expires: when(new.invitation.expires_at),
            }));
        }
    }
    let email = f.email.chars().take(320).collect();
    Ok(refused(
        &invitations_page(&state, &m, email, errors, None).await?,
    ))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    m: Member<Admin>,
    Path(invitation): Path<String>,
) -> Result<Response> {
    let id: Uuid = invitation.parse().map_err(|_| Error::NotFound)?;
    let mut tx = state.store.begin(m.org).await?;
    store::invitation::revoke_invitation(&mut tx, m.actor(), id).await?;
    tx.commit().await?;
    Ok(Redirect::to("/invitations?done=revoked").into_response())
}

#[derive(Template)]
#[template(path = "join.html")]
pub(crate) struct JoinPage {
    page: Page,
    csrf: String,
    token: String,
    organisation: String,
    email: String,
    role: Role,
    expires: String,
    /// The signed-in person's email, if someone is signed in.
    signed_in_as: Option<String>,
    errors: Vec<String>,
}

fn join_page(
    visitor: &Visitor,
    token: &str,
    open: OpenInvitation,
    errors: Vec<String>,
) -> JoinPage {
    JoinPage {
        page: Page::bare("Join an organisation"),
        csrf: visitor.csrf.clone(),
        token: token.to_owned(),
        organisation: open.organisation_name,
        email: open.email,
        role: open.role,
        expires: when(open.expires_at),
        signed_in_as: visitor.session.as_ref().map(|s| s.email.clone()),
        errors,
    }
}

/// An open invitation, or a 404 that does not say whether it ever existed.
async fn open_invitation(state: &AppState, token: &str) -> Result<OpenInvitation> {
    state
        .store
        .invitation_by_token(token)
        .await?
        .ok_or(Error::NotFound)
}

/// The page behind the link: who invites whom into what, and how to accept.
pub(crate) async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(token): Path<String>,
) -> Result<Response> {
    let open = open_invitation(&state, &token).await?;
    Ok(render(&join_page(&visitor, &token, open, Vec::new())))
}

/// Accepts as the signed-in person, whose email must be the invited one.
pub(crate) async fn accept(
    State(state): State<AppState>,
    visitor: Visitor,
    me: SignedIn,
    Path(token): Path<String>,
) -> Result<Response> {
    let open = open_invitation(&state, &token).await?;
    match state
        .store
        .accept_invitation(&token, me.session.user_id)
        .await
    {
        Ok(accepted) => {
            state
                .store
                .set_session_organisation(me.web_session_id(), accepted.organisation_id)
                .await?;
            Ok(Redirect::to("/servers").into_response())
        }
        Err(store::Error::Invalid { .. }) => {
            let message = format!(
                "This invitation is for {}, and you are signed in as {}. Log out and sign in (or create an account) as {}, or ask for an invitation to your address.",
                open.email, me.session.email, open.email
            );
            let page = join_page(&visitor, &token, open, vec![message]);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignupForm {
    #[serde(default)]
    password: String,
}

/// Creates the invited person's account (with the invited email) and joins, then signs in.
pub(crate) async fn sign_up(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(token): Path<String>,
    Form(f): Form<SignupForm>,
) -> Result<Response> {
    let open = open_invitation(&state, &token).await?;
    if let Err(e) = auth::check_new_password(&f.password) {
        let page = join_page(&visitor, &token, open, vec![e]);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    }
    let hash = auth::hash_password(f.password).await?;
    match state.store.sign_up_invited(&token, &hash).await {
        Ok((user, accepted)) => {
            start_session(&state, &visitor, user, Some(accepted.organisation_id)).await
        }
        // The email has an account: the person signs in with it instead.
        Err(store::Error::Conflict { .. }) => {
            let message = format!(
                "An account with {} exists already. Log in with it, then open this link again to join.",
                open.email
            );
            let page = join_page(&visitor, &token, open, vec![message]);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
