//! Integration tests: the registry and the classification engine in one real server,
//! on SQLite and on PostgreSQL, driven through their gRPC APIs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine;
mod harness;
mod scenarios;
