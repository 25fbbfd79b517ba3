//! Every route against every role, and against members of another organisation.

use genieacs_sim::SimConfig;
use sqlx::PgPool;
use store::Role;

use crate::support::{
    Browser, member, mint, org_of, register_sim, sign_up, spawn_app, spawn_sim, token_of,
};

/// A route, the form it takes, and the least role allowed to use it.
struct Route {
    method: &'static str,
    path: String,
    fields: Vec<(&'static str, String)>,
    least: Role,
}

fn routes(server: &str, grant: &str, sim_url: &str) -> Vec<Route> {
    let r = |method, path: String, fields: Vec<(&'static str, String)>, least| Route {
        method,
        path,
        fields,
        least,
    };
    vec![
        r("GET", "/servers".into(), vec![], Role::Viewer),
        r("GET", format!("/servers/{server}"), vec![], Role::Viewer),
        r("GET", "/account".into(), vec![], Role::Viewer),
        r("GET", "/audit".into(), vec![], Role::Viewer),
        r("GET", "/admin-events".into(), vec![], Role::Admin),
        r("GET", "/members".into(), vec![], Role::Viewer),
        r(
            "GET",
            format!("/servers/{server}/policies/default"),
            vec![],
            Role::Viewer,
        ),
        r(
            "POST",
            format!("/servers/{server}/policies/default"),
            vec![("source", r#"{"version": "1", "default": "allow"}"#.into())],
            Role::PolicyManager,
        ),
        r("GET", "/servers/new".into(), vec![], Role::Admin),
        r(
            "POST",
            "/servers/test".into(),
            vec![
                ("name", "t".into()),
                ("upstream_url", sim_url.into()),
                ("auth", "none".into()),
            ],
            Role::Admin,
        ),
        r(
            "POST",
            "/servers".into(),
            vec![
                ("name", "another".into()),
                ("upstream_url", sim_url.into()),
                ("auth", "none".into()),
            ],
            Role::Admin,
        ),
        r(
            "POST",
            format!("/servers/{server}/refresh"),
            vec![],
            Role::Admin,
        ),
        r(
            "POST",
            format!("/servers/{server}/grants"),
            vec![
                ("label", "crafted".into()),
                ("policy", "default".into()),
                ("expires", "never".into()),
            ],
            Role::Admin,
        ),
        r(
            "POST",
            format!("/servers/{server}/grants/{grant}/rotate"),
            vec![],
            Role::Admin,
        ),
        r(
            "POST",
            format!("/servers/{server}/grants/{grant}/revoke"),
            vec![],
            Role::Admin,
        ),
    ]
}

async fn call(b: &mut Browser, route: &Route) -> u16 {
    let fields: Vec<(&str, &str)> = route.fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match route.method {
        "GET" => b.get(&route.path).await.status,
        _ => b.post(&route.path, &fields).await.status,
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_route_admits_exactly_the_roles_it_should(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut admin = sign_up(&app, "admin@acme.test", "Acme").await;
    let server = register_sim(&mut admin, &sim, "genieacs").await;
    let org = org_of(&app, "admin@acme.test").await;
    let grant_page = mint(&mut admin, &server, "noc-agent").await;
    assert_eq!(grant_page.status, 200);
    let grant: String = {
        let token = token_of(&grant_page);
        app.store
            .grant_by_token(&token)
            .await
            .unwrap()
            .unwrap()
            .grant_id
            .to_string()
    };
    let mut viewer = member(&app, org, "viewer@acme.test", Role::Viewer).await;
    let mut manager = member(&app, org, "manager@acme.test", Role::PolicyManager).await;

    // Least privileged first, so the admin's revocation comes last.
    for (role, browser) in [
        (Role::Viewer, &mut viewer),
        (Role::PolicyManager, &mut manager),
        (Role::Admin, &mut admin),
    ] {
        for route in routes(&server, &grant, &sim.url) {
            let status = call(browser, &route).await;
            if role >= route.least {
                assert!(
                    matches!(status, 200 | 303),
                    "{role} {} {} should be allowed, got {status}",
                    route.method,
                    route.path
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{role} {} {} should be refused",
                    route.method, route.path
                );
            }
        }
    }
    // The viewer's hand-crafted grant did not come into being; the admin's did.
    let grants: Vec<String> =
        sqlx::query_scalar("select label from access_grant order by created_at")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(grants, ["noc-agent", "crafted"]);
    // Nobody signed in: every route sends to the sign-in page.
    let mut anon = Browser::new(&app);
    for route in routes(&server, &grant, &sim.url)
        .iter()
        .filter(|r| r.method == "GET")
    {
        let a = anon.get(&route.path).await;
        assert_eq!(
            (a.status, a.location.as_deref()),
            (303, Some("/login")),
            "{}",
            route.path
        );
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn another_organisations_ids_are_not_found(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut acme = sign_up(&app, "admin@acme.test", "Acme").await;
    let acme_server = register_sim(&mut acme, &sim, "genieacs").await;
    let acme_grant = {
        let page = mint(&mut acme, &acme_server, "noc-agent").await;
        let token = token_of(&page);
        app.store
            .grant_by_token(&token)
            .await
            .unwrap()
            .unwrap()
            .grant_id
            .to_string()
    };
    let mut other = sign_up(&app, "admin@other.test", "Other").await;
    let other_server = register_sim(&mut other, &sim, "genieacs").await;

    let page = other.get(&format!("/servers/{acme_server}")).await;
    assert_eq!(page.status, 404);
    let page = other
        .get(&format!("/servers/{acme_server}/policies/default"))
        .await;
    assert_eq!(page.status, 404);
    assert!(!page.body.contains(&acme_server));
    for (path, fields) in [
        (format!("/servers/{acme_server}/refresh"), vec![]),
        (
            format!("/servers/{acme_server}/policies/default"),
            vec![("source", r#"{"version": "1", "default": "allow"}"#)],
        ),
        (
            format!("/servers/{acme_server}/grants"),
            vec![("label", "x"), ("policy", "default"), ("expires", "never")],
        ),
        (
            format!("/servers/{acme_server}/grants/{acme_grant}/rotate"),
            vec![],
        ),
        (
            format!("/servers/{acme_server}/grants/{acme_grant}/revoke"),
            vec![],
        ),
        // Its own server with the other organisation's grant.
        (
            format!("/servers/{other_server}/grants/{acme_grant}/revoke"),
            vec![],
        ),
        ("/servers/not-a-uuid/refresh".to_owned(), vec![]),
    ] {
        let a = other.post(&path, &fields).await;
        assert_eq!(a.status, 404, "{path}");
    }
    // Acme's grant is untouched, and Acme's list does not show Other's server.
    let grant = app
        .store
        .grant_by_token(&token_of(&mint(&mut acme, &acme_server, "second").await))
        .await
        .unwrap()
        .unwrap();
    assert!(grant.revoked_at.is_none());
    let revoked: i64 =
        sqlx::query_scalar("select count(*) from access_grant where revoked_at is not null")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(revoked, 0);
    let list = acme.get("/servers").await;
    assert!(list.body.contains(&acme_server));
    assert!(!list.body.contains(&other_server));
}
