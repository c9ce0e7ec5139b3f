//! sea-orm entities, one file per table.

pub mod complaint;
pub mod customer;
pub mod customer_key;
pub mod event;
pub mod purchase;
pub mod referral;
pub mod return_record;
pub mod survey;
