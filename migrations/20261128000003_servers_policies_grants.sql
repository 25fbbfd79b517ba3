-- Upstream servers, their pinned tools, policies and grants, approvals.
--
-- Child rows name their organisation and reference their parent through a composite key
-- (organisation_id, parent_id), so a grant can never point at another organisation's server or
-- policy, whatever the application code does.

create type upstream_transport as enum ('streamable_http');
create type risk_class as enum ('read', 'write', 'execute', 'destructive', 'financial');

create table server (
    server_id        uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null references organisation on delete cascade,
    name             text not null check (length(name) between 1 and 100),
    upstream_url     text not null check (length(upstream_url) between 1 and 2000),
    transport        upstream_transport not null default 'streamable_http',
    -- Upstream headers (JSON object) sealed with XChaCha20-Poly1305: 24-byte nonce || ciphertext.
    -- The server id is the associated data, so a sealed blob copied to another row does not open.
    upstream_credentials_sealed bytea,
    -- Which configured key sealed it; `gatehouse keys rotate` re-seals rows under the newest key.
    credentials_key_version integer check (credentials_key_version > 0),
    disabled_at      timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint server_name_unique_in_organisation unique (organisation_id, name),
    constraint server_organisation_key unique (organisation_id, server_id),
    constraint server_credentials_have_key_version
        check ((upstream_credentials_sealed is null) = (credentials_key_version is null))
);
comment on table server is 'A registered upstream MCP endpoint; its proxy URL is {public URL}/mcp/{server_id}.';

-- One snapshot per `tools/list` pinned by an admin; the latest is what the gateway enforces.
create table tool_snapshot (
    tool_snapshot_id uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null,
    server_id        uuid not null,
    -- SHA-256 over the snapshot's tool hashes, so an unchanged upstream is recognised cheaply.
    tools_hash       bytea not null check (length(tools_hash) = 32),
    pinned_by        uuid references app_user on delete set null,
    -- Orders snapshots even when two are pinned in one transaction (same created_at).
    pin_order        bigint generated always as identity,
    created_at       timestamptz not null default now(),
    foreign key (organisation_id, server_id) references server (organisation_id, server_id) on delete cascade,
    constraint tool_snapshot_organisation_key unique (organisation_id, tool_snapshot_id)
);
comment on table tool_snapshot is 'A pinned copy of a server''s tools/list; tools that differ from it are hidden until re-pinned.';
create index tool_snapshot_latest on tool_snapshot (server_id, pin_order desc);

create table tool_snapshot_entry (
    tool_snapshot_entry_id uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null,
    tool_snapshot_id uuid not null,
    tool_name        text not null check (length(tool_name) between 1 and 200),
    -- The definition exactly as the upstream sent it (name, description, inputSchema, annotations).
    definition       jsonb not null,
    -- SHA-256 of the canonical definition: the gateway compares live tools against it.
    definition_hash  bytea not null check (length(definition_hash) = 32),
    risk             risk_class not null,
    -- Why the classifier chose `risk`, shown to the user beside the recommendation.
    risk_signals     jsonb not null default '[]',
    foreign key (organisation_id, tool_snapshot_id) references tool_snapshot (organisation_id, tool_snapshot_id) on delete cascade,
    constraint tool_snapshot_entry_tool_unique unique (tool_snapshot_id, tool_name)
);
comment on table tool_snapshot_entry is 'One pinned tool of a snapshot with its hash and risk class.';

-- A live tool that differs from the pinned one: hidden and denied until an admin reviews it.
create type tool_drift_kind as enum ('changed', 'added', 'removed');
create table tool_drift (
    tool_drift_id    uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null,
    server_id        uuid not null,
    tool_name        text not null check (length(tool_name) between 1 and 200),
    kind             tool_drift_kind not null,
    pinned_hash      bytea,
    live_hash        bytea,
    live_definition  jsonb,
    first_seen_at    timestamptz not null default now(),
    last_seen_at     timestamptz not null default now(),
    resolved_at      timestamptz,
    resolved_by      uuid references app_user on delete set null,
    -- 'repinned' or 'dismissed', with the admin's words.
    resolution       text check (length(resolution) <= 2000),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    foreign key (organisation_id, server_id) references server (organisation_id, server_id) on delete cascade
);
comment on table tool_drift is 'A detected rug pull or new tool, kept until an admin re-pins or dismisses it.';
-- Replicas report the same drift many times; only one open record per server, tool and live definition.
create unique index tool_drift_open_unique on tool_drift (server_id, tool_name, coalesce(live_hash, '\x'::bytea))
    where resolved_at is null;

create table policy (
    policy_id        uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null,
    server_id        uuid not null,
    name             text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- The version grants follow; null until the first version is published.
    current_version  integer,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    foreign key (organisation_id, server_id) references server (organisation_id, server_id) on delete cascade,
    constraint policy_name_unique_in_server unique (server_id, name),
    constraint policy_organisation_key unique (organisation_id, policy_id)
);
comment on table policy is 'A named policy of one server (default, read-only, ...); grants follow its current version.';

create table policy_version (
    policy_version_id uuid primary key default gen_random_uuid(),
    organisation_id   uuid not null,
    policy_id         uuid not null,
    version           integer not null check (version > 0),
    -- The document as its author wrote it (comments and layout kept) so diagnostics point at their lines.
    source            text not null check (length(source) <= 1048576),
    source_hash       bytea not null check (length(source_hash) = 32),
    published_by      uuid references app_user on delete set null,
    -- 'cli', 'web' or 'api': who published when there is no user (an operator at a terminal).
    published_via     text not null,
    comment           text check (length(comment) <= 2000),
    created_at        timestamptz not null default now(),
    foreign key (organisation_id, policy_id) references policy (organisation_id, policy_id) on delete cascade,
    constraint policy_version_unique unique (policy_id, version)
);
comment on table policy_version is 'An immutable published version of a policy: who, when, and the document.';
create trigger policy_version_immutable before update on policy_version
    for each row execute function gatehouse_refuse_change();

-- `grant` is a reserved word; the table is `access_grant`.
create table access_grant (
    access_grant_id  uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null,
    server_id        uuid not null,
    policy_id        uuid not null,
    -- The identity the grant speaks for, as recorded in every audit event (noc-agent, alice-laptop).
    identity         text not null check (length(identity) between 1 and 200),
    label            text not null check (length(label) between 1 and 200),
    -- SHA-256 of the bearer token; the token is shown once and never stored.
    token_hash       bytea not null check (length(token_hash) = 32),
    token_prefix     text not null check (length(token_prefix) between 4 and 32),
    expires_at       timestamptz,
    revoked_at       timestamptz,
    revoked_by       uuid references app_user on delete set null,
    -- Rotation replaces the token in place so the grant keeps its id and its audit history.
    rotated_at       timestamptz,
    last_used_at     timestamptz,
    created_by       uuid references app_user on delete set null,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    foreign key (organisation_id, server_id) references server (organisation_id, server_id) on delete cascade,
    foreign key (organisation_id, policy_id) references policy (organisation_id, policy_id) on delete restrict,
    constraint access_grant_token_hash_unique unique (token_hash),
    constraint access_grant_organisation_key unique (organisation_id, access_grant_id)
);
comment on table access_grant is 'A bearer token for one identity on one server, bound to one of that server''s policies.';
create index access_grant_server on access_grant (server_id);
create index access_grant_policy on access_grant (policy_id);

create type approval_status as enum ('pending', 'approved', 'denied', 'expired', 'consumed');
create table approval (
    approval_id      uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null,
    server_id        uuid not null,
    access_grant_id  uuid not null,
    tool_name        text not null check (length(tool_name) between 1 and 200),
    -- Arguments with secret-looking values redacted: what the human sees when deciding.
    arguments_redacted jsonb not null,
    -- SHA-256 of the canonical unredacted arguments: the retried call must match it exactly.
    arguments_hash   bytea not null check (length(arguments_hash) = 32),
    -- The gateway request that asked; its audit event carries the same id.
    request_id       uuid not null,
    status           approval_status not null default 'pending',
    decided_by       uuid references app_user on delete set null,
    decided_at       timestamptz,
    decision_comment text check (length(decision_comment) <= 2000),
    expires_at       timestamptz not null,
    -- An approved call goes through exactly once; this marks the once.
    consumed_at      timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    foreign key (organisation_id, server_id) references server (organisation_id, server_id) on delete cascade,
    foreign key (organisation_id, access_grant_id) references access_grant (organisation_id, access_grant_id) on delete cascade
);
comment on table approval is 'A held tools/call waiting for a human with role >= policy_manager.';
-- At most one open approval per identical call: retries find it instead of piling up.
create unique index approval_open_unique on approval (access_grant_id, tool_name, arguments_hash)
    where status in ('pending', 'approved');
create index approval_pending on approval (organisation_id, created_at desc) where status = 'pending';

create table approval_webhook (
    approval_webhook_id uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null references organisation on delete cascade,
    url              text not null check (length(url) between 1 and 2000),
    -- The HMAC signing secret, sealed like upstream credentials.
    secret_sealed    bytea not null,
    secret_key_version integer not null check (secret_key_version > 0),
    enabled          boolean not null default true,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);
comment on table approval_webhook is 'Where to announce new approvals (chat, paging), signed with a per-webhook secret.';

create trigger server_touch before update on server for each row execute function gatehouse_touch_updated_at();
create trigger tool_drift_touch before update on tool_drift for each row execute function gatehouse_touch_updated_at();
create trigger policy_touch before update on policy for each row execute function gatehouse_touch_updated_at();
create trigger access_grant_touch before update on access_grant for each row execute function gatehouse_touch_updated_at();
create trigger approval_touch before update on approval for each row execute function gatehouse_touch_updated_at();
create trigger approval_webhook_touch before update on approval_webhook for each row execute function gatehouse_touch_updated_at();

do $$
declare
    t text;
begin
    foreach t in array array['server', 'tool_snapshot', 'tool_snapshot_entry', 'tool_drift', 'policy',
                             'policy_version', 'access_grant', 'approval', 'approval_webhook']
    loop
        execute format('alter table %I enable row level security', t);
        execute format('create policy %I on %I using (organisation_id = gatehouse_org_id()) '
                       'with check (organisation_id = gatehouse_org_id())', t || '_isolation', t);
        execute format('grant select, insert, update, delete on %I to gatehouse_app', t);
    end loop;
end
$$;
-- History is append-only for the application role as well as by trigger.
revoke update, delete on policy_version from gatehouse_app;

-- The gateway receives a bare token and has no organisation in hand. This function answers exactly
-- one question, "which grant has this token hash?", with what the gateway needs to authorise the
-- call; it cannot be used to list grants, so the restricted role stays unable to read across
-- organisations.
create function gatehouse_grant_by_token_hash(p_token_hash bytea)
returns table (
    access_grant_id uuid, organisation_id uuid, server_id uuid, policy_id uuid, identity text,
    label text, expires_at timestamptz, revoked_at timestamptz
)
language sql stable security definer set search_path = public, pg_temp
as $$
    select g.access_grant_id, g.organisation_id, g.server_id, g.policy_id, g.identity, g.label,
           g.expires_at, g.revoked_at
    from access_grant g
    where g.token_hash = p_token_hash
$$;
revoke all on function gatehouse_grant_by_token_hash(bytea) from public;
grant execute on function gatehouse_grant_by_token_hash(bytea) to gatehouse_app;
