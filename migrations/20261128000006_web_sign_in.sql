-- What the admin web app needs to sign people in safely.

-- The synchroniser token of a web session: every state-changing form carries it and the server
-- compares it with this column. It is only useful together with the session cookie, whose value is
-- stored as a hash, so keeping it in clear gives a copy of the database nothing to sign in with.
alter table web_session add column csrf_token text check (length(csrf_token) between 32 and 128);

-- Failed sign-ins, counted per (email, client address) and per address to throttle password
-- guessing. Emails are stored lowercased whether or not an account exists, so that throttling
-- behaves the same for both and reveals nothing. Rows older than a day are deleted as new ones come.
create table login_failure (
    login_failure_id bigint generated always as identity primary key,
    email            text not null check (length(email) <= 320),
    client_addr      inet,
    occurred_at      timestamptz not null default now()
);
comment on table login_failure is 'Recent failed sign-ins, for throttling; belongs to no organisation.';
create index login_failure_email_addr on login_failure (email, client_addr, occurred_at);
create index login_failure_addr on login_failure (client_addr, occurred_at);
