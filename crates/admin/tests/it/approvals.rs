//! Human approvals in the web app and the API: the queue and its badge, one approval, approve and
//! deny with the page's CSRF token, what viewers and other organisations get, deciding twice, the
//! announcement of each decision (Redis and the in-process hook), and the webhook settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use admin::AdminConfig;
use futures_util::StreamExt as _;
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;
use store::approval::Approval;
use store::{GrantId, OrgId, Role, ServerId};

use crate::support::{
    Api, App, Browser, PUBLIC_URL, api_key, member, mint, open_approval, org_of, register_sim,
    sign_up, spawn_app, spawn_app_with, spawn_sim, token_of,
};

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const HOUR: Duration = Duration::from_secs(3600);

/// Acme with a registered simulator and a grant `noc-agent`: its signed-in admin, the
/// organisation, the server and the grant.
async fn acme(app: &App) -> (Browser, OrgId, ServerId, GrantId) {
    let sim = spawn_sim(SimConfig::default()).await;
    let mut admin = sign_up(app, "admin@acme.test", "Acme").await;
    let org = org_of(app, "admin@acme.test").await;
    let server = register_sim(&mut admin, &sim, "genieacs").await;
    let token = token_of(&mint(&mut admin, &server, "noc-agent").await);
    let grant = app
        .store
        .grant_by_token(&token)
        .await
        .unwrap()
        .unwrap()
        .grant_id;
    (admin, org, server.parse().unwrap(), grant)
}

async fn reboot(app: &App, org: OrgId, server: ServerId, grant: GrantId, device: &str) -> Approval {
    open_approval(
        &app.store,
        org,
        grant,
        server,
        "reboot_device",
        json!({"device_id": device, "password": "[REDACTED]"}),
        HOUR,
    )
    .await
}

/// The pending count the navigation shows, `None` when the badge is hidden.
fn badge(body: &str) -> Option<u32> {
    let marker = "class=\"badge nav-count\" aria-label=\"";
    let start = body.find(marker)? + marker.len();
    let label = &body[start..start + body[start..].find('"').unwrap()];
    let n = label.strip_suffix(" pending").unwrap().parse().unwrap();
    let shown = format!("{label}\">{n}</span>");
    assert!(body.contains(&shown), "the count is the badge's text too");
    Some(n)
}

/// The form token on the approval's page (its decision form).
async fn csrf_of(b: &mut Browser, id: &str) -> String {
    b.get(&format!("/approvals/{id}")).await.csrf()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn policy_managers_see_the_queue_and_decide_with_a_comment(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (mut admin, org, server, grant) = acme(&app).await;
    assert_eq!(badge(&admin.get("/servers").await.body), None);
    let empty = admin.get("/approvals").await;
    assert_eq!(empty.status, 200);
    assert!(
        empty.body.contains("No approvals waiting"),
        "{}",
        empty.body
    );

    let first = reboot(&app, org, server, grant, "00236A-1").await;
    let second = reboot(&app, org, server, grant, "00236A-2").await;
    let mut manager = member(&app, org, "manager@acme.test", Role::PolicyManager).await;

    // The badge, on every page of the organisation.
    for page in ["/servers", "/audit", "/members", "/account"] {
        assert_eq!(badge(&manager.get(page).await.body), Some(2), "{page}");
    }
    // The queue: both, newest first, with their tool, identity, server and expiry.
    let queue = manager.get("/approvals").await;
    assert_eq!(queue.status, 200);
    assert!(queue.body.contains("aria-current=\"page\">Pending"));
    let (a, b) = (
        queue.body.find(&second.approval_id.to_string()).unwrap(),
        queue.body.find(&first.approval_id.to_string()).unwrap(),
    );
    assert!(a < b, "newest first");
    for text in [
        "reboot_device",
        "noc-agent",
        "genieacs",
        "approval-pending",
        "(in 60 min)",
    ] {
        assert!(queue.body.contains(text), "{text}");
    }

    // One approval: the call as stored, and the decision form with the session's token.
    let id = first.approval_id.to_string();
    let page = manager.get(&format!("/approvals/{id}")).await;
    assert_eq!(page.status, 200);
    for text in [
        "00236A-1",
        "[REDACTED]",
        "device_id",
        "session-1",
        &first.request_id,
        &grant.to_string(),
        &format!("action=\"/approvals/{id}/approve\""),
        &format!("formaction=\"/approvals/{id}/deny\""),
        "name=\"comment\"",
    ] {
        assert!(page.body.contains(text), "{text}: {}", page.body);
    }

    // Denying needs a comment; nothing is decided without one.
    let csrf = csrf_of(&mut manager, &id).await;
    let refused = manager
        .post_raw(
            &format!("/approvals/{id}/deny"),
            &[("csrf", &csrf), ("comment", "  ")],
        )
        .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.body.contains("Deny needs a comment"),
        "{}",
        refused.body
    );
    assert_eq!(badge(&refused.body), Some(2));

    // A form without the token never reaches the handler.
    let forged = manager
        .post_raw(&format!("/approvals/{id}/approve"), &[("comment", "ok")])
        .await;
    assert_eq!(forged.status, 403);

    // Approve with a comment: back on its page, with the notice and who decided.
    let approved = manager
        .post_raw(
            &format!("/approvals/{id}/approve"),
            &[("csrf", &csrf), ("comment", "Planned maintenance window")],
        )
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    assert_eq!(
        approved.location.as_deref(),
        Some(format!("/approvals/{id}?done=approved").as_str())
    );
    let shown = manager.get(approved.location.as_deref().unwrap()).await;
    for text in [
        "Approved. The held call goes through",
        "approval-approved",
        "Planned maintenance window",
        "manager@acme.test",
    ] {
        assert!(shown.body.contains(text), "{text}");
    }
    assert!(!shown.body.contains("/approve\""), "no form once decided");
    assert_eq!(badge(&shown.body), Some(1));

    // Deciding it again is refused, and says why.
    let again = manager
        .post_raw(
            &format!("/approvals/{id}/deny"),
            &[("csrf", &csrf), ("comment", "changed my mind")],
        )
        .await;
    assert_eq!(again.status, 409);
    assert!(
        again.body.contains("was already decided (approved)"),
        "{}",
        again.body
    );

    // Deny the other with a comment.
    let other = second.approval_id.to_string();
    let denied = manager
        .post_raw(
            &format!("/approvals/{other}/deny"),
            &[("csrf", &csrf), ("comment", "Not during business hours")],
        )
        .await;
    assert_eq!(denied.status, 303);
    let shown = manager.get(denied.location.as_deref().unwrap()).await;
    assert!(
        shown
            .body
            .contains("Denied. The agent is told your comment.")
    );
    assert!(shown.body.contains("Not during business hours"));
    assert_eq!(badge(&shown.body), None, "no badge at 0");

    // Both are decided now, with who decided; each decision is an admin event.
    let pending = manager.get("/approvals").await;
    assert!(pending.body.contains("No approvals waiting"));
    let decided = manager.get("/approvals?status=decided").await;
    assert!(decided.body.contains("aria-current=\"page\">Decided"));
    for text in [
        id.as_str(),
        &other,
        "approval-denied",
        "by manager@acme.test",
    ] {
        assert!(decided.body.contains(text), "{text}");
    }
    let events = admin.get("/admin-events").await.body;
    assert!(events.contains("approval.approve") && events.contains("approval.deny"));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_expired_approval_cannot_be_decided(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (mut admin, org, server, grant) = acme(&app).await;
    let a = open_approval(
        &app.store,
        org,
        grant,
        server,
        "reboot_device",
        json!({"device_id": "x"}),
        Duration::from_millis(1),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let id = a.approval_id.to_string();
    let page = admin.get(&format!("/approvals/{id}")).await;
    assert!(page.body.contains("approval-expired"));
    assert!(
        !page.body.contains("/approve\""),
        "no form for an expired one"
    );
    assert_eq!(badge(&page.body), None);
    let csrf = page.csrf();
    let refused = admin
        .post_raw(
            &format!("/approvals/{id}/approve"),
            &[("csrf", &csrf), ("comment", "")],
        )
        .await;
    assert_eq!(refused.status, 409);
    assert!(
        refused.body.contains("expired before anyone decided"),
        "{}",
        refused.body
    );
    assert!(
        admin
            .get("/approvals?status=decided")
            .await
            .body
            .contains(&id)
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn viewers_read_the_queue_but_cannot_decide(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_admin, org, server, grant) = acme(&app).await;
    let a = reboot(&app, org, server, grant, "00236A-1").await;
    let id = a.approval_id.to_string();
    let mut viewer = member(&app, org, "viewer@acme.test", Role::Viewer).await;
    assert_eq!(badge(&viewer.get("/servers").await.body), Some(1));
    assert!(viewer.get("/approvals").await.body.contains(&id));
    let page = viewer.get(&format!("/approvals/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("00236A-1"));
    assert!(page.body.contains("your role can only see it"));
    assert!(!page.body.contains("/approve\""), "no decision form");
    // A hand-made form with the viewer's own token is refused by the route.
    for (action, comment) in [("approve", "ok"), ("deny", "no")] {
        let refused = viewer
            .post(
                &format!("/approvals/{id}/{action}"),
                &[("comment", comment)],
            )
            .await;
        assert_eq!(refused.status, 403, "{action}");
    }
    let key = api_key(&app, org, "read-only", Role::Viewer).await;
    let refused = Api::new(&app, Some(&key))
        .post(&format!("/approvals/{id}/approve"), json!({}))
        .await;
    assert_eq!(refused.status, 403);
    let mut tx = app.store.begin(org).await.unwrap();
    let still = store::approval::approval_by_id(&mut tx, a.approval_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(still.status, store::approval::ApprovalStatus::Pending);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn another_organisations_approval_is_not_found(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_admin, org, server, grant) = acme(&app).await;
    let a = reboot(&app, org, server, grant, "00236A-1").await;
    let id = a.approval_id.to_string();
    let mut other = sign_up(&app, "admin@other.test", "Other").await;
    let other_org = org_of(&app, "admin@other.test").await;
    assert_eq!(other.get(&format!("/approvals/{id}")).await.status, 404);
    assert_eq!(
        other
            .post(&format!("/approvals/{id}/approve"), &[("comment", "ok")])
            .await
            .status,
        404
    );
    let queue = other.get("/approvals").await;
    assert!(!queue.body.contains(&id));
    assert_eq!(badge(&queue.body), None);
    let api = Api::new(
        &app,
        Some(&api_key(&app, other_org, "ci", Role::Admin).await),
    );
    assert_eq!(api.get(&format!("/approvals/{id}")).await.status, 404);
    let denied = api
        .post(&format!("/approvals/{id}/deny"), json!({"comment": "no"}))
        .await;
    assert_eq!(denied.status, 404);
    assert_eq!(denied.content_type(), "application/problem+json");
    let listed = api.get("/approvals").await;
    assert_eq!(listed.body["approvals"], json!([]));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_queue_pages_by_25(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (mut admin, org, server, grant) = acme(&app).await;
    for i in 0..27 {
        reboot(&app, org, server, grant, &format!("device-{i:02}")).await;
    }
    let rows = |body: &str| body.matches("class=\"badge approval-pending\"").count();
    let first = admin.get("/approvals").await;
    assert_eq!(rows(&first.body), 25);
    assert_eq!(badge(&first.body), Some(27));
    let marker = "href=\"/approvals?status=pending&#38;cursor=";
    let start = first.body.find(marker).expect("a link to older ones") + "href=\"".len();
    let link =
        first.body[start..start + first.body[start..].find('"').unwrap()].replace("&#38;", "&");
    let second = admin.get(&link).await;
    assert_eq!(second.status, 200);
    assert_eq!(rows(&second.body), 2);
    assert!(!second.body.contains("rel=\"next\""));
    assert!(second.body.contains("← Newest"));
    assert_eq!(
        admin.get("/approvals?cursor=nonsense").await.status,
        422,
        "a cursor the page never gave"
    );
    assert_eq!(admin.get("/approvals?status=all").await.status, 422);

    // The API pages the same way.
    let api = Api::new(&app, Some(&api_key(&app, org, "ci", Role::Viewer).await));
    let page = api.get("/approvals?status=pending").await;
    assert_eq!(page.body["approvals"].as_array().unwrap().len(), 25);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = api.get(&format!("/approvals?cursor={cursor}")).await;
    assert_eq!(rest.body["approvals"].as_array().unwrap().len(), 2);
    assert!(rest.body["next_cursor"].is_null());
    assert_eq!(api.get("/approvals?cursor=x").await.status, 422);
    assert_eq!(
        api.get("/approvals?status=decided").await.body["approvals"],
        json!([])
    );
}

/// The next message's payload, within 5 s.
async fn next(messages: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin)) -> String {
    tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("a message within 5 s")
        .unwrap()
        .get_payload()
        .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn each_decision_is_announced_on_redis_and_to_the_hook(pool: PgPool) {
    let redis = redis::Client::open(REDIS_URL).unwrap();
    let channel = format!("gatehouse:approvals:test-{}", uuid::Uuid::new_v4());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut config = AdminConfig::for_public_url(PUBLIC_URL, true);
    assert_eq!(config.approval_channel, "gatehouse:approvals");
    config.redis = Some(redis.clone());
    config.approval_channel = channel.clone();
    let counted = Arc::clone(&calls);
    config.on_approval_decided = Some(Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    }));
    let app = spawn_app_with(pool, config).await;
    let (mut admin, org, server, grant) = acme(&app).await;
    let web = reboot(&app, org, server, grant, "00236A-1").await;
    let api = reboot(&app, org, server, grant, "00236A-2").await;

    let mut pubsub = redis.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let mut messages = pubsub.on_message();

    // Refused decisions announce nothing.
    let id = web.approval_id.to_string();
    let csrf = csrf_of(&mut admin, &id).await;
    let refused = admin
        .post_raw(&format!("/approvals/{id}/deny"), &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let approved = admin
        .post_raw(
            &format!("/approvals/{id}/approve"),
            &[("csrf", &csrf), ("comment", "")],
        )
        .await;
    assert_eq!(approved.status, 303);
    assert_eq!(next(&mut messages).await, id);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let key = api_key(&app, org, "ci", Role::PolicyManager).await;
    let denied = Api::new(&app, Some(&key))
        .post(
            &format!("/approvals/{}/deny", api.approval_id),
            json!({"comment": "no"}),
        )
        .await;
    assert_eq!(denied.status, 200, "{}", denied.text);
    assert_eq!(next(&mut messages).await, api.approval_id.to_string());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_api_lists_shows_and_decides(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_admin, org, server, grant) = acme(&app).await;
    let a = reboot(&app, org, server, grant, "00236A-1").await;
    let b = reboot(&app, org, server, grant, "00236A-2").await;
    let api = Api::new(
        &app,
        Some(&api_key(&app, org, "ci", Role::PolicyManager).await),
    );

    let listed = api.get("/approvals").await;
    assert_eq!(listed.status, 200);
    let ids: Vec<&str> = listed.body["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.approval_id.to_string(), a.approval_id.to_string()]);
    let one = api.get(&format!("/approvals/{}", a.approval_id)).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["tool"], "reboot_device");
    assert_eq!(
        one.body["arguments"],
        json!({"device_id": "00236A-1", "password": "[REDACTED]"})
    );
    assert_eq!(one.body["status"], "pending");
    assert_eq!(one.body["identity"], "noc-agent");
    assert_eq!(one.body["session_id"], "session-1");
    assert_eq!(
        api.get("/approvals/not-an-id").await.status,
        404,
        "an id that is no id"
    );

    // Deny needs a comment.
    for body in [json!({}), json!({"comment": " "})] {
        let refused = api
            .post(&format!("/approvals/{}/deny", a.approval_id), body)
            .await;
        assert_eq!(refused.status, 422);
        assert_eq!(refused.body["type"], "tag:gatehouse,2026:problem/invalid");
    }
    let approved = api
        .post(&format!("/approvals/{}/approve", a.approval_id), json!({}))
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["decided_via"], "api");
    assert!(approved.body["decided_by"].is_null());
    let twice = api
        .post(
            &format!("/approvals/{}/approve", a.approval_id),
            json!({"comment": "again"}),
        )
        .await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.content_type(), "application/problem+json");
    assert!(
        twice.body["detail"]
            .as_str()
            .unwrap()
            .contains("already decided (approved)")
    );
    let denied = api
        .post(
            &format!("/approvals/{}/deny", b.approval_id),
            json!({"comment": "Not now"}),
        )
        .await;
    assert_eq!(denied.body["status"], "denied");
    assert_eq!(denied.body["comment"], "Not now");
    let decided = api.get("/approvals?status=decided").await;
    assert_eq!(decided.body["approvals"].as_array().unwrap().len(), 2);
    assert!(
        api.get("/approvals").await.body["approvals"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn admins_set_the_webhook_and_see_its_secret_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (mut admin, org, _, _) = acme(&app).await;
    for role in [Role::Viewer, Role::PolicyManager] {
        let mut b = member(&app, org, &format!("{role}@acme.test"), role).await;
        assert_eq!(b.get("/settings/webhook").await.status, 403, "{role}");
        let refused = b
            .post(
                "/settings/webhook",
                &[("url", "https://hooks.example.com/x")],
            )
            .await;
        assert_eq!(refused.status, 403, "{role}");
        assert!(!b.get("/approvals").await.body.contains("/settings/webhook"));
    }
    assert!(
        admin
            .get("/approvals")
            .await
            .body
            .contains("href=\"/settings/webhook\"")
    );
    let page = admin.get("/settings/webhook").await;
    assert_eq!(page.status, 200);
    for text in [
        "No webhook is set",
        "Gatehouse-Signature: t=",
        "&lt;t&gt;.&lt;body&gt;",
        "HMAC-SHA256",
    ] {
        assert!(page.body.contains(text), "{text}");
    }

    // A URL that is no http(s) URL is refused with the form again.
    let refused = admin
        .post("/settings/webhook", &[("url", "ftp://hooks.example.com/x")])
        .await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("must start with https://"));
    assert!(refused.body.contains("value=\"ftp://hooks.example.com/x\""));

    // Set: the secret is shown once, and is what the gateway signs with.
    let set = admin
        .post(
            "/settings/webhook",
            &[("url", "https://hooks.example.com/gatehouse")],
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.headers["cache-control"], "no-store");
    let start = set.body.find("whsec_").expect("the secret is shown");
    let secret = set.body[start..start + 49].to_owned();
    assert!(
        secret[6..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    let mut tx = app.store.begin(org).await.unwrap();
    let stored = store::approval::approval_webhook(&mut tx)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(stored.secret.expose().as_slice(), secret.as_bytes());
    assert_eq!(stored.webhook.url, "https://hooks.example.com/gatehouse");
    assert!(stored.webhook.enabled);

    // Never again: the page shows the URL only.
    let page = admin.get("/settings/webhook").await;
    assert!(page.body.contains("https://hooks.example.com/gatehouse"));
    assert!(!page.body.contains(&secret));
    let api = Api::new(&app, Some(&api_key(&app, org, "ci", Role::Admin).await));
    let shown = api.get("/approval-webhook").await;
    assert_eq!(
        shown.body["webhook"]["url"],
        "https://hooks.example.com/gatehouse"
    );
    assert!(!shown.text.contains("whsec_"));

    // Replacing it makes a new secret.
    let replaced = admin
        .post(
            "/settings/webhook",
            &[("url", "https://hooks.example.com/v2")],
        )
        .await;
    assert_eq!(replaced.status, 200);
    assert!(!replaced.body.contains(&secret));

    // Removed.
    let removed = admin.post("/settings/webhook/delete", &[]).await;
    assert_eq!(
        removed.location.as_deref(),
        Some("/settings/webhook?done=removed")
    );
    let page = admin.get(removed.location.as_deref().unwrap()).await;
    assert!(page.body.contains("Webhook removed"));
    assert!(page.body.contains("No webhook is set"));
    let again = admin.post("/settings/webhook/delete", &[]).await;
    assert_eq!(
        again.location.as_deref(),
        Some("/settings/webhook?done=none")
    );
    let events = admin.get("/admin-events").await.body;
    assert!(events.contains("approval_webhook.set") && events.contains("approval_webhook.delete"));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_api_sets_the_webhook_with_its_secret_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_admin, org, _, _) = acme(&app).await;
    let api = Api::new(&app, Some(&api_key(&app, org, "ci", Role::Admin).await));
    assert_eq!(
        api.get("/approval-webhook").await.body,
        json!({"webhook": null})
    );
    let bad = api
        .send(
            "PUT",
            "/approval-webhook",
            Some(r#"{"url": "hooks.example.com"}"#),
            "application/json",
        )
        .await;
    assert_eq!(bad.status, 422);
    let set = api
        .send(
            "PUT",
            "/approval-webhook",
            Some(r#"{"url": "https://hooks.example.com/gatehouse"}"#),
            "application/json",
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.headers["cache-control"], "no-store");
    let secret = set.body["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() == 49);
    assert_eq!(
        set.body["webhook"]["url"],
        "https://hooks.example.com/gatehouse"
    );
    let shown = api.get("/approval-webhook").await;
    assert_eq!(shown.body["webhook"]["enabled"], true);
    assert!(!shown.text.contains(secret));
    assert_eq!(
        api.send("DELETE", "/approval-webhook", None, "")
            .await
            .status,
        204
    );
    let gone = api.send("DELETE", "/approval-webhook", None, "").await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.content_type(), "application/problem+json");
    let manager = Api::new(
        &app,
        Some(&api_key(&app, org, "pm", Role::PolicyManager).await),
    );
    assert_eq!(manager.get("/approval-webhook").await.status, 403);
}

/// HMAC-SHA256 (RFC 2104) written out from the definition, as a receiver following the webhook
/// page would compute it.
fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_webhook_page_explains_the_signature_the_gateway_sends(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (mut admin, _, _, _) = acme(&app).await;
    let set = admin
        .post(
            "/settings/webhook",
            &[("url", "https://hooks.example.com/x")],
        )
        .await;
    let start = set.body.find("whsec_").unwrap();
    let secret = &set.body[start..start + 49];
    let page = admin.get("/settings/webhook").await.body;
    // The header, named as the gateway sends it (header names are case-insensitive).
    let header = gateway::webhook::SIGNATURE_HEADER;
    assert!(
        page.to_lowercase().contains(&format!(
            "{header}: t=&lt;unix seconds&gt;,v1=&lt;signature&gt;"
        )),
        "{page}"
    );
    // What the page says to compute is what the gateway signs: HMAC-SHA256 keyed with the whole
    // secret over `<t>.<body>`, in lowercase hex.
    let body = br#"{"type":"approval.created","approval":{"tool_name":"reboot_device"}}"#;
    let t = 1_796_287_068_u64;
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    assert_eq!(
        gateway::webhook::signature(secret.as_bytes(), t, body),
        format!("t={t},v1={}", hmac_sha256_hex(secret.as_bytes(), &message))
    );
}
