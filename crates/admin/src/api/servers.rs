//! Servers (list, register, show, delete, test a connection, refresh the pinned tools) and their
//! grants (list, mint, rotate, revoke).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::grant::{Grant, NewGrant};
use store::secret::Redacted;
use store::server::{NewServer, PinnedTool, Server};
use store::{GrantId, ServerId};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api::auth::ApiKey;
use crate::api::problem::{ApiResult, Kind, Problem};
use crate::api::{ApiJson, created, secret};
use crate::auth::{Admin, Viewer};
use crate::pages::servers::{
    Classified, discover, grant_status, pin_and_recommend, proxy_url, refresh_tools,
};

/// A registered upstream server (never its credentials).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerOut {
    id: Uuid,
    name: String,
    upstream_url: String,
    /// Whether upstream headers are stored (sealed; they are never shown).
    has_credentials: bool,
    /// Where agents connect: `{gateway URL}/mcp/{id}`.
    proxy_url: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

fn server_out(state: &AppState, s: Server) -> ServerOut {
    ServerOut {
        id: s.server_id.as_uuid(),
        proxy_url: proxy_url(state, s.server_id),
        name: s.name,
        upstream_url: s.upstream_url,
        has_credentials: s.has_credentials,
        created_at: s.created_at,
    }
}

/// A tool with its risk class, the signals behind it and the recommended rule.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ToolOut {
    name: String,
    /// `read`, `write`, `execute`, `destructive` or `financial`.
    risk: String,
    /// `low`, `medium`, `high` or `critical`.
    level: String,
    recommendation: String,
    /// What in the definition led to the risk class.
    #[schema(value_type = Vec<Object>)]
    signals: Value,
    /// The definition exactly as the upstream sent it.
    #[schema(value_type = Object)]
    definition: Value,
    /// The pin (hex): SHA-256 of the definition's covered fields in canonical form (`mcp::pin`).
    definition_hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tool_out(name: &str, definition: &Value, class: policy::RiskClass, signals: Value) -> ToolOut {
    ToolOut {
        name: name.to_owned(),
        risk: class.as_str().to_owned(),
        level: class.level().as_str().to_owned(),
        recommendation: crate::pages::servers::recommendation_text(policy::recommendation(class)),
        signals,
        definition: definition.clone(),
        definition_hash: hex(&store::server::definition_hash(definition)),
    }
}

fn pinned_out(t: &PinnedTool) -> ToolOut {
    tool_out(&t.name, &t.definition, t.risk, t.risk_signals.clone())
}

fn classified_out(c: &Classified) -> ApiResult<ToolOut> {
    let signals = serde_json::to_value(&c.risk.signals)
        .map_err(|e| Problem::from(crate::error::Error::Internal(e.into())))?;
    Ok(tool_out(&c.tool.name, &c.definition, c.risk.class, signals))
}

/// A policy of a server and the version its grants follow.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PolicyOut {
    name: String,
    current_version: Option<i32>,
}

/// A server with its pinned tools and its policies.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerDetail {
    server: ServerOut,
    tools: Vec<ToolOut>,
    policies: Vec<PolicyOut>,
}

/// A malformed id is as unknown as another organisation's.
pub(crate) fn server_id(text: &str) -> ApiResult<ServerId> {
    text.parse().map_err(|_| Problem::not_found())
}

async fn detail(
    state: &AppState,
    key: &ApiKey<impl Sized>,
    id: ServerId,
) -> ApiResult<ServerDetail> {
    let mut tx = state.store.begin(key.org).await?;
    let server = store::server::server_by_id(&mut tx, id).await?;
    let tools = store::server::latest_pinned_tools(&mut tx, id).await?;
    let policies = store::policy::list_policies(&mut tx, id).await?;
    tx.commit().await?;
    Ok(ServerDetail {
        server: server_out(state, server),
        tools: tools.iter().map(pinned_out).collect(),
        policies: policies
            .into_iter()
            .map(|p| PolicyOut {
                name: p.name,
                current_version: p.current_version,
            })
            .collect(),
    })
}

/// Every server of the organisation, by name.
#[utoipa::path(get, path = "/servers", tag = "servers", security(("api_key" = ["viewer"])),
    responses((status = 200, body = Vec<ServerOut>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
) -> ApiResult<Json<Vec<ServerOut>>> {
    let mut tx = state.store.begin(key.org).await?;
    let servers = store::server::list_servers(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(
        servers.into_iter().map(|s| server_out(&state, s)).collect(),
    ))
}

/// An upstream to connect to: its MCP URL and the static headers it needs (none by default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamIn {
    upstream_url: String,
    /// Header name → value, sent with every upstream request (e.g. `Authorization`).
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A server to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateServerIn {
    name: String,
    upstream_url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn headers_vec(headers: BTreeMap<String, String>) -> Vec<(String, String)> {
    headers.into_iter().collect()
}

/// Registers a server: connects to it, lists and classifies its tools, pins them, and publishes
/// the recommended policy as `default` version 1, all or nothing.
#[utoipa::path(post, path = "/servers", tag = "servers", security(("api_key" = ["admin"])),
    request_body = CreateServerIn,
    responses((status = 201, body = ServerDetail),
              (status = 409, description = "A server with this name exists.", body = Problem, content_type = "application/problem+json"),
              (status = 502, description = "The upstream is unreachable, refused, or not an MCP server.", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    ApiJson(input): ApiJson<CreateServerIn>,
) -> ApiResult<Response> {
    let headers = headers_vec(input.headers);
    // The store checks names, URLs and headers again; checking first avoids contacting an
    // upstream for a request that cannot succeed.
    if input.name.trim().is_empty() || input.name.trim().chars().count() > 100 {
        return Err(Problem::invalid("name must be 1 to 100 characters"));
    }
    let (_, classified) = discover(&state, input.upstream_url.trim(), &headers)
        .await
        .map_err(|m| Problem::new(Kind::Upstream, m))?;
    let mut tx = state.store.begin(key.org).await?;
    let new = NewServer {
        name: input.name.trim().to_owned(),
        upstream_url: input.upstream_url.trim().to_owned(),
        headers: Redacted::new(headers),
    };
    let server = store::server::create_server(&mut tx, key.actor(), &new).await?;
    pin_and_recommend(&mut tx, key.actor(), server.server_id, &classified, true).await?;
    tx.commit().await?;
    Ok(created(detail(&state, &key, server.server_id).await?))
}

/// What an upstream answered to a connection test.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestedOut {
    server_name: Option<String>,
    protocol_version: String,
    tools: Vec<ToolOut>,
}

/// Connects to an upstream and lists its tools with their risk, without registering anything.
#[utoipa::path(post, path = "/servers/test", tag = "servers", security(("api_key" = ["admin"])),
    request_body = UpstreamIn,
    responses((status = 200, body = TestedOut),
              (status = 502, description = "The upstream is unreachable, refused, or not an MCP server.", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn test_connection(
    State(state): State<AppState>,
    _key: ApiKey<Admin>,
    ApiJson(input): ApiJson<UpstreamIn>,
) -> ApiResult<Json<TestedOut>> {
    let headers = headers_vec(input.headers);
    let (discovery, classified) = discover(&state, input.upstream_url.trim(), &headers)
        .await
        .map_err(|m| Problem::new(Kind::Upstream, m))?;
    Ok(Json(TestedOut {
        server_name: discovery.server_name.clone(),
        protocol_version: discovery.protocol_version.clone(),
        tools: classified
            .iter()
            .map(classified_out)
            .collect::<ApiResult<_>>()?,
    }))
}

/// One server with its pinned tools and policies.
#[utoipa::path(get, path = "/servers/{server}", tag = "servers", security(("api_key" = ["viewer"])),
    params(("server" = Uuid, Path)),
    responses((status = 200, body = ServerDetail)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    Path(server): Path<String>,
) -> ApiResult<Json<ServerDetail>> {
    Ok(Json(detail(&state, &key, server_id(&server)?).await?))
}

/// Deletes a server with its policies and grants (their tokens stop working); its audit events stay.
#[utoipa::path(delete, path = "/servers/{server}", tag = "servers", security(("api_key" = ["admin"])),
    params(("server" = Uuid, Path)),
    responses((status = 204, description = "Deleted.")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    Path(server): Path<String>,
) -> ApiResult<StatusCode> {
    let id = server_id(&server)?;
    let mut tx = state.store.begin(key.org).await?;
    store::server::delete_server(&mut tx, key.actor(), id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the upstream's tools again and pins them as a new snapshot (the policies are unchanged).
#[utoipa::path(post, path = "/servers/{server}/refresh", tag = "servers", security(("api_key" = ["admin"])),
    params(("server" = Uuid, Path)),
    responses((status = 200, body = ServerDetail),
              (status = 502, description = "The upstream is unreachable, refused, or not an MCP server.", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    Path(server): Path<String>,
) -> ApiResult<Json<ServerDetail>> {
    let id = server_id(&server)?;
    refresh_tools(&state, key.org, key.actor(), id).await?;
    Ok(Json(detail(&state, &key, id).await?))
}

/// A grant (never its token, only the token's first characters).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GrantOut {
    id: Uuid,
    server_id: Uuid,
    policy_id: Uuid,
    identity: String,
    label: String,
    token_prefix: String,
    /// `active`, `revoked` or `expired`.
    status: String,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

fn grant_out(g: Grant) -> GrantOut {
    let status = grant_status(&g, OffsetDateTime::now_utc());
    GrantOut {
        id: g.grant_id.as_uuid(),
        server_id: g.server_id.as_uuid(),
        policy_id: g.policy_id.as_uuid(),
        identity: g.identity,
        label: g.label,
        token_prefix: g.token_prefix,
        status: status.to_owned(),
        expires_at: g.expires_at,
        revoked_at: g.revoked_at,
        last_used_at: g.last_used_at,
        created_at: g.created_at,
    }
}

/// Every grant of a server, newest first, revoked ones included.
#[utoipa::path(get, path = "/servers/{server}/grants", tag = "grants", security(("api_key" = ["viewer"])),
    params(("server" = Uuid, Path)),
    responses((status = 200, body = Vec<GrantOut>)))]
pub(crate) async fn list_grants(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    Path(server): Path<String>,
) -> ApiResult<Json<Vec<GrantOut>>> {
    let id = server_id(&server)?;
    let mut tx = state.store.begin(key.org).await?;
    store::server::server_by_id(&mut tx, id).await?;
    let grants = store::grant::list_grants(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(grants.into_iter().map(grant_out).collect()))
}

/// A grant to mint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MintGrantIn {
    /// What people call the grant (e.g. `noc-agent on host 7`).
    label: String,
    /// The identity recorded in audit events; the label when absent.
    identity: Option<String>,
    /// The server's policy the grant follows; `default` when absent.
    policy: Option<String>,
    /// When the token stops working (RFC 3339); never when absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

/// A grant with its token, which is shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MintedGrantOut {
    grant: GrantOut,
    /// The bearer token (`ghg_…`): shown once; Gatehouse keeps only its hash.
    token: String,
    proxy_url: String,
    /// The common `mcpServers` client configuration with the token filled in.
    #[schema(value_type = Object)]
    client_config: Value,
}

async fn minted_out(
    state: &AppState,
    org: store::OrgId,
    minted: store::grant::MintedGrant,
) -> ApiResult<MintedGrantOut> {
    let mut tx = state.store.begin(org).await?;
    let server = store::server::server_by_id(&mut tx, minted.grant.server_id).await?;
    tx.commit().await?;
    let proxy = proxy_url(state, server.server_id);
    let token = minted.token.expose().clone();
    Ok(MintedGrantOut {
        client_config: json!({ "mcpServers": { crate::pages::grants::config_key(&server.name): {
            "url": proxy, "headers": { "Authorization": format!("Bearer {token}") } } } }),
        grant: grant_out(minted.grant),
        token,
        proxy_url: proxy,
    })
}

/// Mints a grant for an identity on this server, bound to one of its policies.
#[utoipa::path(post, path = "/servers/{server}/grants", tag = "grants", security(("api_key" = ["admin"])),
    params(("server" = Uuid, Path)), request_body = MintGrantIn,
    responses((status = 201, body = MintedGrantOut)))]
pub(crate) async fn mint_grant(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    Path(server): Path<String>,
    ApiJson(input): ApiJson<MintGrantIn>,
) -> ApiResult<Response> {
    let id = server_id(&server)?;
    let mut tx = state.store.begin(key.org).await?;
    store::server::server_by_id(&mut tx, id).await?;
    let policy_name = input.policy.unwrap_or_else(|| "default".into());
    let new = NewGrant {
        server: id,
        policy_name: policy_name.trim().to_owned(),
        label: input.label.trim().to_owned(),
        identity: input
            .identity
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty()),
        expires_at: input.expires_at,
    };
    let minted = match store::grant::mint_grant(&mut tx, key.actor(), &new).await {
        Ok(m) => m,
        // The server exists (checked above), so a missing policy is the request's fault.
        Err(store::Error::NotFound { what }) => {
            return Err(Problem::invalid(format!(
                "policy `{}`: no such {what}",
                new.policy_name
            )));
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(secret(
        StatusCode::CREATED,
        minted_out(&state, key.org, minted).await?,
    ))
}

/// A grant of this organisation that belongs to this server; anything else is not found.
async fn grant_of_server(
    state: &AppState,
    key: &ApiKey<Admin>,
    server: &str,
    grant: &str,
) -> ApiResult<GrantId> {
    let id = server_id(server)?;
    let grant: GrantId = grant.parse().map_err(|_| Problem::not_found())?;
    let mut tx = state.store.begin(key.org).await?;
    let g = store::grant::grant_by_id(&mut tx, grant).await?;
    tx.commit().await?;
    if g.server_id != id {
        return Err(Problem::not_found());
    }
    Ok(grant)
}

/// Replaces a live grant's token: the old one stops working at once; the new one is shown once.
#[utoipa::path(post, path = "/servers/{server}/grants/{grant}/rotate", tag = "grants", security(("api_key" = ["admin"])),
    params(("server" = Uuid, Path), ("grant" = Uuid, Path)),
    responses((status = 200, body = MintedGrantOut)))]
pub(crate) async fn rotate_grant(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    Path((server, grant)): Path<(String, String)>,
) -> ApiResult<Response> {
    let grant = grant_of_server(&state, &key, &server, &grant).await?;
    let mut tx = state.store.begin(key.org).await?;
    let minted = store::grant::rotate_grant(&mut tx, key.actor(), grant).await?;
    tx.commit().await?;
    Ok(secret(
        StatusCode::OK,
        minted_out(&state, key.org, minted).await?,
    ))
}

/// Revokes a grant: its token stops working at once. Revoking twice changes nothing.
#[utoipa::path(post, path = "/servers/{server}/grants/{grant}/revoke", tag = "grants", security(("api_key" = ["admin"])),
    params(("server" = Uuid, Path), ("grant" = Uuid, Path)),
    responses((status = 200, body = GrantOut)))]
pub(crate) async fn revoke_grant(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    Path((server, grant)): Path<(String, String)>,
) -> ApiResult<Json<GrantOut>> {
    let grant = grant_of_server(&state, &key, &server, &grant).await?;
    let mut tx = state.store.begin(key.org).await?;
    let g = store::grant::revoke_grant(&mut tx, key.actor(), grant).await?;
    tx.commit().await?;
    Ok(Json(grant_out(g)))
}
