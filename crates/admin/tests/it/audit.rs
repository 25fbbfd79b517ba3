//! The audit log page: filters, keyset pagination, organisation isolation.

use serde_json::json;
use sqlx::PgPool;
use store::audit::{AuditDecision, NewAuditEvent};
use store::{AuditEventId, GrantId, OrgId, ServerId};
use time::{Duration, OffsetDateTime};

use crate::support::{org_of, sign_up, spawn_app};

pub(crate) fn event(org: OrgId, i: i64, decision: AuditDecision) -> NewAuditEvent {
    NewAuditEvent {
        audit_event_id: AuditEventId::new(),
        organisation_id: org,
        occurred_at: OffsetDateTime::now_utc() - Duration::seconds(30 * i),
        server_id: ServerId::new(),
        grant_id: GrantId::new(),
        identity: "noc-agent".into(),
        session_id: None,
        method: "tools/call".into(),
        tool_name: Some(
            if decision == AuditDecision::Deny {
                "set_parameter"
            } else {
                "get_parameter"
            }
            .into(),
        ),
        arguments: json!({"device_id": null}),
        decision,
        rule: (decision == AuditDecision::Deny).then(|| "/tools/set_parameter/deny_if/0".into()),
        message: (decision == AuditDecision::Deny)
            .then(|| "Passwords are changed by the provisioning team only.".into()),
        policy_version: Some(1),
        upstream_status: Some(200),
        is_error: Some(false),
        latency_us: Some(1500),
        client_addr: None,
        user_agent: None,
    }
}

fn rows(html: &str) -> usize {
    html.matches("class=\"badge decision-").count()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_audit_log_filters_and_pages_by_keyset(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let org = org_of(&app, "ada@example.net").await;
    let events: Vec<NewAuditEvent> = (0..60)
        .map(|i| {
            event(
                org,
                i,
                if i % 12 == 0 {
                    AuditDecision::Deny
                } else {
                    AuditDecision::Allow
                },
            )
        })
        .collect();
    app.store.insert_audit_batch(&events).await.unwrap();

    let first = b.get("/audit").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(rows(&first.body), 50);
    let marker = "href=\"/audit?";
    let start = first.body.find(marker).expect("a link to older events") + marker.len() - 1;
    let end = start + first.body[start..].find('"').unwrap();
    let next = first.body[start..end]
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let second = b.get(&format!("/audit{next}")).await;
    assert_eq!(second.status, 200);
    assert_eq!(rows(&second.body), 10);
    assert!(!second.body.contains("Older events"));

    let denied = b.get("/audit?decision=deny").await;
    assert_eq!(rows(&denied.body), 5);
    assert!(denied.body.contains("/tools/set_parameter/deny_if/0"));
    assert_eq!(rows(&b.get("/audit?text=provisioning+team").await.body), 5);
    assert_eq!(
        rows(&b.get("/audit?tool=set_parameter&period=1h").await.body),
        5
    );

    let bad = b
        .get(&format!("/audit?decision=maybe&tool={}", "x".repeat(201)))
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Choose a decision from the list."));
    assert!(bad.body.contains("at most 200 characters"));

    // Another organisation sees none of it.
    let mut other = sign_up(&app, "bob@example.net", "Other").await;
    let theirs = other.get("/audit").await;
    assert_eq!(rows(&theirs.body), 0);
    assert!(theirs.body.contains("No events"));
}
