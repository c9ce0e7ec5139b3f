//! The labels a salesperson's worklist is ordered by (satisfaction and activity, from
//! the label feed), and the urgency they and the tier give.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn t(name: &str) -> Alias {
    Alias::new(name)
}

const COLUMNS: [&str; 3] = ["satisfaction", "activity", "urgency"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let columns = vec![
            string_len_null(t("satisfaction"), 32),
            string_len_null(t("activity"), 32),
            // cartera::Urgency's rank: 0 (DISSATISFIED) to 3 (the rest).
            integer(t("urgency")).default(3).to_owned(),
        ];
        super::add_columns(m, "cartera_customers", columns).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::drop_columns(m, "cartera_customers", &COLUMNS).await
    }
}
