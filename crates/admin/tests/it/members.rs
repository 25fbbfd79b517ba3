//! Members and roles: listed for everyone, changed by admins only, never leaving no admin.

use sqlx::PgPool;
use store::Role;

use crate::support::{member, org_of, sign_up, spawn_app};

async fn user_id(app: &crate::support::App, email: &str) -> String {
    let id: uuid::Uuid = sqlx::query_scalar("select app_user_id from app_user where email = $1")
        .bind(email)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    id.to_string()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn admins_change_roles_and_an_organisation_keeps_an_admin(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut admin = sign_up(&app, "admin@acme.test", "Acme").await;
    let org = org_of(&app, "admin@acme.test").await;
    let mut viewer = member(&app, org, "viewer@acme.test", Role::Viewer).await;
    let mut manager = member(&app, org, "manager@acme.test", Role::PolicyManager).await;
    let viewer_id = user_id(&app, "viewer@acme.test").await;
    let admin_id = user_id(&app, "admin@acme.test").await;

    let list = viewer.get("/members").await;
    assert_eq!(list.status, 200);
    for email in ["admin@acme.test", "viewer@acme.test", "manager@acme.test"] {
        assert!(list.body.contains(email), "{email}");
    }
    assert!(!list.body.contains("/role\""), "no role forms for a viewer");

    // Only admins change roles, even with a hand-made request.
    let path = format!("/members/{viewer_id}/role");
    assert_eq!(viewer.post(&path, &[("role", "admin")]).await.status, 403);
    assert_eq!(manager.post(&path, &[("role", "admin")]).await.status, 403);
    let a = admin.post(&path, &[("role", "policy_manager")]).await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert!(
        admin
            .get("/members?done=role")
            .await
            .body
            .contains("Role changed.")
    );
    // The change applies to the viewer's very next request.
    assert_eq!(viewer.get("/members").await.status, 200);
    assert!(
        viewer
            .get("/servers")
            .await
            .body
            .contains(">policy_manager<")
    );

    // The last admin cannot step down; a bad role is refused.
    let a = admin
        .post(&format!("/members/{admin_id}/role"), &[("role", "viewer")])
        .await;
    assert_eq!(a.status, 422);
    assert!(a.body.contains("keeps at least one admin"), "{}", a.body);
    let a = admin.post(&path, &[("role", "owner")]).await;
    assert_eq!(a.status, 422);

    // Another organisation's member is not found.
    let mut other = sign_up(&app, "admin@other.test", "Other").await;
    let a = other.post(&path, &[("role", "viewer")]).await;
    assert_eq!(a.status, 404);
    let other_list = other.get("/members").await;
    assert!(!other_list.body.contains("viewer@acme.test"));
}
