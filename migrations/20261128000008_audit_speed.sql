-- The audit log's speed (DESIGN.md §11: ingest ≥ 20,000 events/s; a viewer page over 10 M events
-- with p95 ≤ 50 ms), on one schema.
--
-- Ingest pays for every index on every event, so audit_event keeps four plain ones (nine before):
--   audit_event_key       unique (organisation, time desc, id desc): the keyset order of every page,
--                         the idempotency fence (an event is its organisation's (id, time)) and, with
--                         server, tool and decision included, an index-only filter for the common
--                         filters; it replaces the primary key and audit_event_page.
--   audit_event_by_grant, audit_event_by_identity: the selective filters, kept as they were.
--   audit_event_by_sequence: verification and retention walk the chain in sequence order.
-- The trigram index now covers only events that have a message (most allowed calls have none), and
-- the per-server, per-tool and per-decision indexes are gone: the search below finds the hours that
-- hold matches in a rollup, then reads only those hours of the key (or grant, identity) index.

alter table audit_event drop constraint audit_event_pkey;
drop index audit_event_page;
drop index audit_event_by_server;
drop index audit_event_by_tool;
drop index audit_event_by_decision;
drop index audit_event_message_trgm;
create unique index audit_event_key on audit_event (organisation_id, occurred_at desc, audit_event_id desc)
    include (server_id, tool_name, decision);
create index audit_event_message_trgm on audit_event using gin (message gin_trgm_ops)
    where message is not null;

-- Counts per hour and every exact-match filter of the viewer, maintained by the ingester in the same
-- statement as the events. The search reads it to learn which hours hold matches (and how many) before
-- touching audit_event, so a combination that matches nothing is answered without reading events,
-- and a rare one reads only the hours it occurs in. The chart reads it for filters that
-- audit_hour_count does not carry. `tool_name` is '' for requests that name no tool.
create table audit_hour_facet (
    organisation_id uuid not null,
    hour            timestamptz not null,
    server_id       uuid not null,
    access_grant_id uuid not null,
    identity        text not null,
    tool_name       text not null,
    decision        audit_decision not null,
    event_count     bigint not null,
    primary key (organisation_id, hour, server_id, access_grant_id, identity, tool_name, decision)
) with (fillfactor = 80);
comment on table audit_hour_facet is
    'Rollup of audit_event per hour and filterable field, for the viewer''s search and chart; rebuilt from audit_event if ever in doubt.';
create index audit_hour_facet_by_grant on audit_hour_facet (organisation_id, access_grant_id, hour);
create index audit_hour_facet_by_identity on audit_hour_facet (organisation_id, identity, hour);
alter table audit_hour_facet enable row level security;
create policy audit_hour_facet_isolation on audit_hour_facet
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
grant select, insert, update on audit_hour_facet to gatehouse_app;

insert into audit_hour_facet (organisation_id, hour, server_id, access_grant_id, identity, tool_name,
                              decision, event_count)
select organisation_id, date_trunc('hour', occurred_at, 'UTC'), server_id, access_grant_id, identity,
       coalesce(tool_name, ''), decision, count(*)
from audit_event
group by 1, 2, 3, 4, 5, 6, 7;

-- The viewer's search, for the transaction's own organisation only: the keys of one page of matching
-- events, newest first. Security definer so the trigram index can serve a free-text filter (under
-- row-level security Postgres may not use an index for ILIKE, which is not leakproof), while
-- `organisation_id = gatehouse_org_id()` keeps it to the caller's organisation exactly as the policy
-- would; the caller fetches the rows by these keys under row-level security. Every statement is run
-- with EXECUTE, so it is planned for its actual arguments: the `(p is null or …)` conditions fold away
-- and the time bounds prune the plan to the partitions they cover. JIT is off: compiling a plan over
-- many partitions takes far longer than reading one page. Three ways, by the filters:
-- - none but time: one ordered read of the key index.
-- - exact-match filters (server, grant, identity, tool, decision) without text: the hours of
--   audit_hour_facet that hold matches, newest first, with their counts (read in windows of time
--   six hours wide and doubling, so a common filter reads few facets); then the events of just
--   enough of those hours to fill the page, each hour one bounded range of the index that fits, in
--   rounds until the page is full. Hours without matches are never read, so a combination that
--   matches nothing reads no event at all.
-- - text: windows of whole days walked newest first, doubling in width, each read with every filter
--   (the planner picks the trigram index for a rare text, an ordered index for a common one) until the
--   page is full.
-- Both walks span the hours the organisation has events in (from the facets' primary key), narrowed
-- by the page's bounds and cursor.
create or replace function gatehouse_audit_search(
    p_from timestamptz, p_to timestamptz, p_server uuid, p_grant uuid, p_identity text, p_tool text,
    p_decision text, p_pattern text, p_before timestamptz, p_before_id uuid, p_limit integer)
returns table (audit_event_id uuid, occurred_at timestamptz)
language plpgsql stable security definer set search_path = public, pg_temp set jit = off
as $fn$
declare
    org uuid := gatehouse_org_id();
    wanted integer := least(greatest(p_limit, 1), 500);
    exact boolean := p_server is not null or p_grant is not null or p_identity is not null
                     or p_tool is not null or p_decision is not null;
    hours timestamptz[] := '{}';
    expected bigint := 0;
    got bigint;
    h record;
    lo timestamptz;
    hi timestamptz;
    cut timestamptz;
    width interval;
    -- The facets' hours in [$10, $11) that hold matches, newest first ($2..$4 bound them like the page).
    facet_hours constant text := $q$
        select f.hour, sum(f.event_count) as n
        from audit_hour_facet f
        where f.organisation_id = $1
          and f.hour >= $10 and f.hour < $11
          and ($2::timestamptz is null or f.hour > $2 - interval '1 hour')
          and ($3::timestamptz is null or f.hour < $3)
          and ($4::timestamptz is null or f.hour <= $4)
          and ($5::uuid is null or f.server_id = $5)
          and ($6::uuid is null or f.access_grant_id = $6)
          and ($7::text is null or f.identity = $7)
          and ($8::text is null or f.tool_name = $8)
          and ($9::text is null or f.decision = $9::audit_decision)
        group by f.hour
        order by f.hour desc
    $q$;
    -- Every filter over [$14, $15), newest first.
    read_window constant text := $q$
        select e.audit_event_id, e.occurred_at
        from audit_event e
        where e.organisation_id = $1
          and e.occurred_at >= $14 and e.occurred_at < $15
          and ($3::timestamptz is null or e.occurred_at >= $3)
          and ($4::timestamptz is null or e.occurred_at < $4)
          and ($5::uuid is null or e.server_id = $5)
          and ($6::uuid is null or e.access_grant_id = $6)
          and ($7::text is null or e.identity = $7)
          and ($8::text is null or e.tool_name = $8)
          and ($9::text is null or e.decision = $9::audit_decision)
          and ($10::text is null or e.message ilike $10)
          and ($11::timestamptz is null or e.occurred_at <= $11)
          and ($11::timestamptz is null or (e.occurred_at, e.audit_event_id) < ($11, $12::uuid))
        order by e.occurred_at desc, e.audit_event_id desc
        limit $13
    $q$;
    -- One round of the facet walk: the hours in $2 (newest first), each one bounded range of the
    -- index that fits the filters, newest first, stopping at the page size; $14 and $15 bound them
    -- all, so the plan is pruned to the partitions of those hours.
    read_hours constant text := $q$
        select x.audit_event_id, x.occurred_at
        from unnest($2::timestamptz[]) as h(hour)
        cross join lateral (
            select e.audit_event_id, e.occurred_at
            from audit_event e
            where e.organisation_id = $1
              and e.occurred_at >= h.hour and e.occurred_at < h.hour + interval '1 hour'
              and e.occurred_at >= $14 and e.occurred_at < $15
              and ($3::timestamptz is null or e.occurred_at >= $3)
              and ($4::timestamptz is null or e.occurred_at < $4)
              and ($5::uuid is null or e.server_id = $5)
              and ($6::uuid is null or e.access_grant_id = $6)
              and ($7::text is null or e.identity = $7)
              and ($8::text is null or e.tool_name = $8)
              and ($9::text is null or e.decision = $9::audit_decision)
              and ($11::timestamptz is null or e.occurred_at <= $11)
              and ($11::timestamptz is null or (e.occurred_at, e.audit_event_id) < ($11, $12::uuid))
            order by e.occurred_at desc, e.audit_event_id desc
            limit $13
        ) x
        order by x.occurred_at desc, x.audit_event_id desc
        limit $13
    $q$;
begin
    if org is null then
        return;
    end if;

    if not exact and p_pattern is null then
        return query execute $q$
            select e.audit_event_id, e.occurred_at
            from audit_event e
            where e.organisation_id = $1
              and ($2::timestamptz is null or e.occurred_at >= $2)
              and ($3::timestamptz is null or e.occurred_at < $3)
              and ($4::timestamptz is null or e.occurred_at <= $4)
              and ($4::timestamptz is null or (e.occurred_at, e.audit_event_id) < ($4, $5::uuid))
            order by e.occurred_at desc, e.audit_event_id desc
            limit $6
        $q$
        using org, p_from, p_to, p_before, p_before_id, wanted;
        return;
    end if;

    -- The hours the organisation has events in, narrowed by the page's bounds and cursor.
    select min(f.hour), max(f.hour) + interval '1 hour' into lo, hi
    from audit_hour_facet f where f.organisation_id = org;
    if hi is null then
        return;
    end if;
    if p_to is not null then
        hi := least(hi, p_to);
    end if;
    if p_before is not null then
        hi := least(hi, p_before + interval '1 microsecond');
    end if;
    if p_from is not null then
        lo := greatest(lo, p_from);
    end if;

    if p_pattern is null then
        lo := date_trunc('hour', lo, 'UTC');
        width := interval '6 hours';
        while hi > lo loop
            for h in execute facet_hours
                using org, p_from, p_to, p_before, p_server, p_grant, p_identity, p_tool, p_decision,
                      greatest(lo, hi - width), hi
            loop
                hours := hours || h.hour;
                expected := expected + h.n;
                -- The counts are exact for these filters; the page's time bounds and cursor can only
                -- remove events, so a round that finds fewer than expected goes on with older hours.
                continue when expected < wanted;
                return query execute read_hours
                    using org, hours, p_from, p_to, p_server, p_grant, p_identity, p_tool,
                          p_decision, null::text, p_before, p_before_id, wanted,
                          hours[cardinality(hours)], hours[1] + interval '1 hour';
                get diagnostics got = row_count;
                wanted := wanted - got;
                if wanted <= 0 then
                    return;
                end if;
                hours := '{}';
                expected := 0;
            end loop;
            hi := hi - width;
            width := width * 2;
        end loop;
        if cardinality(hours) > 0 then
            return query execute read_hours
                using org, hours, p_from, p_to, p_server, p_grant, p_identity, p_tool, p_decision,
                      null::text, p_before, p_before_id, wanted, hours[cardinality(hours)],
                      hours[1] + interval '1 hour';
        end if;
        return;
    end if;

    -- Windows end on UTC midnights, so each daily partition is read in one window only: first the
    -- newest day, then 1, 2, 4 … days before it.
    cut := date_trunc('day', hi - interval '1 microsecond', 'UTC');
    width := interval '24 hours';
    while hi > lo loop
        return query execute read_window
            using org, null::timestamptz[], p_from, p_to, p_server, p_grant, p_identity, p_tool,
                  p_decision, p_pattern, p_before, p_before_id, wanted, greatest(lo, cut), hi;
        get diagnostics got = row_count;
        wanted := wanted - got;
        exit when wanted <= 0;
        hi := cut;
        cut := cut - width;
        width := width * 2;
    end loop;
end
$fn$;
revoke all on function gatehouse_audit_search(timestamptz, timestamptz, uuid, uuid, text, text, text, text, timestamptz, uuid, integer) from public;
grant execute on function gatehouse_audit_search(timestamptz, timestamptz, uuid, uuid, text, text, text, text, timestamptz, uuid, integer) to gatehouse_app;

-- Retention forgets the facets of what it removes, like the hourly counts (the functions of
-- 20261128000005, with one more delete each).
create or replace function gatehouse_audit_retention_apply(p_now timestamptz)
returns table (organisation_id uuid, removed bigint, first_sequence bigint, dropped_partitions text[])
language plpgsql
as $$
declare
    o record;
    cutoff timestamptz;
    keep_from bigint;
    link bytea;
    n bigint;
    part record;
    empty boolean;
    dropped text[] := '{}';
begin
    for o in
        select org.organisation_id as id, org.audit_retention_days as days
        from organisation org where org.audit_retention_days is not null
    loop
        cutoff := (((p_now at time zone 'UTC')::date - o.days)::timestamp at time zone 'UTC');
        select min(e.sequence) into keep_from
        from audit_event e where e.organisation_id = o.id and e.occurred_at >= cutoff;
        if keep_from is null then
            -- Everything stored is older: the chain is cut after its head.
            select h.last_sequence + 1, h.last_hash into keep_from, link
            from chain_head h where h.organisation_id = o.id and h.chain = 'audit';
        else
            select e.prev_hash into link
            from audit_event e where e.organisation_id = o.id and e.sequence = keep_from;
        end if;
        if keep_from is null or keep_from <= 1 then
            continue;
        end if;
        if exists (select 1 from audit_chain_anchor a
                   where a.organisation_id = o.id and a.first_sequence >= keep_from) then
            continue;
        end if;
        delete from audit_event e where e.organisation_id = o.id and e.sequence < keep_from;
        get diagnostics n = row_count;
        insert into audit_chain_anchor as a (organisation_id, first_sequence, prev_hash, cut_before)
        values (o.id, keep_from, link, cutoff)
        on conflict on constraint audit_chain_anchor_pkey do update
            set first_sequence = excluded.first_sequence, prev_hash = excluded.prev_hash,
                cut_before = excluded.cut_before, updated_at = now();
        delete from audit_hour_count c where c.organisation_id = o.id and c.hour < cutoff;
        delete from audit_hour_facet f where f.organisation_id = o.id and f.hour < cutoff;
        organisation_id := o.id;
        removed := n;
        first_sequence := keep_from;
        dropped_partitions := '{}';
        return next;
    end loop;

    for part in
        select c.relname
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'audit_event'::regclass
          and c.relname ~ '^audit_event_p[0-9]{8}$'
          and to_date(substr(c.relname, 14), 'YYYYMMDD') + 1 < (p_now at time zone 'UTC')::date
        order by c.relname
    loop
        execute format('select not exists (select 1 from %I)', part.relname) into empty;
        if empty then
            execute format('drop table %I', part.relname);
            dropped := dropped || part.relname::text;
        end if;
    end loop;
    organisation_id := null;
    removed := 0;
    first_sequence := null;
    dropped_partitions := dropped;
    return next;
end
$$;
revoke all on function gatehouse_audit_retention_apply(timestamptz) from public;

create or replace function gatehouse_audit_partition_drop_before(p_before date)
returns setof text
language plpgsql
as $$
declare
    part record;
    o record;
    cutoff timestamptz := (p_before::timestamp at time zone 'UTC');
    keep_from bigint;
    link bytea;
begin
    for o in select h.organisation_id as id, h.last_sequence, h.last_hash
             from chain_head h where h.chain = 'audit' and h.last_sequence > 0
    loop
        select min(e.sequence) into keep_from
        from audit_event e where e.organisation_id = o.id and e.occurred_at >= cutoff;
        if keep_from is null then
            keep_from := o.last_sequence + 1;
            link := o.last_hash;
        else
            select e.prev_hash into link
            from audit_event e where e.organisation_id = o.id and e.sequence = keep_from;
        end if;
        if keep_from > 1
           and exists (select 1 from audit_event e where e.organisation_id = o.id and e.occurred_at < cutoff)
           and not exists (select 1 from audit_chain_anchor a
                           where a.organisation_id = o.id and a.first_sequence >= keep_from) then
            insert into audit_chain_anchor as a (organisation_id, first_sequence, prev_hash, cut_before)
            values (o.id, keep_from, link, cutoff)
            on conflict on constraint audit_chain_anchor_pkey do update
                set first_sequence = excluded.first_sequence, prev_hash = excluded.prev_hash,
                    cut_before = excluded.cut_before, updated_at = now();
        end if;
    end loop;
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
    delete from audit_hour_count where hour < cutoff;
    delete from audit_hour_facet where hour < cutoff;
end
$$;
revoke all on function gatehouse_audit_partition_drop_before(date) from public;
