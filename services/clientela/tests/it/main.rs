//! Smoke tests of the built `clientela` binary through independent clients: grpcurl
//! (reflection v1alpha), buf curl (reflection v1), and the README's own examples.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod hostile;
mod process;
mod production;
mod smoke;
mod tls;
mod traces;
