//! Grants: minted with the token shown once, rotated, revoked.

use genieacs_sim::SimConfig;
use sqlx::PgPool;

use crate::support::{mint, register_sim, sign_up, spawn_app, spawn_sim, token_of};

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_grant_is_minted_shown_once_rotated_and_revoked(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let server = register_sim(&mut b, &sim, "GenieACS lab").await;

    let page = mint(&mut b, &server, "noc-agent").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.headers["cache-control"], "no-store");
    let token = token_of(&page);
    let proxy = format!("http://gateway.test:8080/mcp/{server}");
    assert!(page.body.contains(&proxy));
    assert!(page.body.contains("Copy the token now."));
    // The client config snippet, HTML-escaped in the page.
    let snippet = page.body.replace("&#34;", "\"").replace("&quot;", "\"");
    assert!(
        snippet.contains(
            r#"{
  "mcpServers": {
    "genieacs-lab": {"#
        ),
        "{snippet}"
    );
    assert!(snippet.contains(&format!(r#""url": "{proxy}""#)));
    assert!(snippet.contains(&format!(r#""Authorization": "Bearer {token}""#)));
    let grant = app
        .store
        .grant_by_token(&token)
        .await
        .unwrap()
        .expect("the token works");
    assert_eq!(grant.server_id.to_string(), server);
    assert_eq!(grant.identity, "noc-agent");
    assert!(grant.is_active(time::OffsetDateTime::now_utc()));
    assert!(grant.expires_at.is_some());

    // The server page lists it by prefix only.
    let listed = b.get(&format!("/servers/{server}")).await;
    assert!(
        listed
            .body
            .contains(&format!("<code>{}…</code>", &token[..10]))
    );
    assert!(!listed.body.contains(&token));
    assert!(listed.body.contains("never"), "not used yet");

    // Minting needs a label, and a policy that exists.
    let bad = b
        .post(
            &format!("/servers/{server}/grants"),
            &[("label", ""), ("policy", "nope"), ("expires", "7d")],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Label is required."), "{}", bad.body);

    // Rotation: a new token, the old one stops working, same grant.
    let rotate = b
        .post(
            &format!("/servers/{server}/grants/{}/rotate", grant.grant_id),
            &[],
        )
        .await;
    assert_eq!(rotate.status, 200, "{}", rotate.body);
    let new_token = token_of(&rotate);
    assert_ne!(new_token, token);
    assert!(app.store.grant_by_token(&token).await.unwrap().is_none());
    let rotated = app.store.grant_by_token(&new_token).await.unwrap().unwrap();
    assert_eq!(rotated.grant_id, grant.grant_id);

    // Revocation.
    let revoke = b
        .post(
            &format!("/servers/{server}/grants/{}/revoke", grant.grant_id),
            &[],
        )
        .await;
    assert_eq!(revoke.status, 303);
    let revoked = app.store.grant_by_token(&new_token).await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());
    let page = b.get(&revoke.location.unwrap()).await;
    assert!(page.body.contains("Grant revoked"));
    assert!(page.body.contains("status-revoked"));

    // Every change is on the admin events page, newest first, with who made it.
    let events = b.get("/admin-events").await;
    assert_eq!(events.status, 200);
    let order: Vec<usize> = [
        "grant.revoke",
        "grant.rotate",
        "grant.mint",
        "policy.publish",
        "server.tools_pinned",
        "server.create",
        "member.set_role",
        "organisation.create",
    ]
    .iter()
    .map(|a| {
        events
            .body
            .find(&format!("<code>{a}</code>"))
            .unwrap_or_else(|| panic!("{a}: {}", events.body))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(events.body.contains("ada@example.net"));
    assert!(
        !events.body.contains(&new_token[4..]),
        "no token in the log"
    );
}
