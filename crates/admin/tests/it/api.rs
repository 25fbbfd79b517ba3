//! The JSON API over real HTTP: servers against the simulator, policies with validation
//! findings at their line, grants, the audit log (keyset pages, streamed exports), admin events,
//! members and invitations, and its errors as problem details.

use genieacs_sim::SimConfig;
use serde_json::{Value, json};
use sqlx::PgPool;
use store::Role;
use store::audit::{AuditDecision, NewAuditEvent};

use crate::audit::event;
use crate::support::{Api, Browser, api_key, org_of, sign_up, spawn_app, spawn_sim};

/// A problem answer: the media type, the RFC 9457 members, and the status repeated.
fn assert_problem(a: &crate::support::Json, status: u16, kind: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.content_type(), "application/problem+json", "{}", a.text);
    assert_eq!(a.body["status"], status);
    assert_eq!(
        a.body["type"],
        format!("tag:gatehouse,2026:problem/{kind}"),
        "{}",
        a.text
    );
    assert!(a.body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(a.body["detail"].as_str().is_some_and(|t| !t.is_empty()));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn servers_policies_and_grants_through_the_api(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    sign_up(&app, "admin@acme.test", "Acme").await;
    let org = org_of(&app, "admin@acme.test").await;
    let api = Api::new(&app, Some(&api_key(&app, org, "ci", Role::Admin).await));

    // Register: tools discovered, pinned with risk, the recommended policy published.
    let created = api
        .post(
            "/servers",
            json!({"name": "genieacs", "upstream_url": sim.url}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["server"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.body["server"]["proxy_url"],
        format!("http://gateway.test:8080/mcp/{id}")
    );
    let tools = created.body["tools"].as_array().unwrap();
    assert!(tools.len() > 5);
    let risks: Vec<&str> = tools.iter().map(|t| t["risk"].as_str().unwrap()).collect();
    assert!(
        risks.contains(&"read") && risks.contains(&"write"),
        "{risks:?}"
    );
    assert!(
        tools
            .iter()
            .all(|t| t["definition_hash"].as_str().unwrap().len() == 64)
    );
    assert!(
        tools
            .iter()
            .all(|t| t["signals"].is_array() && t["definition"]["name"] == t["name"])
    );
    assert_eq!(
        created.body["policies"],
        json!([{"name": "default", "current_version": 1}])
    );
    let listed = api.get("/servers").await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["id"], id.as_str());
    assert_eq!(listed.body[0]["has_credentials"], false);
    let conflict = api
        .post(
            "/servers",
            json!({"name": "genieacs", "upstream_url": sim.url}),
        )
        .await;
    assert_problem(&conflict, 409, "conflict");

    let tested = api
        .post(
            "/servers/test",
            json!({"upstream_url": sim.url, "headers": {}}),
        )
        .await;
    assert_eq!(tested.status, 200, "{}", tested.text);
    assert_eq!(tested.body["tools"].as_array().unwrap().len(), tools.len());
    let refreshed = api
        .post(&format!("/servers/{id}/refresh"), json!(null))
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let unreachable = api
        .post(
            "/servers/test",
            json!({"upstream_url": "http://127.0.0.1:9/mcp"}),
        )
        .await;
    assert_problem(&unreachable, 502, "upstream");

    // Policies: the current document and history; validation findings at their line.
    let policy = api.get(&format!("/servers/{id}/policies/default")).await;
    assert_eq!(policy.status, 200, "{}", policy.text);
    assert_eq!(policy.body["current_version"], 1);
    assert_eq!(policy.body["versions"][0]["published_via"], "api");
    let bad = "{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {\"reboot_devic\": {}}\n}\n";
    let refused = api
        .send(
            "POST",
            &format!("/servers/{id}/policies/default/validate"),
            Some(bad),
            "application/json",
        )
        .await;
    assert_problem(&refused, 422, "policy-invalid");
    let finding = &refused.body["errors"][0];
    assert_eq!(finding["pointer"], "/tools/reboot_devic");
    assert_eq!(finding["line"], 4);
    assert!(finding["column"].as_u64().unwrap() > 1);
    assert_eq!(finding["severity"], "error");
    assert!(
        finding["detail"]
            .as_str()
            .unwrap()
            .contains("reboot_device")
    );
    let good = "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\"get_parameter\": {}}}";
    let valid = api
        .send(
            "POST",
            &format!("/servers/{id}/policies/default/validate"),
            Some(good),
            "application/json",
        )
        .await;
    assert_eq!(valid.status, 200, "{}", valid.text);
    assert_eq!(valid.body["valid"], true);
    let not_json_type = api
        .send(
            "POST",
            &format!("/servers/{id}/policies/default/validate"),
            Some(good),
            "text/plain",
        )
        .await;
    assert_problem(&not_json_type, 415, "unsupported-media-type");
    let refused = api
        .send(
            "POST",
            &format!("/servers/{id}/policies/default/versions"),
            Some(bad),
            "application/json",
        )
        .await;
    assert_problem(&refused, 422, "policy-invalid");
    let published = api
        .send(
            "POST",
            &format!("/servers/{id}/policies/default/versions?comment=reads+only"),
            Some(good),
            "application/json",
        )
        .await;
    assert_eq!(published.status, 201, "{}", published.text);
    assert_eq!(published.body["version"], 2);
    let v2 = api
        .get(&format!("/servers/{id}/policies/default/versions/2"))
        .await;
    assert_eq!(v2.body["source"], good);
    assert_problem(
        &api.get(&format!("/servers/{id}/policies/default/versions/9"))
            .await,
        404,
        "not-found",
    );
    let listed = api.get(&format!("/servers/{id}/policies")).await;
    assert_eq!(listed.body[0]["current_version"], 2);

    // Grants: the token once, never cached; rotation replaces it; revocation ends it.
    let minted = api
        .post(
            &format!("/servers/{id}/grants"),
            json!({"label": "noc-agent", "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(minted.status, 201, "{}", minted.text);
    assert_eq!(minted.headers["cache-control"], "no-store");
    let token = minted.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ghg_"));
    assert_eq!(
        minted.body["client_config"]["mcpServers"]["genieacs"]["headers"]["Authorization"],
        format!("Bearer {token}")
    );
    let grant = minted.body["grant"]["id"].as_str().unwrap().to_owned();
    assert!(app.store.grant_by_token(&token).await.unwrap().is_some());
    let bad_policy = api
        .post(
            &format!("/servers/{id}/grants"),
            json!({"label": "x", "policy": "nope"}),
        )
        .await;
    assert_problem(&bad_policy, 422, "invalid");
    let rotated = api
        .post(&format!("/servers/{id}/grants/{grant}/rotate"), json!(null))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new_token = rotated.body["token"].as_str().unwrap();
    assert_ne!(new_token, token);
    assert!(app.store.grant_by_token(&token).await.unwrap().is_none());
    let revoked = api
        .post(&format!("/servers/{id}/grants/{grant}/revoke"), json!(null))
        .await;
    assert_eq!(revoked.body["status"], "revoked");
    let grants = api.get(&format!("/servers/{id}/grants")).await;
    assert_eq!(grants.body[0]["token_prefix"].as_str().unwrap().len(), 10);
    assert!(!grants.text.contains(new_token));

    // Every change is an admin event, made by the API key.
    let events = api.get("/admin-events?limit=100").await;
    let actions: Vec<(&str, &str)> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    for action in [
        "server.create",
        "server.tools_pinned",
        "policy.publish",
        "grant.mint",
        "grant.rotate",
        "grant.revoke",
    ] {
        assert!(
            actions.contains(&("api_key", action)),
            "{action}: {actions:?}"
        );
    }

    // Deleting the server ends it and its grants.
    let deleted = api
        .send("DELETE", &format!("/servers/{id}"), None, "")
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_problem(&api.get(&format!("/servers/{id}")).await, 404, "not-found");
    assert!(app.store.grant_by_token(new_token).await.unwrap().is_none());
    let events = api.get("/admin-events").await;
    assert_eq!(events.body["events"][0]["action"], "server.delete");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn malformed_requests_are_problems(pool: PgPool) {
    let app = spawn_app(pool).await;
    sign_up(&app, "admin@acme.test", "Acme").await;
    let org = org_of(&app, "admin@acme.test").await;
    let api = Api::new(&app, Some(&api_key(&app, org, "ci", Role::Admin).await));
    assert_problem(
        &api.send("POST", "/servers", Some("{not json"), "application/json")
            .await,
        400,
        "bad-request",
    );
    assert_problem(
        &api.send("POST", "/servers", Some("{}"), "text/plain").await,
        415,
        "unsupported-media-type",
    );
    let unknown = api
        .post(
            "/servers",
            json!({"name": "x", "upstream_url": "http://x/", "colour": "red"}),
        )
        .await;
    assert_problem(&unknown, 422, "invalid");
    assert!(unknown.body["detail"].as_str().unwrap().contains("colour"));
    let huge = "x".repeat(3 * 1024 * 1024);
    assert_problem(
        &api.send("POST", "/servers", Some(&huge), "application/json")
            .await,
        413,
        "too-large",
    );
    assert_problem(&api.get("/servers/not-a-uuid").await, 404, "not-found");
    assert_problem(&api.get("/audit/events?limit=0").await, 422, "invalid");
    assert_problem(
        &api.get("/audit/events?from=yesterday").await,
        422,
        "invalid",
    );
    assert_problem(&api.get("/audit/export").await, 422, "invalid");
    let unauthorised = Api::new(&app, None).get("/servers").await;
    assert_problem(&unauthorised, 401, "unauthorized");
    assert!(
        unauthorised.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_audit_log_pages_by_keyset_and_exports_streamed(pool: PgPool) {
    let app = spawn_app(pool).await;
    sign_up(&app, "admin@acme.test", "Acme").await;
    let org = org_of(&app, "admin@acme.test").await;
    let events: Vec<NewAuditEvent> = (0..120)
        .map(|i| {
            let decision = if i % 10 == 0 {
                AuditDecision::Deny
            } else {
                AuditDecision::Allow
            };
            event(org, i, decision)
        })
        .collect();
    app.store.insert_audit_batch(&events).await.unwrap();
    let api = Api::new(
        &app,
        Some(&api_key(&app, org, "reader", Role::Viewer).await),
    );

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = api
            .get(&format!("/audit/events?limit=50&cursor={cursor}"))
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        pages += 1;
        for e in page.body["events"].as_array().unwrap() {
            seen.push(e["audit_event_id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 120, "no event twice across pages");
    let denied = api
        .get("/audit/events?decision=deny&tool=set_parameter")
        .await;
    assert_eq!(denied.body["events"].as_array().unwrap().len(), 12);
    assert_eq!(
        denied.body["events"][0]["rule"],
        "/tools/set_parameter/deny_if/0"
    );
    assert_eq!(denied.body["events"][0]["hash"].as_str().unwrap().len(), 64);
    assert_problem(
        &api.get("/audit/events?decision=maybe").await,
        422,
        "invalid",
    );
    assert_problem(&api.get("/audit/events?cursor=zzz").await, 422, "invalid");

    let csv = api.get("/audit/export?format=csv").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.content_type(), "text/csv; charset=utf-8");
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("gatehouse-audit.csv")
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 121);
    assert!(lines[0].starts_with("occurred_at,audit_event_id,sequence"));
    let jsonl = api.get("/audit/export?format=jsonl&decision=deny").await;
    assert_eq!(jsonl.content_type(), "application/jsonl");
    let rows: Vec<Value> = jsonl
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 12);
    assert!(
        rows.windows(2)
            .all(|w| w[0]["occurred_at"].as_str() <= w[1]["occurred_at"].as_str()),
        "oldest first"
    );

    // Another organisation's key sees none of it.
    sign_up(&app, "admin@other.test", "Other").await;
    let other = org_of(&app, "admin@other.test").await;
    let theirs = Api::new(
        &app,
        Some(&api_key(&app, other, "reader", Role::Viewer).await),
    );
    let page = theirs.get("/audit/events").await;
    assert_eq!(page.body["events"], json!([]));
    let export = theirs.get("/audit/export?format=csv").await;
    assert_eq!(export.text.lines().count(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn members_and_invitations_through_the_api(pool: PgPool) {
    let app = spawn_app(pool).await;
    sign_up(&app, "admin@acme.test", "Acme").await;
    let org = org_of(&app, "admin@acme.test").await;
    let api = Api::new(&app, Some(&api_key(&app, org, "ci", Role::Admin).await));

    let invited = api
        .post(
            "/invitations",
            json!({"email": "new@acme.test", "role": "policy_manager"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.text);
    assert_eq!(invited.headers["cache-control"], "no-store");
    assert_eq!(invited.body["invitation"]["status"], "pending");
    let url = invited.body["accept_url"].as_str().unwrap();
    let path = &url[url.find("/join/").unwrap()..];
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // The invited person creates their account from the link and is signed in as a member.
    let mut b = Browser::new(&app);
    let page = b.get(path).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Join Acme"));
    let joined = b
        .post(
            &format!("{path}/signup"),
            &[("password", crate::support::PASSWORD)],
        )
        .await;
    assert_eq!(joined.status, 303, "{}", joined.body);
    assert_eq!(b.get("/members").await.status, 200);
    // The link worked once.
    assert_eq!(Browser::new(&app).get(path).await.status, 404);

    let members = api.get("/members").await;
    let new = members
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "new@acme.test")
        .unwrap()
        .clone();
    assert_eq!(new["role"], "policy_manager");
    let user = new["user_id"].as_str().unwrap();
    let changed = api
        .send(
            "PUT",
            &format!("/members/{user}/role"),
            Some(r#"{"role": "viewer"}"#),
            "application/json",
        )
        .await;
    assert_eq!(changed.body["role"], "viewer", "{}", changed.text);
    let admin = members.body[0]["user_id"].as_str().unwrap();
    let last_admin = api
        .send(
            "PUT",
            &format!("/members/{admin}/role"),
            Some(r#"{"role": "viewer"}"#),
            "application/json",
        )
        .await;
    assert_problem(&last_admin, 422, "invalid");

    // A revoked invitation's link stops working; the list shows each status.
    let second = api
        .post(
            "/invitations",
            json!({"email": "x@acme.test", "role": "viewer", "expires_in_days": 1}),
        )
        .await;
    let id = second.body["invitation"]["id"].as_str().unwrap();
    let revoked = api
        .post(&format!("/invitations/{id}/revoke"), json!(null))
        .await;
    assert_eq!(revoked.body["status"], "revoked");
    let url = second.body["accept_url"].as_str().unwrap();
    assert_eq!(
        Browser::new(&app)
            .get(&url[url.find("/join/").unwrap()..])
            .await
            .status,
        404
    );
    let statuses: Vec<Value> = api
        .get("/invitations")
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("revoked"), json!("accepted")]);
    assert_problem(
        &api.post("/invitations", json!({"email": "nope", "role": "viewer"}))
            .await,
        422,
        "invalid",
    );
    assert_problem(
        &api.post(
            "/invitations",
            json!({"email": "a@b.c", "role": "viewer", "expires_in_days": 90}),
        )
        .await,
        422,
        "invalid",
    );
}
