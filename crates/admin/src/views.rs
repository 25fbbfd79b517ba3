//! The pages, as askama templates (under `templates/`) and the values they show.

use askama::Template;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use store::Role;

use crate::auth::Member;

/// What every page's layout needs: its title, and the navigation for a signed-in member.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub(crate) title: String,
    pub(crate) section: &'static str,
    pub(crate) nav: Option<Nav>,
}

/// The signed-in member in the top bar, and the token of the sign-out form.
#[derive(Debug, Clone)]
pub(crate) struct Nav {
    pub(crate) email: String,
    pub(crate) org_name: String,
    pub(crate) role: Role,
    pub(crate) csrf: String,
    /// Admins also see the admin events page.
    pub(crate) is_admin: bool,
    /// Approvals waiting for a decision: the badge beside "Approvals" (hidden at 0).
    pub(crate) pending_approvals: i64,
}

impl Page {
    /// A page outside the organisation (sign-in, errors).
    pub(crate) fn bare(title: &str) -> Page {
        Page {
            title: title.to_owned(),
            section: "",
            nav: None,
        }
    }

    pub(crate) fn member<R>(
        title: impl Into<String>,
        section: &'static str,
        m: &Member<R>,
    ) -> Page {
        Page {
            title: title.into(),
            section,
            nav: Some(Nav {
                email: m.email.clone(),
                org_name: m.org_name.clone(),
                role: m.role,
                csrf: m.csrf.clone(),
                is_admin: m.role >= Role::Admin,
                pending_approvals: m.pending_approvals,
            }),
        }
    }
}

/// Renders a template into a response; a template that fails to render is a 500.
pub(crate) fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => (
            // Pages can show secrets once (tokens); no cache keeps them.
            [(header::CACHE_CONTROL, "no-store")],
            Html(html),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "Gatehouse could not render this page.",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) page: Page,
    pub(crate) message: String,
}

#[derive(Template)]
#[template(path = "signup.html")]
pub(crate) struct SignupPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    pub(crate) email: String,
    pub(crate) organisation: String,
    pub(crate) errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    pub(crate) email: String,
    /// Where to go after signing in (a local path; empty for the default).
    pub(crate) next: String,
    pub(crate) error: Option<String>,
    pub(crate) notice: Option<String>,
}

#[derive(Template)]
#[template(path = "account.html")]
pub(crate) struct AccountPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    pub(crate) email: String,
    pub(crate) errors: Vec<String>,
    pub(crate) notice: Option<String>,
}

/// One server in the list.
#[derive(Debug)]
pub(crate) struct ServerRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) upstream_url: String,
    pub(crate) has_credentials: bool,
    pub(crate) created: String,
    /// Open tool drifts (the badge).
    pub(crate) drifts: i64,
}

#[derive(Template)]
#[template(path = "servers.html")]
pub(crate) struct ServersPage {
    pub(crate) page: Page,
    pub(crate) servers: Vec<ServerRow>,
    pub(crate) can_admin: bool,
}

/// One tool with its risk, as the tool tables show it.
#[derive(Debug, Clone)]
pub(crate) struct ToolRow {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) class: &'static str,
    pub(crate) level: &'static str,
    pub(crate) recommendation: String,
    pub(crate) signals: Vec<SignalRow>,
}

#[derive(Debug, Clone)]
pub(crate) struct SignalRow {
    pub(crate) source: String,
    pub(crate) matched: String,
    pub(crate) suggests: String,
    pub(crate) detail: String,
}

/// The registration form's fields, kept across a failed submission.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerForm {
    pub(crate) name: String,
    pub(crate) upstream_url: String,
    pub(crate) auth: String,
    pub(crate) headers: String,
}

#[derive(Template)]
#[template(path = "server_new.html")]
pub(crate) struct ServerNewPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    pub(crate) form: ServerForm,
    pub(crate) errors: Vec<String>,
    pub(crate) tested: Option<Tested>,
}

/// A successful "test connection".
#[derive(Debug)]
pub(crate) struct Tested {
    pub(crate) server_name: String,
    pub(crate) protocol_version: String,
    pub(crate) tools: Vec<ToolRow>,
}

#[derive(Debug)]
pub(crate) struct GrantRow {
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) identity: String,
    pub(crate) token_prefix: String,
    pub(crate) policy: String,
    pub(crate) status: &'static str,
    pub(crate) created: String,
    pub(crate) expires: String,
    pub(crate) last_used: String,
    pub(crate) live: bool,
}

#[derive(Debug)]
pub(crate) struct PolicyRow {
    pub(crate) name: String,
    pub(crate) version: String,
}

#[derive(Template)]
#[template(path = "server.html")]
pub(crate) struct ServerPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) upstream_url: String,
    pub(crate) has_credentials: bool,
    pub(crate) proxy_url: String,
    pub(crate) tools: Vec<ToolRow>,
    pub(crate) drifts: Vec<crate::pages::drifts::DriftRow>,
    pub(crate) can_pin: bool,
    pub(crate) grants: Vec<GrantRow>,
    pub(crate) policies: Vec<PolicyRow>,
    pub(crate) can_admin: bool,
    pub(crate) notice: Option<String>,
    pub(crate) grant_errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "grant_token.html")]
pub(crate) struct GrantTokenPage {
    pub(crate) page: Page,
    pub(crate) server_id: String,
    pub(crate) server_name: String,
    pub(crate) label: String,
    pub(crate) identity: String,
    pub(crate) token: String,
    pub(crate) proxy_url: String,
    pub(crate) snippet: String,
    pub(crate) rotated: bool,
}

#[derive(Debug)]
pub(crate) struct AdminEventRow {
    pub(crate) sequence: i64,
    pub(crate) when: String,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) details: String,
}

#[derive(Template)]
#[template(path = "admin_events.html")]
pub(crate) struct AdminEventsPage {
    pub(crate) page: Page,
    pub(crate) events: Vec<AdminEventRow>,
    pub(crate) older: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct MemberRow {
    pub(crate) user_id: String,
    pub(crate) email: String,
    pub(crate) role: Role,
    pub(crate) since: String,
    pub(crate) is_me: bool,
}

#[derive(Template)]
#[template(path = "members.html")]
pub(crate) struct MembersPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    pub(crate) members: Vec<MemberRow>,
    pub(crate) roles: Vec<Role>,
    pub(crate) can_admin: bool,
    pub(crate) errors: Vec<String>,
    pub(crate) notice: Option<String>,
}
