//! The policy editor: validation at the line, the builder with and without JavaScript, "try a
//! call", publishing, versions with their diff, rule highlighting and roll back.

use genieacs_sim::SimConfig;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{Answer, Browser, register_sim, sign_up, spawn_app, spawn_sim};

/// The value of the editor's text area on a page (HTML-unescaped).
fn source_of(page: &Answer) -> String {
    let start = page
        .body
        .find("name=\"source\"")
        .expect("the document's text area");
    let start = start + page.body[start..].find('>').unwrap() + 1;
    let end = start + page.body[start..].find("</textarea>").unwrap();
    unescape(&page.body[start..end])
}

fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// Every hidden builder field of the page (tool names and what each row shows), as a form sends
/// them, plus the checked choice of each row.
fn builder_fields(page: &Answer) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for chunk in page.body.split("<input ").skip(1) {
        let attr = |name: &str| {
            let marker = format!("{name}=\"");
            chunk.find(&marker).map(|i| {
                let rest = &chunk[i + marker.len()..];
                unescape(&rest[..rest.find('"').unwrap()])
            })
        };
        let (Some(name), Some(value)) = (attr("name"), attr("value")) else {
            continue;
        };
        let end = chunk.find('>').unwrap();
        let is_builder = name.starts_with('t') && name[1..].parse::<u32>().is_ok()
            || name.starts_with("shown")
            || name.starts_with('m') && name[1..].parse::<u32>().is_ok();
        let checked_radio =
            chunk[..end].contains("type=\"radio\"") && chunk[..end].contains(" checked");
        if is_builder || checked_radio || name == "shown_default" {
            fields.push((name, value));
        }
    }
    // Each drop-down's selected option, as a browser sends it.
    for chunk in page.body.split("<select ").skip(1) {
        let Some(i) = chunk.find("name=\"") else {
            continue;
        };
        let name = &chunk[i + 6..];
        let name = &name[..name.find('"').unwrap()];
        let options = &chunk[..chunk.find("</select>").unwrap()];
        let selected = options
            .split("<option ")
            .find(|o| o.contains(" selected"))
            .or_else(|| options.split("<option ").nth(1));
        if let Some(o) = selected {
            let v = &o[o.find("value=\"").unwrap() + 7..];
            fields.push((name.to_owned(), unescape(&v[..v.find('"').unwrap()])));
        }
    }
    fields
}

/// The builder row index of `tool` on a page.
fn row_of(fields: &[(String, String)], tool: &str) -> String {
    fields
        .iter()
        .find(|(k, v)| k.starts_with('t') && v == tool)
        .map(|(k, _)| k[1..].to_owned())
        .expect("the tool is in the builder")
}

fn set(fields: &mut Vec<(String, String)>, key: &str, value: &str) {
    fields.retain(|(k, _)| k != key);
    fields.push((key.to_owned(), value.to_owned()));
}

async fn post_owned(b: &mut Browser, path: &str, fields: &[(String, String)]) -> Answer {
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post(path, &borrowed).await
}

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
    assert!(source_of(&editor).contains("\"version\": \"1\""));
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
        a.body
            .contains("<li id=\"line-4\" class=\"has-finding error\""),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("href=\"#line-4\""),
        "the finding links to its line"
    );
    assert_eq!(source_of(&a), bad, "the submitted text is kept");

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
            .contains("/versions/2\">2</a> <span class=\"badge status-active\">current</span>"),
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

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_builder_preselects_the_recommendation_and_writes_changes_into_the_document(
    pool: PgPool,
) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let server = register_sim(&mut b, &sim, "genieacs").await;
    let path = format!("/servers/{server}/policies/default");
    let editor = b.get(&path).await;
    let fields = builder_fields(&editor);
    // Pre-selected from risk: reads allowed, writes limited 30/minute, destructive hidden.
    let get = row_of(&fields, "get_parameter");
    let set_p = row_of(&fields, "set_parameter");
    let del = row_of(&fields, "delete_task");
    let reboot = row_of(&fields, "reboot_device");
    let value = |k: String| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| v.clone());
    assert_eq!(value(format!("c{get}")).as_deref(), Some("allow"));
    assert_eq!(value(format!("c{set_p}")).as_deref(), Some("rate_limit"));
    assert_eq!(value(format!("m{set_p}")).as_deref(), Some("30"));
    assert_eq!(
        value(format!("shown{set_p}")).as_deref(),
        Some("rate_limit:30:60:grant")
    );
    assert_eq!(value(format!("c{del}")).as_deref(), Some("hide"));

    // Without JavaScript: change two tools, post "Apply to the document".
    let mut form = fields.clone();
    form.push(("source".into(), source_of(&editor)));
    set(&mut form, &format!("c{reboot}"), "approve");
    set(&mut form, &format!("c{set_p}"), "rate_limit");
    set(&mut form, &format!("m{set_p}"), "5");
    set(&mut form, &format!("w{set_p}"), "hour");
    set(&mut form, &format!("s{set_p}"), "identity");
    set(&mut form, "op", "build");
    let built = post_owned(&mut b, &format!("{path}/draft"), &form).await;
    assert_eq!(built.status, 200, "{}", built.body);
    assert!(built.body.contains("Nothing is published yet"));
    let doc: Value = serde_json::from_str(&source_of(&built)).unwrap();
    assert_eq!(doc["tools"]["reboot_device"]["action"], "approve");
    assert_eq!(
        doc["tools"]["set_parameter"]["limits"][0],
        serde_json::json!({"counter": "set_parameter", "window": "hour", "max": 5, "scope": "identity"})
    );
    assert!(
        built
            .body
            .contains("No findings: the document is ready to publish.")
    );
    // The page now shows the new settings as what it shows.
    let after = builder_fields(&built);
    assert_eq!(
        after
            .iter()
            .find(|(k, _)| *k == format!("shown{set_p}"))
            .map(|(_, v)| v.as_str()),
        Some("rate_limit:5:3600:identity")
    );

    // Bad builder input is named, and nothing is rewritten.
    let mut bad = form.clone();
    set(&mut bad, &format!("m{set_p}"), "0");
    let refused = post_owned(&mut b, &format!("{path}/draft"), &bad).await;
    assert!(
        refused.body.contains(
            "`set_parameter`: the limit needs a whole number of calls from 1 to 1000000."
        ),
        "{}",
        refused.body
    );

    // Publishing straight from a changed builder (no "apply" first) publishes the change too.
    let mut publish = fields.clone();
    publish.push(("source".into(), source_of(&editor)));
    set(&mut publish, &format!("c{get}"), "deny");
    publish.push(("comment".into(), "no reads".into()));
    let a = post_owned(&mut b, &path, &publish).await;
    assert_eq!(a.status, 303, "{}", a.body);
    let current: String = sqlx::query_scalar(
        "select v.source from policy p join policy_version v on v.policy_id = p.policy_id and v.version = p.current_version",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    let doc: Value = serde_json::from_str(&current).unwrap();
    assert_eq!(doc["tools"]["get_parameter"]["action"], "deny");
    assert!(
        doc["tools"]["set_parameter"]["limits"][0]["max"] == 30,
        "untouched rows stay as they were"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_live_editor_gets_the_document_findings_and_builder_as_json(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let server = register_sim(&mut b, &sim, "genieacs").await;
    let path = format!("/servers/{server}/policies/default");
    let editor = b.get(&path).await;
    let csrf = editor.csrf();
    let fields = builder_fields(&editor);
    let client = reqwest::Client::new();
    let cookie = b.cookie_header();
    let draft = |form: Vec<(String, String)>| {
        let client = client.clone();
        let url = format!("{}{path}/draft", app.url);
        let cookie = cookie.clone();
        async move {
            let r = client
                .post(url)
                .header("cookie", cookie)
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(crate::support::form_body(
                    &form
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect::<Vec<_>>(),
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
        }
    };

    // Typing: a check answers findings with their lines and the builder read from the text.
    let typed = "{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {\n    \"get_parameter\": {},\n    \"reboot_devise\": {}\n  }\n}";
    let mut form = vec![
        ("csrf".to_owned(), csrf.clone()),
        ("op".to_owned(), "check".to_owned()),
        ("source".to_owned(), typed.to_owned()),
    ];
    form.extend(
        fields
            .iter()
            .filter(|(k, _)| k.starts_with('t') || k.starts_with("shown"))
            .cloned(),
    );
    let answer = draft(form.clone()).await;
    assert_eq!(answer["changed"], false);
    assert_eq!(answer["source"], typed);
    assert_eq!(answer["marks"][0]["line"], 6);
    assert_eq!(answer["marks"][0]["severity"], "error");
    assert!(
        answer["findings_html"]
            .as_str()
            .unwrap()
            .contains("did you mean")
    );
    let builder_html = answer["builder_html"].as_str().unwrap();
    assert!(
        builder_html.contains("value=\"allow\" checked"),
        "get_parameter is allowed"
    );
    assert!(builder_html.contains("not listed: the default denies it"));
    assert_eq!(answer["paused"], false);

    // Half-typed JSON pauses the builder.
    set(&mut form, "source", "{\n  \"version\": ");
    let answer = draft(form.clone()).await;
    assert_eq!(answer["paused"], true);
    assert!(answer["builder_html"].is_null());
    assert_eq!(answer["marks"][0]["line"], 2);

    // A builder change: the rewritten document comes back, the builder is left alone.
    let reboot = row_of(&fields, "reboot_device");
    let mut form = vec![
        ("csrf".to_owned(), csrf.clone()),
        ("op".to_owned(), "build".to_owned()),
        ("source".to_owned(), source_of(&editor)),
    ];
    form.extend(fields.iter().cloned());
    set(&mut form, &format!("c{reboot}"), "deny");
    let answer = draft(form.clone()).await;
    assert_eq!(answer["changed"], true);
    let doc: Value = serde_json::from_str(answer["source"].as_str().unwrap()).unwrap();
    assert_eq!(
        doc["tools"]["reboot_device"],
        serde_json::json!({"action": "deny"})
    );
    assert!(answer["builder_html"].is_null());

    // Try a call against that draft: denied, by the rule at its line.
    set(&mut form, "source", answer["source"].as_str().unwrap());
    set(&mut form, "op", "try");
    set(&mut form, "try_tool", "reboot_device");
    set(&mut form, "try_args", r#"{"device_id": "00236A-1"}"#);
    let answer = draft(form.clone()).await;
    let html = answer["try_html"].as_str().unwrap();
    assert!(html.contains("Denied"), "{html}");
    assert!(html.contains("/tools/reboot_device/action"), "{html}");
    assert!(answer["rule"]["first_line"].as_u64().unwrap() > 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn try_a_call_decides_against_the_draft_without_javascript(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let server = register_sim(&mut b, &sim, "genieacs").await;
    let path = format!("/servers/{server}/policies/default/draft");
    let doc = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "get_parameter": {},
    "set_parameter": {
      "deny_if": [{"path": "args.parameter_values", "op": "contains", "value": "Password"}],
      "on_deny": "Passwords are changed by the provisioning team only."
    },
    "retry_task": {"limits": [{"counter": "retries", "window": "minute", "max": 3}]},
    "reboot_device": {"approval": {"timeout": "10m"}}
  }
}"#;
    let try_call = |tool: &'static str, args: &'static str| {
        [
            ("op", "try"),
            ("source", doc),
            ("try_tool", tool),
            ("try_args", args),
        ]
    };
    let a = b
        .post(
            &path,
            &try_call(
                "set_parameter",
                r#"{"device_id": "00236A-1", "parameter_values": "X.Password=1"}"#,
            ),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("try-result try-deny"));
    assert!(
        a.body
            .contains("[POLICY DENIED] Passwords are changed by the provisioning team only.")
    );
    assert!(a.body.contains("/tools/set_parameter/deny_if/0"));
    assert!(
        a.body.contains("class=\"rule-hit\""),
        "the rule's lines are marked"
    );
    let a = b.post(&path, &try_call("retry_task", "{}")).await;
    assert!(a.body.contains("Allowed while under its rate limit"));
    assert!(a.body.contains("at most 3 per minute per grant"));
    let a = b.post(&path, &try_call("reboot_device", "")).await;
    assert!(
        a.body.contains("Held for a human&#39;s approval")
            || a.body.contains("Held for a human's approval"),
        "{}",
        a.body
    );
    assert!(a.body.contains("10 minutes"));
    let a = b.post(&path, &try_call("delete_task", "{}")).await;
    assert!(a.body.contains("Unknown tool"));
    assert!(a.body.contains("/default"));
    let a = b.post(&path, &try_call("get_parameter", "[1]")).await;
    assert!(a.body.contains("The arguments must be a JSON object"));
    let a = b.post(&path, &try_call("get_parameter", "{nope")).await;
    assert!(a.body.contains("The arguments are not valid JSON"));
    let a = b
        .post(
            &path,
            &[
                ("op", "try"),
                ("source", "{}"),
                ("try_tool", "get_parameter"),
            ],
        )
        .await;
    assert!(a.body.contains("The draft has errors"));
    let a = b.post(&path, &[("op", "publish"), ("source", doc)]).await;
    assert_eq!(a.status, 422);
    assert!(a.body.contains("Unknown editor action."));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn versions_show_their_diff_highlight_a_rule_and_roll_back(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let server = register_sim(&mut b, &sim, "genieacs").await;
    let path = format!("/servers/{server}/policies/default");
    let v1 = source_of(&b.get(&path).await);
    let mut doc: Value = serde_json::from_str(&v1).unwrap();
    doc["tools"]["reboot_device"] = serde_json::json!({"action": "deny"});
    let v2 = serde_json::to_string_pretty(&doc).unwrap();
    let a = b
        .post(&path, &[("source", &v2), ("comment", "no reboots")])
        .await;
    assert_eq!(a.status, 303, "{}", a.body);

    // Version 2 shows what changed since version 1.
    let page = b.get(&format!("{path}/versions/2")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Changes from version 1"));
    assert!(page.body.contains("class=\"diff-insert\""), "{}", page.body);
    assert!(page.body.contains("class=\"diff-delete\""));
    assert!(
        page.body.contains("&#34;action&#34;: &#34;deny&#34;")
            || page.body.contains("&quot;action&quot;: &quot;deny&quot;")
    );
    assert!(page.body.contains("no reboots"));
    // The first version has nothing before it; comparing explicitly works both ways.
    let first = b.get(&format!("{path}/versions/1")).await;
    assert!(first.body.contains("This is the first version"));
    let against = b.get(&format!("{path}/versions/1?against=2")).await;
    assert!(against.body.contains("Changes up to version 2"));
    assert_eq!(
        b.get(&format!("{path}/versions/1?against=9")).await.status,
        422
    );
    assert_eq!(b.get(&format!("{path}/versions/9")).await.status, 404);
    assert_eq!(b.get(&format!("{path}/versions/x")).await.status, 404);

    // A rule pointer is highlighted where it is, and said to be absent where it is not.
    let hl = b
        .get(&format!(
            "{path}/versions/2?rule=%2Ftools%2Freboot_device%2Faction"
        ))
        .await;
    assert!(
        hl.body.contains("id=\"rule\" class=\"rule-hit\""),
        "{}",
        hl.body
    );
    assert!(hl.body.contains("is highlighted below"));
    let missing = b
        .get(&format!("{path}/versions/1?rule=%2Ftools%2Fnothing"))
        .await;
    assert!(missing.body.contains("is not in this version"));
    assert_eq!(
        b.get(&format!("{path}/versions/1?rule=tools")).await.status,
        422
    );

    // Roll back to version 1: a new version 3 with version 1's document.
    let a = b.post(&format!("{path}/versions/1/rollback"), &[]).await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(
        a.location.as_deref(),
        Some(format!("{path}?done=rolled_back").as_str())
    );
    let rows: Vec<(i32, String, Option<String>)> =
        sqlx::query_as("select version, source, comment from policy_version order by version")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].1, v1);
    assert_eq!(rows[2].2.as_deref(), Some("Rolled back to version 1"));
    let editor = b.get(&format!("{path}?done=rolled_back")).await;
    assert!(editor.body.contains("Rolled back"));
    assert!(
        editor
            .body
            .contains("/versions/3\">3</a> <span class=\"badge status-active\">current</span>")
    );

    // A version that no longer fits the server's tools opens in the editor instead.
    let org = crate::support::org_of(&app, "ada@example.net").await;
    let mut tx = app.store.begin(org).await.unwrap();
    store::policy::publish_policy_version(
        &mut tx,
        store::Actor::Operator,
        server.parse().unwrap(),
        "default",
        "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\"gone_tool\": {}}}",
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let a = b.post(&format!("{path}/versions/4/rollback"), &[]).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("Version 4 was not rolled back to"));
    assert!(a.body.contains("gone_tool"));
}
