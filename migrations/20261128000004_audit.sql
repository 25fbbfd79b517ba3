-- The audit log (one event per MCP request with a valid grant) and the admin log (one event per
-- control-plane change). Both are hash chains per organisation: each event stores its sequence
-- number, the previous event's hash and its own hash (SHA-256 over the canonical event fields and
-- the previous hash, computed by the `store` crate), so altering, inserting or removing an event
-- breaks the chain at that point and `gatehouse audit verify` can name it.

create type audit_decision as enum (
    'allow', 'deny', 'hidden', 'rate_limited', 'approval_pending', 'approved', 'upstream_error', 'passthrough'
);

-- The head of each organisation's chains. Writers lock the row (`for update`) so that events of one
-- organisation get gap-free, strictly increasing sequence numbers even with several ingesters.
-- The viewer's search, for the transaction's own organisation only: returns the keys of one page
-- of matching events, newest first. Why a function: under row-level security Postgres may not use
-- an index for a condition whose operator is not leakproof (ILIKE is not), so a free-text search
-- would scan every event of the organisation. Running as the owner lets the trigram index serve it,
-- while `organisation_id = gatehouse_org_id()` keeps it to the organisation the caller's transaction
-- is scoped to, exactly as the policy would. The caller fetches the rows themselves by these keys,
-- under row-level security. EXECUTE plans each call for its actual arguments, so the
-- `(p is null or …)` conditions fold away and each filter gets the index that fits it.
create function gatehouse_audit_search(
    p_from timestamptz, p_to timestamptz, p_server uuid, p_grant uuid, p_identity text, p_tool text,
    p_decision text, p_pattern text, p_before timestamptz, p_before_id uuid, p_limit integer)
returns table (audit_event_id uuid, occurred_at timestamptz)
language plpgsql stable security definer set search_path = public, pg_temp
as $fn$
begin
    if gatehouse_org_id() is null then
        return;
    end if;
    return query execute $q$
        select e.audit_event_id, e.occurred_at
        from audit_event e
        where e.organisation_id = $1
          and ($2::timestamptz is null or e.occurred_at >= $2)
          and ($3::timestamptz is null or e.occurred_at < $3)
          and ($4::uuid is null or e.server_id = $4)
          and ($5::uuid is null or e.access_grant_id = $5)
          and ($6::text is null or e.identity = $6)
          and ($7::text is null or e.tool_name = $7)
          and ($8::text is null or e.decision = $8::audit_decision)
          and ($9::text is null or e.message ilike $9)
          and ($10::timestamptz is null or e.occurred_at <= $10)
          and ($10::timestamptz is null or (e.occurred_at, e.audit_event_id) < ($10, $11::uuid))
        order by e.occurred_at desc, e.audit_event_id desc
        limit least($12, 500)
    $q$
    using gatehouse_org_id(), p_from, p_to, p_server, p_grant, p_identity, p_tool, p_decision, p_pattern,
          p_before, p_before_id, p_limit;
end
$fn$;
revoke all on function gatehouse_audit_search(timestamptz, timestamptz, uuid, uuid, text, text, text, text, timestamptz, uuid, integer) from public;
grant execute on function gatehouse_audit_search(timestamptz, timestamptz, uuid, uuid, text, text, text, text, timestamptz, uuid, integer) to gatehouse_app;

create table chain_head (
    organisation_id uuid not null references organisation on delete cascade,
    chain           text not null check (chain in ('audit', 'admin')),
    last_sequence   bigint not null default 0,
    last_hash       bytea not null default '\x0000000000000000000000000000000000000000000000000000000000000000',
    updated_at      timestamptz not null default now(),
    primary key (organisation_id, chain)
);
comment on table chain_head is 'Last sequence and hash of each organisation''s audit and admin chains; also detects a truncated tail.';

-- Partitioned by day on the event's time: retention drops whole partitions (no vacuum debt), and the
-- viewer's "newest first" reads touch only the newest partitions. No foreign keys to servers or
-- grants: the log must outlive what it describes and must never be changed by a cascade.
create table audit_event (
    -- The gateway's request id, so an event ingested twice is recognised and stored once.
    audit_event_id   uuid not null,
    organisation_id  uuid not null,
    occurred_at      timestamptz not null,
    sequence         bigint not null,
    prev_hash        bytea not null,
    hash             bytea not null,
    server_id        uuid not null,
    access_grant_id  uuid not null,
    identity         text not null,
    session_id       text,
    method           text not null,
    tool_name        text,
    -- Argument keys always; values only where the policy opts in (secret-looking values redacted).
    arguments        jsonb not null default '{}',
    decision         audit_decision not null,
    -- JSON Pointer into the policy of the rule that decided, e.g. /tools/retry_task/limits/0.
    rule             text,
    message          text,
    policy_version   integer,
    upstream_status  integer,
    is_error         boolean,
    latency_us       bigint,
    client_addr      inet,
    user_agent       text,
    ingested_at      timestamptz not null default now(),
    -- A primary key on a partitioned table must contain the partition key; the ingester always
    -- retries an event with the time it was first written with, so this still identifies it.
    primary key (audit_event_id, occurred_at)
) partition by range (occurred_at);
comment on table audit_event is 'One record per MCP request that reached the gateway with a valid grant; append-only, hash-chained per organisation.';

-- Every index leads with the organisation and ends with the keyset order (occurred_at desc,
-- audit_event_id desc), so each viewer filter is a single index range read in page order. The
-- included tool and decision let a filter combined with them (this grant's failed reboots) be
-- answered by an index-only scan instead of a heap visit per candidate row, which matters most
-- when the combination matches nothing; they also make the chart's per-tool counts index-only.
create index audit_event_page on audit_event (organisation_id, occurred_at desc, audit_event_id desc);
create index audit_event_by_server on audit_event (organisation_id, server_id, occurred_at desc, audit_event_id desc)
    include (tool_name, decision);
create index audit_event_by_grant on audit_event (organisation_id, access_grant_id, occurred_at desc, audit_event_id desc)
    include (tool_name, decision);
create index audit_event_by_identity on audit_event (organisation_id, identity, occurred_at desc, audit_event_id desc)
    include (tool_name, decision);
create index audit_event_by_tool on audit_event (organisation_id, tool_name, occurred_at desc, audit_event_id desc)
    include (decision);
create index audit_event_by_decision on audit_event (organisation_id, decision, occurred_at desc, audit_event_id desc);
create index audit_event_by_sequence on audit_event (organisation_id, sequence);
create index audit_event_message_trgm on audit_event using gin (message gin_trgm_ops);

alter table audit_event enable row level security;
create policy audit_event_isolation on audit_event
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
-- Append-only for the application: no update, no delete (retention drops partitions as the owner).
grant select, insert on audit_event to gatehouse_app;
alter table chain_head enable row level security;
create policy chain_head_isolation on chain_head
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
grant select, insert, update on chain_head to gatehouse_app;

-- Counts per hour, server and decision, maintained by the ingester in the same transaction as the
-- events: the viewer's chart reads a few hundred rows instead of counting millions of events.
create table audit_hour_count (
    organisation_id uuid not null,
    hour            timestamptz not null,
    server_id       uuid not null,
    decision        audit_decision not null,
    event_count     bigint not null,
    primary key (organisation_id, hour, server_id, decision)
);
comment on table audit_hour_count is 'Rollup of audit_event for the viewer''s chart; rebuilt from audit_event if ever in doubt.';
alter table audit_hour_count enable row level security;
create policy audit_hour_count_isolation on audit_hour_count
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
grant select, insert, update on audit_hour_count to gatehouse_app;

create table admin_event (
    admin_event_id   uuid primary key default gen_random_uuid(),
    organisation_id  uuid not null references organisation on delete cascade,
    sequence         bigint not null,
    prev_hash        bytea not null,
    hash             bytea not null,
    occurred_at      timestamptz not null,
    -- Exactly who: a user, an API key, or an operator at the command line (actor_label says which).
    actor_user_id    uuid references app_user on delete set null,
    actor_api_key_id uuid references api_key on delete set null,
    actor_label      text not null,
    -- Dotted verb, e.g. server.create, policy.publish, grant.revoke.
    action           text not null,
    target_id        uuid,
    details          jsonb not null default '{}',
    constraint admin_event_sequence_unique unique (organisation_id, sequence)
);
comment on table admin_event is 'One record per control-plane change: who changed which server, policy or grant; hash-chained per organisation.';
create index admin_event_page on admin_event (organisation_id, occurred_at desc, admin_event_id desc);
create trigger admin_event_immutable before update on admin_event
    for each row execute function gatehouse_refuse_change();
alter table admin_event enable row level security;
create policy admin_event_isolation on admin_event
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
grant select, insert on admin_event to gatehouse_app;

-- Creates the daily partitions covering [p_from, p_from + p_days) that do not exist yet and returns
-- the names it created. Called by `gatehouse migrate`, periodically by the ingester, and before a
-- batch whose days are not covered. Security definer so the restricted role may call it: it can only
-- ever create empty partitions of this one table.
create function gatehouse_audit_partition_ensure(p_from date, p_days integer)
returns setof text
language plpgsql security definer set search_path = public, pg_temp
as $$
declare
    d date;
    part text;
begin
    if p_days < 0 or p_days > 400 then
        raise exception 'p_days must be between 0 and 400, got %', p_days;
    end if;
    for i in 0 .. p_days - 1 loop
        d := p_from + i;
        part := 'audit_event_p' || to_char(d, 'YYYYMMDD');
        if to_regclass(part) is null then
            -- Bounds are UTC midnights so partitions do not depend on the session's time zone.
            execute format(
                'create table %I partition of audit_event for values from (%L) to (%L)',
                part, (d::timestamp at time zone 'UTC'), ((d + 1)::timestamp at time zone 'UTC'));
            return next part;
        end if;
    end loop;
end
$$;
revoke all on function gatehouse_audit_partition_ensure(date, integer) from public;
grant execute on function gatehouse_audit_partition_ensure(date, integer) to gatehouse_app;

-- Retention: detaches and drops every daily partition that ends on or before p_before (a UTC date),
-- returning the names dropped. Dropping a partition is instant and leaves no dead rows behind.
-- Not granted to the application role: only the operator's retention job removes history.
create function gatehouse_audit_partition_drop_before(p_before date)
returns setof text
language plpgsql
as $$
declare
    part record;
begin
    for part in
        select c.relname
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'audit_event'::regclass
          and c.relname ~ '^audit_event_p[0-9]{8}$'
          and to_date(substr(c.relname, 14), 'YYYYMMDD') + 1 <= p_before
        order by c.relname
    loop
        execute format('drop table %I', part.relname);
        return next part.relname;
    end loop;
    delete from audit_hour_count where hour < (p_before::timestamp at time zone 'UTC');
end
$$;
revoke all on function gatehouse_audit_partition_drop_before(date) from public;

-- Partitions for yesterday (late events), today and the coming two weeks exist from the first migration.
select gatehouse_audit_partition_ensure((now() at time zone 'UTC')::date - 1, 16);
