//! Every route of the app, web and API, against every role, against API keys of every scope and
//! broken ones, and against another organisation.
//!
//! [`table`] names every route with the least role it needs. `the_table_names_every_route`
//! enumerates the routes from the router itself (paths from the router, methods from the
//! `Allow` header it answers), so a route added without a row here fails that test.

use std::collections::{BTreeMap, BTreeSet};

use admin::{AdminConfig, AppState};
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;
use store::{Actor, OrgId, Role};

use crate::support::{
    Api, App, Browser, PUBLIC_URL, Sim, api_key, member, mint, org_of, register_sim, sign_up,
    spawn_app, spawn_sim, token_of,
};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Members (web) or API keys with at least this role.
    Least(Role),
    /// Only the holder of an invitation link: tested in `invitations.rs`, where whose link it is
    /// decides, not a role.
    Invitee,
}

/// One route: method, path pattern exactly as the router has it, who may use it, and a request
/// body that succeeds when allowed.
struct Row {
    method: &'static str,
    path: &'static str,
    access: Access,
    body: Body,
}

#[derive(Clone)]
enum Body {
    Empty,
    Form(Vec<(&'static str, String)>),
    Json(String),
}

const VIEWER: Access = Access::Least(Role::Viewer);
const MANAGER: Access = Access::Least(Role::PolicyManager);
const ADMIN: Access = Access::Least(Role::Admin);

/// Every route. Order matters where a call changes what later ones see: rotations before
/// revocations, the server's deletion last.
fn table(fx: &Fixture) -> Vec<Row> {
    let r = |method, path, access, body| Row {
        method,
        path,
        access,
        body,
    };
    let form = |fields: &[(&'static str, &str)]| {
        Body::Form(fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
    };
    let policy = r#"{"version": "1", "default": "allow"}"#;
    let sim = fx.sim_url.as_str();
    vec![
        // Web: public pages and assets.
        r("GET", "/", Access::Public, Body::Empty),
        r("GET", "/signup", Access::Public, Body::Empty),
        r(
            "POST",
            "/signup",
            Access::Public,
            form(&[
                ("email", "someone@new.test"),
                ("password", crate::support::PASSWORD),
                ("organisation", "New"),
            ]),
        ),
        r("GET", "/login", Access::Public, Body::Empty),
        r(
            "POST",
            "/login",
            Access::Public,
            form(&[
                ("email", "admin@acme.test"),
                ("password", crate::support::PASSWORD),
            ]),
        ),
        r("POST", "/logout", Access::Public, Body::Empty),
        r("GET", "/static/app.css", Access::Public, Body::Empty),
        r("GET", "/static/app.js", Access::Public, Body::Empty),
        r("GET", "/join/{token}", Access::Public, Body::Empty),
        r("POST", "/join/{token}", Access::Invitee, Body::Empty),
        r("POST", "/join/{token}/signup", Access::Invitee, Body::Empty),
        r("GET", "/api/v1/openapi.json", Access::Public, Body::Empty),
        // Web: the organisation's pages and actions.
        r("GET", "/account", VIEWER, Body::Empty),
        r(
            "POST",
            "/account/password",
            VIEWER,
            form(&[
                ("current", crate::support::PASSWORD),
                ("new", crate::support::PASSWORD),
                ("confirm", crate::support::PASSWORD),
            ]),
        ),
        r("GET", "/servers", VIEWER, Body::Empty),
        r("GET", "/servers/{server}", VIEWER, Body::Empty),
        r("GET", "/audit", VIEWER, Body::Empty),
        r("GET", "/audit/tail", VIEWER, Body::Empty),
        r("GET", "/audit/export", VIEWER, Body::Empty),
        r("GET", "/audit/verify", VIEWER, Body::Empty),
        // Verifying changes nothing in the log, so viewers may start it.
        r("POST", "/audit/verify", VIEWER, Body::Empty),
        r("GET", "/audit/events/{event}", VIEWER, Body::Empty),
        r("GET", "/members", VIEWER, Body::Empty),
        r(
            "GET",
            "/servers/{server}/policies/{name}",
            VIEWER,
            Body::Empty,
        ),
        r(
            "POST",
            "/servers/{server}/policies/{name}",
            MANAGER,
            form(&[("source", policy)]),
        ),
        // Validating or trying a draft stores nothing, so viewers may; publishing needs more.
        r(
            "POST",
            "/servers/{server}/policies/{name}/draft",
            VIEWER,
            form(&[("op", "check"), ("source", policy)]),
        ),
        r(
            "GET",
            "/servers/{server}/policies/{name}/versions/{version}",
            VIEWER,
            Body::Empty,
        ),
        r(
            "POST",
            "/servers/{server}/policies/{name}/versions/{version}/rollback",
            MANAGER,
            Body::Empty,
        ),
        r("GET", "/approvals", VIEWER, Body::Empty),
        r("GET", "/approvals/{approval}", VIEWER, Body::Empty),
        // Each decision row finds the approval pending again (see `reopen_approvals`).
        r(
            "POST",
            "/approvals/{approval}/approve",
            MANAGER,
            form(&[("comment", "ok")]),
        ),
        r(
            "POST",
            "/approvals/{approval}/deny",
            MANAGER,
            form(&[("comment", "no")]),
        ),
        r("GET", "/settings/webhook", ADMIN, Body::Empty),
        r(
            "POST",
            "/settings/webhook",
            ADMIN,
            form(&[("url", "https://hooks.acme.test/approvals")]),
        ),
        r("POST", "/settings/webhook/delete", ADMIN, Body::Empty),
        r("GET", "/admin-events", ADMIN, Body::Empty),
        r("GET", "/servers/new", ADMIN, Body::Empty),
        r(
            "POST",
            "/servers/test",
            ADMIN,
            form(&[("name", "t"), ("upstream_url", sim), ("auth", "none")]),
        ),
        r(
            "POST",
            "/servers",
            ADMIN,
            form(&[("name", "another"), ("upstream_url", sim), ("auth", "none")]),
        ),
        r("POST", "/servers/{server}/refresh", ADMIN, Body::Empty),
        r(
            "POST",
            "/servers/{server}/drifts/{drift}/pin",
            MANAGER,
            Body::Empty,
        ),
        r(
            "POST",
            "/servers/{server}/drifts/{drift}/dismiss",
            MANAGER,
            form(&[("comment", "seen")]),
        ),
        r(
            "POST",
            "/servers/{server}/grants",
            ADMIN,
            form(&[
                ("label", "crafted"),
                ("policy", "default"),
                ("expires", "never"),
            ]),
        ),
        r(
            "POST",
            "/servers/{server}/grants/{grant}/rotate",
            ADMIN,
            Body::Empty,
        ),
        r(
            "POST",
            "/servers/{server}/grants/{grant}/revoke",
            ADMIN,
            Body::Empty,
        ),
        r(
            "POST",
            "/members/{user}/role",
            ADMIN,
            form(&[("role", "policy_manager")]),
        ),
        r("GET", "/invitations", ADMIN, Body::Empty),
        r(
            "POST",
            "/invitations",
            ADMIN,
            form(&[
                ("email", "invited@acme.test"),
                ("role", "viewer"),
                ("days", "7"),
            ]),
        ),
        r(
            "POST",
            "/invitations/{invitation}/revoke",
            ADMIN,
            Body::Empty,
        ),
        r("GET", "/api-keys", ADMIN, Body::Empty),
        r(
            "POST",
            "/api-keys",
            ADMIN,
            form(&[("name", "minted"), ("role", "viewer"), ("expires", "30d")]),
        ),
        r("POST", "/api-keys/{key}/revoke", ADMIN, Body::Empty),
        // API.
        r("GET", "/api/v1/servers", VIEWER, Body::Empty),
        r("GET", "/api/v1/servers/{server}", VIEWER, Body::Empty),
        r(
            "GET",
            "/api/v1/servers/{server}/policies",
            VIEWER,
            Body::Empty,
        ),
        r(
            "GET",
            "/api/v1/servers/{server}/policies/{name}",
            VIEWER,
            Body::Empty,
        ),
        r(
            "GET",
            "/api/v1/servers/{server}/policies/{name}/versions/{version}",
            VIEWER,
            Body::Empty,
        ),
        r(
            "POST",
            "/api/v1/servers/{server}/policies/{name}/validate",
            VIEWER,
            Body::Json(policy.into()),
        ),
        r(
            "POST",
            "/api/v1/servers/{server}/policies/{name}/versions",
            MANAGER,
            Body::Json(policy.into()),
        ),
        r(
            "GET",
            "/api/v1/servers/{server}/grants",
            VIEWER,
            Body::Empty,
        ),
        r("GET", "/api/v1/audit/events", VIEWER, Body::Empty),
        r("GET", "/api/v1/audit/export", VIEWER, Body::Empty),
        r("GET", "/api/v1/members", VIEWER, Body::Empty),
        r("GET", "/api/v1/admin-events", ADMIN, Body::Empty),
        r(
            "POST",
            "/api/v1/servers",
            ADMIN,
            Body::Json(json!({"name": "api-created", "upstream_url": sim}).to_string()),
        ),
        r(
            "POST",
            "/api/v1/servers/test",
            ADMIN,
            Body::Json(json!({"upstream_url": sim}).to_string()),
        ),
        r(
            "GET",
            "/api/v1/servers/{server}/drifts",
            VIEWER,
            Body::Empty,
        ),
        r(
            "POST",
            "/api/v1/servers/{server}/drifts/{drift}/pin",
            MANAGER,
            Body::Empty,
        ),
        r(
            "POST",
            "/api/v1/servers/{server}/drifts/{drift}/dismiss",
            MANAGER,
            Body::Json(json!({"comment": "seen"}).to_string()),
        ),
        r(
            "POST",
            "/api/v1/servers/{server}/refresh",
            ADMIN,
            Body::Empty,
        ),
        r(
            "POST",
            "/api/v1/servers/{server}/grants",
            ADMIN,
            Body::Json(json!({"label": "api-crafted"}).to_string()),
        ),
        r(
            "POST",
            "/api/v1/servers/{server}/grants/{grant}/rotate",
            ADMIN,
            Body::Empty,
        ),
        r(
            "POST",
            "/api/v1/servers/{server}/grants/{grant}/revoke",
            ADMIN,
            Body::Empty,
        ),
        r(
            "PUT",
            "/api/v1/members/{user}/role",
            ADMIN,
            Body::Json(json!({"role": "policy_manager"}).to_string()),
        ),
        r("GET", "/api/v1/invitations", ADMIN, Body::Empty),
        r(
            "POST",
            "/api/v1/invitations",
            ADMIN,
            Body::Json(json!({"email": "api-invited@acme.test", "role": "viewer"}).to_string()),
        ),
        r(
            "POST",
            "/api/v1/invitations/{invitation}/revoke",
            ADMIN,
            Body::Empty,
        ),
        r("GET", "/api/v1/approvals", VIEWER, Body::Empty),
        r("GET", "/api/v1/approvals/{approval}", VIEWER, Body::Empty),
        r(
            "POST",
            "/api/v1/approvals/{approval}/approve",
            MANAGER,
            Body::Json(json!({"comment": "ok"}).to_string()),
        ),
        r(
            "POST",
            "/api/v1/approvals/{approval}/deny",
            MANAGER,
            Body::Json(json!({"comment": "no"}).to_string()),
        ),
        r("GET", "/api/v1/approval-webhook", ADMIN, Body::Empty),
        r(
            "PUT",
            "/api/v1/approval-webhook",
            ADMIN,
            Body::Json(json!({"url": "https://hooks.acme.test/api"}).to_string()),
        ),
        r("DELETE", "/api/v1/approval-webhook", ADMIN, Body::Empty),
        r("DELETE", "/api/v1/servers/{server}", ADMIN, Body::Empty),
    ]
}

/// The organisation's things every row's placeholders name. API rows get their own grant,
/// invitation and key, so the web rows' revocations leave them usable.
struct Fixture {
    sim_url: String,
    /// A grant token, which is no API key.
    grant_token: String,
    web: BTreeMap<&'static str, String>,
    api: BTreeMap<&'static str, String>,
}

impl Fixture {
    fn path(&self, row: &Row) -> String {
        let values = if row.path.starts_with("/api/v1/") {
            &self.api
        } else {
            &self.web
        };
        let mut path = row.path.to_owned();
        for (k, v) in values {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        if row.path == "/api/v1/audit/export" || row.path == "/audit/export" {
            path.push_str("?format=csv");
        }
        path
    }
}

/// The organisation Acme with a registered server, grants, a second member, invitations and a
/// spare API key; `admin` is its signed-in admin.
async fn acme(app: &App, sim: &Sim) -> (Fixture, Browser, OrgId) {
    let mut admin = sign_up(app, "admin@acme.test", "Acme").await;
    let org = org_of(app, "admin@acme.test").await;
    let server = register_sim(&mut admin, sim, "genieacs").await;
    let grant_token = token_of(&mint(&mut admin, &server, "noc-agent").await);
    let web_grant = grant_id(app, &grant_token).await;
    let api_grant = grant_id(
        app,
        &token_of(&mint(&mut admin, &server, "api-agent").await),
    )
    .await;
    let mut tx = app.store.begin(org).await.unwrap();
    let web_inv = store::invitation::create_invitation(
        &mut tx,
        Actor::Operator,
        "one@acme.test",
        Role::Viewer,
        time::Duration::days(1),
    )
    .await
    .unwrap();
    let api_inv = store::invitation::create_invitation(
        &mut tx,
        Actor::Operator,
        "two@acme.test",
        Role::Viewer,
        time::Duration::days(1),
    )
    .await
    .unwrap();
    let spare = store::api_key::mint_api_key(&mut tx, Actor::Operator, "spare", Role::Viewer, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let user: uuid::Uuid = sqlx::query_scalar(
        "insert into app_user (email) values ('target@acme.test') returning app_user_id",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    let mut tx = app.store.begin(org).await.unwrap();
    store::account::add_member(
        &mut tx,
        Actor::Operator,
        store::UserId::from_uuid(user),
        Role::Viewer,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // One audit event of Acme's, for the event page.
    let event = store::audit::NewAuditEvent {
        audit_event_id: store::AuditEventId::new(),
        organisation_id: org,
        occurred_at: time::OffsetDateTime::now_utc(),
        server_id: server.parse().unwrap(),
        grant_id: web_grant.parse().unwrap(),
        identity: "noc-agent".into(),
        session_id: None,
        method: "tools/call".into(),
        tool_name: Some("get_parameter".into()),
        arguments: json!({}),
        decision: store::audit::AuditDecision::Allow,
        rule: Some("/tools/get_parameter".into()),
        message: None,
        policy_version: Some(1),
        upstream_status: Some(200),
        is_error: Some(false),
        latency_us: Some(1000),
        client_addr: None,
        user_agent: None,
    };
    app.store
        .insert_audit_batch(std::slice::from_ref(&event))
        .await
        .unwrap();
    let common = [
        ("event", event.audit_event_id.to_string()),
        ("server", server.clone()),
        ("name", "default".to_owned()),
        ("version", "1".to_owned()),
        ("user", user.to_string()),
        ("token", web_inv.token.expose().clone()),
        ("key", spare.api_key.api_key_id.to_string()),
    ];
    let mut web: BTreeMap<_, _> = common.clone().into_iter().collect();
    web.insert("drift", drift(app, org, &server, "web_drift_tool").await);
    web.insert(
        "approval",
        approval(app, org, &server, &web_grant, "web").await,
    );
    web.insert("grant", web_grant);
    web.insert("invitation", web_inv.invitation.invitation_id.to_string());
    let mut api: BTreeMap<_, _> = common.into_iter().collect();
    api.insert("drift", drift(app, org, &server, "api_drift_tool").await);
    api.insert(
        "approval",
        approval(app, org, &server, &api_grant, "api").await,
    );
    api.insert("grant", api_grant);
    api.insert("invitation", api_inv.invitation.invitation_id.to_string());
    (
        Fixture {
            sim_url: sim.url.clone(),
            grant_token,
            web,
            api,
        },
        admin,
        org,
    )
}

/// A tool drift of Acme's server as a gateway records it: a tool the upstream serves unpinned.
async fn drift(app: &App, org: OrgId, server: &str, tool: &str) -> String {
    let definition =
        json!({"name": tool, "description": "Not pinned.", "inputSchema": {"type": "object"}});
    let mut tx = app.store.begin(org).await.unwrap();
    let observed = store::drift::ObservedDrift {
        server: server.parse().unwrap(),
        tool_name: tool.into(),
        pinned_hash: None,
        live_hash: store::server::definition_hash(&definition),
        live_definition: definition,
    };
    assert!(
        store::drift::record_drift(&mut tx, &observed)
            .await
            .unwrap()
    );
    let id = store::drift::open_drifts(&mut tx, Some(observed.server))
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.tool_name == tool)
        .unwrap()
        .drift_id;
    tx.commit().await.unwrap();
    id.to_string()
}

/// A pending approval of Acme's, as the gateway opens it for a held call.
async fn approval(app: &App, org: OrgId, server: &str, grant: &str, which: &str) -> String {
    crate::support::open_approval(
        &app.store,
        org,
        grant.parse().unwrap(),
        server.parse().unwrap(),
        "reboot_device",
        json!({"device_id": which}),
        std::time::Duration::from_secs(3600),
    )
    .await
    .approval_id
    .to_string()
}

/// Makes every approval pending again, so each role's decision row finds one to decide (a
/// decided approval is a conflict, tested in `approvals.rs`).
async fn reopen_approvals(app: &App) {
    sqlx::query(
        "update approval set status = 'pending', decided_by = null, decided_via = null, \
         decided_at = null, decision_comment = null, consumed_at = null, \
         expires_at = now() + interval '1 hour'",
    )
    .execute(app.store.pool())
    .await
    .unwrap();
}

/// Whether the row decides an approval.
fn decides(row: &Row) -> bool {
    row.method == "POST" && row.path.contains("{approval}")
}

async fn grant_id(app: &App, token: &str) -> String {
    app.store
        .grant_by_token(token)
        .await
        .unwrap()
        .unwrap()
        .grant_id
        .to_string()
}

async fn web_call(b: &mut Browser, row: &Row, path: &str) -> u16 {
    match (row.method, &row.body) {
        ("GET", _) => b.get(path).await.status,
        (_, Body::Form(fields)) => {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post(path, &fields).await.status
        }
        _ => b.post(path, &[]).await.status,
    }
}

async fn api_call(api: &Api, row: &Row, path: &str) -> crate::support::Json {
    let path = path.strip_prefix("/api/v1").unwrap();
    match &row.body {
        Body::Json(body) => {
            api.send(row.method, path, Some(body), "application/json")
                .await
        }
        _ => api.send(row.method, path, None, "").await,
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_table_names_every_route(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool.clone()).await;
    let (fx, _, _) = acme(&app, &sim).await;

    // The paths, from the router itself.
    let state = AppState::new(
        app.store.clone(),
        AdminConfig::for_public_url(PUBLIC_URL, true),
    );
    let debug = format!("{:?}", admin::router(state));
    let mut served = BTreeSet::new();
    for (i, _) in debug.match_indices(": \"/") {
        let rest = &debug[i + 3..];
        let path = &rest[..rest.find('"').unwrap()];
        if !path.contains("__private__") {
            served.insert(path.to_owned());
        }
    }
    assert!(served.len() > 40, "paths found in the router: {served:?}");
    // The methods of each path, as the app answers them.
    let client = reqwest::Client::new();
    let mut routes = BTreeSet::new();
    for pattern in &served {
        let probe = Row {
            method: "OPTIONS",
            path: Box::leak(pattern.clone().into_boxed_str()),
            access: Access::Public,
            body: Body::Empty,
        };
        let url = format!("{}{}", app.url, fx.path(&probe).split('?').next().unwrap());
        let answer = client
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 405, "OPTIONS {pattern}");
        let allow = answer.headers()["allow"].to_str().unwrap().to_owned();
        for method in allow.split(',').map(str::trim).filter(|m| *m != "HEAD") {
            routes.insert((method.to_owned(), pattern.clone()));
        }
    }
    let listed: BTreeSet<(String, String)> = table(&fx)
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = routes.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in roles.rs: {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&routes).collect();
    assert!(
        stale.is_empty(),
        "rows for routes that do not exist: {stale:?}"
    );

    // The OpenAPI document states the same least role for every API operation as this table,
    // whose rows the role tests check against real keys.
    let doc = Api::new(&app, None).get("/openapi.json").await.body;
    for row in table(&fx).iter().filter(|r| r.path.starts_with("/api/v1/")) {
        let Access::Least(least) = row.access else {
            continue;
        };
        let op = &doc["paths"][row.path][row.method.to_lowercase()];
        assert_eq!(
            op["security"],
            json!([{ "api_key": [least.as_str()] }]),
            "{} {}",
            row.method,
            row.path
        );
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_route_admits_exactly_the_roles_it_should(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let (fx, mut admin, org) = acme(&app, &sim).await;
    let mut viewer = member(&app, org, "viewer@acme.test", Role::Viewer).await;
    let mut manager = member(&app, org, "manager@acme.test", Role::PolicyManager).await;
    let rows = table(&fx);

    // Nobody signed in: public routes work, every other web route sends to the sign-in page.
    let mut anon = Browser::new(&app);
    for row in rows.iter().filter(|r| !r.path.starts_with("/api/v1/")) {
        let path = fx.path(row);
        match row.access {
            Access::Invitee => continue,
            Access::Public => {
                let status = web_call(&mut anon, row, &path).await;
                assert!(
                    matches!(status, 200 | 303),
                    "{} {path}: {status}",
                    row.method
                );
            }
            Access::Least(_) => {
                let a = match row.method {
                    "GET" => anon.get(&path).await,
                    _ => anon.post(&path, &[]).await,
                };
                assert_eq!(
                    (a.status, a.location.as_deref()),
                    (303, Some("/login")),
                    "{} {path}",
                    row.method
                );
            }
        }
    }

    // Members of each role, least privileged first (so the admin's changes come last).
    for (role, browser) in [
        (Role::Viewer, &mut viewer),
        (Role::PolicyManager, &mut manager),
        (Role::Admin, &mut admin),
    ] {
        for row in rows.iter().filter(|r| !r.path.starts_with("/api/v1/")) {
            let Access::Least(least) = row.access else {
                continue;
            };
            let path = fx.path(row);
            if decides(row) {
                reopen_approvals(&app).await;
            }
            let status = web_call(browser, row, &path).await;
            if role >= least {
                assert!(
                    matches!(status, 200 | 303),
                    "{role} {} {path} should be allowed, got {status}",
                    row.method
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{role} {} {path} should be refused",
                    row.method
                );
            }
        }
    }
    // The refused hand-crafted grant did not come into being; the admin's did.
    let labels: Vec<String> = sqlx::query_scalar(
        "select label from access_grant where label like '%crafted' order by label",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(labels, ["crafted"]);

    // API keys: broken ones are 401 everywhere; each scope gets exactly its routes.
    let revoked = api_key(&app, org, "revoked", Role::Admin).await;
    let expired = api_key(&app, org, "expired", Role::Admin).await;
    sqlx::query("update api_key set revoked_at = now() where name = 'revoked'")
        .execute(app.store.pool())
        .await
        .unwrap();
    sqlx::query(
        "update api_key set expires_at = now() - interval '1 second' where name = 'expired'",
    )
    .execute(app.store.pool())
    .await
    .unwrap();
    let unknown = format!("gha_{}", "A".repeat(44));
    let broken = [
        ("no key", Api::new(&app, None)),
        ("unknown key", Api::new(&app, Some(&unknown))),
        ("grant token", Api::new(&app, Some(&fx.grant_token))),
        ("revoked key", Api::new(&app, Some(&revoked))),
        ("expired key", Api::new(&app, Some(&expired))),
    ];
    let api_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/") && r.access != Access::Public)
        .collect();
    for row in &api_rows {
        let path = fx.path(row);
        for (what, api) in &broken {
            let a = api_call(api, row, &path).await;
            assert_eq!(a.status, 401, "{what}: {} {path}: {}", row.method, a.text);
            assert_eq!(a.content_type(), "application/problem+json");
            assert!(a.headers.contains_key("www-authenticate"));
        }
        // A signed-in admin's session cookie is no API credential.
        let cookie = api_call(&Api::with_cookie(&app, &admin.cookie_header()), row, &path).await;
        assert_eq!(cookie.status, 401, "cookie: {} {path}", row.method);
    }
    for role in Role::ALL {
        let api = Api::new(
            &app,
            Some(&api_key(&app, org, &format!("key-{role}"), role).await),
        );
        for row in &api_rows {
            let Access::Least(least) = row.access else {
                continue;
            };
            let path = fx.path(row);
            if decides(row) {
                reopen_approvals(&app).await;
            }
            let a = api_call(&api, row, &path).await;
            if role >= least {
                assert!(
                    (200..300).contains(&a.status),
                    "{role} key {} {path} should be allowed, got {}: {}",
                    row.method,
                    a.status,
                    a.text
                );
            } else {
                assert_eq!(
                    a.status, 403,
                    "{role} key {} {path} should be refused",
                    row.method
                );
                assert_eq!(a.body["type"], "tag:gatehouse,2026:problem/forbidden");
            }
        }
    }
    let labels: Vec<String> =
        sqlx::query_scalar("select label from access_grant where label = 'api-crafted'")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert!(
        labels.is_empty(),
        "the server and its grants were deleted last"
    );
    let created: i64 = sqlx::query_scalar("select count(*) from server where name = 'api-created'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(created, 1, "only the admin key created a server");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn another_organisations_ids_are_not_found(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let (fx, mut acme_admin, _) = acme(&app, &sim).await;
    let mut other = sign_up(&app, "admin@other.test", "Other").await;
    let other_org = org_of(&app, "admin@other.test").await;
    let other_server = register_sim(&mut other, &sim, "genieacs").await;
    let other_api = Api::new(
        &app,
        Some(&api_key(&app, other_org, "ci", Role::Admin).await),
    );

    // Every route that names one of Acme's things answers 404 to Other's admin and admin key.
    for row in table(&fx).iter().filter(|r| {
        matches!(r.access, Access::Least(_))
            && [
                "{server}",
                "{grant}",
                "{user}",
                "{invitation}",
                "{key}",
                "{event}",
                "{approval}",
            ]
            .iter()
            .any(|p| r.path.contains(p))
    }) {
        let path = fx.path(row);
        let status = if row.path.starts_with("/api/v1/") {
            let a = api_call(&other_api, row, &path).await;
            assert!(!a.text.contains("genieacs"), "{path}: {}", a.text);
            a.status
        } else {
            web_call(&mut other, row, &path).await
        };
        assert_eq!(status, 404, "{} {path}", row.method);
    }
    // Its own server with Acme's grant is not found either.
    let grant = &fx.web["grant"];
    let a = other_api
        .post(
            &format!("/servers/{other_server}/grants/{grant}/revoke"),
            json!(null),
        )
        .await;
    assert_eq!(a.status, 404);
    let status = web_call(
        &mut other,
        &Row {
            method: "POST",
            path: "",
            access: ADMIN,
            body: Body::Empty,
        },
        &format!("/servers/{other_server}/grants/{grant}/revoke"),
    )
    .await;
    assert_eq!(status, 404);

    // Nothing of Acme's changed.
    let acme_server = &fx.web["server"];
    assert_eq!(
        acme_admin
            .get(&format!("/servers/{acme_server}"))
            .await
            .status,
        200
    );
    let revoked: i64 =
        sqlx::query_scalar("select count(*) from access_grant where revoked_at is not null")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(revoked, 0);
    let open: i64 = sqlx::query_scalar(
        "select count(*) from invitation where revoked_at is null and accepted_at is null",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(open, 2);
    let keys: i64 = sqlx::query_scalar("select count(*) from api_key where revoked_at is not null")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(keys, 0);
    // Every page and API read that names nothing (lists, the audit log and its export, the tail,
    // verification, the account) shows Other only its own: none of Acme's ids or addresses.
    let acme_marks: Vec<String> = fx
        .web
        .iter()
        .chain(&fx.api)
        .filter(|(k, _)| !matches!(**k, "name" | "version"))
        .map(|(_, v)| v.clone())
        .chain(["acme.test".to_owned()])
        .collect();
    let rows = table(&fx);
    let reads: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.method == "GET" && matches!(r.access, Access::Least(_)) && !r.path.contains('{')
        })
        .collect();
    assert!(reads.len() >= 15, "{}", reads.len());
    // The same reads show Acme's admin its own (so the marks are ones these pages show).
    assert!(
        acme_admin
            .get("/servers")
            .await
            .body
            .contains(acme_server.as_str())
    );
    for row in reads {
        let path = fx.path(row);
        let (status, body) = if row.path.starts_with("/api/v1/") {
            let a = api_call(&other_api, row, &path).await;
            (a.status, a.text)
        } else {
            let a = other.get(&path).await;
            (a.status, a.body)
        };
        assert_eq!(status, 200, "{path}");
        for mark in &acme_marks {
            assert!(!body.contains(mark.as_str()), "{path} shows Acme's {mark}");
        }
    }
}
