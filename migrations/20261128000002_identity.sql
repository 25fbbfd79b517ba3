-- Organisations, people, and how they sign in.

create table organisation (
    organisation_id uuid primary key default gen_random_uuid(),
    name            text not null check (length(name) between 1 and 200),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
comment on table organisation is 'The tenant: owns every other row except people and their web sessions.';

-- `user` is a reserved word; `app_user` avoids quoting it everywhere.
create table app_user (
    app_user_id   uuid primary key default gen_random_uuid(),
    email         text not null check (length(email) between 3 and 320),
    -- argon2id PHC string; null for a user invited but not yet signed up.
    password_hash text,
    display_name  text not null default '' check (length(display_name) <= 200),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
comment on table app_user is 'A person; belongs to organisations through memberships, so it carries no organisation itself.';
-- Emails are compared case-insensitively so that one person cannot sign up twice.
create unique index app_user_email_unique on app_user (lower(email));

create table membership (
    membership_id   uuid primary key default gen_random_uuid(),
    organisation_id uuid not null references organisation on delete cascade,
    app_user_id     uuid not null references app_user on delete cascade,
    role            member_role not null,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint membership_user_unique_in_organisation unique (organisation_id, app_user_id)
);
comment on table membership is 'A user''s role in one organisation; the only source of a person''s rights there.';
create index membership_app_user on membership (app_user_id);

create table invitation (
    invitation_id   uuid primary key default gen_random_uuid(),
    organisation_id uuid not null references organisation on delete cascade,
    email           text not null check (length(email) between 3 and 320),
    role            member_role not null,
    -- SHA-256 of the invitation token sent by email; the token itself is never stored.
    token_hash      bytea not null check (length(token_hash) = 32),
    invited_by      uuid references app_user on delete set null,
    expires_at      timestamptz not null,
    accepted_at     timestamptz,
    revoked_at      timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint invitation_token_hash_unique unique (token_hash)
);
comment on table invitation is 'An offer of membership, accepted through a link that carries a token only its hash identifies.';

create table web_session (
    web_session_id  uuid primary key default gen_random_uuid(),
    app_user_id     uuid not null references app_user on delete cascade,
    -- SHA-256 of the session cookie's value: a copy of the database does not let anyone sign in.
    token_hash      bytea not null check (length(token_hash) = 32),
    -- The organisation the user is looking at; membership is checked again on every request.
    organisation_id uuid references organisation on delete set null,
    user_agent      text check (length(user_agent) <= 1000),
    client_addr     inet,
    expires_at      timestamptz not null,
    last_seen_at    timestamptz not null default now(),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint web_session_token_hash_unique unique (token_hash)
);
comment on table web_session is 'A signed-in browser; belongs to a person, not an organisation, so it is outside row-level security.';
create index web_session_app_user on web_session (app_user_id);
create index web_session_expires_at on web_session (expires_at);

create table api_key (
    api_key_id      uuid primary key default gen_random_uuid(),
    organisation_id uuid not null references organisation on delete cascade,
    name            text not null check (length(name) between 1 and 200),
    -- The key acts with this role and never more, whoever created it.
    role            member_role not null,
    token_hash      bytea not null check (length(token_hash) = 32),
    -- The first characters of the key, shown in lists so people can tell keys apart.
    token_prefix    text not null check (length(token_prefix) between 4 and 32),
    created_by      uuid references app_user on delete set null,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint api_key_token_hash_unique unique (token_hash),
    constraint api_key_name_unique_in_organisation unique (organisation_id, name)
);
comment on table api_key is 'A bearer key for the admin API, scoped to one organisation and one role; stored as a hash.';

create trigger organisation_touch before update on organisation for each row execute function gatehouse_touch_updated_at();
create trigger app_user_touch before update on app_user for each row execute function gatehouse_touch_updated_at();
create trigger membership_touch before update on membership for each row execute function gatehouse_touch_updated_at();
create trigger invitation_touch before update on invitation for each row execute function gatehouse_touch_updated_at();
create trigger web_session_touch before update on web_session for each row execute function gatehouse_touch_updated_at();
create trigger api_key_touch before update on api_key for each row execute function gatehouse_touch_updated_at();

-- Row-level security: the restricted role sees only the rows of the transaction's organisation.
alter table organisation enable row level security;
create policy organisation_isolation on organisation
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
alter table membership enable row level security;
create policy membership_isolation on membership
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
alter table invitation enable row level security;
create policy invitation_isolation on invitation
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
alter table api_key enable row level security;
create policy api_key_isolation on api_key
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());

grant select, update on organisation to gatehouse_app;
grant select, insert, update, delete on membership, invitation, api_key to gatehouse_app;
-- Members' names are shown inside an organisation; password hashes are not readable by the role at all.
grant select (app_user_id, email, display_name, created_at) on app_user to gatehouse_app;

-- An API key arrives without its organisation. This function answers exactly one question, "which
-- live key has this hash?", so the restricted role can authenticate a key without being able to
-- list any organisation's keys.
create function gatehouse_api_key_by_token_hash(p_token_hash bytea)
returns table (api_key_id uuid, organisation_id uuid, role member_role, expires_at timestamptz, revoked_at timestamptz)
language sql stable security definer set search_path = public, pg_temp
as $$
    select k.api_key_id, k.organisation_id, k.role, k.expires_at, k.revoked_at
    from api_key k
    where k.token_hash = p_token_hash
$$;
revoke all on function gatehouse_api_key_by_token_hash(bytea) from public;
grant execute on function gatehouse_api_key_by_token_hash(bytea) to gatehouse_app;
