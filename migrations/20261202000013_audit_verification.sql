-- The latest verification of each organisation's audit chain, run in the background in chunks of
-- rows, each chunk its own short transaction that records how far the run got. Every run starts
-- again from the first stored event, so a row changed after an earlier run checked it is still
-- caught by the next run; a run only needs memory for one chunk, and the verify page reads this
-- row instead of the chain.
create table audit_verification (
    organisation_id uuid primary key references organisation on delete cascade,
    run_id          uuid not null,
    started_at      timestamptz not null,
    -- Written by every chunk: a running run whose heartbeat is old was interrupted.
    heartbeat_at    timestamptz not null,
    finished_at     timestamptz,
    -- The chain's head when the run started: the run checks every event up to it.
    target_sequence bigint not null,
    -- The last sequence read, and the sequence and hash the next event must have.
    read_through    bigint not null,
    next_sequence   bigint not null,
    prev_hash       bytea not null,
    checked         bigint not null default 0,
    first_sequence  bigint,
    -- Null while running; then intact, broken or empty, with the first problem when broken.
    outcome         text check (outcome in ('intact', 'broken', 'empty')),
    problem         jsonb,
    check ((finished_at is null) = (outcome is null))
);
comment on table audit_verification is 'The latest (or running) verification of each organisation''s audit hash chain.';
alter table audit_verification enable row level security;
create policy audit_verification_isolation on audit_verification
    using (organisation_id = gatehouse_org_id()) with check (organisation_id = gatehouse_org_id());
grant select, insert, update on audit_verification to gatehouse_app;
