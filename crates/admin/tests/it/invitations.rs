//! Invitations by link in the browser, and the API keys page.

use sqlx::PgPool;
use store::Role;

use crate::support::{Api, Browser, PASSWORD, log_in, member, org_of, sign_up, spawn_app};

/// The path of the invitation link on an invitation page.
fn link_path(page: &str) -> String {
    let start = page.find("/join/ghi_").expect("an invitation link");
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_owned()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_invitation_link_lets_an_existing_person_join_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut admin = sign_up(&app, "admin@acme.test", "Acme").await;
    // Bob has an account of his own organisation already.
    sign_up(&app, "bob@example.net", "Bob's").await;

    let page = admin
        .post(
            "/invitations",
            &[
                ("email", "Bob@example.net"),
                ("role", "policy_manager"),
                ("days", "7"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("shown only once"));
    let path = link_path(&page.body);
    let list = admin.get("/invitations").await;
    assert!(list.body.contains("Bob@example.net"));
    assert!(list.body.contains("pending"));
    assert!(!list.body.contains(&path), "the link is not shown again");

    // Signed out: the page offers the sign-in that comes back here.
    let mut bob = Browser::new(&app);
    let offer = bob.get(&path).await;
    assert_eq!(offer.status, 200);
    assert!(offer.body.contains(&format!("/login?next={path}")));
    let form = bob.get(&format!("/login?next={path}")).await;
    let signed_in = bob
        .post_raw(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("email", "bob@example.net"),
                ("password", PASSWORD),
                ("next", &path),
            ],
        )
        .await;
    assert_eq!(signed_in.location.as_deref(), Some(path.as_str()));
    // Someone else signed in cannot use Bob's link.
    let mut carol = member(
        &app,
        org_of(&app, "admin@acme.test").await,
        "carol@acme.test",
        Role::Viewer,
    )
    .await;
    let refused = carol.post(&path, &[]).await;
    assert_eq!(refused.status, 422);
    assert!(
        refused
            .body
            .contains("This invitation is for Bob@example.net")
    );
    // Bob joins and now looks at Acme as a policy manager.
    let joined = bob.post(&path, &[]).await;
    assert_eq!(joined.status, 303, "{}", joined.body);
    let members = bob.get("/members").await;
    assert!(members.body.contains("Acme"));
    assert!(members.body.contains("policy_manager"));
    assert_eq!(bob.post(&path, &[]).await.status, 404, "single use");

    let events = admin.get("/admin-events").await;
    for action in ["invitation.create", "invitation.accept"] {
        assert!(events.body.contains(action), "{action}");
    }
    // An open redirect is not possible through `next`.
    let (mut b, _) = log_in(&app, "carol@acme.test", PASSWORD).await;
    let form = b.get("/login?next=//evil.example/").await;
    assert!(!form.body.contains("evil.example"));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_revoked_or_new_account_invitation(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut admin = sign_up(&app, "admin@acme.test", "Acme").await;
    let page = admin
        .post(
            "/invitations",
            &[
                ("email", "new@acme.test"),
                ("role", "viewer"),
                ("days", "1"),
            ],
        )
        .await;
    let path = link_path(&page.body);
    let id: String = sqlx::query_scalar("select invitation_id::text from invitation")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    let revoked = admin.post(&format!("/invitations/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, 303);
    let mut visitor = Browser::new(&app);
    assert_eq!(visitor.get(&path).await.status, 404);
    assert_eq!(
        visitor
            .post(&format!("{path}/signup"), &[("password", PASSWORD)])
            .await
            .status,
        404
    );
    let users: i64 =
        sqlx::query_scalar("select count(*) from app_user where email = 'new@acme.test'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(users, 0, "a refused invitation creates no account");

    let page = admin
        .post(
            "/invitations",
            &[
                ("email", "new@acme.test"),
                ("role", "viewer"),
                ("days", "1"),
            ],
        )
        .await;
    let path = link_path(&page.body);
    let short = visitor
        .post(&format!("{path}/signup"), &[("password", "short")])
        .await;
    assert_eq!(short.status, 422);
    let joined = visitor
        .post(&format!("{path}/signup"), &[("password", PASSWORD)])
        .await;
    assert_eq!(joined.status, 303);
    let servers = visitor.get("/servers").await;
    assert_eq!(servers.status, 200);
    assert!(servers.body.contains("Acme"));
    let bad = admin
        .post(
            "/invitations",
            &[("email", "x@y.z"), ("role", "owner"), ("days", "99")],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Choose a role"));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn api_keys_are_minted_shown_once_listed_and_revoked(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut admin = sign_up(&app, "admin@acme.test", "Acme").await;
    let page = admin
        .post(
            "/api-keys",
            &[
                ("name", "ci-deploy"),
                ("role", "policy_manager"),
                ("expires", "30d"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let start = page.body.find("gha_").unwrap();
    let key = page.body[start..start + 48].to_owned();
    assert_eq!(page.headers["cache-control"], "no-store");

    let api = Api::new(&app, Some(&key));
    assert_eq!(api.get("/servers").await.status, 200);
    let list = admin.get("/api-keys").await;
    assert!(list.body.contains("ci-deploy"));
    assert!(list.body.contains(&key[..10]));
    assert!(!list.body.contains(&key), "the key is not shown again");
    let last_used: Option<time::OffsetDateTime> =
        sqlx::query_scalar("select last_used_at from api_key")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert!(last_used.is_some());
    let again = admin
        .post(
            "/api-keys",
            &[
                ("name", "ci-deploy"),
                ("role", "viewer"),
                ("expires", "never"),
            ],
        )
        .await;
    assert_eq!(again.status, 422);
    assert!(again.body.contains("already exists"));

    let id: String = sqlx::query_scalar("select api_key_id::text from api_key")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    let revoked = admin.post(&format!("/api-keys/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, 303);
    let refused = api.get("/servers").await;
    assert_eq!(refused.status, 401);
    assert!(refused.text.contains("revoked"));
    let events = admin.get("/admin-events").await;
    assert!(events.body.contains("api_key.mint"));
    assert!(events.body.contains("api_key.revoke"));
}
