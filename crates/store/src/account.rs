//! People and how they sign in: accounts, memberships and roles, web sessions, failed sign-ins.
//!
//! People are not owned by an organisation (one person may belong to several), so these functions
//! run on the pool as the connecting role, each answering one narrow question about one person or
//! one session. What a person may do inside an organisation is decided by their membership's
//! [`Role`], read afresh with every session lookup.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::admin::record_admin_event;
use crate::secret::{NewToken, Redacted, TokenHash, TokenKind, random_base62};
use crate::{Actor, Error, OrgId, OrgTx, Result, Store, UserId};

/// A member's role; each includes the rights of the ones before it (`Viewer < PolicyManager < Admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    PolicyManager,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::PolicyManager, Role::Admin];

    /// The name Postgres's `member_role` enum uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::PolicyManager => "policy_manager",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::invalid("role", format!("unknown role `{s}`")))
    }
}

/// The longest email accepted (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 320;

/// Normalises an email for storage and lookup: trimmed, and checked to look like one. Case is kept
/// as typed; lookups compare lowercased.
pub fn validate_email(email: &str) -> Result<&str> {
    let email = email.trim();
    let ok = (3..=MAX_EMAIL_CHARS).contains(&email.chars().count())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(Error::invalid("email", "must look like name@example.com"))
    }
}

/// A new account with its organisation, as sign-up creates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedUp {
    pub user_id: UserId,
    pub organisation_id: OrgId,
}

/// A signed-in browser, with the organisation it is looking at and the person's role there
/// (`None` when the person is no longer a member of it).
#[derive(Debug, Clone)]
pub struct WebSession {
    pub web_session_id: Uuid,
    pub user_id: UserId,
    pub email: String,
    pub organisation: Option<SessionOrganisation>,
    /// The synchroniser token every state-changing form of this session must carry.
    pub csrf_token: Redacted<String>,
    pub expires_at: OffsetDateTime,
}

/// The organisation a session looks at, and the person's role in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOrganisation {
    pub organisation_id: OrgId,
    pub name: String,
    pub role: Role,
}

/// A session just created: the cookie value exists only here.
#[derive(Debug, Clone)]
pub struct NewWebSession {
    pub token: Redacted<String>,
    pub expires_at: OffsetDateTime,
}

/// A person's stored password hash (an argon2id PHC string).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: UserId,
    pub password_hash: Option<Redacted<String>>,
}

/// Failed sign-ins seen recently, for throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// For this email from this client address.
    pub email_and_addr: i64,
    /// From this client address, for any email.
    pub addr: i64,
}

impl Store {
    /// Signs a person up: their account, a new organisation, and their admin membership of it, in
    /// one transaction, with the organisation's first admin events.
    #[tracing::instrument(skip(self, password_hash))]
    pub async fn sign_up(
        &self,
        email: &str,
        password_hash: &Redacted<String>,
        organisation_name: &str,
    ) -> Result<SignedUp> {
        let email = validate_email(email)?;
        let organisation_name = organisation_name.trim();
        if organisation_name.is_empty() || organisation_name.chars().count() > 200 {
            return Err(Error::invalid(
                "organisation name",
                "must be 1 to 200 characters",
            ));
        }
        let mut tx = self.pool().begin().await?;
        let user_id = sqlx::query_scalar!(
            "insert into app_user (email, password_hash) values ($1, $2) returning app_user_id",
            email,
            password_hash.expose(),
        )
        .fetch_one(&mut *tx)
        .await?;
        let org_id = sqlx::query_scalar!(
            "insert into organisation (name) values ($1) returning organisation_id",
            organisation_name,
        )
        .fetch_one(&mut *tx)
        .await?;
        let user = UserId::from_uuid(user_id);
        let org = OrgId::from_uuid(org_id);
        let mut tx = OrgTx::scope(tx, org, self.keyring().clone()).await?;
        record_admin_event(
            &mut tx,
            Actor::User(user),
            "organisation.create",
            Some(org_id),
            json!({ "name": organisation_name }),
        )
        .await?;
        add_member(&mut tx, Actor::User(user), user, Role::Admin).await?;
        tx.commit().await?;
        Ok(SignedUp {
            user_id: user,
            organisation_id: org,
        })
    }

    /// Creates an account that belongs to no organisation yet (an invited person, a test).
    #[tracing::instrument(skip(self, password_hash))]
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &Redacted<String>,
    ) -> Result<UserId> {
        let email = validate_email(email)?;
        let id = sqlx::query_scalar!(
            "insert into app_user (email, password_hash) values ($1, $2) returning app_user_id",
            email,
            password_hash.expose(),
        )
        .fetch_one(self.pool())
        .await?;
        Ok(UserId::from_uuid(id))
    }

    /// The password hash of the account with this email (compared case-insensitively), if any.
    #[tracing::instrument(skip(self))]
    pub async fn credentials_by_email(&self, email: &str) -> Result<Option<Credentials>> {
        let row = sqlx::query!(
            "select app_user_id, password_hash from app_user where lower(email) = lower($1)",
            email.trim(),
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| Credentials {
            user_id: UserId::from_uuid(r.app_user_id),
            password_hash: r.password_hash.map(Redacted::new),
        }))
    }

    /// The password hash of one account.
    #[tracing::instrument(skip(self))]
    pub async fn credentials_of_user(&self, user: UserId) -> Result<Credentials> {
        let hash = sqlx::query_scalar!(
            "select password_hash from app_user where app_user_id = $1",
            user.as_uuid(),
        )
        .fetch_optional(self.pool())
        .await?
        .ok_or(Error::NotFound { what: "user" })?;
        Ok(Credentials {
            user_id: user,
            password_hash: hash.map(Redacted::new),
        })
    }

    /// Replaces a person's password hash and signs out every other session of theirs.
    #[tracing::instrument(skip(self, password_hash))]
    pub async fn change_password(
        &self,
        user: UserId,
        password_hash: &Redacted<String>,
        keep_session: Uuid,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query!(
            "update app_user set password_hash = $2 where app_user_id = $1",
            user.as_uuid(),
            password_hash.expose(),
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "delete from web_session where app_user_id = $1 and web_session_id <> $2",
            user.as_uuid(),
            keep_session,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts a web session for a person looking at `organisation` (their first membership's when
    /// `None`). Returns the cookie value, which is stored only as a hash.
    #[tracing::instrument(skip(self, user_agent))]
    pub async fn create_web_session(
        &self,
        user: UserId,
        organisation: Option<OrgId>,
        user_agent: Option<&str>,
        client_addr: Option<IpAddr>,
        lifetime: Duration,
    ) -> Result<NewWebSession> {
        let token = NewToken::generate(TokenKind::WebSession);
        let csrf = random_base62(43);
        let expires_at = OffsetDateTime::now_utc() + lifetime;
        let user_agent = user_agent.map(|ua| ua.chars().take(1000).collect::<String>());
        sqlx::query!(
            r#"
            insert into web_session (app_user_id, token_hash, organisation_id, user_agent, client_addr,
                                     expires_at, csrf_token)
            values ($1, $2,
                    coalesce($3, (select m.organisation_id from membership m
                                  where m.app_user_id = $1 order by m.created_at limit 1)),
                    $4, $5::text::inet, $6, $7)
            "#,
            user.as_uuid(),
            &token.hash.0[..],
            organisation.map(|o| o.as_uuid()),
            user_agent,
            client_addr.map(|a| a.to_string()),
            expires_at,
            csrf,
        )
        .execute(self.pool())
        .await?;
        Ok(NewWebSession {
            token: token.token,
            expires_at,
        })
    }

    /// The live session a cookie value belongs to, with the person's current role in the
    /// session's organisation; `None` for an unknown or expired cookie.
    #[tracing::instrument(skip_all)]
    pub async fn web_session(&self, token: &str) -> Result<Option<WebSession>> {
        if !token.starts_with(TokenKind::WebSession.prefix()) || token.len() > 100 {
            return Ok(None);
        }
        let row = sqlx::query!(
            r#"
            select s.web_session_id, s.app_user_id, u.email, s.csrf_token, s.expires_at,
                   o.organisation_id as "organisation_id?", o.name as "organisation_name?",
                   m.role::text as "role?"
            from web_session s
            join app_user u on u.app_user_id = s.app_user_id
            left join membership m on m.organisation_id = s.organisation_id and m.app_user_id = s.app_user_id
            left join organisation o on o.organisation_id = m.organisation_id
            where s.token_hash = $1 and s.expires_at > now()
            "#,
            &TokenHash::of(token).0[..],
        )
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let organisation = match (r.organisation_id, r.organisation_name, r.role) {
            (Some(id), Some(name), Some(role)) => Some(SessionOrganisation {
                organisation_id: OrgId::from_uuid(id),
                name,
                role: role.parse()?,
            }),
            _ => None,
        };
        let Some(csrf) = r.csrf_token else {
            // Sessions from before synchroniser tokens existed cannot post forms; treat as signed out.
            return Ok(None);
        };
        Ok(Some(WebSession {
            web_session_id: r.web_session_id,
            user_id: UserId::from_uuid(r.app_user_id),
            email: r.email,
            organisation,
            csrf_token: Redacted::new(csrf),
            expires_at: r.expires_at,
        }))
    }

    /// Points a session at another organisation of the person's (after they joined one); a
    /// session cannot be pointed at an organisation the person is not a member of.
    #[tracing::instrument(skip(self))]
    pub async fn set_session_organisation(&self, web_session: Uuid, org: OrgId) -> Result<()> {
        sqlx::query!(
            r#"
            update web_session s set organisation_id = $2
            where s.web_session_id = $1
              and exists (select 1 from membership m
                          where m.organisation_id = $2 and m.app_user_id = s.app_user_id)
            "#,
            web_session,
            org.as_uuid(),
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends the session a cookie value belongs to (signing out); unknown cookies are ignored.
    #[tracing::instrument(skip_all)]
    pub async fn delete_web_session(&self, token: &str) -> Result<()> {
        sqlx::query!(
            "delete from web_session where token_hash = $1",
            &TokenHash::of(token).0[..],
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Failed sign-ins since `since`, for this email and address, and for this address alone.
    #[tracing::instrument(skip(self))]
    pub async fn login_failures_since(
        &self,
        email: &str,
        client_addr: Option<IpAddr>,
        since: OffsetDateTime,
    ) -> Result<LoginFailures> {
        let r = sqlx::query!(
            r#"
            select count(*) filter (where email = lower($1)) as "email_and_addr!",
                   count(*) as "addr!"
            from login_failure
            where client_addr is not distinct from $2::text::inet and occurred_at > $3
            "#,
            email.trim(),
            client_addr.map(|a| a.to_string()),
            since,
        )
        .fetch_one(self.pool())
        .await?;
        Ok(LoginFailures {
            email_and_addr: r.email_and_addr,
            addr: r.addr,
        })
    }

    /// Records a failed sign-in, and forgets failures older than a day.
    #[tracing::instrument(skip(self))]
    pub async fn record_login_failure(
        &self,
        email: &str,
        client_addr: Option<IpAddr>,
    ) -> Result<()> {
        let email: String = email.trim().chars().take(MAX_EMAIL_CHARS).collect();
        sqlx::query!(
            "insert into login_failure (email, client_addr) values (lower($1), $2::text::inet)",
            email,
            client_addr.map(|a| a.to_string()),
        )
        .execute(self.pool())
        .await?;
        sqlx::query!("delete from login_failure where occurred_at < now() - interval '1 day'")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets the failures of an email from an address after it signed in successfully.
    #[tracing::instrument(skip(self))]
    pub async fn clear_login_failures(
        &self,
        email: &str,
        client_addr: Option<IpAddr>,
    ) -> Result<()> {
        sqlx::query!(
            "delete from login_failure where email = lower($1) and client_addr is not distinct from $2::text::inet",
            email.trim(),
            client_addr.map(|a| a.to_string()),
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// Makes a person a member of the transaction's organisation with `role` (or changes their role).
#[tracing::instrument(skip(tx))]
pub async fn add_member(tx: &mut OrgTx, actor: Actor, user: UserId, role: Role) -> Result<()> {
    sqlx::query!(
        r#"
        insert into membership (organisation_id, app_user_id, role) values ($1, $2, $3::text::member_role)
        on conflict (organisation_id, app_user_id) do update set role = excluded.role
        "#,
        tx.org().as_uuid(),
        user.as_uuid(),
        role.as_str(),
    )
    .execute(tx.conn())
    .await?;
    record_admin_event(
        tx,
        actor,
        "member.set_role",
        Some(user.as_uuid()),
        json!({ "role": role.as_str() }),
    )
    .await
}

/// A member of the transaction's organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// Every member of the transaction's organisation, admins first, then by email.
#[tracing::instrument(skip(tx))]
pub async fn list_members(tx: &mut OrgTx) -> Result<Vec<Member>> {
    let rows = sqlx::query!(
        r#"
        select m.app_user_id, u.email, m.role::text as "role!", m.created_at
        from membership m
        join app_user u on u.app_user_id = m.app_user_id
        where m.organisation_id = $1
        order by m.role desc, lower(u.email)
        "#,
        tx.org().as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Member {
                user_id: UserId::from_uuid(r.app_user_id),
                email: r.email,
                role: r.role.parse()?,
                since: r.created_at,
            })
        })
        .collect()
}

/// Changes a member's role. An organisation always keeps at least one admin, so the last admin
/// cannot be demoted; someone who is not a member is not found.
#[tracing::instrument(skip(tx))]
pub async fn set_member_role(tx: &mut OrgTx, actor: Actor, user: UserId, role: Role) -> Result<()> {
    let org = tx.org().as_uuid();
    // Lock the organisation's admin memberships so two demotions cannot both pass the check.
    let admins: Vec<Uuid> = sqlx::query_scalar!(
        r#"
        select app_user_id from membership
        where organisation_id = $1 and role = 'admin'
        for update
        "#,
        org,
    )
    .fetch_all(tx.conn())
    .await?;
    if role < Role::Admin && admins == [user.as_uuid()] {
        return Err(Error::invalid(
            "role",
            "an organisation keeps at least one admin; make someone else admin first",
        ));
    }
    let updated = sqlx::query_scalar!(
        r#"
        update membership set role = $3::text::member_role
        where organisation_id = $1 and app_user_id = $2
        returning app_user_id
        "#,
        org,
        user.as_uuid(),
        role.as_str(),
    )
    .fetch_optional(tx.conn())
    .await?;
    if updated.is_none() {
        return Err(Error::NotFound { what: "member" });
    }
    record_admin_event(
        tx,
        actor,
        "member.set_role",
        Some(user.as_uuid()),
        json!({ "role": role.as_str() }),
    )
    .await
}
