//! Registering upstreams: test connection, tools with risk, refresh, and the refusals.

use admin::AdminConfig;
use admin::upstream::{AddressPolicy, UpstreamError, discover_tools};
use genieacs_sim::{ResponseMode, SimConfig};
use sqlx::PgPool;

use crate::support::{sign_up, spawn_app, spawn_app_with, spawn_sim};

const SIM_TOOLS: [&str; 12] = [
    "reboot_device",
    "download_firmware",
    "refresh_parameter",
    "set_parameter",
    "get_parameter",
    "manage_preset",
    "manage_provision",
    "search_devices",
    "tag_device",
    "connection_request",
    "delete_task",
    "retry_task",
];

fn tool_count(html: &str) -> usize {
    html.matches("<code class=\"tool-name\">").count()
}

fn risk_of<'a>(html: &'a str, tool: &str) -> &'a str {
    let at = html
        .find(&format!("<code class=\"tool-name\">{tool}</code>"))
        .unwrap_or_else(|| panic!("{tool} is listed"));
    let rest = &html[at..];
    let badge = rest.find("class=\"badge risk-").unwrap() + "class=\"badge risk-".len();
    let end = badge + rest[badge..].find('"').unwrap();
    &rest[badge..end]
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn test_connection_lists_the_simulators_tools_with_their_risk(pool: PgPool) {
    for mode in [ResponseMode::Json, ResponseMode::Sse] {
        let sim = spawn_sim(SimConfig {
            response_mode: mode,
            ..SimConfig::default()
        })
        .await;
        let app = spawn_app(pool.clone()).await;
        let mut b = sign_up(&app, &format!("ada-{mode:?}@example.net"), "Acme").await;
        let a = b
            .post(
                "/servers/test",
                &[
                    ("name", "genieacs"),
                    ("upstream_url", &sim.url),
                    ("auth", "none"),
                ],
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.contains("12 tools"), "{mode:?}: {}", a.body);
        assert_eq!(tool_count(&a.body), 12);
        for tool in SIM_TOOLS {
            assert!(a.body.contains(&format!(">{tool}<")), "{tool}");
        }
        assert_eq!(risk_of(&a.body, "get_parameter"), "read");
        assert_eq!(risk_of(&a.body, "set_parameter"), "write");
        assert_eq!(risk_of(&a.body, "download_firmware"), "execute");
        assert_eq!(risk_of(&a.body, "delete_task"), "destructive");
        assert!(
            a.body.contains("is the first verb of the name"),
            "signals are shown"
        );
        let servers: i64 = sqlx::query_scalar("select count(*) from server")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
        assert_eq!(servers, 0, "testing registers nothing");
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn registering_pins_the_tools_and_publishes_the_recommended_policy(pool: PgPool) {
    let sim = spawn_sim(SimConfig {
        auth_token: Some("upstream-secret".into()),
        ..SimConfig::default()
    })
    .await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    // Without the upstream's credentials the upstream refuses, and the form says why.
    let refused = b
        .post(
            "/servers",
            &[
                ("name", "genieacs"),
                ("upstream_url", &sim.url),
                ("auth", "none"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("HTTP 401"), "{}", refused.body);
    let a = b
        .post(
            "/servers",
            &[
                ("name", "genieacs"),
                ("upstream_url", &sim.url),
                ("auth", "headers"),
                ("headers", "Authorization: Bearer upstream-secret"),
            ],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = b.get(a.location.as_deref().unwrap()).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Server registered"));
    assert_eq!(tool_count(&page.body), 12);
    assert!(page.body.contains("static headers (sealed)"));
    assert!(
        !page.body.contains("upstream-secret"),
        "credentials are never shown"
    );
    assert!(page.body.contains("http://gateway.test:8080/mcp/"));
    assert!(
        page.body
            .contains("<code>default</code></a> <span class=\"muted\">version 1</span>")
    );
    let list = b.get("/servers").await;
    assert!(list.body.contains(">genieacs<"));

    // The same name again is refused with the reason.
    let again = b
        .post(
            "/servers",
            &[
                ("name", "genieacs"),
                ("upstream_url", &sim.url),
                ("auth", "headers"),
                ("headers", "Authorization: Bearer upstream-secret"),
            ],
        )
        .await;
    assert_eq!(again.status, 422);
    assert!(again.body.contains("already exists"), "{}", again.body);

    // Refresh pins a second snapshot.
    let id = a
        .location
        .unwrap()
        .trim_start_matches("/servers/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let r = b.post(&format!("/servers/{id}/refresh"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let snapshots: i64 = sqlx::query_scalar("select count(*) from tool_snapshot")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(snapshots, 2);
    assert!(
        b.get(&r.location.unwrap())
            .await
            .body
            .contains("Tools refreshed")
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn link_local_and_metadata_upstreams_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    for (url, expected) in [
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]:8080/mcp", "link-local"),
        ("http://[::ffff:169.254.169.254]/mcp", "link-local"),
        ("http://metadata.google.internal/mcp", "metadata"),
        ("http://100.100.100.200/mcp", "metadata"),
        ("http://0.0.0.0:80/mcp", "this network"),
        ("ftp://example.net/mcp", "Only http:// and https://"),
        ("http://user:pw@example.net/mcp", "not in the URL"),
        ("not a url", "not a valid URL"),
    ] {
        for path in ["/servers/test", "/servers"] {
            let a = b
                .post(
                    path,
                    &[("name", "x"), ("upstream_url", url), ("auth", "none")],
                )
                .await;
            assert_eq!(a.status, 422, "{url}");
            assert!(a.body.contains(expected), "{url}: {}", a.body);
        }
    }
    let servers: i64 = sqlx::query_scalar("select count(*) from server")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(servers, 0);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn private_upstreams_are_refused_when_the_deployment_says_so(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app_with(pool, AdminConfig::for_public_url("http://gw.test", false)).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let by_name = format!("http://localhost:{}/mcp", sim.addr.port());
    for url in [
        sim.url.as_str(),
        by_name.as_str(),
        "http://10.1.2.3/mcp",
        "http://[::1]:9/mcp",
    ] {
        let a = b
            .post(
                "/servers/test",
                &[("name", "x"), ("upstream_url", url), ("auth", "none")],
            )
            .await;
        assert_eq!(a.status, 422, "{url}");
        assert!(
            a.body.contains("does not allow private upstreams"),
            "{url}: {}",
            a.body
        );
    }
    // The same check guards the reusable client directly: every resolved address is checked.
    let err = discover_tools(
        &by_name,
        &[],
        AddressPolicy {
            allow_private: false,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, UpstreamError::Refused(_)), "{err:?}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn unreachable_and_non_mcp_upstreams_get_clear_errors(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}/mcp")
    };
    let wrong_path = format!("http://{}/not-mcp", sim.addr);
    // The admin app itself: it answers HTML, not MCP.
    let html = format!("{}/login", app.url);
    for (url, expected) in [
        (closed.as_str(), "Could not connect"),
        (wrong_path.as_str(), "is this the MCP endpoint"),
        (html.as_str(), "HTTP 403"),
    ] {
        let a = b
            .post(
                "/servers/test",
                &[("name", "x"), ("upstream_url", url), ("auth", "none")],
            )
            .await;
        assert_eq!(a.status, 422, "{url}");
        assert!(a.body.contains(expected), "{url}: {}", a.body);
    }
    // An HTTP server that answers 200 with a web page.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let page = tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { axum::response::Html("<h1>hello</h1>") });
        axum::serve(listener, app).await.unwrap();
    });
    let err = discover_tools(
        &format!("http://{addr}/"),
        &[],
        AddressPolicy {
            allow_private: true,
        },
    )
    .await
    .unwrap_err();
    page.abort();
    assert!(
        matches!(&err, UpstreamError::NotMcp(m) if m.contains("not JSON or an event stream")),
        "{err:?}"
    );
}
