//! Tool drift: a live tool whose definition differs from the pinned one, or that was never
//! pinned. The gateway records each (server, tool, live pin hash) once, with the live definition
//! kept for the diff; an admin re-pins it (a new snapshot with that tool's live definition) or
//! dismisses it (the tool stays hidden, and that definition is not reported again).
//!
//! Recording is deduplicated by the database: at most one open drift per server, tool and live
//! hash (`tool_drift_open_unique`), and none for a live hash that was dismissed. The admin event
//! `tool.drift_detected` is written in the transaction that inserted the row, so each drift is
//! audited exactly once however many replicas see it.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::admin::record_admin_event;
use crate::error::NotFoundExt;
use crate::server::{PinnedTool, latest_pinned_tools, pin_tool_snapshot};
use crate::{Actor, Error, OrgTx, Result, ServerId};

/// How a live tool differs from the pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Pinned under another definition.
    Changed,
    /// Not pinned at all.
    Added,
}

impl DriftKind {
    fn as_str(self) -> &'static str {
        match self {
            DriftKind::Changed => "changed",
            DriftKind::Added => "added",
        }
    }
}

/// What the gateway saw: a live tool that the pins do not admit.
#[derive(Debug, Clone)]
pub struct ObservedDrift {
    pub server: ServerId,
    pub tool_name: String,
    /// The pin of the tool in the latest snapshot, if it has one.
    pub pinned_hash: Option<[u8; 32]>,
    pub live_hash: [u8; 32],
    pub live_definition: Value,
}

/// An open drift as the admin app shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub drift_id: Uuid,
    pub server_id: ServerId,
    pub tool_name: String,
    /// `changed` or `added` (`removed` is never recorded: a tool that is gone needs no hiding).
    pub kind: String,
    /// The tool's definition in the latest snapshot (`None` for a tool never pinned).
    pub pinned_definition: Option<Value>,
    pub live_definition: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
}

/// Records a drift unless it is already open or was dismissed. Returns whether it is new (then
/// also audited as `tool.drift_detected`).
#[tracing::instrument(skip(tx, drift), fields(server = %drift.server, tool = %drift.tool_name))]
pub async fn record_drift(tx: &mut OrgTx, drift: &ObservedDrift) -> Result<bool> {
    if drift.tool_name.is_empty() || drift.tool_name.len() > 200 {
        return Err(Error::invalid("tool name", "must be 1 to 200 bytes"));
    }
    let kind = if drift.pinned_hash.is_some() {
        DriftKind::Changed
    } else {
        DriftKind::Added
    };
    let inserted = sqlx::query_scalar!(
        r#"
        insert into tool_drift (organisation_id, server_id, tool_name, kind, pinned_hash, live_hash,
                                live_definition)
        select $1, $2, $3, $4::text::tool_drift_kind, $5, $6, $7
        where not exists (
            select 1 from tool_drift d
            where d.organisation_id = $1 and d.server_id = $2 and d.tool_name = $3
              and d.live_hash = $6 and d.resolution = 'dismissed')
        on conflict (server_id, tool_name, coalesce(live_hash, '\x'::bytea)) where resolved_at is null
        do nothing
        returning tool_drift_id
        "#,
        tx.org().as_uuid(),
        drift.server.as_uuid(),
        drift.tool_name,
        kind.as_str(),
        drift.pinned_hash.as_ref().map(|h| &h[..]),
        &drift.live_hash[..],
        drift.live_definition,
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(drift_id) = inserted else {
        return Ok(false);
    };
    record_admin_event(
        tx,
        Actor::Gateway,
        "tool.drift_detected",
        Some(drift.server.as_uuid()),
        json!({ "tool_drift_id": drift_id, "tool": drift.tool_name, "kind": kind.as_str(),
                "pinned_hash": drift.pinned_hash.map(|h| crate::audit::hex(&h)),
                "live_hash": crate::audit::hex(&drift.live_hash) }),
    )
    .await?;
    Ok(true)
}

/// The open drifts of one server (or of every server when `None`), oldest first, each with the
/// pinned definition it differs from.
#[tracing::instrument(skip(tx))]
pub async fn open_drifts(tx: &mut OrgTx, server: Option<ServerId>) -> Result<Vec<Drift>> {
    let rows = sqlx::query!(
        r#"
        select d.tool_drift_id, d.server_id, d.tool_name, d.kind::text as "kind!",
               d.live_definition as "live_definition!", d.first_seen_at,
               (select e.definition from tool_snapshot_entry e
                where e.organisation_id = d.organisation_id and e.tool_name = d.tool_name
                  and e.tool_snapshot_id = (
                      select s.tool_snapshot_id from tool_snapshot s
                      where s.organisation_id = d.organisation_id and s.server_id = d.server_id
                      order by s.pin_order desc limit 1)) as pinned_definition
        from tool_drift d
        where d.organisation_id = $1 and d.resolved_at is null
          and d.live_definition is not null
          and ($2::uuid is null or d.server_id = $2)
        order by d.first_seen_at, d.tool_name
        "#,
        tx.org().as_uuid(),
        server.map(|s| s.as_uuid()),
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Drift {
            drift_id: r.tool_drift_id,
            server_id: ServerId::from_uuid(r.server_id),
            tool_name: r.tool_name,
            kind: r.kind,
            pinned_definition: r.pinned_definition,
            live_definition: r.live_definition,
            first_seen_at: r.first_seen_at,
        })
        .collect())
}

/// How many drifts are open per server, for the server list's badge.
#[tracing::instrument(skip(tx))]
pub async fn open_drift_counts(tx: &mut OrgTx) -> Result<Vec<(ServerId, i64)>> {
    let rows = sqlx::query!(
        r#"
        select server_id, count(*) as "count!"
        from tool_drift
        where organisation_id = $1 and resolved_at is null
        group by server_id
        "#,
        tx.org().as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (ServerId::from_uuid(r.server_id), r.count))
        .collect())
}

struct LockedDrift {
    server: ServerId,
    tool_name: String,
    live_definition: Value,
    resolved: bool,
}

/// Locks a drift of the organisation; another organisation's is not found.
async fn lock(tx: &mut OrgTx, drift: Uuid) -> Result<LockedDrift> {
    let row = sqlx::query!(
        r#"
        select server_id, tool_name, live_definition as "live_definition!",
               resolved_at is not null as "resolved!"
        from tool_drift
        where organisation_id = $1 and tool_drift_id = $2 and live_definition is not null
        for update
        "#,
        tx.org().as_uuid(),
        drift,
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("tool drift")?;
    Ok(LockedDrift {
        server: ServerId::from_uuid(row.server_id),
        tool_name: row.tool_name,
        live_definition: row.live_definition,
        resolved: row.resolved,
    })
}

async fn resolve(tx: &mut OrgTx, actor: Actor, drift: Uuid, resolution: &str) -> Result<()> {
    sqlx::query!(
        r#"
        update tool_drift set resolved_at = now(), resolved_by = $3, resolution = $4
        where organisation_id = $1 and tool_drift_id = $2
        "#,
        tx.org().as_uuid(),
        drift,
        actor.user(),
        resolution,
    )
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Re-pins a drifted tool: a new snapshot holding the latest one's tools with this tool's live
/// definition in its place (its risk classified anew), which closes the drift. Returns the
/// server, whose cached configuration the caller announces as changed after committing. A drift
/// already resolved is left as it is (a form sent twice does no harm).
#[tracing::instrument(skip(tx))]
pub async fn repin_drift(tx: &mut OrgTx, actor: Actor, drift: Uuid) -> Result<ServerId> {
    let open = lock(tx, drift).await?;
    if open.resolved {
        return Ok(open.server);
    }
    let tool: policy::ToolDef = serde_json::from_value(open.live_definition.clone())
        .map_err(|e| Error::invalid("tool definition", e.to_string()))?;
    let risk = policy::classify(&tool);
    let signals = serde_json::to_value(&risk.signals)
        .map_err(|e| Error::invalid("risk signals", e.to_string()))?;
    let live = PinnedTool::new(open.live_definition, risk.class, signals)?;
    let live_hash = crate::audit::hex(&live.definition_hash);
    let mut tools: Vec<PinnedTool> = latest_pinned_tools(tx, open.server)
        .await?
        .into_iter()
        .filter(|t| t.name != open.tool_name)
        .collect();
    tools.push(live);
    // Pinning the live definition settles the drift (and any other drift of the same one).
    pin_tool_snapshot(tx, actor, open.server, &tools).await?;
    record_admin_event(
        tx,
        actor,
        "tool.drift_repinned",
        Some(open.server.as_uuid()),
        json!({ "tool_drift_id": drift, "tool": open.tool_name, "pin": live_hash }),
    )
    .await?;
    Ok(open.server)
}

/// Dismisses a drift: the tool stays hidden and denied (it is still not pinned), and the same
/// live definition is not reported again. A drift already resolved is left as it is.
#[tracing::instrument(skip(tx, comment))]
pub async fn dismiss_drift(
    tx: &mut OrgTx,
    actor: Actor,
    drift: Uuid,
    comment: Option<&str>,
) -> Result<ServerId> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > 1000) {
        return Err(Error::invalid("comment", "at most 1000 characters"));
    }
    let open = lock(tx, drift).await?;
    if open.resolved {
        return Ok(open.server);
    }
    resolve(tx, actor, drift, "dismissed").await?;
    record_admin_event(
        tx,
        actor,
        "tool.drift_dismissed",
        Some(open.server.as_uuid()),
        json!({ "tool_drift_id": drift, "tool": open.tool_name, "comment": comment }),
    )
    .await?;
    Ok(open.server)
}
