//! The `events` table: the outbox and the feed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    pub event_id: Uuid,
    pub customer_id: Uuid,
    pub kind: String,
    pub recorded_at: DateTimeUtc,
    /// JSON of the payload.
    pub payload: String,
    /// The event as the feed sends it (an encoded `clientela.registry.v1.Event`); NULL
    /// when it was written without an encoder.
    pub wire: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
