//! Integration tests of the admin web app over real HTTP: the app on port 0 in front of a fresh
//! Postgres database per test (`#[sqlx::test]`), the GenieACS simulator as the upstream.

mod account;
mod api;
mod approvals;
mod audit;
mod browser;
mod grants;
mod invitations;
mod members;
mod openapi;
mod pinning;
mod policies;
mod roles;
mod servers;
mod support;
mod verify;
