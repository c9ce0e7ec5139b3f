//! Label changes: the change feed, in the shared outbox.

use super::*;

/// The columns of `label_changes`, in the order rows are written.
pub(super) const CHANGE_COLUMNS: [&str; 7] = [
    "sequence",
    "customer_id",
    "dimension",
    "old_label",
    "new_label",
    "changed_at",
    "policy_version",
];

/// The outbox of label changes: the change feed.
pub type Changes = Outbox<LabelChange>;

/// Opens the change feed's outbox over a migrated database.
pub async fn changes_outbox(db: Db) -> Result<Changes, Error> {
    Outbox::open(db, "label_changes", "change_counter").await
}

impl OutboxRecord for LabelChange {
    const COLUMNS: &'static [&'static str] = &CHANGE_COLUMNS;

    fn sequence(&self) -> i64 {
        self.sequence
    }

    fn values(&self) -> Result<Vec<Value>, Error> {
        Ok(vec![
            self.sequence.into(),
            self.customer.into(),
            self.dimension.name().into(),
            self.old_label.clone().into(),
            self.new_label.clone().into(),
            self.changed_at.into(),
            self.policy_version.into(),
        ])
    }

    fn decode(row: &QueryResult) -> Result<Self, Error> {
        label_change(row)
    }
}

/// Appends `changes` (their sequence is ignored) with gap-free sequence numbers; last in
/// the transaction (see [`Outbox::append`]).
pub async fn append_changes(
    outbox: &Changes,
    tx: &WriteTx,
    changes: Vec<LabelChange>,
) -> Result<Vec<LabelChange>, Error> {
    outbox
        .append(tx, changes, |change, sequence| LabelChange {
            sequence,
            ..change
        })
        .await
}

pub(super) fn label_change(row: &QueryResult) -> Result<LabelChange, Error> {
    let dimension: String = row.try_get("", "dimension")?;
    Ok(LabelChange {
        sequence: row.try_get("", "sequence")?,
        customer: row.try_get("", "customer_id")?,
        dimension: Dimension::from_name(&dimension).ok_or_else(|| {
            Error::Internal(format!("corrupt dimension {dimension:?} in the database"))
        })?,
        old_label: row.try_get("", "old_label")?,
        new_label: row.try_get("", "new_label")?,
        changed_at: row.try_get("", "changed_at")?,
        policy_version: row.try_get("", "policy_version")?,
    })
}

pub(super) fn changes_select() -> SelectStatement {
    Query::select()
        .columns(CHANGE_COLUMNS.map(t))
        .from(t("label_changes"))
        .to_owned()
}
