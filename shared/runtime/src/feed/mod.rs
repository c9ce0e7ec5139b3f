//! Feeds between services, both sides, written once: the outbox a producer appends to in
//! its own transactions, the server that streams it (`Watch…(after_sequence)`), and the
//! consumer that follows another service's feed into a projection.

pub mod consistency;
pub mod consumer;
pub mod decode;
pub mod outbox;
pub mod server;
pub mod upstream;

pub use outbox::{Outbox, OutboxRecord, create_sequence_table};
pub use server::{DEFAULT_BATCH, Feed, MAX_BATCH, check_request, watch};
