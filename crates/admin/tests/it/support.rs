//! Test helpers: start the app and the simulator on port 0, and a small cookie-keeping client.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use admin::{AdminConfig, AppState};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use genieacs_sim::{SimConfig, SimState};
use sqlx::PgPool;
use store::secret::{Keyring, Redacted, SealingKey};
use store::{Actor, OrgId, Role, Store, UserId};

pub(crate) const PUBLIC_URL: &str = "http://gateway.test:8080";
pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) struct App {
    pub(crate) url: String,
    pub(crate) store: Store,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(crate) async fn spawn_app(pool: PgPool) -> App {
    spawn_app_with(pool, AdminConfig::for_public_url(PUBLIC_URL, true)).await
}

pub(crate) async fn spawn_app_with(pool: PgPool, config: AdminConfig) -> App {
    let store = Store::new(pool, Keyring::new(SealingKey::generate(1)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(store.clone(), config);
    let server = tokio::spawn(async move {
        admin::serve(listener, state).await.unwrap();
    });
    App {
        url: format!("http://{addr}"),
        store,
        server,
    }
}

pub(crate) struct Sim {
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(crate) async fn spawn_sim(config: SimConfig) -> Sim {
    let state = SimState::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = genieacs_sim::router(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Sim {
        url: format!("http://{addr}/mcp"),
        addr,
        server,
    }
}

/// An HTTP answer with what the tests look at.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) set_cookies: Vec<String>,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// The synchroniser token of the first form on the page.
    pub(crate) fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a csrf field") + marker.len();
        let end = start + self.body[start..].find('"').unwrap();
        self.body[start..end].to_owned()
    }
}

/// A browser without JavaScript: keeps cookies, never follows redirects.
pub(crate) struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    pub(crate) fn new(app: &App) -> Browser {
        Browser {
            base: app.url.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    pub(crate) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = resp.text().await.unwrap();
        Answer {
            status,
            location,
            set_cookies,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Answer {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// Posts a form exactly as given (no token added).
    pub(crate) async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body: String = form_body(fields);
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    /// Posts a form with the token a page of this browser carries (as a real form would).
    pub(crate) async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let page = if self.cookies.contains_key("gatehouse_session") {
            self.get("/account").await
        } else {
            self.get("/login").await
        };
        let csrf = page.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    pub(crate) fn has_cookie(&self, name: &str) -> bool {
        self.cookies.contains_key(name)
    }
}

pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in fields {
        if !s.is_empty() {
            s.push('&');
        }
        s.push_str(&encode(k));
        s.push('=');
        s.push_str(&encode(v));
    }
    s
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs up through the form; returns the signed-in browser.
pub(crate) async fn sign_up(app: &App, email: &str, org: &str) -> Browser {
    let mut b = Browser::new(app);
    let a = b
        .post(
            "/signup",
            &[
                ("email", email),
                ("password", PASSWORD),
                ("organisation", org),
            ],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.location.as_deref(), Some("/servers"));
    b
}

/// Logs in through the form; returns the browser and the answer.
pub(crate) async fn log_in(app: &App, email: &str, password: &str) -> (Browser, Answer) {
    let mut b = Browser::new(app);
    let a = b
        .post("/login", &[("email", email), ("password", password)])
        .await;
    (b, a)
}

pub(crate) fn hash(password: &str) -> Redacted<String> {
    let salt = SaltString::generate(&mut OsRng);
    Redacted::new(
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string(),
    )
}

/// A person who is a member of `org` with `role` only, signed in.
pub(crate) async fn member(app: &App, org: OrgId, email: &str, role: Role) -> Browser {
    let user: UserId = app.store.create_user(email, &hash(PASSWORD)).await.unwrap();
    let mut tx = app.store.begin(org).await.unwrap();
    store::account::add_member(&mut tx, Actor::Operator, user, role)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (b, a) = log_in(app, email, PASSWORD).await;
    assert_eq!(a.status, 303, "{}", a.body);
    b
}

/// The organisation a signed-up admin's browser looks at (from the database).
pub(crate) async fn org_of(app: &App, email: &str) -> OrgId {
    let id: uuid::Uuid = sqlx::query_scalar(
        "select m.organisation_id from membership m join app_user u using (app_user_id) where lower(u.email) = lower($1)",
    )
    .bind(email)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    OrgId::from_uuid(id)
}

/// Registers the simulator through the form; returns the new server's id.
pub(crate) async fn register_sim(b: &mut Browser, sim: &Sim, name: &str) -> String {
    let a = b
        .post(
            "/servers",
            &[("name", name), ("upstream_url", &sim.url), ("auth", "none")],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let location = a.location.unwrap();
    location
        .strip_prefix("/servers/")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

/// Mints a grant through the form; returns the token page.
pub(crate) async fn mint(b: &mut Browser, server: &str, label: &str) -> Answer {
    b.post(
        &format!("/servers/{server}/grants"),
        &[("label", label), ("policy", "default"), ("expires", "90d")],
    )
    .await
}

/// The grant token shown on a token page.
pub(crate) fn token_of(page: &Answer) -> String {
    let start = page.body.find("ghg_").expect("a grant token on the page");
    page.body[start..start + 48].to_owned()
}

/// Mints an API key of `org` with `role` straight through the store; returns the key.
pub(crate) async fn api_key(app: &App, org: OrgId, name: &str, role: Role) -> String {
    let mut tx = app.store.begin(org).await.unwrap();
    let minted = store::api_key::mint_api_key(&mut tx, Actor::Operator, name, role, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    minted.token.expose().clone()
}

/// A JSON answer of the API.
#[derive(Debug)]
pub(crate) struct Json {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: serde_json::Value,
    pub(crate) text: String,
}

impl Json {
    pub(crate) fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }
}

/// A client of the JSON API holding one key (or none).
pub(crate) struct Api {
    base: String,
    key: Option<String>,
    cookie: Option<String>,
    client: reqwest::Client,
}

impl Api {
    pub(crate) fn new(app: &App, key: Option<&str>) -> Api {
        Api {
            base: format!("{}/api/v1", app.url),
            key: key.map(str::to_owned),
            cookie: None,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// A client that sends a browser's cookies and no key.
    pub(crate) fn with_cookie(app: &App, cookie: &str) -> Api {
        let mut api = Api::new(app, None);
        api.cookie = Some(cookie.to_owned());
        api
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        content_type: &str,
    ) -> Json {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        if let Some(cookie) = &self.cookie {
            req = req.header("cookie", cookie);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", content_type)
                .body(body.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Json {
            status,
            headers,
            body,
            text,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Json {
        self.send("GET", path, None, "").await
    }

    pub(crate) async fn post(&self, path: &str, body: serde_json::Value) -> Json {
        self.send("POST", path, Some(&body.to_string()), "application/json")
            .await
    }
}

/// Opens an approval of `tool` called with `arguments` through `grant`, as the gateway does when
/// it holds a call; the arguments are stored as given (the gateway redacts before).
pub(crate) async fn open_approval(
    store: &Store,
    org: OrgId,
    grant: store::GrantId,
    server: store::ServerId,
    tool: &str,
    arguments: serde_json::Value,
    timeout: std::time::Duration,
) -> store::approval::Approval {
    let mut tx = store.begin(org).await.unwrap();
    let opened = store::approval::open_approval(
        &mut tx,
        &store::approval::NewApproval {
            grant,
            server,
            tool,
            arguments_redacted: &arguments,
            arguments_hash: store::approval::arguments_hash(Some(&arguments)),
            request_id: &format!("req-{}", uuid::Uuid::new_v4()),
            session_id: Some("session-1"),
            timeout,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(opened.created);
    opened.approval
}
