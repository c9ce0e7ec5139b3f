//! The `purchases` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "purchases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub customer_id: Uuid,
    pub order_id: String,
    pub occurred_at: DateTimeUtc,
    pub channel: Option<String>,
    pub currency_code: String,
    pub total_minor: i64,
    pub returned_minor: i64,
    /// JSON array of lines.
    pub lines: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
