-- One counter that every change to what a gateway caches per grant (the grant, its server's
-- upstream and credentials, its policy's current version, the server's pinned tools) moves
-- forward, in the changing transaction: it becomes visible exactly when the change does. Gateways
-- read it about twice a second and empty their caches when it moved, so an edit, revocation or
-- rotation reaches every replica within a second even when its Redis announcement is lost (the
-- publisher died after committing, Redis was down, a replica's subscription silently broke).
-- Changes are human-paced; the row lock this takes orders concurrent configuration changes.
create table config_epoch (
    singleton boolean primary key default true check (singleton),
    epoch bigint not null
);
insert into config_epoch (singleton, epoch) values (true, 0);

create function gatehouse_bump_config_epoch() returns trigger
language plpgsql security definer set search_path = public, pg_temp
as $$
begin
    update config_epoch set epoch = epoch + 1;
    return null;
end
$$;
revoke all on function gatehouse_bump_config_epoch() from public;

-- Statement triggers: one bump per changing statement, whatever rows it touched. Grants are
-- watched only for the columns a gateway reads (not `last_used_at`, which gateways write).
create trigger server_config_epoch after insert or update or delete on server
    for each statement execute function gatehouse_bump_config_epoch();
create trigger policy_config_epoch after insert or update or delete on policy
    for each statement execute function gatehouse_bump_config_epoch();
create trigger policy_version_config_epoch after insert or delete on policy_version
    for each statement execute function gatehouse_bump_config_epoch();
create trigger tool_snapshot_config_epoch after insert or update or delete on tool_snapshot
    for each statement execute function gatehouse_bump_config_epoch();
create trigger tool_snapshot_entry_config_epoch after insert or update or delete on tool_snapshot_entry
    for each statement execute function gatehouse_bump_config_epoch();
create trigger access_grant_config_epoch
    after insert or delete or update of token_hash, revoked_at, expires_at, server_id, policy_id, identity, label
    on access_grant
    for each statement execute function gatehouse_bump_config_epoch();

-- What the gateway reads, as the restricted role.
create function gatehouse_config_epoch() returns bigint
language sql stable security definer set search_path = public, pg_temp
as $$
    select epoch from config_epoch
$$;
revoke all on function gatehouse_config_epoch() from public;
grant execute on function gatehouse_config_epoch() to gatehouse_app;
