//! The JSON API under `/api/v1`, for automation: what the web app does, authenticated by
//! organisation API keys ([`auth::ApiKey`]), errors as RFC 9457 problem details
//! ([`problem::Problem`]), and its OpenAPI 3.1 document at `/api/v1/openapi.json`.
//!
//! Every operation is registered through `utoipa_axum::routes!`, which adds the handler to the
//! router and its `#[utoipa::path]` description to the document in one step, so the document
//! lists exactly what is served. Each operation's `security` names the least role its handler's
//! `ApiKey<R>` demands; the route tests check every one against real keys.
//!
//! Approvals (`approvals`) read with `ApiKey<Viewer>` and decide with `ApiKey<PolicyManager>`,
//! like the web queue; their webhook needs `ApiKey<Admin>`, like its settings page.

mod approvals;
mod audit;
pub(crate) mod auth;
mod drifts;
mod members;
mod policies;
pub(crate) mod problem;
mod servers;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, InfoBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::api::problem::{Kind, PROBLEM_JSON, Problem};

/// Where the API lives.
pub(crate) const PREFIX: &str = "/api/v1";
/// The largest request body: a policy document of the engine's maximum size, JSON-escaped.
const MAX_BODY_BYTES: usize = 2 * policy::MAX_DOCUMENT_BYTES + 64 * 1024;

/// The API's routes and the document describing them, built from the same registrations.
pub(crate) fn router() -> axum::Router<AppState> {
    let (router, document) = OpenApiRouter::<AppState>::new()
        .nest(PREFIX, operations())
        .split_for_parts();
    let document = Arc::new(finish_document(document));
    router
        .route(
            &format!("{PREFIX}/openapi.json"),
            get(move || {
                let document = Arc::clone(&document);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        document.to_json().expect("the OpenAPI document serialises"),
                    )
                }
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(servers::list, servers::create))
        .routes(routes!(servers::test_connection))
        .routes(routes!(servers::show, servers::delete))
        .routes(routes!(servers::refresh))
        .routes(routes!(drifts::list))
        .routes(routes!(drifts::pin))
        .routes(routes!(drifts::dismiss))
        .routes(routes!(policies::list))
        .routes(routes!(policies::show))
        .routes(routes!(policies::version))
        .routes(routes!(policies::validate))
        .routes(routes!(policies::publish))
        .routes(routes!(servers::list_grants, servers::mint_grant))
        .routes(routes!(servers::rotate_grant))
        .routes(routes!(servers::revoke_grant))
        .routes(routes!(audit::events))
        .routes(routes!(audit::export))
        .routes(routes!(audit::admin_events))
        .routes(routes!(members::list))
        .routes(routes!(members::set_role))
        .routes(routes!(members::list_invitations, members::invite))
        .routes(routes!(members::revoke_invitation))
        .routes(routes!(approvals::list))
        .routes(routes!(approvals::show))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::deny))
        .routes(routes!(
            approvals::webhook,
            approvals::set_webhook,
            approvals::delete_webhook
        ))
}

/// Adds what every operation shares: the document's title, the bearer scheme, and the problem
/// answers (`application/problem+json`) each operation can give besides its own.
fn finish_document(mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title("Gatehouse admin API")
        .version("1")
        .description(Some(
            "Automation for what the Gatehouse admin app does. Authenticate with an organisation \
             API key (`Authorization: Bearer gha_…`, minted by an admin on the API keys page); \
             each operation's security requirement names the least role the key needs. Errors are \
             RFC 9457 problem details.",
        ))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("gha_ API key")
                .build(),
        ),
    );
    let problem_content: Content = ContentBuilder::new()
        .schema(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
        .build();
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(PROBLEM_JSON, problem_content.clone())
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            // `[{"api_key": ["viewer"]}]`: a viewer's key is never below what the operation needs.
            let least_viewer = op
                .security
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .is_some_and(|v| v[0]["api_key"][0] == "viewer");
            let responses = &mut op.responses.responses;
            let mut add = |code: &str, description: &str| {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| problem(description).into());
            };
            add(
                "401",
                "No API key, or one that is unknown, revoked or expired.",
            );
            if !least_viewer {
                add(
                    "403",
                    "The API key's role is below what this operation needs.",
                );
            }
            if path.contains('{') {
                add(
                    "404",
                    "Not found: unknown, or another organisation's (never told apart).",
                );
            }
            if op.request_body.is_some() || op.parameters.is_some() {
                add("422", "The input was refused; `detail` says why.");
            }
            add("500", "Gatehouse failed; the error is logged.");
        }
    }
    doc
}

/// A JSON body, refused as a problem (400, 413, 415, 422) when it is not the expected JSON.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            Kind::UnsupportedMediaType,
            "Send the body as `Content-Type: application/json`.",
        ),
        JsonRejection::JsonSyntaxError(e) => Problem::new(
            Kind::BadRequest,
            format!("The body is not JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => Problem::invalid(e.body_text()),
        JsonRejection::BytesRejection(_) => Problem::new(
            Kind::TooLarge,
            format!("The body is larger than {MAX_BODY_BYTES} bytes."),
        ),
        other => Problem::new(Kind::BadRequest, other.body_text()),
    }
}

/// A query string, refused as a problem (422) when it does not fit.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(Problem::invalid(e.body_text()))
            }
            Err(other) => Err(Problem::new(Kind::BadRequest, other.body_text())),
        }
    }
}

/// A `201 Created` answer with a JSON body.
pub(crate) fn created<T: serde::Serialize>(body: T) -> axum::response::Response {
    (axum::http::StatusCode::CREATED, axum::Json(body)).into_response()
}

/// A JSON answer that carries a secret shown once (a token): never cached.
pub(crate) fn secret<T: serde::Serialize>(
    status: axum::http::StatusCode,
    body: T,
) -> axum::response::Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}
