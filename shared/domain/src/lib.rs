//! Clientela's domain types and their rules: ids, exact money, tax ids per country,
//! contact data, text folding and the customer taxonomy with Spanish and English labels.

pub mod contact;
pub mod error;
pub mod ids;
pub mod money;
pub mod tax;
pub mod taxonomy;
pub mod text;

pub use contact::{Address, CountryCode, Email, Phone};
pub use error::{FieldViolation, Violations};
pub use money::{Money, MoneyError};
pub use tax::{TaxId, TaxIdError};
pub use taxonomy::Labeled;
