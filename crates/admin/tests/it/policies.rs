//! The policy editor's basics: validation errors at their line, publishing, versions.

use genieacs_sim::SimConfig;
use sqlx::PgPool;

use crate::support::{register_sim, sign_up, spawn_app, spawn_sim};

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn invalid_policies_are_refused_with_findings_at_their_line_and_valid_ones_publish(
    pool: PgPool,
) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let server = register_sim(&mut b, &sim, "genieacs").await;
    let path = format!("/servers/{server}/policies/default");

    let editor = b.get(&path).await;
    assert_eq!(editor.status, 200);
    assert!(
        editor.body.contains("&#34;version&#34;") || editor.body.contains("&quot;version&quot;")
    );
    assert!(
        editor.body.contains("recommended from the tools"),
        "version 1's comment"
    );

    // A typo in a tool name on line 4: refused, the finding shown at line 4, nothing published.
    let bad = "{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {\"reboot_devise\": {}}\n}";
    let a = b.post(&path, &[("source", bad), ("comment", "typo")]).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(
        a.body.contains("The policy was not published: 1 finding."),
        "{}",
        a.body
    );
    assert!(a.body.contains("reboot_device"), "did you mean");
    assert!(
        a.body.contains("class=\"has-finding\" id=\"line-4\""),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("reboot_devise"),
        "the submitted text is kept"
    );

    // A valid one becomes version 2 and is current.
    let good = "{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {\"get_parameter\": {}}\n}";
    let a = b
        .post(&path, &[("source", good), ("comment", "read only")])
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = b.get(a.location.as_deref().unwrap()).await;
    assert!(page.body.contains("Published"));
    assert!(page.body.contains("read only"));
    assert!(
        page.body
            .contains("2 <span class=\"badge status-active\">current</span>"),
        "{}",
        page.body
    );
    let (version, source): (i32, String) = sqlx::query_as(
        "select v.version, v.source from policy p join policy_version v on v.policy_id = p.policy_id and v.version = p.current_version",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!((version, source.as_str()), (2, good));

    // A policy that does not exist yet starts from the recommendation; an invalid name is not found.
    let new = b
        .get(&format!("/servers/{server}/policies/read-only"))
        .await;
    assert_eq!(new.status, 200);
    assert!(new.body.contains("no published version yet"));
    assert_eq!(
        b.get(&format!("/servers/{server}/policies/Not%20Valid"))
            .await
            .status,
        404
    );
}
