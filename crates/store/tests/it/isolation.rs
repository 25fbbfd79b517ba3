//! Organisation isolation: by the functions' own filters, and by row-level security underneath.

use sqlx::PgPool;
use store::grant::revoke_grant;
use store::policy::publish_policy_version;
use store::server::{server_by_id, upstream_headers};
use store::{Actor, Error};

use crate::{mint, org, publish, server, store};

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn another_organisations_rows_are_not_found(pool: PgPool) {
    let store = store(pool);
    let a = org(&store, "a").await;
    let b = org(&store, "b").await;
    let sb = server(&store, b, "theirs").await;
    publish(&store, b, sb, "default").await;
    let gb = mint(&store, b, sb, "their-agent").await;

    let mut tx = store.begin(a).await.unwrap();
    assert!(matches!(
        server_by_id(&mut tx, sb).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        upstream_headers(&mut tx, sb).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        publish_policy_version(&mut tx, Actor::Operator, sb, "default", "{}", None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        revoke_grant(&mut tx, Actor::Operator, gb.grant.grant_id).await,
        Err(Error::NotFound { .. })
    ));
    tx.rollback().await.unwrap();
    assert!(
        store
            .grant_by_token(gb.token.expose())
            .await
            .unwrap()
            .unwrap()
            .is_active(time::OffsetDateTime::now_utc())
    );
}

/// A query that forgets `where organisation_id = …` still sees only its own organisation's rows,
/// and cannot write rows into another organisation.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn row_level_security_hides_other_organisations_from_a_forgetful_query(pool: PgPool) {
    let store = store(pool.clone());
    let a = org(&store, "a").await;
    let b = org(&store, "b").await;
    for (o, n) in [(a, "a1"), (b, "b1"), (b, "b2")] {
        let s = server(&store, o, n).await;
        publish(&store, o, s, "default").await;
        mint(&store, o, s, "agent").await;
    }
    let total: i64 = sqlx::query_scalar("select count(*) from server")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total, 3, "the owner sees everything");

    let mut tx = store.begin(a).await.unwrap();
    let conn = tx.raw_connection_for_tests();
    for table in [
        "organisation",
        "server",
        "policy",
        "policy_version",
        "access_grant",
        "admin_event",
        "chain_head",
    ] {
        let orgs: Vec<uuid::Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select distinct organisation_id from {table}"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert_eq!(orgs, [a.as_uuid()], "{table} leaks another organisation");
    }
    let err = sqlx::query(
        "insert into organisation (organisation_id, name) values (gen_random_uuid(), 'x')",
    )
    .execute(&mut *conn)
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("row-level security")
            || err.to_string().contains("permission denied"),
        "{err}"
    );
    tx.rollback().await.unwrap();

    let mut tx = store.begin(a).await.unwrap();
    let err =
        sqlx::query("update server set name = 'stolen' where organisation_id = $1 returning 1")
            .bind(b.as_uuid())
            .fetch_optional(tx.raw_connection_for_tests())
            .await
            .unwrap();
    assert!(
        err.is_none(),
        "another organisation's rows cannot be updated"
    );
    let err = sqlx::query("insert into policy (organisation_id, server_id, name) select $1, server_id, 'x' from server")
        .bind(b.as_uuid())
        .execute(tx.raw_connection_for_tests())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();

    // Password hashes are not readable by the application role at all.
    let mut tx = store.begin(a).await.unwrap();
    let err = sqlx::query("select password_hash from app_user")
        .fetch_all(tx.raw_connection_for_tests())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_restricted_role_without_an_organisation_sees_nothing_but_its_token_lookup(
    pool: PgPool,
) {
    let store = store(pool.clone());
    let a = org(&store, "a").await;
    let s = server(&store, a, "genieacs").await;
    publish(&store, a, s, "default").await;
    let g = mint(&store, a, s, "agent").await;
    let event = store::audit::NewAuditEvent {
        audit_event_id: store::AuditEventId::new(),
        organisation_id: a,
        occurred_at: time::OffsetDateTime::now_utc(),
        server_id: s,
        grant_id: g.grant.grant_id,
        identity: "agent".into(),
        session_id: None,
        method: "tools/call".into(),
        tool_name: Some("reboot_device".into()),
        arguments: serde_json::json!({}),
        decision: store::audit::AuditDecision::Allow,
        rule: None,
        message: None,
        policy_version: Some(1),
        upstream_status: Some(200),
        is_error: Some(false),
        latency_us: Some(10),
        client_addr: None,
        user_agent: None,
    };
    store.insert_audit_batch(&[event]).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local role gatehouse_app")
        .execute(&mut *tx)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from access_grant")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let n: i64 =
        sqlx::query_scalar("select count(*) from gatehouse_grant_by_token_hash(''::bytea)")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(n, 0, "the lookup answers only an exact hash");
    let n: i64 = sqlx::query_scalar(
        "select count(*) from gatehouse_audit_search(null, null, null, null, null, null, null, null, null, null, 500)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(
        n, 0,
        "the viewer's search answers nothing without an organisation"
    );
    let err = sqlx::query("select gatehouse_audit_partition_drop_before('2100-01-01')")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    tx.rollback().await.unwrap();
    assert!(
        store
            .grant_by_token(g.token.expose())
            .await
            .unwrap()
            .is_some()
    );
}
