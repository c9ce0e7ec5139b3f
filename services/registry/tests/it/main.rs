//! Integration tests of the registry: the real server on a loopback port, real SQLite
//! and PostgreSQL databases, the generated tonic client. One binary, many modules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod commerce;
mod customers;
mod feed;
mod harness;
mod import_export;
mod server;
