//! Organisations, servers, policies and grants: the happy paths and the refusals.

use sqlx::PgPool;
use store::grant::{NewGrant, mint_grant, revoke_grant, rotate_grant};
use store::policy::{current_policy_version, policy_by_name, publish_policy_version};
use store::secret::{Keyring, Redacted, SealingKey};
use store::server::{
    NewServer, PinnedTool, RiskClass, create_server, latest_pinned_tools, list_servers,
    pin_tool_snapshot, upstream_headers,
};
use store::{Actor, Error, Store};

use crate::{mint, org, publish, server, store};

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn organisation_is_created_with_an_admin_event(pool: PgPool) {
    let store = store(pool.clone());
    let org = org(&store, "Acme ISP").await;
    let mut tx = store.begin(org).await.unwrap();
    let read = store::org::organisation(&mut tx).await.unwrap();
    assert_eq!(read.name, "Acme ISP");
    let (count, action): (i64, String) = sqlx::query_as(
        "select count(*) over (), action from admin_event where organisation_id = $1",
    )
    .bind(org.as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((count, action.as_str()), (1, "organisation.create"));
    assert!(matches!(
        store.create_organisation(Actor::Operator, "  ").await,
        Err(Error::Invalid { .. })
    ));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn duplicate_server_name_is_a_conflict_within_an_organisation_only(pool: PgPool) {
    let store = store(pool);
    let a = org(&store, "a").await;
    let b = org(&store, "b").await;
    server(&store, a, "genieacs").await;
    server(&store, b, "genieacs").await;
    let mut tx = store.begin(a).await.unwrap();
    let new = NewServer {
        name: "genieacs".into(),
        upstream_url: "https://x.example/mcp".into(),
        headers: Redacted::new(vec![]),
    };
    let err = create_server(&mut tx, Actor::Operator, &new)
        .await
        .unwrap_err();
    match err {
        Error::Conflict {
            constraint,
            message,
        } => {
            assert_eq!(constraint, "server_name_unique_in_organisation");
            assert_eq!(
                message,
                "a server with this name already exists in the organisation"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn server_inputs_are_validated(pool: PgPool) {
    let store = store(pool);
    let a = org(&store, "a").await;
    let mut tx = store.begin(a).await.unwrap();
    for (name, url, headers) in [
        ("", "https://x/mcp", vec![]),
        ("x", "http://169.254.169.254/", vec![]),
        (
            "x",
            "https://x/mcp",
            vec![("Bad Header".to_owned(), "v".to_owned())],
        ),
        (
            "x",
            "https://x/mcp",
            vec![("X-A".to_owned(), "v\r\nInjected: 1".to_owned())],
        ),
    ] {
        let new = NewServer {
            name: name.into(),
            upstream_url: url.into(),
            headers: Redacted::new(headers),
        };
        assert!(matches!(
            create_server(&mut tx, Actor::Operator, &new).await,
            Err(Error::Invalid { .. })
        ));
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn credentials_are_sealed_at_rest_and_survive_key_rotation(pool: PgPool) {
    let old_key = SealingKey::generate(1);
    let store = Store::new(pool.clone(), Keyring::new(old_key.clone()));
    let a = org(&store, "a").await;
    let s = server(&store, a, "genieacs").await;

    let raw: Vec<u8> = sqlx::query_scalar("select upstream_credentials_sealed from server")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("upstream-secret"));
    let mut tx = store.begin(a).await.unwrap();
    let headers = upstream_headers(&mut tx, s).await.unwrap();
    assert_eq!(
        headers.expose(),
        &vec![(
            "Authorization".to_owned(),
            "Bearer upstream-secret".to_owned()
        )]
    );
    assert_eq!(format!("{headers:?}"), "[redacted]");
    tx.rollback().await.unwrap();

    let new_key = SealingKey::generate(2);
    let rotating = Store::new(
        pool.clone(),
        Keyring::new(new_key.clone()).with_previous(old_key),
    );
    let report = rotating.reseal_secrets().await.unwrap();
    assert_eq!((report.servers, report.key_version), (1, 2));
    assert_eq!(
        rotating.reseal_secrets().await.unwrap().servers,
        0,
        "a second run has nothing to do"
    );

    let rotated = Store::new(pool.clone(), Keyring::new(new_key));
    let mut tx = rotated.begin(a).await.unwrap();
    assert_eq!(
        upstream_headers(&mut tx, s).await.unwrap().expose()[0].1,
        "Bearer upstream-secret"
    );
    assert_eq!(
        store::server::server_by_id(&mut tx, s)
            .await
            .unwrap()
            .credentials_key_version,
        Some(2)
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn tool_snapshots_pin_and_return_the_latest(pool: PgPool) {
    let store = store(pool);
    let a = org(&store, "a").await;
    let s = server(&store, a, "genieacs").await;
    let mut tx = store.begin(a).await.unwrap();
    assert!(latest_pinned_tools(&mut tx, s).await.unwrap().is_empty());
    let tool = |name: &str, desc: &str, risk| {
        PinnedTool::new(serde_json::json!({"name": name, "description": desc, "inputSchema": {"type": "object"}}), risk, serde_json::json!([])).unwrap()
    };
    pin_tool_snapshot(
        &mut tx,
        Actor::Operator,
        s,
        &[tool("reboot_device", "Reboot", RiskClass::Destructive)],
    )
    .await
    .unwrap();
    pin_tool_snapshot(
        &mut tx,
        Actor::Operator,
        s,
        &[
            tool("search_devices", "Search", RiskClass::Read),
            tool("reboot_device", "Reboot it", RiskClass::Destructive),
        ],
    )
    .await
    .unwrap();
    let pinned = latest_pinned_tools(&mut tx, s).await.unwrap();
    let names: Vec<_> = pinned.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["reboot_device", "search_devices"]);
    assert_eq!(pinned[0].definition["description"], "Reboot it");
    assert_eq!(
        pinned[0].definition_hash,
        store::server::definition_hash(&pinned[0].definition)
    );
    assert_eq!(list_servers(&mut tx).await.unwrap().len(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn policy_versions_are_numbered_and_immutable(pool: PgPool) {
    let store = store(pool.clone());
    let a = org(&store, "a").await;
    let s = server(&store, a, "genieacs").await;
    assert_eq!(publish(&store, a, s, "default").await, 1);
    assert_eq!(publish(&store, a, s, "default").await, 2);
    assert_eq!(publish(&store, a, s, "read-only").await, 1);
    let mut tx = store.begin(a).await.unwrap();
    let policy = policy_by_name(&mut tx, s, "default").await.unwrap();
    assert_eq!(policy.current_version, Some(2));
    let current = current_policy_version(&mut tx, policy.policy_id)
        .await
        .unwrap();
    assert_eq!(current.version, 2);
    assert!(matches!(
        publish_policy_version(&mut tx, Actor::Operator, s, "Bad Name", "{}", None).await,
        Err(Error::Invalid { .. })
    ));
    tx.rollback().await.unwrap();
    // Even the owner cannot rewrite history.
    let err = sqlx::query("update policy_version set source = '{}'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn grants_are_found_by_token_and_stop_working_when_revoked_or_rotated(pool: PgPool) {
    let store = store(pool.clone());
    let a = org(&store, "a").await;
    let s = server(&store, a, "genieacs").await;

    let mut tx = store.begin(a).await.unwrap();
    let no_policy = NewGrant {
        server: s,
        policy_name: "default".into(),
        label: "noc-agent".into(),
        identity: None,
        expires_at: None,
    };
    assert!(matches!(
        mint_grant(&mut tx, Actor::Operator, &no_policy).await,
        Err(Error::NotFound { .. })
    ));
    tx.rollback().await.unwrap();

    publish(&store, a, s, "default").await;
    let minted = mint(&store, a, s, "noc-agent").await;
    let token = minted.token.expose().clone();
    assert!(token.starts_with("ghg_") && token.len() >= 47);
    let stored: Vec<u8> = sqlx::query_scalar("select token_hash from access_grant")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32, "only the hash is stored");

    let found = store
        .grant_by_token(&token)
        .await
        .unwrap()
        .expect("token resolves");
    assert_eq!(
        (found.grant_id, found.organisation_id, found.server_id),
        (minted.grant.grant_id, a, s)
    );
    assert_eq!(found.identity, "noc-agent");
    assert!(found.is_active(time::OffsetDateTime::now_utc()));
    assert!(
        store
            .grant_by_token("ghg_not-a-real-token")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.grant_by_token("Bearer x").await.unwrap().is_none());

    let mut tx = store.begin(a).await.unwrap();
    let rotated = rotate_grant(&mut tx, Actor::Operator, minted.grant.grant_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        store.grant_by_token(&token).await.unwrap().is_none(),
        "the old token stopped working"
    );
    let token = rotated.token.expose().clone();
    assert_eq!(
        store
            .grant_by_token(&token)
            .await
            .unwrap()
            .unwrap()
            .grant_id,
        minted.grant.grant_id
    );

    let mut tx = store.begin(a).await.unwrap();
    let revoked = revoke_grant(&mut tx, Actor::Operator, minted.grant.grant_id)
        .await
        .unwrap();
    let again = revoke_grant(&mut tx, Actor::Operator, minted.grant.grant_id)
        .await
        .unwrap();
    assert_eq!(
        revoked.revoked_at, again.revoked_at,
        "revoking twice keeps the first time"
    );
    store::grant::touch_grant_last_used(&mut tx, minted.grant.grant_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let found = store.grant_by_token(&token).await.unwrap().unwrap();
    assert!(!found.is_active(time::OffsetDateTime::now_utc()));

    let actions: Vec<String> = sqlx::query_scalar(
        "select action from admin_event where organisation_id = $1 order by sequence",
    )
    .bind(a.as_uuid())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "organisation.create",
            "server.create",
            "policy.publish",
            "grant.mint",
            "grant.rotate",
            "grant.revoke",
            "grant.revoke"
        ]
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_change_a_gateway_caches_moves_the_configuration_epoch_and_use_does_not(
    pool: PgPool,
) {
    let store = store(pool);
    let org = org(&store, "acme").await;
    let mut last = store.config_epoch().await.unwrap();
    let mut moved = async |what: &str| {
        let now = store.config_epoch().await.unwrap();
        assert!(now > last, "{what} did not move the epoch");
        last = now;
    };
    let server = server(&store, org, "acs").await;
    moved("a new server").await;
    publish(&store, org, server, "default").await;
    moved("a published policy").await;
    let grant = mint(&store, org, server, "noc").await.grant.grant_id;
    moved("a minted grant").await;
    let mut tx = store.begin(org).await.unwrap();
    rotate_grant(&mut tx, Actor::Operator, grant).await.unwrap();
    tx.commit().await.unwrap();
    moved("a rotation").await;

    // What gateways write as they serve does not empty every replica's cache.
    let mut tx = store.begin(org).await.unwrap();
    store::grant::touch_grant_last_used(&mut tx, grant)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.config_epoch().await.unwrap(), last, "last use");
    // Nor does a change rolled back.
    let mut tx = store.begin(org).await.unwrap();
    revoke_grant(&mut tx, Actor::Operator, grant).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.config_epoch().await.unwrap(), last, "rolled back");

    let mut tx = store.begin(org).await.unwrap();
    revoke_grant(&mut tx, Actor::Operator, grant).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.config_epoch().await.unwrap() > last, "a revocation");
}
