-- Audit retention per organisation, and the anchor that lets `gatehouse audit verify` tell a chain
-- cut by retention from one whose oldest events were removed by someone else.

alter table organisation add column audit_retention_days integer
    check (audit_retention_days is null or audit_retention_days between 1 and 36500);
comment on column organisation.audit_retention_days is
    'Whole days of audit events kept (UTC days before today); null keeps everything.';

-- Where retention last cut an organisation's audit chain: the first sequence still stored and the
-- hash it links to. Verification starts from here instead of from the genesis hash, so a chain cut
-- by retention verifies, while any other missing prefix is reported as removed.
create table audit_chain_anchor (
    organisation_id uuid primary key references organisation on delete cascade,
    first_sequence  bigint not null check (first_sequence > 1),
    prev_hash       bytea not null,
    cut_before      timestamptz not null,
    updated_at      timestamptz not null default now()
);
comment on table audit_chain_anchor is 'Where retention cut each organisation''s audit chain; written only by the retention job.';
alter table audit_chain_anchor enable row level security;
create policy audit_chain_anchor_isolation on audit_chain_anchor
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
grant select on audit_chain_anchor to gatehouse_app;

-- Applies every organisation's retention as of p_now: removes the prefix of its chain whose events
-- are all older than its cut-off (the chain is cut at a sequence, never in its middle: a late event
-- older than the cut-off but after a kept one stays), records the anchor, and forgets the hourly
-- counts before the cut-off. Then drops the daily partitions before yesterday that are left empty.
-- Not granted to the application role: only the operator's retention job removes history.
create function gatehouse_audit_retention_apply(p_now timestamptz)
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

-- The global retention of `gatehouse audit partitions --retain-days` drops whole partitions; it now
-- records each organisation's anchor first (the first sequence at or after the cut and the hash it
-- links to), so verification still holds on what remains. Events older than the cut but later in
-- the chain than a kept one (late arrivals) go with their partition and are reported as removed.
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
end
$$;
revoke all on function gatehouse_audit_partition_drop_before(date) from public;
