//! The `customers` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub kind: String,
    pub display_name: String,
    pub legal_name: String,
    pub tax_country: Option<String>,
    pub tax_id: Option<String>,
    pub tax_key: Option<String>,
    pub emails: String,
    pub phones: String,
    pub address: Option<String>,
    pub region_key: Option<String>,
    pub channel_role: Option<String>,
    pub business_kind: Option<String>,
    pub influence: String,
    pub tags: String,
    pub attributes: String,
    pub consent: String,
    pub language_code: String,
    pub external_id: Option<String>,
    pub cost_to_serve: Option<String>,
    pub key_account: bool,
    pub high_expectations: bool,
    pub status: String,
    pub merged_into: Option<Uuid>,
    pub search_text: String,
    pub request_id: Option<String>,
    pub request_fingerprint: Option<i64>,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
