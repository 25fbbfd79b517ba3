//! Black-box tests of the `gatehouse` binary: run it as a user would and read what it prints.

mod approval_cli;
mod audit_cli;
mod audit_drill;
mod gateway_cli;
mod policy_cli;
mod store_cli;
mod up_demo;
