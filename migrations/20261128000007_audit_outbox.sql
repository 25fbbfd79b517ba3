-- The audit write-ahead in Postgres, for a single-process `gatehouse up` without Redis: the gateway
-- inserts a call's event here before forwarding it (`complete = false`), completes the row with
-- the outcome after, and writes denials complete at once. The in-process ingester moves complete
-- rows, and pending rows older than the grace period (as "outcome unknown"), into `audit_event`,
-- then deletes them: rows are removed only after the events they carry are committed there.
-- With Redis configured, the Redis streams play this part and this table stays empty.
create table audit_outbox (
    audit_outbox_id bigint generated always as identity primary key,
    organisation_id uuid not null references organisation (organisation_id) on delete cascade,
    -- The gateway's event (`audit::AuditRecord`) as JSON; the store does not read inside it.
    event jsonb not null,
    complete boolean not null,
    written_at timestamptz not null default now()
);

create index audit_outbox_pending on audit_outbox (written_at) where not complete;

alter table audit_outbox enable row level security;
create policy audit_outbox_isolation on audit_outbox
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
