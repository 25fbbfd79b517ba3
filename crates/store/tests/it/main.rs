//! Integration tests of the store against a real Postgres: each `#[sqlx::test]` gets a fresh
//! database with every migration applied (`DATABASE_URL` names the server).

mod approvals;
mod audit;
mod audit_verify;
mod drift;
mod isolation;
mod servers_policies_grants;

use sqlx::PgPool;
use store::secret::{Keyring, SealingKey};
use store::server::NewServer;
use store::{Actor, OrgId, ServerId, Store};

pub(crate) fn store(pool: PgPool) -> Store {
    Store::new(pool, Keyring::new(SealingKey::generate(1)))
}

pub(crate) async fn org(store: &Store, name: &str) -> OrgId {
    store
        .create_organisation(Actor::Operator, name)
        .await
        .unwrap()
        .organisation_id
}

pub(crate) async fn server(store: &Store, org: OrgId, name: &str) -> ServerId {
    let mut tx = store.begin(org).await.unwrap();
    let new = NewServer {
        name: name.into(),
        upstream_url: "http://10.0.0.5:7557/mcp".into(),
        headers: store::secret::Redacted::new(vec![(
            "Authorization".into(),
            "Bearer upstream-secret".into(),
        )]),
    };
    let server = store::server::create_server(&mut tx, Actor::Operator, &new)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    server.server_id
}

pub(crate) async fn publish(store: &Store, org: OrgId, server: ServerId, name: &str) -> i32 {
    let mut tx = store.begin(org).await.unwrap();
    let v = store::policy::publish_policy_version(
        &mut tx,
        Actor::Operator,
        server,
        name,
        r#"{"version": "1", "default": "deny"}"#,
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    v.version
}

pub(crate) async fn mint(
    store: &Store,
    org: OrgId,
    server: ServerId,
    label: &str,
) -> store::grant::MintedGrant {
    let mut tx = store.begin(org).await.unwrap();
    let minted = store::grant::mint_grant(
        &mut tx,
        Actor::Operator,
        &store::grant::NewGrant {
            server,
            policy_name: "default".into(),
            label: label.into(),
            identity: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    minted
}
