//! Invitations: an admin offers membership to an email with a role; a single-use link (its token
//! stored only as a hash) lets that person join, with a new account or an existing one.
//!
//! Accepting starts from a bare token, without an organisation in hand, so [`Store::invitation_by_token`]
//! and the accept functions run on the pool and answer one narrow question each: "which open
//! invitation has this token hash?". The membership itself is written in a transaction scoped to
//! the invitation's organisation, with its admin event.

use serde::Serialize;
use serde_json::json;
use sqlx::{Postgres, Transaction};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::account::validate_email;
use crate::admin::record_admin_event;
use crate::error::NotFoundExt;
use crate::secret::{NewToken, Redacted, TokenHash, TokenKind};
use crate::{Actor, Error, OrgId, OrgTx, Result, Role, Store, UserId};

/// The longest an invitation may stay open.
pub const MAX_INVITATION_LIFETIME: Duration = Duration::days(30);

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    fn of(
        accepted_at: Option<OffsetDateTime>,
        revoked_at: Option<OffsetDateTime>,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Self {
        if accepted_at.is_some() {
            Self::Accepted
        } else if revoked_at.is_some() {
            Self::Revoked
        } else if expires_at <= now {
            Self::Expired
        } else {
            Self::Pending
        }
    }
}

/// An invitation as admins see it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invitation {
    pub invitation_id: Uuid,
    pub email: String,
    pub role: Role,
    pub status: InvitationStatus,
    /// The email of the admin who invited, when that person still exists.
    pub invited_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An invitation together with its token, which exists only in this value: show the link once.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub invitation: Invitation,
    pub token: Redacted<String>,
}

/// An open invitation as the person holding its link sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvitation {
    pub invitation_id: Uuid,
    pub organisation_id: OrgId,
    pub organisation_name: String,
    pub email: String,
    pub role: Role,
    pub expires_at: OffsetDateTime,
}

/// What accepting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub organisation_id: OrgId,
    /// The person's role in the organisation now: the invited one, or the one they already had.
    pub role: Role,
    /// Whether the person was a member already (their role is then left as it was).
    pub was_member: bool,
}

/// Invites `email` into the transaction's organisation with `role`, open for `lifetime`.
#[tracing::instrument(skip(tx))]
pub async fn create_invitation(
    tx: &mut OrgTx,
    actor: Actor,
    email: &str,
    role: Role,
    lifetime: Duration,
) -> Result<NewInvitation> {
    let email = validate_email(email)?;
    if lifetime <= Duration::ZERO || lifetime > MAX_INVITATION_LIFETIME {
        return Err(Error::invalid(
            "expiry",
            format!(
                "must be between now and {} days ahead",
                MAX_INVITATION_LIFETIME.whole_days()
            ),
        ));
    }
    let token = NewToken::generate(TokenKind::Invitation);
    let expires_at = OffsetDateTime::now_utc() + lifetime;
    let id = sqlx::query_scalar!(
        r#"
        insert into invitation (organisation_id, email, role, token_hash, invited_by, expires_at)
        values ($1, $2, $3::text::member_role, $4, $5, $6)
        returning invitation_id
        "#,
        tx.org().as_uuid(),
        email,
        role.as_str(),
        &token.hash.0[..],
        actor.user(),
        expires_at,
    )
    .fetch_one(tx.conn())
    .await?;
    record_admin_event(
        tx,
        actor,
        "invitation.create",
        Some(id),
        json!({ "email": email, "role": role.as_str(), "expires_at": expires_at.unix_timestamp() }),
    )
    .await?;
    Ok(NewInvitation {
        invitation: invitation_by_id(tx, id).await?,
        token: token.token,
    })
}

/// One invitation of the transaction's organisation.
#[tracing::instrument(skip(tx))]
pub async fn invitation_by_id(tx: &mut OrgTx, invitation: Uuid) -> Result<Invitation> {
    let now = OffsetDateTime::now_utc();
    let r = sqlx::query!(
        r#"
        select i.invitation_id, i.email, i.role::text as "role!", u.email as "invited_by?",
               i.expires_at, i.accepted_at, i.revoked_at, i.created_at
        from invitation i
        left join app_user u on u.app_user_id = i.invited_by
        where i.organisation_id = $1 and i.invitation_id = $2
        "#,
        tx.org().as_uuid(),
        invitation,
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("invitation")?;
    Ok(Invitation {
        invitation_id: r.invitation_id,
        email: r.email,
        role: r.role.parse()?,
        status: InvitationStatus::of(r.accepted_at, r.revoked_at, r.expires_at, now),
        invited_by: r.invited_by,
        expires_at: r.expires_at,
        created_at: r.created_at,
    })
}

/// Every invitation of the transaction's organisation, newest first.
#[tracing::instrument(skip(tx))]
pub async fn list_invitations(tx: &mut OrgTx) -> Result<Vec<Invitation>> {
    let now = OffsetDateTime::now_utc();
    let rows = sqlx::query!(
        r#"
        select i.invitation_id, i.email, i.role::text as "role!", u.email as "invited_by?",
               i.expires_at, i.accepted_at, i.revoked_at, i.created_at
        from invitation i
        left join app_user u on u.app_user_id = i.invited_by
        where i.organisation_id = $1
        order by i.created_at desc, i.invitation_id
        limit 500
        "#,
        tx.org().as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Invitation {
                invitation_id: r.invitation_id,
                email: r.email,
                role: r.role.parse()?,
                status: InvitationStatus::of(r.accepted_at, r.revoked_at, r.expires_at, now),
                invited_by: r.invited_by,
                expires_at: r.expires_at,
                created_at: r.created_at,
            })
        })
        .collect()
}

/// Revokes an invitation that was not accepted yet; its link stops working.
#[tracing::instrument(skip(tx))]
pub async fn revoke_invitation(
    tx: &mut OrgTx,
    actor: Actor,
    invitation: Uuid,
) -> Result<Invitation> {
    let current = invitation_by_id(tx, invitation).await?;
    if current.status == InvitationStatus::Accepted {
        return Err(Error::invalid(
            "invitation",
            "was accepted already; change the member's role or remove them instead",
        ));
    }
    sqlx::query!(
        r#"
        update invitation set revoked_at = coalesce(revoked_at, now())
        where organisation_id = $1 and invitation_id = $2 and accepted_at is null
        "#,
        tx.org().as_uuid(),
        invitation,
    )
    .execute(tx.conn())
    .await?;
    record_admin_event(
        tx,
        actor,
        "invitation.revoke",
        Some(invitation),
        json!({ "email": current.email }),
    )
    .await?;
    invitation_by_id(tx, invitation).await
}

impl Store {
    /// The open invitation (neither accepted, revoked nor expired) a link's token belongs to.
    #[tracing::instrument(skip_all)]
    pub async fn invitation_by_token(&self, token: &str) -> Result<Option<OpenInvitation>> {
        if !token.starts_with(TokenKind::Invitation.prefix()) || token.len() > 100 {
            return Ok(None);
        }
        let row = sqlx::query!(
            r#"
            select i.invitation_id, i.organisation_id, o.name, i.email, i.role::text as "role!",
                   i.expires_at
            from invitation i
            join organisation o on o.organisation_id = i.organisation_id
            where i.token_hash = $1 and i.accepted_at is null and i.revoked_at is null
              and i.expires_at > now()
            "#,
            &TokenHash::of(token).0[..],
        )
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(OpenInvitation {
                invitation_id: r.invitation_id,
                organisation_id: OrgId::from_uuid(r.organisation_id),
                organisation_name: r.name,
                email: r.email,
                role: r.role.parse()?,
                expires_at: r.expires_at,
            })
        })
        .transpose()
    }

    /// Accepts an open invitation for an existing person, whose account email must be the
    /// invited one. A person who is a member already keeps their role. Single use: the invitation
    /// row is locked and marked accepted in the same transaction as the membership.
    #[tracing::instrument(skip(self, token))]
    pub async fn accept_invitation(&self, token: &str, user: UserId) -> Result<Accepted> {
        let mut tx = self.pool().begin().await?;
        let open = lock_open_invitation(&mut tx, token).await?;
        let email = sqlx::query_scalar!(
            "select email from app_user where app_user_id = $1",
            user.as_uuid()
        )
        .fetch_optional(&mut *tx)
        .await
        .or_not_found("user")?;
        if !email.eq_ignore_ascii_case(&open.email) {
            return Err(Error::invalid(
                "invitation",
                format!("is for {}, not for {email}", open.email),
            ));
        }
        let accepted = join(tx, self, open, user).await?;
        Ok(accepted)
    }

    /// Creates the account of an invited person (with the invited email) and accepts the
    /// invitation, in one transaction: an invalid invitation creates no account.
    #[tracing::instrument(skip(self, token, password_hash))]
    pub async fn sign_up_invited(
        &self,
        token: &str,
        password_hash: &Redacted<String>,
    ) -> Result<(UserId, Accepted)> {
        let mut tx = self.pool().begin().await?;
        let open = lock_open_invitation(&mut tx, token).await?;
        let user = sqlx::query_scalar!(
            "insert into app_user (email, password_hash) values ($1, $2) returning app_user_id",
            open.email,
            password_hash.expose(),
        )
        .fetch_one(&mut *tx)
        .await
        .map(UserId::from_uuid)?;
        let accepted = join(tx, self, open, user).await?;
        Ok((user, accepted))
    }
}

/// The open invitation with this token, locked for the rest of the transaction.
async fn lock_open_invitation(
    tx: &mut Transaction<'static, Postgres>,
    token: &str,
) -> Result<OpenInvitation> {
    let gone = Error::NotFound {
        what: "invitation (it may have been used, revoked or expired)",
    };
    if !token.starts_with(TokenKind::Invitation.prefix()) || token.len() > 100 {
        return Err(gone);
    }
    let row = sqlx::query!(
        r#"
        select i.invitation_id, i.organisation_id, o.name, i.email, i.role::text as "role!",
               i.expires_at
        from invitation i
        join organisation o on o.organisation_id = i.organisation_id
        where i.token_hash = $1 and i.accepted_at is null and i.revoked_at is null
          and i.expires_at > now()
        for update of i
        "#,
        &TokenHash::of(token).0[..],
    )
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(gone)?;
    Ok(OpenInvitation {
        invitation_id: row.invitation_id,
        organisation_id: OrgId::from_uuid(row.organisation_id),
        organisation_name: row.name,
        email: row.email,
        role: row.role.parse()?,
        expires_at: row.expires_at,
    })
}

/// Makes `user` a member (unless they are one), marks the invitation accepted, records it, commits.
async fn join(
    tx: Transaction<'static, Postgres>,
    store: &Store,
    open: OpenInvitation,
    user: UserId,
) -> Result<Accepted> {
    let mut tx = OrgTx::scope(tx, open.organisation_id, store.keyring().clone()).await?;
    let existing = sqlx::query_scalar!(
        r#"
        select role::text as "role!" from membership
        where organisation_id = $1 and app_user_id = $2
        "#,
        open.organisation_id.as_uuid(),
        user.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await?;
    let (role, was_member) = match existing {
        Some(role) => (role.parse()?, true),
        None => {
            crate::account::add_member(&mut tx, Actor::User(user), user, open.role).await?;
            (open.role, false)
        }
    };
    sqlx::query!(
        "update invitation set accepted_at = now() where organisation_id = $1 and invitation_id = $2",
        open.organisation_id.as_uuid(),
        open.invitation_id,
    )
    .execute(tx.conn())
    .await?;
    record_admin_event(
        &mut tx,
        Actor::User(user),
        "invitation.accept",
        Some(open.invitation_id),
        json!({ "email": open.email, "role": role.as_str(), "was_member": was_member }),
    )
    .await?;
    tx.commit().await?;
    Ok(Accepted {
        organisation_id: open.organisation_id,
        role,
        was_member,
    })
}
