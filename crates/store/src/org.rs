//! Organisations, and the operator's lookups from a bare id to its organisation.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::admin::record_admin_event;
use crate::error::NotFoundExt;
use crate::{Actor, ApprovalId, Error, GrantId, OrgId, OrgTx, Result, ServerId, Store};

/// An organisation as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Organisation {
    pub organisation_id: OrgId,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

fn validate_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid(
            "organisation name",
            "must be 1 to 200 characters",
        ));
    }
    Ok(name)
}

impl Store {
    /// Creates an organisation. There is no organisation to scope to before it exists, so the
    /// insert runs as the connecting role; the rest of the transaction (its first admin event) is
    /// scoped to the new organisation.
    #[tracing::instrument(skip(self))]
    pub async fn create_organisation(&self, actor: Actor, name: &str) -> Result<Organisation> {
        let name = validate_name(name)?;
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query!(
            r#"
            insert into organisation (name) values ($1)
            returning organisation_id, name, created_at
            "#,
            name
        )
        .fetch_one(&mut *tx)
        .await?;
        let org = Organisation {
            organisation_id: OrgId::from_uuid(row.organisation_id),
            name: row.name,
            created_at: row.created_at,
        };
        let mut tx = OrgTx::scope(tx, org.organisation_id, self.keyring().clone()).await?;
        record_admin_event(
            &mut tx,
            actor,
            "organisation.create",
            Some(org.organisation_id.as_uuid()),
            json!({ "name": org.name }),
        )
        .await?;
        tx.commit().await?;
        Ok(org)
    }

    /// The organisation that owns a server. For the operator CLI and the gateway's routing, which
    /// start from a server id alone; it reveals nothing but the owner's id.
    #[tracing::instrument(skip(self))]
    pub async fn organisation_of_server(&self, server: ServerId) -> Result<OrgId> {
        sqlx::query_scalar!(
            "select organisation_id from server where server_id = $1",
            server.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .or_not_found("server")
        .map(OrgId::from_uuid)
    }

    /// Every organisation's id, oldest first; for operator commands that run over all of them
    /// (`gatehouse audit verify` without `--org`). Reveals ids only.
    #[tracing::instrument(skip(self))]
    pub async fn organisation_ids(&self) -> Result<Vec<OrgId>> {
        Ok(sqlx::query_scalar!(
            "select organisation_id from organisation order by created_at, organisation_id"
        )
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(OrgId::from_uuid)
        .collect())
    }

    /// The organisation that owns a grant; for the operator CLI, which is given a grant id alone.
    #[tracing::instrument(skip(self))]
    pub async fn organisation_of_grant(&self, grant: GrantId) -> Result<OrgId> {
        sqlx::query_scalar!(
            "select organisation_id from access_grant where access_grant_id = $1",
            grant.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .or_not_found("grant")
        .map(OrgId::from_uuid)
    }

    /// The organisation an approval belongs to, for operator commands given only its id
    /// (`gatehouse approval approve ID`).
    pub async fn organisation_of_approval(&self, approval: ApprovalId) -> Result<OrgId> {
        sqlx::query_scalar!(
            "select organisation_id from approval where approval_id = $1",
            approval.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .or_not_found("approval")
        .map(OrgId::from_uuid)
    }
}

/// The transaction's own organisation.
#[tracing::instrument(skip(tx))]
pub async fn organisation(tx: &mut OrgTx) -> Result<Organisation> {
    let org = tx.org().as_uuid();
    let row = sqlx::query!(
        "select organisation_id, name, created_at from organisation where organisation_id = $1",
        org
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("organisation")?;
    Ok(Organisation {
        organisation_id: OrgId::from_uuid(row.organisation_id),
        name: row.name,
        created_at: row.created_at,
    })
}
