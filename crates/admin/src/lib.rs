//! The control-plane web app: server-rendered pages (axum + askama) where people sign up, register
//! upstream MCP servers, see their tools' risk, and mint grants. Styles and the one small script
//! live under `web/` at the repository root and are embedded; every page works without JavaScript.
//!
//! It must never: run SQL itself (everything goes through `store`, scoped by the member's
//! organisation); show a secret twice (grant tokens are rendered once, upstream headers never);
//! let a state change through without the session's synchroniser token or the role its route
//! requires; connect to an upstream address that DESIGN.md §9 refuses.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod error;
mod notify;
mod pages;
pub mod upstream;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use store::Store;
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::Error;
pub use upstream::AddressPolicy;

/// How the app is deployed.
#[derive(Clone)]
pub struct AdminConfig {
    /// The gateway's public base URL (no trailing slash): proxy URLs are `{public_url}/mcp/{id}`.
    pub public_url: String,
    /// Mark cookies `Secure`: true whenever people reach Gatehouse over https.
    pub secure_cookies: bool,
    /// Which upstream addresses may be registered and contacted.
    pub upstreams: AddressPolicy,
    /// Where changes the gateways cache (re-pinned tools) are announced, on
    /// [`INVALIDATION_CHANNEL`], and approval decisions, on `approval_channel`; without it
    /// gateways notice within their cache TTL, held calls at their next re-read (about a second).
    pub redis: Option<redis::Client>,
    /// The Redis channel approval decisions are announced on (with [`AdminConfig::redis`]), so
    /// the gateway replica holding the call proceeds at once; the gateways' `approval_channel`.
    pub approval_channel: String,
    /// Called after every committed approval decision, in process: `gatehouse up` wakes its
    /// gateway's held calls with it (`Gateway::approval_signal().notify()`), Redis or not.
    pub on_approval_decided: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("public_url", &self.public_url)
            .field("secure_cookies", &self.secure_cookies)
            .field("upstreams", &self.upstreams)
            .field("redis", &self.redis)
            .field("approval_channel", &self.approval_channel)
            .field(
                "on_approval_decided",
                &self.on_approval_decided.as_ref().map(|_| "Fn()"),
            )
            .finish()
    }
}

/// The gateways' configuration invalidation channel (the gateway's `DEFAULT_INVALIDATION_CHANNEL`).
pub const INVALIDATION_CHANNEL: &str = "gatehouse:config";

/// The channel approval decisions are announced on unless configured otherwise: the gateway's
/// `DEFAULT_APPROVAL_CHANNEL` (the `gatehouse` crate's tests check the two agree).
pub const DEFAULT_APPROVAL_CHANNEL: &str = "gatehouse:approvals";

impl AdminConfig {
    /// The usual configuration for a public URL: cookies are `Secure` when it is https.
    pub fn for_public_url(public_url: &str, allow_private_upstreams: bool) -> AdminConfig {
        let public_url = public_url.trim().trim_end_matches('/').to_owned();
        AdminConfig {
            secure_cookies: public_url.starts_with("https://"),
            public_url,
            upstreams: AddressPolicy {
                allow_private: allow_private_upstreams,
            },
            redis: None,
            approval_channel: DEFAULT_APPROVAL_CHANNEL.to_owned(),
            on_approval_decided: None,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) config: Arc<AdminConfig>,
}

impl AppState {
    pub fn new(store: Store, config: AdminConfig) -> AppState {
        AppState {
            store,
            config: Arc::new(config),
        }
    }
}

const APP_CSS: &str = include_str!("../../../web/app.css");
const APP_JS: &str = include_str!("../../../web/app.js");

/// Every page and action of the web app.
pub fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(pages::account::home))
        .route(
            "/signup",
            get(pages::account::signup_form).post(pages::account::signup),
        )
        .route(
            "/login",
            get(pages::account::login_form).post(pages::account::login),
        )
        .route("/logout", post(pages::account::logout))
        .route("/account", get(pages::account::account))
        .route("/account/password", post(pages::account::change_password))
        .route(
            "/servers",
            get(pages::servers::list).post(pages::servers::register),
        )
        .route("/servers/new", get(pages::servers::new_form))
        .route("/audit", get(pages::audit::list))
        .route("/audit/tail", get(pages::audit::tail))
        .route("/audit/export", get(pages::audit_export::export))
        .route(
            "/audit/verify",
            get(pages::audit_verify::page).post(pages::audit_verify::start),
        )
        .route("/audit/events/{event}", get(pages::audit_event::show))
        .route("/approvals", get(pages::approvals::list))
        .route("/approvals/{approval}", get(pages::approvals::show))
        .route(
            "/approvals/{approval}/approve",
            post(pages::approvals::approve),
        )
        .route("/approvals/{approval}/deny", post(pages::approvals::deny))
        .route(
            "/settings/webhook",
            get(pages::webhook::show).post(pages::webhook::set),
        )
        .route("/settings/webhook/delete", post(pages::webhook::delete))
        .route("/admin-events", get(pages::admin_events::list))
        .route("/members", get(pages::members::list))
        .route("/members/{user}/role", post(pages::members::set_role))
        .route(
            "/invitations",
            get(pages::invitations::list).post(pages::invitations::invite),
        )
        .route(
            "/invitations/{invitation}/revoke",
            post(pages::invitations::revoke),
        )
        .route(
            "/join/{token}",
            get(pages::invitations::show).post(pages::invitations::accept),
        )
        .route("/join/{token}/signup", post(pages::invitations::sign_up))
        .route(
            "/api-keys",
            get(pages::api_keys::list).post(pages::api_keys::mint),
        )
        .route("/api-keys/{key}/revoke", post(pages::api_keys::revoke))
        .route("/servers/test", post(pages::servers::test_connection))
        .route("/servers/{server}", get(pages::servers::show))
        .route("/servers/{server}/refresh", post(pages::servers::refresh))
        .route(
            "/servers/{server}/drifts/{drift}/pin",
            post(pages::drifts::pin),
        )
        .route(
            "/servers/{server}/drifts/{drift}/dismiss",
            post(pages::drifts::dismiss),
        )
        .route(
            "/servers/{server}/policies/{name}",
            get(pages::policies::show).post(pages::policies::publish),
        )
        .route(
            "/servers/{server}/policies/{name}/draft",
            post(pages::policies::draft),
        )
        .route(
            "/servers/{server}/policies/{name}/versions/{version}",
            get(pages::policy_versions::show),
        )
        .route(
            "/servers/{server}/policies/{name}/versions/{version}/rollback",
            post(pages::policy_versions::rollback),
        )
        .route("/servers/{server}/grants", post(pages::grants::mint))
        .route(
            "/servers/{server}/grants/{grant}/rotate",
            post(pages::grants::rotate),
        )
        .route(
            "/servers/{server}/grants/{grant}/revoke",
            post(pages::grants::revoke),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::session_layer,
        ));
    Router::new()
        .route(
            "/static/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .merge(pages)
        .layer(DefaultBodyLimit::max(auth::MAX_FORM_BYTES))
        // The JSON API authenticates by API key, never by cookie, so it sits outside the session
        // layer (and its synchroniser-token check) and sets its own body limit.
        .merge(api::router())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
        .with_state(state)
}

/// Serves the app on `listener` until the task is dropped, with each connection's peer address
/// available for sign-in throttling.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    auth::warm_up();
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
