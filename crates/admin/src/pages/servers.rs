//! Upstream servers: the list, registration with "test connection", the server page, refresh.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use policy::{Recommendation, Risk, Signal, ToolDef};
use serde::Deserialize;
use serde_json::Value;
use store::grant::Grant;
use store::secret::Redacted;
use store::server::{NewServer, PinnedTool};
use store::{Actor, OrgId, OrgTx, Role, ServerId};

use crate::AppState;
use crate::auth::{Admin, Member, Viewer};
use crate::error::{Error, Result};
use crate::pages::{check_len, when};
use crate::upstream::{Discovery, discover_tools};
use crate::views::{
    GrantRow, Page, PolicyRow, ServerForm, ServerNewPage, ServerPage, ServerRow, ServersPage,
    SignalRow, Tested, ToolRow, render,
};

/// The most upstream headers, and their bytes in all (as the store accepts).
const MAX_HEADERS: usize = 32;
const MAX_HEADER_BYTES: usize = 8192;

pub(crate) async fn list(State(state): State<AppState>, m: Member<Viewer>) -> Result<Response> {
    let mut tx = state.store.begin(m.org).await?;
    let servers = store::server::list_servers(&mut tx).await?;
    let drifts = store::drift::open_drift_counts(&mut tx).await?;
    tx.commit().await?;
    let drifts_of = |id: ServerId| drifts.iter().find(|(s, _)| *s == id).map_or(0, |(_, n)| *n);
    Ok(render(&ServersPage {
        page: Page::member("Servers", "servers", &m),
        servers: servers
            .into_iter()
            .map(|s| ServerRow {
                drifts: drifts_of(s.server_id),
                id: s.server_id.to_string(),
                name: s.name,
                upstream_url: s.upstream_url,
                has_credentials: s.has_credentials,
                created: when(s.created_at),
            })
            .collect(),
        can_admin: m.can(Role::Admin),
    }))
}

fn new_page(
    m: &Member<Admin>,
    form: ServerForm,
    errors: Vec<String>,
    tested: Option<Tested>,
) -> ServerNewPage {
    ServerNewPage {
        page: Page::member("Register a server", "servers", m),
        csrf: m.csrf.clone(),
        form,
        errors,
        tested,
    }
}

pub(crate) async fn new_form(m: Member<Admin>) -> Response {
    render(&new_page(&m, ServerForm::default(), Vec::new(), None))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ServerFormIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    upstream_url: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    headers: String,
}

/// Checks the registration form; returns what to show again, the headers, and every problem.
fn parse_form(f: ServerFormIn) -> (ServerForm, Vec<(String, String)>, Vec<String>) {
    let mut errors = Vec::new();
    check_len("Name", &f.name, 1, 100, &mut errors);
    check_len("Upstream URL", &f.upstream_url, 1, 2000, &mut errors);
    let mut headers = Vec::new();
    if f.headers.len() > MAX_HEADER_BYTES {
        errors.push(format!(
            "Upstream headers can have at most {MAX_HEADER_BYTES} bytes in all."
        ));
    } else if f.auth == "headers" {
        for (i, line) in f.headers.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match line.split_once(':') {
                Some((name, value)) if !name.trim().is_empty() => {
                    headers.push((name.trim().to_owned(), value.trim().to_owned()));
                }
                _ => errors.push(format!("Header line {} is not `Name: value`.", i + 1)),
            }
        }
        if headers.is_empty() && errors.is_empty() {
            errors.push("Add at least one upstream header, or choose None.".into());
        }
        if headers.len() > MAX_HEADERS {
            errors.push(format!("At most {MAX_HEADERS} upstream headers."));
        }
    }
    let form = ServerForm {
        name: f.name.trim().chars().take(100).collect(),
        upstream_url: f.upstream_url.trim().chars().take(2000).collect(),
        auth: if f.auth == "headers" {
            "headers".into()
        } else {
            "none".into()
        },
        // Secrets typed into the form are not sent back to the browser.
        headers: String::new(),
    };
    (form, headers, errors)
}

/// A tool as the upstream described it, classified.
pub(crate) struct Classified {
    pub(crate) definition: Value,
    pub(crate) risk: Risk,
    pub(crate) tool: ToolDef,
}

fn classify_all(discovery: &Discovery) -> std::result::Result<Vec<Classified>, String> {
    discovery
        .tools
        .iter()
        .enumerate()
        .map(|(i, definition)| {
            let tool: ToolDef = serde_json::from_value(definition.clone()).map_err(|e| {
                format!(
                    "Tool {} of the upstream is not a valid tool definition: {e}.",
                    i + 1
                )
            })?;
            Ok(Classified {
                risk: policy::classify(&tool),
                definition: definition.clone(),
                tool,
            })
        })
        .collect()
}

pub(crate) fn recommendation_text(r: Recommendation) -> String {
    match r {
        Recommendation::Allow => "Allow".into(),
        Recommendation::RateLimit {
            max,
            window_secs: 60,
        } => format!("Rate limit {max}/minute"),
        Recommendation::RateLimit { max, window_secs } => {
            format!("Rate limit {max}/{window_secs}s")
        }
        Recommendation::Approve => "Require approval".into(),
        Recommendation::Hide => "Hide".into(),
    }
}

fn signal_rows(signals: &[Signal]) -> Vec<SignalRow> {
    signals
        .iter()
        .map(|s| SignalRow {
            source: serde_json::to_value(s.source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            matched: s.matched.clone(),
            suggests: s.suggests.as_str().to_owned(),
            detail: s.detail.clone(),
        })
        .collect()
}

fn description(definition: &Value) -> String {
    let d = definition
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut short: String = d.chars().take(240).collect();
    if d.chars().count() > 240 {
        short.push('…');
    }
    short
}

fn tool_row(
    name: &str,
    definition: &Value,
    class: policy::RiskClass,
    signals: &[Signal],
) -> ToolRow {
    ToolRow {
        name: name.to_owned(),
        description: description(definition),
        class: class.as_str(),
        level: class.level().as_str(),
        recommendation: recommendation_text(policy::recommendation(class)),
        signals: signal_rows(signals),
    }
}

fn pinned_tool_row(t: &PinnedTool) -> ToolRow {
    let signals: Vec<Signal> = serde_json::from_value(t.risk_signals.clone()).unwrap_or_default();
    tool_row(&t.name, &t.definition, t.risk, &signals)
}

/// Connects to the upstream and classifies its tools; every failure is a message for the form.
pub(crate) async fn discover(
    state: &AppState,
    url: &str,
    headers: &[(String, String)],
) -> std::result::Result<(Discovery, Vec<Classified>), String> {
    let discovery = discover_tools(url, headers, state.config.upstreams)
        .await
        .map_err(|e| e.to_string())?;
    let classified = classify_all(&discovery)?;
    Ok((discovery, classified))
}

pub(crate) async fn test_connection(
    State(state): State<AppState>,
    m: Member<Admin>,
    Form(f): Form<ServerFormIn>,
) -> Result<Response> {
    let (form, headers, errors) = parse_form(f);
    if !errors.is_empty() {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&new_page(&m, form, errors, None)),
        )
            .into_response());
    }
    match discover(&state, &form.upstream_url, &headers).await {
        Ok((discovery, classified)) => {
            let tested = Tested {
                server_name: discovery
                    .server_name
                    .clone()
                    .unwrap_or_else(|| "the upstream".into()),
                protocol_version: discovery.protocol_version.clone(),
                tools: classified
                    .iter()
                    .map(|c| tool_row(&c.tool.name, &c.definition, c.risk.class, &c.risk.signals))
                    .collect(),
            };
            let mut form = form;
            if !headers.is_empty() {
                form.auth = "headers".into();
            }
            Ok(render(&new_page(&m, form, Vec::new(), Some(tested))))
        }
        Err(message) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&new_page(&m, form, vec![message], None)),
        )
            .into_response()),
    }
}

pub(crate) async fn register(
    State(state): State<AppState>,
    m: Member<Admin>,
    Form(f): Form<ServerFormIn>,
) -> Result<Response> {
    let (form, headers, errors) = parse_form(f);
    let again = |form: ServerForm, errors: Vec<String>| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&new_page(&m, form, errors, None)),
        )
            .into_response()
    };
    if !errors.is_empty() {
        return Ok(again(form, errors));
    }
    let (_, classified) = match discover(&state, &form.upstream_url, &headers).await {
        Ok(found) => found,
        Err(message) => return Ok(again(form, vec![message])),
    };
    let mut tx = state.store.begin(m.org).await?;
    let new = NewServer {
        name: form.name.clone(),
        upstream_url: form.upstream_url.clone(),
        headers: Redacted::new(headers),
    };
    let server = match store::server::create_server(&mut tx, m.actor(), &new).await {
        Ok(s) => s,
        Err(
            store::Error::Conflict { message, .. }
            | store::Error::Invalid {
                reason: message, ..
            },
        ) => {
            tx.rollback().await?;
            return Ok(again(form, vec![capitalise(&message)]));
        }
        Err(e) => return Err(e.into()),
    };
    pin_and_recommend(&mut tx, m.actor(), server.server_id, &classified, true).await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/servers/{}?done=registered", server.server_id)).into_response())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

/// Pins the tools as a new snapshot; on registration also publishes the recommended policy as
/// the server's `default` policy, so grants can be minted at once (people refine it later).
pub(crate) async fn pin_and_recommend(
    tx: &mut OrgTx,
    actor: Actor,
    server: ServerId,
    classified: &[Classified],
    publish_default: bool,
) -> Result<()> {
    let pinned = classified
        .iter()
        .map(|c| {
            PinnedTool::new(
                c.definition.clone(),
                c.risk.class,
                serde_json::to_value(&c.risk.signals).map_err(anyhow::Error::from)?,
            )
            .map_err(Error::from)
        })
        .collect::<Result<Vec<_>>>()?;
    store::server::pin_tool_snapshot(tx, actor, server, &pinned).await?;
    if publish_default {
        let tools: Vec<ToolDef> = classified.iter().map(|c| c.tool.clone()).collect();
        let source = serde_json::to_string_pretty(&policy::recommended_policy(&tools))
            .map_err(anyhow::Error::from)?;
        store::policy::publish_policy_version(
            tx,
            actor,
            server,
            store::policy::DEFAULT_POLICY_NAME,
            &source,
            Some("recommended from the tools' risk at registration"),
        )
        .await?;
    }
    Ok(())
}

/// Parses a server id from a path; a malformed id is as unknown as another organisation's.
pub(crate) fn server_id(text: &str) -> Result<ServerId> {
    text.parse().map_err(|_| Error::NotFound)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShowQuery {
    done: Option<String>,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Path(server): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Response> {
    let notice = match q.done.as_deref() {
        Some("registered") => Some("Server registered: its tools are pinned and a recommended default policy was published.".to_owned()),
        Some("refreshed") => Some("Tools refreshed: a new snapshot was pinned.".to_owned()),
        Some("revoked") => Some("Grant revoked: its token stopped working.".to_owned()),
        Some("repinned") => Some("Pinned: the tool's live definition is the pinned one now, and gateways serve it again.".to_owned()),
        Some("dismissed") => Some("Dismissed: the tool stays hidden and denied until its definition is pinned.".to_owned()),
        _ => None,
    };
    let page = server_page(&state, &m, server_id(&server)?, notice, Vec::new()).await?;
    Ok(render(&page))
}

/// The server page for any member; admins also get the grant actions.
pub(crate) async fn server_page<R>(
    state: &AppState,
    m: &Member<R>,
    id: ServerId,
    notice: Option<String>,
    grant_errors: Vec<String>,
) -> Result<ServerPage> {
    let mut tx = state.store.begin(m.org).await?;
    let server = store::server::server_by_id(&mut tx, id).await?;
    let tools = store::server::latest_pinned_tools(&mut tx, id).await?;
    let drifts = store::drift::open_drifts(&mut tx, Some(id)).await?;
    let grants = store::grant::list_grants(&mut tx, id).await?;
    let policies = store::policy::list_policies(&mut tx, id).await?;
    tx.commit().await?;
    let now = time::OffsetDateTime::now_utc();
    let policy_name = |pid: store::PolicyId| {
        policies
            .iter()
            .find(|p| p.policy_id == pid)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    };
    Ok(ServerPage {
        page: Page::member(server.name.clone(), "servers", m),
        csrf: m.csrf.clone(),
        id: id.to_string(),
        proxy_url: proxy_url(state, id),
        name: server.name,
        upstream_url: server.upstream_url,
        has_credentials: server.has_credentials,
        tools: tools.iter().map(pinned_tool_row).collect(),
        drifts: crate::pages::drifts::drift_rows(&drifts),
        can_pin: m.can(Role::PolicyManager),
        grants: grants
            .into_iter()
            .map(|g| {
                let status = grant_status(&g, now);
                GrantRow {
                    id: g.grant_id.to_string(),
                    policy: policy_name(g.policy_id),
                    label: g.label,
                    identity: g.identity,
                    token_prefix: g.token_prefix,
                    status,
                    created: when(g.created_at),
                    expires: g.expires_at.map_or_else(|| "never".into(), when),
                    last_used: g.last_used_at.map_or_else(|| "never".into(), when),
                    live: status == "active",
                }
            })
            .collect(),
        policies: policies
            .into_iter()
            .map(|p| PolicyRow {
                name: p.name,
                version: p
                    .current_version
                    .map_or_else(|| "none".into(), |v| v.to_string()),
            })
            .collect(),
        can_admin: m.can(Role::Admin),
        notice,
        grant_errors,
    })
}

/// `active`, `revoked` or `expired`, as the server page and the API say it.
pub(crate) fn grant_status(g: &Grant, now: time::OffsetDateTime) -> &'static str {
    if g.revoked_at.is_some() {
        "revoked"
    } else if g.is_active(now) {
        "active"
    } else {
        "expired"
    }
}

pub(crate) fn proxy_url(state: &AppState, id: ServerId) -> String {
    format!("{}/mcp/{id}", state.config.public_url)
}

/// Lists server `id`'s tools again and pins them as a new snapshot (its policies unchanged); an
/// upstream that cannot be listed is an [`Error::Upstream`]. The web page's and the API's refresh.
pub(crate) async fn refresh_tools(
    state: &AppState,
    org: OrgId,
    actor: Actor,
    id: ServerId,
) -> Result<()> {
    let mut tx = state.store.begin(org).await?;
    let server = store::server::server_by_id(&mut tx, id).await?;
    let headers = store::server::upstream_headers(&mut tx, id).await?;
    tx.commit().await?;
    let (_, classified) = discover(state, &server.upstream_url, headers.expose())
        .await
        .map_err(Error::Upstream)?;
    let mut tx = state.store.begin(org).await?;
    pin_and_recommend(&mut tx, actor, id, &classified, false).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn refresh(
    State(state): State<AppState>,
    m: Member<Admin>,
    Path(server): Path<String>,
) -> Result<Response> {
    let id = server_id(&server)?;
    refresh_tools(&state, m.org, m.actor(), id).await?;
    Ok(Redirect::to(&format!("/servers/{id}?done=refreshed")).into_response())
}
