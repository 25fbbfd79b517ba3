//! The OpenAPI document: OpenAPI 3.1, every API route the router serves documented with its
//! methods, and real answers that fit the documented schemas.

use std::collections::BTreeSet;

use genieacs_sim::SimConfig;
use serde_json::{Value, json};
use sqlx::PgPool;
use store::Role;

use crate::support::{Api, api_key, open_approval, org_of, sign_up, spawn_app, spawn_sim};

/// Resolves `{"$ref": "#/components/schemas/X"}`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses: `$ref`, `type` (one or a
/// list), `properties` (no undocumented member may appear), `required`, `items`, `enum`,
/// `oneOf`/`anyOf`. Returns where it does not fit.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let fits = options.iter().any(|o| {
                let mut p = Vec::new();
                check(doc, o, value, at, &mut p);
                p.is_empty()
            });
            if !fits {
                problems.push(format!("{at}: fits none of {key}"));
            }
            return;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types.is_empty()
        || types.contains(&actual)
        || (actual == "integer" && types.contains(&"number"));
    if !fits {
        problems.push(format!("{at}: {actual}, documented as {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in map {
                    match props.get(k) {
                        Some(s) => check(doc, s, v, &format!("{at}/{k}"), problems),
                        None => problems.push(format!("{at}/{k}: not documented")),
                    }
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                if !map.contains_key(r.as_str().unwrap()) {
                    problems.push(format!("{at}: required {r} missing"));
                }
            }
        }
        Value::Array(items) if schema.get("items").is_some() => {
            for (i, v) in items.iter().enumerate() {
                check(doc, &schema["items"], v, &format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}

/// Asserts that an answer fits the schema documented for it.
fn assert_fits(doc: &Value, method: &str, path: &str, answer: &crate::support::Json) {
    let response = &doc["paths"][path][method]["responses"][answer.status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} {} is not documented",
        answer.status
    );
    let media = answer.content_type().split(';').next().unwrap().to_owned();
    let schema = &response["content"][&media]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {}: no schema for {media}",
        answer.status
    );
    let mut problems = Vec::new();
    check(doc, schema, &answer.body, "", &mut problems);
    assert!(
        problems.is_empty(),
        "{method} {path}: {problems:?}\n{}",
        answer.text
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_document_describes_what_is_served(pool: PgPool) {
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    sign_up(&app, "admin@acme.test", "Acme").await;
    let org = org_of(&app, "admin@acme.test").await;
    let doc = Api::new(&app, None).get("/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.content_type(), "application/json");
    let doc = doc.body;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );

    // Every documented operation is served (the app answers OPTIONS with its methods), and every
    // operation names one least role, its problem answers and a success answer.
    let client = reqwest::Client::new();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    "00000000-0000-4000-8000-000000000000"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let allow = client
            .request(reqwest::Method::OPTIONS, format!("{}{concrete}", app.url))
            .send()
            .await
            .unwrap()
            .headers()["allow"]
            .to_str()
            .unwrap()
            .to_lowercase();
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            assert!(
                allow.contains(method.as_str()),
                "{method} {path} not served ({allow})"
            );
            let roles = op["security"][0]["api_key"].as_array().unwrap();
            assert_eq!(roles.len(), 1, "{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path}"
            );
            for code in ["401", "500"] {
                assert_eq!(
                    responses[code]["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {code}"
                );
            }
            assert!(op["operationId"].is_string());
        }
    }
    assert!(documented.len() >= 20, "{documented:?}");

    // Real answers fit their documented schemas, errors included.
    let api = Api::new(&app, Some(&api_key(&app, org, "ci", Role::Admin).await));
    let created = api
        .post(
            "/servers",
            json!({"name": "genieacs", "upstream_url": sim.url}),
        )
        .await;
    assert_fits(&doc, "post", "/api/v1/servers", &created);
    let id = created.body["server"]["id"].as_str().unwrap().to_owned();
    assert_fits(&doc, "get", "/api/v1/servers", &api.get("/servers").await);
    assert_fits(
        &doc,
        "get",
        "/api/v1/servers/{server}",
        &api.get(&format!("/servers/{id}")).await,
    );
    assert_fits(
        &doc,
        "get",
        "/api/v1/servers/{server}/policies/{name}",
        &api.get(&format!("/servers/{id}/policies/default")).await,
    );
    let minted = api
        .post(
            &format!("/servers/{id}/grants"),
            json!({"label": "noc-agent"}),
        )
        .await;
    assert_fits(&doc, "post", "/api/v1/servers/{server}/grants", &minted);
    assert_fits(
        &doc,
        "get",
        "/api/v1/servers/{server}/grants",
        &api.get(&format!("/servers/{id}/grants")).await,
    );
    assert_fits(&doc, "get", "/api/v1/members", &api.get("/members").await);
    assert_fits(
        &doc,
        "get",
        "/api/v1/admin-events",
        &api.get("/admin-events").await,
    );
    assert_fits(
        &doc,
        "get",
        "/api/v1/audit/events",
        &api.get("/audit/events").await,
    );
    let invited = api
        .post(
            "/invitations",
            json!({"email": "x@acme.test", "role": "viewer"}),
        )
        .await;
    assert_fits(&doc, "post", "/api/v1/invitations", &invited);
    // Approvals: the queue, one, a decision, a decision refused, and the webhook.
    let grant = minted.body["grant"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let held = open_approval(
        &app.store,
        org,
        grant,
        id.parse().unwrap(),
        "reboot_device",
        json!({"device_id": "00236A-1"}),
        std::time::Duration::from_secs(3600),
    )
    .await
    .approval_id;
    assert_fits(
        &doc,
        "get",
        "/api/v1/approvals",
        &api.get("/approvals").await,
    );
    assert_fits(
        &doc,
        "get",
        "/api/v1/approvals/{approval}",
        &api.get(&format!("/approvals/{held}")).await,
    );
    let approved = api
        .post(
            &format!("/approvals/{held}/approve"),
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(approved.status, 200);
    assert_fits(
        &doc,
        "post",
        "/api/v1/approvals/{approval}/approve",
        &approved,
    );
    let twice = api
        .post(&format!("/approvals/{held}/deny"), json!({"comment": "no"}))
        .await;
    assert_eq!(twice.status, 409);
    assert_fits(&doc, "post", "/api/v1/approvals/{approval}/deny", &twice);
    let no_comment = api
        .post(&format!("/approvals/{held}/deny"), json!({}))
        .await;
    assert_eq!(no_comment.status, 422);
    assert_fits(
        &doc,
        "post",
        "/api/v1/approvals/{approval}/deny",
        &no_comment,
    );
    assert_fits(
        &doc,
        "get",
        "/api/v1/approvals",
        &api.get("/approvals?status=decided").await,
    );
    assert_fits(
        &doc,
        "get",
        "/api/v1/approval-webhook",
        &api.get("/approval-webhook").await,
    );
    let set = api
        .send(
            "PUT",
            "/approval-webhook",
            Some(r#"{"url": "https://hooks.example.com/gatehouse"}"#),
            "application/json",
        )
        .await;
    assert_fits(&doc, "put", "/api/v1/approval-webhook", &set);
    assert_fits(
        &doc,
        "get",
        "/api/v1/approval-webhook",
        &api.get("/approval-webhook").await,
    );
    assert_eq!(
        api.send("DELETE", "/approval-webhook", None, "")
            .await
            .status,
        204
    );
    let none = api.send("DELETE", "/approval-webhook", None, "").await;
    assert_fits(&doc, "delete", "/api/v1/approval-webhook", &none);

    let refused = api
        .send(
            "POST",
            &format!("/servers/{id}/policies/default/validate"),
            Some("{\"version\": \"2\"}"),
            "application/json",
        )
        .await;
    assert_eq!(refused.status, 422);
    assert_fits(
        &doc,
        "post",
        "/api/v1/servers/{server}/policies/{name}/validate",
        &refused,
    );
    let missing = api
        .get("/servers/00000000-0000-4000-8000-000000000000")
        .await;
    assert_fits(&doc, "get", "/api/v1/servers/{server}", &missing);
    let unauthorised = Api::new(&app, None).get("/servers").await;
    assert_fits(&doc, "get", "/api/v1/servers", &unauthorised);
    let value: Value = doc["components"]["schemas"]["Problem"].clone();
    assert!(value["properties"]["errors"].is_object());
}
