//! Policies of a server and their versions: list, show, one version's document, validate without
//! publishing, publish.
//!
//! Validate and publish take the policy document itself as the request body, so the line and
//! column of every finding point into the file the caller sent.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use store::ServerId;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::api::auth::ApiKey;
use crate::api::problem::{ApiResult, FieldError, Kind, Problem};
use crate::api::servers::server_id;
use crate::api::{ApiQuery, created};
use crate::auth::{PolicyManager, Viewer};

/// A policy name in a path: malformed names are as unknown as missing ones.
fn policy_name(name: &str) -> ApiResult<&str> {
    store::policy::validate_policy_name(name).map_err(|_| Problem::not_found())?;
    Ok(name)
}

/// A policy (its current version's document included) and its history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PolicyDetail {
    id: Uuid,
    server_id: Uuid,
    name: String,
    current_version: Option<i32>,
    /// The current version's document, exactly as published.
    source: Option<String>,
    versions: Vec<VersionSummaryOut>,
}

/// One published version, without its document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionSummaryOut {
    version: i32,
    /// `web`, `api` or `cli`.
    published_via: String,
    /// The email of who published it, when a person did.
    published_by: Option<String>,
    comment: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// One published version with its document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionOut {
    policy_id: Uuid,
    name: String,
    version: i32,
    source: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

fn version_out(v: store::policy::PolicyVersion) -> VersionOut {
    VersionOut {
        policy_id: v.policy_id.as_uuid(),
        name: v.name,
        version: v.version,
        source: v.source,
        created_at: v.created_at,
    }
}

/// A policy of a server with its current version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PolicySummaryOut {
    id: Uuid,
    name: String,
    current_version: Option<i32>,
}

/// Every policy of a server, by name.
#[utoipa::path(get, path = "/servers/{server}/policies", tag = "policies", security(("api_key" = ["viewer"])),
    params(("server" = Uuid, Path)),
    responses((status = 200, body = Vec<PolicySummaryOut>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    Path(server): Path<String>,
) -> ApiResult<Json<Vec<PolicySummaryOut>>> {
    let id = server_id(&server)?;
    let mut tx = state.store.begin(key.org).await?;
    store::server::server_by_id(&mut tx, id).await?;
    let policies = store::policy::list_policies(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(
        policies
            .into_iter()
            .map(|p| PolicySummaryOut {
                id: p.policy_id.as_uuid(),
                name: p.name,
                current_version: p.current_version,
            })
            .collect(),
    ))
}

/// A policy with its current document and version history.
#[utoipa::path(get, path = "/servers/{server}/policies/{name}", tag = "policies", security(("api_key" = ["viewer"])),
    params(("server" = Uuid, Path), ("name" = String, Path)),
    responses((status = 200, body = PolicyDetail)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    Path((server, name)): Path<(String, String)>,
) -> ApiResult<Json<PolicyDetail>> {
    let id = server_id(&server)?;
    let name = policy_name(&name)?;
    let mut tx = state.store.begin(key.org).await?;
    let p = store::policy::policy_by_name(&mut tx, id, name).await?;
    let source = match store::policy::current_policy_version(&mut tx, p.policy_id).await {
        Ok(v) => Some(v.source),
        Err(store::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let versions = store::policy::list_policy_versions(&mut tx, p.policy_id).await?;
    tx.commit().await?;
    Ok(Json(PolicyDetail {
        id: p.policy_id.as_uuid(),
        server_id: p.server_id.as_uuid(),
        name: p.name,
        current_version: p.current_version,
        source,
        versions: versions
            .into_iter()
            .map(|v| VersionSummaryOut {
                version: v.version,
                published_via: v.published_via,
                published_by: v.published_by,
                comment: v.comment,
                created_at: v.created_at,
            })
            .collect(),
    }))
}

/// One published version of a policy, with its document.
#[utoipa::path(get, path = "/servers/{server}/policies/{name}/versions/{version}", tag = "policies",
    security(("api_key" = ["viewer"])),
    params(("server" = Uuid, Path), ("name" = String, Path), ("version" = i32, Path)),
    responses((status = 200, body = VersionOut)))]
pub(crate) async fn version(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    Path((server, name, version)): Path<(String, String, String)>,
) -> ApiResult<Json<VersionOut>> {
    let id = server_id(&server)?;
    let name = policy_name(&name)?;
    let version: i32 = version.parse().map_err(|_| Problem::not_found())?;
    let mut tx = state.store.begin(key.org).await?;
    let p = store::policy::policy_by_name(&mut tx, id, name).await?;
    let v = store::policy::policy_version(&mut tx, p.policy_id, version).await?;
    tx.commit().await?;
    Ok(Json(version_out(v)))
}

/// The document of a request, which must be JSON text within the engine's size limit.
fn document(headers: &HeaderMap, body: &Bytes) -> ApiResult<String> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Problem::new(
            Kind::UnsupportedMediaType,
            "Send the policy document as the body, with `Content-Type: application/json`.",
        ));
    }
    if body.len() > policy::MAX_DOCUMENT_BYTES {
        return Err(Problem::new(
            Kind::TooLarge,
            format!(
                "The policy document is larger than {} KiB.",
                policy::MAX_DOCUMENT_BYTES / 1024
            ),
        ));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| Problem::new(Kind::BadRequest, "The policy document is not UTF-8 text."))
}

/// The server's pinned tools as the validator reads them; `NotFound` for another
/// organisation's server.
async fn pinned_tools(
    state: &AppState,
    org: store::OrgId,
    server: ServerId,
) -> ApiResult<Vec<policy::ToolDef>> {
    let mut tx = state.store.begin(org).await?;
    store::server::server_by_id(&mut tx, server).await?;
    let tools = store::server::latest_pinned_tools(&mut tx, server).await?;
    tx.commit().await?;
    Ok(tools
        .into_iter()
        .filter_map(|t| serde_json::from_value(t.definition).ok())
        .collect())
}

/// The verdict on a document that passed validation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ValidationOut {
    valid: bool,
    /// Findings that do not stop publishing, at their place.
    warnings: Vec<FieldError>,
}

/// Validates a policy document against the server's pinned tools without publishing it. A
/// refused document is a 422 problem whose `errors` name each finding's pointer, line and column.
#[utoipa::path(post, path = "/servers/{server}/policies/{name}/validate", tag = "policies",
    security(("api_key" = ["viewer"])),
    params(("server" = Uuid, Path), ("name" = String, Path)),
    request_body(content = Object, content_type = "application/json", description = "The policy document (version 1)."),
    responses((status = 200, body = ValidationOut),
              (status = 422, description = "The document is refused; `errors` lists every finding.", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn validate(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    Path((server, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ValidationOut>> {
    let id = server_id(&server)?;
    policy_name(&name)?;
    let tools = pinned_tools(&state, key.org, id).await?;
    let source = document(&headers, &body)?;
    let parsed = policy::Policy::parse(&source, Some(&tools)).map_err(|d| Problem::policy(&d))?;
    Ok(Json(ValidationOut {
        valid: true,
        warnings: parsed.warnings().iter().map(FieldError::of).collect(),
    }))
}

/// What a publication may say about itself.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PublishParams {
    /// Why this version (shown in the history), at most 2000 characters.
    comment: Option<String>,
}

/// Publishes a policy document as the next version of the server's policy `name` (creating the
/// policy with its first version). Grants that follow the policy use it at once.
#[utoipa::path(post, path = "/servers/{server}/policies/{name}/versions", tag = "policies",
    security(("api_key" = ["policy_manager"])),
    params(("server" = Uuid, Path), ("name" = String, Path), PublishParams),
    request_body(content = Object, content_type = "application/json", description = "The policy document (version 1)."),
    responses((status = 201, body = VersionOut),
              (status = 422, description = "The document is refused; `errors` lists every finding.", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    key: ApiKey<PolicyManager>,
    Path((server, name)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<PublishParams>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let id = server_id(&server)?;
    let name = policy_name(&name)?;
    let comment = params
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > 2000) {
        return Err(Problem::invalid("comment can have at most 2000 characters"));
    }
    let tools = pinned_tools(&state, key.org, id).await?;
    let source = document(&headers, &body)?;
    policy::Policy::parse(&source, Some(&tools)).map_err(|d| Problem::policy(&d))?;
    let mut tx = state.store.begin(key.org).await?;
    let v = store::policy::publish_policy_version(&mut tx, key.actor(), id, name, &source, comment)
        .await?;
    tx.commit().await?;
    Ok(created(version_out(v)))
}
