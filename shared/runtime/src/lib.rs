//! What every Clientela server needs, written once: settings, tracing, metrics, health,
//! reflection, auth, graceful shutdown, database connect + migrate, and error mapping.

pub mod auth;
pub mod cache;
pub mod db;
pub mod error;
pub mod feed;
pub mod group;
pub mod idempotency;
pub mod names;
pub mod pagination;
pub mod raw;
pub mod server;
pub mod service;
pub mod settings;
pub mod telemetry;
pub mod time;

pub use auth::{Access, Role};
pub use db::{Conn, Db, Savepoint, WriteTx};
pub use error::Error;
pub use group::GroupCommit;
pub use server::{App, ServeError, shutdown_signal};
pub use service::Service;
pub use settings::{CommonSettings, DatabaseSettings, Secret};

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
