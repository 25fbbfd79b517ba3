//! The control-plane store: the Postgres schema (migrations at the repository root, exported as
//! [`MIGRATOR`]) and every query the product runs, as small use-case functions.
//!
//! This is the only crate that contains SQL. Organisation-owned data is reached only through an
//! [`OrgTx`], a transaction that filters by its organisation in every query and, as a second line
//! of defence, runs as the restricted `gatehouse_app` role under Postgres row-level security. The
//! few lookups that must work without an organisation in hand (a bearer token, a server id given
//! to the operator CLI) answer one narrow question each and are named as such. This crate must
//! never log or return a secret in clear outside the types in [`secret`], whose `Debug` is redacted.
#![forbid(unsafe_code)]

pub mod account;
pub mod admin;
pub mod api_key;
pub mod approval;
pub mod audit;
pub mod audit_outbox;
pub mod audit_verify;
pub mod drift;
mod error;
pub mod grant;
mod ids;
pub mod invitation;
pub mod org;
pub mod policy;
pub mod secret;
pub mod server;
mod token;
mod tx;

pub use account::Role;
pub use admin::Actor;
pub use error::{Error, Result};
pub use ids::{ApiKeyId, ApprovalId, AuditEventId, GrantId, OrgId, PolicyId, ServerId, UserId};
pub use tx::{OrgTx, Store};

/// Every migration of the product, embedded at compile time from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
