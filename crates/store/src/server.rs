//! Registered upstream servers, their sealed credentials and their pinned tool snapshots.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::admin::record_admin_event;
use crate::error::NotFoundExt;
use crate::secret::{Redacted, Sealed};
use crate::{Actor, Error, OrgId, OrgTx, Result, ServerId, Store};

/// The most upstream headers a server may carry, and their size.
const MAX_HEADERS: usize = 32;
const MAX_HEADER_BYTES: usize = 8192;

/// A server as members see it: never its credentials, only whether it has some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub server_id: ServerId,
    pub organisation_id: OrgId,
    pub name: String,
    pub upstream_url: String,
    pub transport: String,
    pub has_credentials: bool,
    pub credentials_key_version: Option<i32>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What registering a server takes.
#[derive(Debug, Clone)]
pub struct NewServer {
    pub name: String,
    pub upstream_url: String,
    /// Static headers injected into every upstream request (e.g. `Authorization: Bearer …`).
    pub headers: Redacted<Vec<(String, String)>>,
}

/// Upstream headers, decrypted for the gateway to inject.
pub type UpstreamHeaders = Redacted<Vec<(String, String)>>;

fn validate_url(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| Error::invalid("upstream URL", "must start with http:// or https://"))?;
    if url.len() > 2000 {
        return Err(Error::invalid(
            "upstream URL",
            "longer than 2000 characters",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(Error::invalid("upstream URL", "has no host"));
    }
    // Link-local addresses include the cloud metadata endpoint (169.254.169.254); they are
    // refused always. Names are resolved, and checked again, when connecting.
    let refused = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_link_local() || a.is_unspecified(),
        Ok(IpAddr::V6(a)) => (a.segments()[0] & 0xffc0) == 0xfe80 || a.is_unspecified(),
        Err(_) => host.eq_ignore_ascii_case("metadata.google.internal"),
    };
    if refused {
        return Err(Error::invalid(
            "upstream URL",
            "link-local and metadata addresses are refused",
        ));
    }
    Ok(())
}

fn validate_headers(headers: &[(String, String)]) -> Result<()> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::invalid(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let total: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_HEADER_BYTES {
        return Err(Error::invalid(
            "headers",
            format!("at most {MAX_HEADER_BYTES} bytes in all"),
        ));
    }
    for (k, v) in headers {
        let token = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(Error::invalid(
                "headers",
                format!("`{k}` is not a valid header name"),
            ));
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(Error::invalid(
                "headers",
                format!("the value of `{k}` contains a line break"),
            ));
        }
    }
    Ok(())
}

/// The associated data that binds a sealed blob to its row.
fn credentials_context(server: ServerId) -> Vec<u8> {
    format!("gatehouse:server:{server}:credentials").into_bytes()
}

/// Registers a server, sealing its headers under the current key.
#[tracing::instrument(skip(tx, new), fields(name = %new.name))]
pub async fn create_server(tx: &mut OrgTx, actor: Actor, new: &NewServer) -> Result<Server> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("server name", "must be 1 to 100 characters"));
    }
    validate_url(&new.upstream_url)?;
    validate_headers(new.headers.expose())?;
    let server_id = ServerId::new();
    let sealed = (!new.headers.expose().is_empty()).then(|| {
        let plain = serde_json::to_vec(new.headers.expose()).expect("strings serialise");
        tx.keyring().seal(&plain, &credentials_context(server_id))
    });
    let row = sqlx::query!(
        r#"
        insert into server (server_id, organisation_id, name, upstream_url,
                            upstream_credentials_sealed, credentials_key_version)
        values ($1, $2, $3, $4, $5, $6)
        returning created_at
        "#,
        server_id.as_uuid(),
        tx.org().as_uuid(),
        name,
        new.upstream_url,
        sealed.as_ref().map(|s| &s.bytes[..]),
        sealed.as_ref().map(|s| s.key_version),
    )
    .fetch_one(tx.conn())
    .await?;
    let header_names: Vec<&str> = new
        .headers
        .expose()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    record_admin_event(
        tx,
        actor,
        "server.create",
        Some(server_id.as_uuid()),
        json!({ "name": name, "upstream_url": new.upstream_url, "header_names": header_names }),
    )
    .await?;
    Ok(Server {
        server_id,
        organisation_id: tx.org(),
        name: name.to_owned(),
        upstream_url: new.upstream_url.clone(),
        transport: "streamable_http".into(),
        has_credentials: sealed.is_some(),
        credentials_key_version: sealed.map(|s| s.key_version),
        created_at: row.created_at,
    })
}

/// One server of the transaction's organisation.
#[tracing::instrument(skip(tx))]
pub async fn server_by_id(tx: &mut OrgTx, server: ServerId) -> Result<Server> {
    let row = sqlx::query!(
        r#"
        select server_id, organisation_id, name, upstream_url, transport::text as "transport!",
               credentials_key_version, created_at
        from server
        where organisation_id = $1 and server_id = $2
        "#,
        tx.org().as_uuid(),
        server.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("server")?;
    Ok(Server {
        server_id: ServerId::from_uuid(row.server_id),
        organisation_id: OrgId::from_uuid(row.organisation_id),
        name: row.name,
        upstream_url: row.upstream_url,
        transport: row.transport,
        has_credentials: row.credentials_key_version.is_some(),
        credentials_key_version: row.credentials_key_version,
        created_at: row.created_at,
    })
}

/// Every server of the transaction's organisation, by name.
#[tracing::instrument(skip(tx))]
pub async fn list_servers(tx: &mut OrgTx) -> Result<Vec<Server>> {
    let rows = sqlx::query!(
        r#"
        select server_id, organisation_id, name, upstream_url, transport::text as "transport!",
               credentials_key_version, created_at
        from server
        where organisation_id = $1
        order by name
        "#,
        tx.org().as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Server {
            server_id: ServerId::from_uuid(row.server_id),
            organisation_id: OrgId::from_uuid(row.organisation_id),
            name: row.name,
            upstream_url: row.upstream_url,
            transport: row.transport,
            has_credentials: row.credentials_key_version.is_some(),
            credentials_key_version: row.credentials_key_version,
            created_at: row.created_at,
        })
        .collect())
}

/// Deletes a server with its tool snapshots, policies and grants (whose tokens stop working at
/// once). Its audit events stay: the log keeps the server's id.
#[tracing::instrument(skip(tx))]
pub async fn delete_server(tx: &mut OrgTx, actor: Actor, server: ServerId) -> Result<()> {
    let existing = server_by_id(tx, server).await?;
    let org = tx.org().as_uuid();
    // Grants restrict the deletion of their policy, so they go first; the rest cascades.
    let grants = sqlx::query_scalar!(
        "delete from access_grant where organisation_id = $1 and server_id = $2 returning access_grant_id",
        org,
        server.as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    sqlx::query!(
        "delete from server where organisation_id = $1 and server_id = $2",
        org,
        server.as_uuid(),
    )
    .execute(tx.conn())
    .await?;
    record_admin_event(
        tx,
        actor,
        "server.delete",
        Some(server.as_uuid()),
        json!({ "name": existing.name, "upstream_url": existing.upstream_url,
                "grants_deleted": grants.len() }),
    )
    .await
}

/// The server's upstream headers in clear, for the gateway to inject. Never shown to people.
#[tracing::instrument(skip(tx))]
pub async fn upstream_headers(tx: &mut OrgTx, server: ServerId) -> Result<UpstreamHeaders> {
    let row = sqlx::query!(
        r#"
        select upstream_credentials_sealed, credentials_key_version
        from server
        where organisation_id = $1 and server_id = $2
        "#,
        tx.org().as_uuid(),
        server.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("server")?;
    let (Some(bytes), Some(key_version)) =
        (row.upstream_credentials_sealed, row.credentials_key_version)
    else {
        return Ok(Redacted::new(Vec::new()));
    };
    let plain = tx
        .keyring()
        .open(&Sealed { key_version, bytes }, &credentials_context(server))?;
    let headers: Vec<(String, String)> = serde_json::from_slice(plain.expose())
        .map_err(|e| Error::Secret(format!("sealed headers are not a header list: {e}")))?;
    Ok(Redacted::new(headers))
}

pub use policy::RiskClass;

/// A risk class as the database spells it (the `risk_class` enum), from the policy engine's names.
fn parse_risk_class(s: &str) -> Result<RiskClass> {
    RiskClass::ALL
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| Error::invalid("risk class", format!("unknown risk class `{s}`")))
}

/// One tool as pinned: its definition as the upstream sent it, the hash the gateway compares
/// live definitions with, and its risk class with the signals behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinnedTool {
    pub name: String,
    pub definition: Value,
    #[serde(serialize_with = "hex_serde")]
    pub definition_hash: [u8; 32],
    pub risk: RiskClass,
    pub risk_signals: Value,
}

fn hex_serde<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::audit::hex(bytes))
}

impl PinnedTool {
    /// Pins a definition (a `tools/list` entry, which must carry a string `name`).
    pub fn new(definition: Value, risk: RiskClass, risk_signals: Value) -> Result<Self> {
        let name = definition
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty() && n.len() <= 200)
            .ok_or_else(|| {
                Error::invalid("tool definition", "needs a `name` of 1 to 200 characters")
            })?
            .to_owned();
        let definition_hash = definition_hash(&definition);
        Ok(Self {
            name,
            definition,
            definition_hash,
            risk,
            risk_signals,
        })
    }
}

/// The pin of a tool definition (`mcp::pin`): what the gateway compares live definitions with.
pub fn definition_hash(definition: &Value) -> [u8; 32] {
    mcp::pin::pin_hash(definition)
}

/// Pins a new snapshot of the server's tools; the gateway enforces the latest one.
#[tracing::instrument(skip(tx, tools), fields(tools = tools.len()))]
pub async fn pin_tool_snapshot(
    tx: &mut OrgTx,
    actor: Actor,
    server: ServerId,
    tools: &[PinnedTool],
) -> Result<Uuid> {
    let org = tx.org().as_uuid();
    let mut sorted: Vec<&PinnedTool> = tools.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for t in &sorted {
        h.update(t.name.as_bytes());
        h.update([0]);
        h.update(t.definition_hash);
    }
    let tools_hash: [u8; 32] = h.finalize().into();
    let snapshot = sqlx::query_scalar!(
        r#"
        insert into tool_snapshot (organisation_id, server_id, tools_hash, pinned_by)
        values ($1, $2, $3, $4)
        returning tool_snapshot_id
        "#,
        org,
        server.as_uuid(),
        &tools_hash[..],
        actor.user(),
    )
    .fetch_one(tx.conn())
    .await?;
    let names: Vec<String> = sorted.iter().map(|t| t.name.clone()).collect();
    let definitions: Vec<Value> = sorted.iter().map(|t| t.definition.clone()).collect();
    let hashes: Vec<Vec<u8>> = sorted.iter().map(|t| t.definition_hash.to_vec()).collect();
    let risks: Vec<String> = sorted.iter().map(|t| t.risk.as_str().to_owned()).collect();
    let signals: Vec<Value> = sorted.iter().map(|t| t.risk_signals.clone()).collect();
    sqlx::query!(
        r#"
        insert into tool_snapshot_entry (organisation_id, tool_snapshot_id, tool_name, definition,
                                         definition_hash, risk, risk_signals)
        select $1, $2, t.name, t.definition, t.hash, t.risk::risk_class, t.signals
        from unnest($3::text[], $4::jsonb[], $5::bytea[], $6::text[], $7::jsonb[])
             as t(name, definition, hash, risk, signals)
        "#,
        org,
        snapshot,
        &names,
        &definitions,
        &hashes,
        &risks,
        &signals,
    )
    .execute(tx.conn())
    .await?;
    // A drift whose live definition is now pinned is settled by this snapshot.
    sqlx::query!(
        r#"
        update tool_drift set resolved_at = now(), resolved_by = $3, resolution = 'repinned'
        from unnest($4::text[], $5::bytea[]) as t(name, hash)
        where tool_drift.organisation_id = $1 and tool_drift.server_id = $2
          and tool_drift.resolved_at is null
          and tool_drift.tool_name = t.name and tool_drift.live_hash = t.hash
        "#,
        org,
        server.as_uuid(),
        actor.user(),
        &names,
        &hashes,
    )
    .execute(tx.conn())
    .await?;
    record_admin_event(
        tx,
        actor,
        "server.tools_pinned",
        Some(server.as_uuid()),
        json!({ "tool_snapshot_id": snapshot, "tools": names }),
    )
    .await?;
    Ok(snapshot)
}

/// The tools of the server's latest snapshot; empty when none was pinned yet.
#[tracing::instrument(skip(tx))]
pub async fn latest_pinned_tools(tx: &mut OrgTx, server: ServerId) -> Result<Vec<PinnedTool>> {
    let rows = sqlx::query!(
        r#"
        select e.tool_name, e.definition, e.definition_hash, e.risk::text as "risk!", e.risk_signals
        from tool_snapshot_entry e
        where e.organisation_id = $1
          and e.tool_snapshot_id = (
              select s.tool_snapshot_id from tool_snapshot s
              where s.organisation_id = $1 and s.server_id = $2
              order by s.pin_order desc
              limit 1)
        order by e.tool_name
        "#,
        tx.org().as_uuid(),
        server.as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(PinnedTool {
                name: r.tool_name,
                definition: r.definition,
                definition_hash: r.definition_hash.try_into().map_err(|_| {
                    Error::invalid("definition hash", "stored hash is not 32 bytes")
                })?,
                risk: parse_risk_class(&r.risk)?,
                risk_signals: r.risk_signals,
            })
        })
        .collect()
}

/// What a key rotation re-sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResealReport {
    pub servers: u64,
    pub approval_webhooks: u64,
    pub key_version: i32,
}

impl Store {
    /// Re-seals every secret sealed under an older key with the current key (`gatehouse keys
    /// rotate`). An operator task across all organisations, so it runs as the connecting role.
    /// Each row is locked while re-sealed; rows already under the current key are left alone,
    /// so the command can be re-run after an interruption.
    #[tracing::instrument(skip(self))]
    pub async fn reseal_secrets(&self) -> Result<ResealReport> {
        let ring = self.keyring();
        let current = ring.current_version();
        let mut report = ResealReport {
            key_version: current,
            ..Default::default()
        };
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query!(
            r#"
            select server_id, upstream_credentials_sealed as "sealed!", credentials_key_version as "version!"
            from server
            where upstream_credentials_sealed is not null and credentials_key_version <> $1
            for update
            "#,
            current,
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            let server = ServerId::from_uuid(r.server_id);
            let context = credentials_context(server);
            let sealed = ring.reseal(
                &Sealed {
                    key_version: r.version,
                    bytes: r.sealed,
                },
                &context,
            )?;
            sqlx::query!(
                r#"
                update server set upstream_credentials_sealed = $2, credentials_key_version = $3
                where server_id = $1
                "#,
                r.server_id,
                sealed.bytes,
                sealed.key_version,
            )
            .execute(&mut *tx)
            .await?;
            report.servers += 1;
        }
        let rows = sqlx::query!(
            r#"
            select approval_webhook_id, secret_sealed, secret_key_version
            from approval_webhook
            where secret_key_version <> $1
            for update
            "#,
            current,
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            let context = format!(
                "gatehouse:approval_webhook:{}:secret",
                r.approval_webhook_id
            )
            .into_bytes();
            let sealed = ring.reseal(
                &Sealed {
                    key_version: r.secret_key_version,
                    bytes: r.secret_sealed,
                },
                &context,
            )?;
            sqlx::query!(
                r#"
                update approval_webhook set secret_sealed = $2, secret_key_version = $3
                where approval_webhook_id = $1
                "#,
                r.approval_webhook_id,
                sealed.bytes,
                sealed.key_version,
            )
            .execute(&mut *tx)
            .await?;
            report.approval_webhooks += 1;
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_to_link_local_and_metadata_hosts_are_refused() {
        assert!(validate_url("https://acs.example.net:7557/mcp").is_ok());
        assert!(validate_url("http://10.0.0.5/mcp").is_ok());
        assert!(validate_url("http://169.254.169.254/latest").is_err());
        assert!(validate_url("http://[fe80::1]/").is_err());
        assert!(validate_url("http://metadata.google.internal/").is_err());
        assert!(validate_url("ftp://x").is_err());
        assert!(validate_url("http:///x").is_err());
    }
}
