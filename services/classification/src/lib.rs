//! The classification engine: sorts every customer along the dimensions of the seed
//! documents (docs/CLASSIFICATION.md), explains each label, and recommends a treatment.
//!
//! The rules are pure functions of a customer's facts, the population's cut-offs and a
//! versioned policy at an `as_of` instant, so the same inputs always give the same labels.

pub mod api;
pub mod classification;
pub mod engine;
pub mod facts;
pub mod feed;
pub mod filter;
pub mod labels;
pub mod migration;
pub mod policy;
pub mod population;
pub mod projection;
pub mod revenue;
pub mod rules;
pub mod service;
pub mod store;

pub use service::{ClassificationSettings, open_database, register};
