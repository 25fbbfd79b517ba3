//! The audit log pages: filters, keyset pagination, the chart, event details linked into the
//! policy, the live tail, export, and organisation isolation (verification: `verify.rs`).

use genieacs_sim::SimConfig;
use serde_json::{Value, json};
use sqlx::PgPool;
use store::audit::{AuditDecision, NewAuditEvent};
use store::{AuditEventId, GrantId, OrgId, ServerId};
use time::{Duration, OffsetDateTime};

use crate::support::{Answer, mint, org_of, register_sim, sign_up, spawn_app, spawn_sim, token_of};

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

/// The first href on the page that starts with `prefix`, unescaped.
fn href(page: &Answer, prefix: &str) -> String {
    let marker = format!("href=\"{prefix}");
    let start = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("a link to {prefix}"))
        + 6;
    let end = start + page.body[start..].find('"').unwrap();
    page.body[start..end]
        .replace("&#38;", "&")
        .replace("&amp;", "&")
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
    let marker = "rel=\"next\"";
    assert!(first.body.contains(marker));
    let start = first.body[..first.body.find(marker).unwrap()]
        .rfind("href=\"")
        .unwrap()
        + 6;
    let end = start + first.body[start..].find('"').unwrap();
    let next = first.body[start..end]
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let second = b.get(&next).await;
    assert_eq!(second.status, 200);
    assert_eq!(rows(&second.body), 10);
    assert!(!second.body.contains("Older events"));
    assert!(second.body.contains("Newest events"));

    let denied = b.get("/audit?decision=deny").await;
    assert_eq!(rows(&denied.body), 5);
    assert!(denied.body.contains("/tools/set_parameter/deny_if/0"));
    assert_eq!(rows(&b.get("/audit?text=provisioning+team").await.body), 5);
    assert_eq!(
        rows(&b.get("/audit?tool=set_parameter&period=1h").await.body),
        5
    );
    // A from/to range: the last ten minutes hold events 0..=19 (30 s apart).
    let now = OffsetDateTime::now_utc();
    let from = now - Duration::seconds(30 * 19 + 15);
    let q = format!(
        "/audit?from={:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        from.year(),
        u8::from(from.month()),
        from.day(),
        from.hour(),
        from.minute(),
        from.second()
    );
    let ranged = b.get(&q).await;
    assert_eq!(ranged.status, 200, "{}", ranged.body);
    assert!(
        (19..=21).contains(&rows(&ranged.body)),
        "{}",
        rows(&ranged.body)
    );

    let bad = b
        .get(&format!(
            "/audit?decision=maybe&tool={}&from=yesterday&grant=x",
            "x".repeat(201)
        ))
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Choose a decision from the list."));
    assert!(bad.body.contains("at most 200 characters"));
    assert!(bad.body.contains("must look like 2026-05-01T14:00"));
    assert!(bad.body.contains("Choose a grant from the list."));

    // The chart counts the same events, by decision.
    assert!(first.body.contains("<svg class=\"chart-svg\""));
    assert!(
        first.body.contains("allow <strong>55</strong>"),
        "{}",
        first.body
    );
    assert!(first.body.contains("deny <strong>5</strong>"));
    assert!(first.body.contains("60 calls in"));
    assert!(denied.body.contains("5 calls in"));

    // Another organisation sees none of it.
    let mut other = sign_up(&app, "bob@example.net", "Other").await;
    let theirs = other.get("/audit").await;
    assert_eq!(rows(&theirs.body), 0);
    assert!(theirs.body.contains("No events"));
    assert!(theirs.body.contains("No calls in this range."));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_event_links_to_its_rule_in_the_policy_version_that_decided(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let org = org_of(&app, "ada@example.net").await;
    let server = register_sim(&mut b, &sim, "genieacs").await;
    let token = token_of(&mint(&mut b, &server, "noc-agent").await);
    let grant = app.store.grant_by_token(&token).await.unwrap().unwrap();
    let mut e = event(org, 0, AuditDecision::RateLimited);
    e.server_id = server.parse().unwrap();
    e.grant_id = grant.grant_id;
    e.tool_name = Some("set_parameter".into());
    e.rule = Some("/tools/set_parameter/limits/0".into());
    e.message = Some(
        "rate limit `set_parameter` reached (30 per minute per grant), retry after 12 s".into(),
    );
    e.upstream_status = None;
    e.arguments = json!({"device_id": "00236A-1", "password": "[redacted]"});
    app.store.insert_audit_batch(&[e.clone()]).await.unwrap();

    let list = b.get("/audit").await;
    let detail_href = href(&list, "/audit/events/");
    let detail = b.get(&detail_href).await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(detail.body.contains("rate limited"));
    assert!(detail.body.contains("noc-agent"));
    assert!(detail.body.contains("not reached"), "no upstream status");
    assert!(detail.body.contains("[redacted]"));
    assert!(detail.body.contains("<code>default</code>, version 1"));
    let rule = href(
        &detail,
        &format!("/servers/{server}/policies/default/versions/1?rule="),
    );
    assert!(rule.ends_with("#rule"), "{rule}");
    let version = b.get(rule.trim_end_matches("#rule")).await;
    assert_eq!(version.status, 200, "{}", version.body);
    assert!(
        version.body.contains("id=\"rule\" class=\"rule-hit\""),
        "{}",
        version.body
    );
    // Without the time in the link the event is still found (one probe per partition).
    let bare = detail_href.split('?').next().unwrap();
    assert_eq!(b.get(bare).await.status, 200);
    // Unknown, malformed, or another organisation's: not found.
    assert_eq!(
        b.get(&format!("/audit/events/{}", AuditEventId::new()))
            .await
            .status,
        404
    );
    assert_eq!(b.get("/audit/events/nope").await.status, 404);
    assert_eq!(b.get(&format!("{bare}?at=soon")).await.status, 404);
    let mut other = sign_up(&app, "bob@example.net", "Other").await;
    assert_eq!(other.get(&detail_href).await.status, 404);

    // The grant filter lists the grant and narrows to it.
    assert!(list.body.contains(&format!("value=\"{}\"", grant.grant_id)));
    let by_grant = b.get(&format!("/audit?grant={}", grant.grant_id)).await;
    assert_eq!(rows(&by_grant.body), 1);
    assert_eq!(
        rows(
            &b.get(&format!("/audit?grant={}", GrantId::new()))
                .await
                .body
        ),
        0
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_live_tail_answers_only_events_stored_after_the_newest_shown(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let org = org_of(&app, "ada@example.net").await;
    app.store
        .insert_audit_batch(&[event(org, 1, AuditDecision::Allow)])
        .await
        .unwrap();
    let page = b.get("/audit?decision=deny").await;
    assert!(
        page.body.contains("data-after=\"0\""),
        "nothing denied is shown yet"
    );
    let tail_href = {
        let start = page
            .body
            .find("data-tail=\"")
            .expect("the live tail button")
            + 11;
        let end = start + page.body[start..].find('"').unwrap();
        page.body[start..end]
            .replace("&#38;", "&")
            .replace("&amp;", "&")
    };
    assert!(tail_href.contains("decision=deny"));

    // Two new events, one of them denied: the tail of the deny filter answers that one.
    app.store
        .insert_audit_batch(&[
            event(org, 0, AuditDecision::Allow),
            event(org, 0, AuditDecision::Deny),
        ])
        .await
        .unwrap();
    let answer: Value =
        serde_json::from_str(&b.get(&format!("{tail_href}&after=0")).await.body).unwrap();
    assert_eq!(answer["count"], 1);
    assert_eq!(answer["after"], 3);
    assert!(answer["html"].as_str().unwrap().contains("decision-deny"));
    let again: Value =
        serde_json::from_str(&b.get(&format!("{tail_href}&after=3")).await.body).unwrap();
    assert_eq!(again["count"], 0);
    assert_eq!(again["after"], 3);
    assert_eq!(b.get("/audit/tail?after=-1").await.status, 422);
    assert_eq!(b.get("/audit/tail?decision=maybe").await.status, 422);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn export_streams_the_current_filter_as_csv_and_json_lines(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let org = org_of(&app, "ada@example.net").await;
    let mut events: Vec<NewAuditEvent> = (0..30)
        .map(|i| {
            event(
                org,
                i,
                if i % 3 == 0 {
                    AuditDecision::Deny
                } else {
                    AuditDecision::Allow
                },
            )
        })
        .collect();
    events[1].message = Some("=HYPERLINK(\"x\")".into());
    app.store.insert_audit_batch(&events).await.unwrap();

    let page = b.get("/audit?decision=deny").await;
    let csv_href = href(&page, "/audit/export?format=csv");
    let csv = b.get(&csv_href).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"gatehouse-audit-")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(lines[0].starts_with("occurred_at,audit_event_id,sequence,"));
    assert_eq!(lines.len(), 1 + 10, "the header and the denied events");
    assert!(lines[1..].iter().all(|l| l.contains(",deny,")));

    let all = b.get("/audit/export?format=csv&period=all").await;
    assert!(
        all.body.contains("\"'=HYPERLINK(\"\"x\"\")\""),
        "formulas are defused"
    );
    let jsonl = b.get("/audit/export?format=jsonl&period=all").await;
    assert_eq!(
        jsonl.headers["content-type"],
        "application/jsonl; charset=utf-8"
    );
    let records: Vec<Value> = jsonl
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 30);
    assert_eq!(records[0]["sequence"], 30, "oldest first");
    assert_eq!(records[0]["decision"], "allow");

    assert_eq!(b.get("/audit/export?format=xml").await.status, 422);
    assert_eq!(b.get("/audit/export?format=csv&server=x").await.status, 422);
    // Another organisation exports nothing of it.
    let mut other = sign_up(&app, "bob@example.net", "Other").await;
    let theirs = other.get("/audit/export?format=jsonl&period=all").await;
    assert_eq!(theirs.status, 200);
    assert!(theirs.body.is_empty());
}
