//! Sign up, log in and out, password change, CSRF, throttling, cookies, size limits.

use admin::AdminConfig;
use sqlx::PgPool;

use crate::support::{Browser, PASSWORD, log_in, sign_up, spawn_app, spawn_app_with};

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sign_up_creates_an_organisation_and_signs_in(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = Browser::new(&app);
    let form = b.get("/signup").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Create your organisation"));
    let a = b
        .post_raw(
            "/signup",
            &[
                ("csrf", &form.csrf()),
                ("email", "ada@example.net"),
                ("password", PASSWORD),
                ("organisation", "Acme ISP"),
            ],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let session = a
        .set_cookies
        .iter()
        .find(|c| c.starts_with("gatehouse_session=ghw_"))
        .expect("a session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Lax"), "{session}");
    assert!(
        !session.contains("Secure"),
        "plain-http local dev: {session}"
    );
    let servers = b.get("/servers").await;
    assert_eq!(servers.status, 200);
    assert!(servers.body.contains("Acme ISP"));
    assert!(servers.body.contains("ada@example.net"));
    assert!(servers.body.contains(">admin<"), "the role is shown");
    assert_eq!(
        servers.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .split(';')
            .next(),
        Some("default-src 'self'")
    );

    // The store holds only a hash of the cookie's value.
    let token = session
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("gatehouse_session=");
    let stored: i64 = sqlx::query_scalar(
        "select count(*) from web_session where token_hash = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(token)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(stored, 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn log_out_ends_the_session_and_log_in_starts_one(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let out = b.post("/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location.as_deref(), Some("/login"));
    assert!(!b.has_cookie("gatehouse_session"));
    let again = b.get("/servers").await;
    assert_eq!(again.status, 303);
    assert_eq!(again.location.as_deref(), Some("/login"));
    let sessions: i64 = sqlx::query_scalar("select count(*) from web_session")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(
        sessions, 0,
        "the session row is deleted, not only the cookie"
    );

    let (mut b, a) = log_in(&app, "ADA@example.net", PASSWORD).await;
    assert_eq!(
        a.status, 303,
        "emails compare case-insensitively: {}",
        a.body
    );
    assert_eq!(b.get("/servers").await.status, 200);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn failed_log_ins_do_not_reveal_whether_the_email_exists(pool: PgPool) {
    let app = spawn_app(pool).await;
    sign_up(&app, "ada@example.net", "Acme").await;
    let (_, wrong_password) = log_in(&app, "ada@example.net", "not the password").await;
    let (_, unknown_email) = log_in(&app, "nobody@example.net", "not the password").await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(unknown_email.status, 401);
    for a in [&wrong_password, &unknown_email] {
        assert!(
            a.body.contains("Email or password is incorrect."),
            "{}",
            a.body
        );
        assert!(
            !a.set_cookies
                .iter()
                .any(|c| c.starts_with("gatehouse_session=ghw_"))
        );
    }
    // Signing up again with a taken email does not say "taken" either.
    let mut b = Browser::new(&app);
    let a = b
        .post(
            "/signup",
            &[
                ("email", "ada@example.net"),
                ("password", PASSWORD),
                ("organisation", "Other"),
            ],
        )
        .await;
    assert_eq!(a.status, 422);
    assert!(a.body.contains("could not be created"), "{}", a.body);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn log_in_is_throttled_per_email_and_address(pool: PgPool) {
    let app = spawn_app(pool).await;
    sign_up(&app, "ada@example.net", "Acme").await;
    for _ in 0..5 {
        let (_, a) = log_in(&app, "ada@example.net", "guess guess guess").await;
        assert_eq!(a.status, 401);
    }
    // Even the right password is refused now, without checking it.
    let (_, a) = log_in(&app, "ada@example.net", PASSWORD).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.headers.contains_key("retry-after"));
    assert!(a.body.contains("Too many failed sign-ins"));
    // Another email from the same address is not locked out by ada's failures.
    let (_, other) = log_in(&app, "bob@example.net", "whatever it is").await;
    assert_eq!(other.status, 401);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn password_change_needs_the_current_password_and_replaces_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let (mut other_session, _) = log_in(&app, "ada@example.net", PASSWORD).await;
    let wrong = b
        .post(
            "/account/password",
            &[
                ("current", "nope nope nope"),
                ("new", "a new long password"),
                ("confirm", "a new long password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("The current password is incorrect."));
    let short = b
        .post(
            "/account/password",
            &[
                ("current", PASSWORD),
                ("new", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, 422);
    assert!(short.body.contains("at least 10 characters"));
    let ok = b
        .post(
            "/account/password",
            &[
                ("current", PASSWORD),
                ("new", "a new long password"),
                ("confirm", "a new long password"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("Your password was changed."));
    assert_eq!(b.get("/servers").await.status, 200, "this session stays");
    assert_eq!(
        other_session.get("/servers").await.status,
        303,
        "other sessions are signed out"
    );
    let (_, old) = log_in(&app, "ada@example.net", PASSWORD).await;
    assert_eq!(old.status, 401);
    let (_, new) = log_in(&app, "ada@example.net", "a new long password").await;
    assert_eq!(new.status, 303);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn state_changing_forms_without_the_right_token_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    // Before sign-in: no token, or a token of another visitor.
    let mut anon = Browser::new(&app);
    anon.get("/signup").await;
    let fields = [
        ("email", "eve@example.net"),
        ("password", PASSWORD),
        ("organisation", "Eve"),
    ];
    assert_eq!(anon.post_raw("/signup", &fields).await.status, 403);
    let mut other = Browser::new(&app);
    let foreign = other.get("/signup").await.csrf();
    let mut with_foreign = vec![("csrf", foreign.as_str())];
    with_foreign.extend_from_slice(&fields);
    assert_eq!(anon.post_raw("/signup", &with_foreign).await.status, 403);

    // Signed in: a form posted without the session's token changes nothing.
    let mut ada = sign_up(&app, "ada@example.net", "Acme").await;
    let mut bob = sign_up(&app, "bob@example.net", "Bob's").await;
    let bobs_token = bob.get("/servers").await.csrf();
    let a = ada
        .post_raw(
            "/servers",
            &[("name", "x"), ("upstream_url", "http://127.0.0.1:1/mcp")],
        )
        .await;
    assert_eq!(a.status, 403);
    assert!(a.body.contains("Form expired"));
    let a = ada.post_raw("/logout", &[("csrf", &bobs_token)]).await;
    assert_eq!(
        a.status, 403,
        "another session's token is not this session's"
    );
    assert_eq!(ada.get("/servers").await.status, 200, "still signed in");
    // A JSON body carries no form token either.
    let a = ada.post_raw("/account/password", &[]).await;
    assert_eq!(a.status, 403);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn cookies_are_secure_when_served_over_https(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        AdminConfig::for_public_url("https://gatehouse.example", true),
    )
    .await;
    let mut b = Browser::new(&app);
    let form = b.get("/signup").await;
    assert!(
        form.set_cookies.iter().all(|c| c.contains("; Secure")),
        "{:?}",
        form.set_cookies
    );
    let a = b
        .post_raw(
            "/signup",
            &[
                ("csrf", &form.csrf()),
                ("email", "ada@example.net"),
                ("password", PASSWORD),
                ("organisation", "Acme"),
            ],
        )
        .await;
    assert_eq!(a.status, 303);
    assert!(
        a.set_cookies.iter().all(|c| c.contains("; Secure")),
        "{:?}",
        a.set_cookies
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn oversized_inputs_get_clear_errors(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = Browser::new(&app);
    let long_email = format!("{}@example.net", "a".repeat(400));
    let long_org = "o".repeat(201);
    let a = b
        .post(
            "/signup",
            &[
                ("email", &long_email),
                ("password", PASSWORD),
                ("organisation", &long_org),
            ],
        )
        .await;
    assert_eq!(a.status, 422);
    assert!(
        a.body.contains("Email can have at most 320 characters."),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains("Organisation name can have at most 200 characters.")
    );
    let huge = "x".repeat(2 * 1024 * 1024);
    let a = b.post("/signup", &[("email", &huge)]).await;
    assert_eq!(a.status, 413);
}
