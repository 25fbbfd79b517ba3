-- Approvals as the gateway holds them (issue 8), on top of the `approval` table of migration 3:
-- the session the call came in, how it was decided (a person on the web, an API key, an operator
-- at the CLI, who has no user row), and the gateway's request id as the audit log keeps it (the
-- client's `x-request-id` when it sent one, so not always a UUID).
alter table approval
    add column session_id text check (length(session_id) <= 200),
    add column decided_via text check (decided_via in ('web', 'api', 'cli')),
    alter column request_id type text using request_id::text,
    add constraint approval_request_id_length check (length(request_id) between 1 and 128),
    add constraint approval_decided_has_time
        check (status not in ('approved', 'denied', 'consumed') or decided_at is not null),
    add constraint approval_consumed_has_time check ((status = 'consumed') = (consumed_at is not null));

-- The decided half of the approvals page (approved, denied, expired, consumed), newest first.
create index approval_decided on approval (organisation_id, created_at desc, approval_id)
    where status <> 'pending';

-- One webhook per organisation.
alter table approval_webhook
    add constraint approval_webhook_one_per_organisation unique (organisation_id);
