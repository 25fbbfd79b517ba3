-- Foundation: extensions, the restricted application role, and helpers every later table uses.
--
-- Organisation isolation is enforced twice: every query in the `store` crate filters by
-- organisation, and row-level security on every organisation-owned table refuses rows of any
-- other organisation. Superusers and table owners bypass row-level security, so organisation-scoped
-- transactions switch to the `gatehouse_app` role (`set local role gatehouse_app`), which has no
-- BYPASSRLS and only the privileges granted below and in later migrations.

-- Trigram indexes make the audit viewer's free-text search on messages an index scan.
create extension if not exists pg_trgm;

-- Roles are cluster-wide while migrations run per database (every `#[sqlx::test]` database runs
-- this file), so the role is created only when missing, tolerating a concurrent creator.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'gatehouse_app') then
        create role gatehouse_app nologin nosuperuser nobypassrls noinherit;
    end if;
exception
    when duplicate_object or unique_violation then null;
end
$$;

-- Whoever runs the migrations (and so owns the tables) must be able to `set role gatehouse_app`.
do $$
begin
    execute format('grant gatehouse_app to %I', current_user);
exception
    when others then null; -- already a member, or a superuser who needs no membership
end
$$;

grant usage on schema public to gatehouse_app;

-- The organisation of the current transaction, or null when none was set. `set_config(..., true)`
-- leaves an empty string behind after the transaction on a pooled connection, hence the `nullif`:
-- an empty setting must read as "no organisation", which matches no row, never as an error.
create function gatehouse_org_id() returns uuid
language sql stable parallel safe
as $$ select nullif(current_setting('gatehouse.org_id', true), '')::uuid $$;

comment on function gatehouse_org_id() is
    'The organisation the current transaction is scoped to; every row-level security policy compares against it.';

-- Keeps `updated_at` honest without every statement having to remember it.
create function gatehouse_touch_updated_at() returns trigger
language plpgsql
as $$
begin
    new.updated_at := now();
    return new;
end
$$;

-- Used by tables whose rows are history: once written they are never changed or removed.
create function gatehouse_refuse_change() returns trigger
language plpgsql
as $$
begin
    raise exception '% rows are immutable', tg_table_name using errcode = 'check_violation';
end
$$;

-- Roles are ordered: each includes the rights of the ones before it, so `role >= 'policy_manager'`
-- is a meaningful comparison.
create type member_role as enum ('viewer', 'policy_manager', 'admin');
