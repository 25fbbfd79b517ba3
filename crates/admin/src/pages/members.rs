//! Members of the organisation and their roles (inviting new ones is still to come).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use store::{Role, UserId};

use crate::AppState;
use crate::auth::{Admin, Member, Viewer};
use crate::error::{Error, Result};
use crate::pages::shown_once::DoneQuery;
use crate::pages::when;
use crate::views::{MemberRow, MembersPage, Page, render};

async fn members_page<R>(
    state: &AppState,
    m: &Member<R>,
    errors: Vec<String>,
    notice: Option<String>,
) -> Result<MembersPage> {
    let mut tx = state.store.begin(m.org).await?;
    let members = store::account::list_members(&mut tx).await?;
    tx.commit().await?;
    Ok(MembersPage {
        page: Page::member("Members", "members", m),
        csrf: m.csrf.clone(),
        members: members
            .into_iter()
            .map(|x| MemberRow {
                is_me: x.user_id == m.user,
                user_id: x.user_id.to_string(),
                email: x.email,
                role: x.role,
                since: when(x.since),
            })
            .collect(),
        roles: Role::ALL.to_vec(),
        can_admin: m.can(Role::Admin),
        errors,
        notice,
    })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Query(q): Query<DoneQuery>,
) -> Result<Response> {
    let notice = q.notice("role", "Role changed.");
    Ok(render(&members_page(&state, &m, Vec::new(), notice).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RoleForm {
    #[serde(default)]
    role: String,
}

pub(crate) async fn set_role(
    State(state): State<AppState>,
    m: Member<Admin>,
    Path(user): Path<String>,
    Form(f): Form<RoleForm>,
) -> Result<Response> {
    let user: UserId = user.parse().map_err(|_| Error::NotFound)?;
    let role: Role = f
        .role
        .parse()
        .map_err(|_| Error::Invalid("Choose a role from the list.".into()))?;
    let mut tx = state.store.begin(m.org).await?;
    match store::account::set_member_role(&mut tx, m.actor(), user, role).await {
        Ok(()) => {
            tx.commit().await?;
            Ok(Redirect::to("/members?done=role").into_response())
        }
        Err(store::Error::Invalid { reason, .. }) => {
            tx.rollback().await?;
            let page =
                members_page(&state, &m, vec![format!("Not changed: {reason}.")], None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
