//! Tool drifts of a server (list, pin, dismiss): what the gateway found the upstream serving in
//! place of the pinned definition, or tools never pinned.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api::ApiJson;
use crate::api::auth::ApiKey;
use crate::api::problem::ApiResult;
use crate::auth::{PolicyManager, Viewer};
use crate::pages::drifts::{dismiss_one, drift_id, repin};
use crate::pages::servers::server_id;

/// A live tool whose definition is not the pinned one: hidden and denied until pinned.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DriftOut {
    id: Uuid,
    server_id: Uuid,
    tool: String,
    /// `changed` (pinned under another definition) or `added` (never pinned).
    kind: String,
    /// The definition in the latest snapshot; absent for a tool never pinned.
    #[schema(value_type = Option<Object>)]
    pinned_definition: Option<Value>,
    /// The definition the upstream serves.
    #[schema(value_type = Object)]
    live_definition: Value,
    #[serde(with = "time::serde::rfc3339")]
    first_seen_at: OffsetDateTime,
}

/// The server's open tool drifts, oldest first.
#[utoipa::path(get, path = "/servers/{server}/drifts", tag = "servers", security(("api_key" = ["viewer"])),
    params(("server" = Uuid, Path)),
    responses((status = 200, body = Vec<DriftOut>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    Path(server): Path<String>,
) -> ApiResult<Json<Vec<DriftOut>>> {
    let id = server_id(&server)?;
    let mut tx = state.store.begin(key.org).await?;
    store::server::server_by_id(&mut tx, id).await?;
    let drifts = store::drift::open_drifts(&mut tx, Some(id)).await?;
    tx.commit().await?;
    Ok(Json(
        drifts
            .into_iter()
            .map(|d| DriftOut {
                id: d.drift_id,
                server_id: d.server_id.as_uuid(),
                tool: d.tool_name,
                kind: d.kind,
                pinned_definition: d.pinned_definition,
                live_definition: d.live_definition,
                first_seen_at: d.first_seen_at,
            })
            .collect(),
    ))
}

/// Pins the tool's live definition (a new snapshot); the drift is closed and gateways serve the
/// tool again within a second.
#[utoipa::path(post, path = "/servers/{server}/drifts/{drift}/pin", tag = "servers",
    security(("api_key" = ["policy_manager"])),
    params(("server" = Uuid, Path), ("drift" = Uuid, Path)),
    responses((status = 204, description = "Pinned.")))]
pub(crate) async fn pin(
    State(state): State<AppState>,
    key: ApiKey<PolicyManager>,
    Path((server, drift)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    repin(
        &state,
        key.org,
        key.actor(),
        server_id(&server)?,
        drift_id(&drift)?,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Why a drift is dismissed.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct DismissIn {
    comment: Option<String>,
}

/// Dismisses the drift: the tool stays hidden and denied, and this definition is not reported
/// again.
#[utoipa::path(post, path = "/servers/{server}/drifts/{drift}/dismiss", tag = "servers",
    security(("api_key" = ["policy_manager"])),
    params(("server" = Uuid, Path), ("drift" = Uuid, Path)),
    request_body = DismissIn,
    responses((status = 204, description = "Dismissed.")))]
pub(crate) async fn dismiss(
    State(state): State<AppState>,
    key: ApiKey<PolicyManager>,
    Path((server, drift)): Path<(String, String)>,
    ApiJson(body): ApiJson<DismissIn>,
) -> ApiResult<StatusCode> {
    dismiss_one(
        &state,
        key.org,
        key.actor(),
        server_id(&server)?,
        drift_id(&drift)?,
        body.comment.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
