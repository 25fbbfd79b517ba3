//! Members and their roles, and invitations by link.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use store::invitation::Invitation;
use store::{Role, UserId};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api::auth::ApiKey;
use crate::api::problem::{ApiResult, Problem};
use crate::api::{ApiJson, secret};
use crate::auth::{Admin, Viewer};
use crate::pages::invitations::{DEFAULT_LIFETIME_DAYS, accept_url};

/// A member's role; each includes the rights of the ones before it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RoleName {
    Viewer,
    PolicyManager,
    Admin,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Viewer => Role::Viewer,
            RoleName::PolicyManager => Role::PolicyManager,
            RoleName::Admin => Role::Admin,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::Viewer => RoleName::Viewer,
            Role::PolicyManager => RoleName::PolicyManager,
            Role::Admin => RoleName::Admin,
        }
    }
}

/// A member of the organisation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemberOut {
    user_id: Uuid,
    email: String,
    role: RoleName,
    #[serde(with = "time::serde::rfc3339")]
    since: OffsetDateTime,
}

/// Every member, admins first, then by email.
#[utoipa::path(get, path = "/members", tag = "members", security(("api_key" = ["viewer"])),
    responses((status = 200, body = Vec<MemberOut>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
) -> ApiResult<Json<Vec<MemberOut>>> {
    let mut tx = state.store.begin(key.org).await?;
    let members = store::account::list_members(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(
        members
            .into_iter()
            .map(|m| MemberOut {
                user_id: m.user_id.as_uuid(),
                email: m.email,
                role: m.role.into(),
                since: m.since,
            })
            .collect(),
    ))
}

/// A member's new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetRoleIn {
    role: RoleName,
}

/// Changes a member's role. The organisation's last admin cannot step down (422).
#[utoipa::path(put, path = "/members/{user}/role", tag = "members", security(("api_key" = ["admin"])),
    params(("user" = Uuid, Path)), request_body = SetRoleIn,
    responses((status = 200, body = MemberOut)))]
pub(crate) async fn set_role(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    Path(user): Path<String>,
    ApiJson(input): ApiJson<SetRoleIn>,
) -> ApiResult<Json<MemberOut>> {
    let user: UserId = user.parse().map_err(|_| Problem::not_found())?;
    let mut tx = state.store.begin(key.org).await?;
    store::account::set_member_role(&mut tx, key.actor(), user, input.role.into()).await?;
    let member = store::account::list_members(&mut tx)
        .await?
        .into_iter()
        .find(|m| m.user_id == user)
        .ok_or_else(Problem::not_found)?;
    tx.commit().await?;
    Ok(Json(MemberOut {
        user_id: member.user_id.as_uuid(),
        email: member.email,
        role: member.role.into(),
        since: member.since,
    }))
}

/// An invitation (never its link's secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InvitationOut {
    id: Uuid,
    email: String,
    role: RoleName,
    /// `pending`, `accepted`, `revoked` or `expired`.
    status: String,
    /// The email of the admin who invited, when a person did.
    invited_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

fn invitation_out(i: Invitation) -> InvitationOut {
    InvitationOut {
        id: i.invitation_id,
        email: i.email,
        role: i.role.into(),
        status: i.status.as_str().to_owned(),
        invited_by: i.invited_by,
        expires_at: i.expires_at,
        created_at: i.created_at,
    }
}

/// Every invitation of the organisation, newest first.
#[utoipa::path(get, path = "/invitations", tag = "members", security(("api_key" = ["admin"])),
    responses((status = 200, body = Vec<InvitationOut>)))]
pub(crate) async fn list_invitations(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
) -> ApiResult<Json<Vec<InvitationOut>>> {
    let mut tx = state.store.begin(key.org).await?;
    let invitations = store::invitation::list_invitations(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(invitations.into_iter().map(invitation_out).collect()))
}

/// Whom to invite.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InviteIn {
    email: String,
    role: RoleName,
    /// How long the link stays valid, 1 to 30 days (default 7).
    expires_in_days: Option<i64>,
}

/// A new invitation and its link, which is shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewInvitationOut {
    invitation: InvitationOut,
    /// Send this link to the person; it works once.
    accept_url: String,
}

/// Invites an email into the organisation with a role. Whoever opens the link signs in (or
/// creates an account) with that email and joins.
#[utoipa::path(post, path = "/invitations", tag = "members", security(("api_key" = ["admin"])),
    request_body = InviteIn,
    responses((status = 201, body = NewInvitationOut)))]
pub(crate) async fn invite(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<InviteIn>,
) -> ApiResult<Response> {
    let days = input.expires_in_days.unwrap_or(DEFAULT_LIFETIME_DAYS);
    let mut tx = state.store.begin(key.org).await?;
    let new = store::invitation::create_invitation(
        &mut tx,
        key.actor(),
        &input.email,
        input.role.into(),
        Duration::days(days),
    )
    .await?;
    tx.commit().await?;
    Ok(secret(
        StatusCode::CREATED,
        NewInvitationOut {
            accept_url: accept_url(&state, &headers, new.token.expose()),
            invitation: invitation_out(new.invitation),
        },
    ))
}

/// Revokes an invitation that was not accepted yet: its link stops working.
#[utoipa::path(post, path = "/invitations/{invitation}/revoke", tag = "members", security(("api_key" = ["admin"])),
    params(("invitation" = Uuid, Path)),
    responses((status = 200, body = InvitationOut)))]
pub(crate) async fn revoke_invitation(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    Path(invitation): Path<String>,
) -> ApiResult<Json<InvitationOut>> {
    let id: Uuid = invitation.parse().map_err(|_| Problem::not_found())?;
    let mut tx = state.store.begin(key.org).await?;
    let i = store::invitation::revoke_invitation(&mut tx, key.actor(), id).await?;
    tx.commit().await?;
    Ok(Json(invitation_out(i)))
}
