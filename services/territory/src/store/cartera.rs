//! Customers, assignments, sellers' loads and the feed of assignment changes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use clientela_runtime::Error;
use clientela_runtime::feed::OutboxRecord;
use clientela_runtime::raw::{MAX_ROWS_PER_VALUES, Raw};
use sea_orm::sea_query::{
    Expr, ExprTrait, JoinType, OnConflict, Order, Query, SelectStatement, SimpleExpr,
};
use sea_orm::{ConnectionTrait, QueryResult, Value};
use uuid::Uuid;

use super::{col, corrupt, seller_of, seller_select, t};
use crate::assign::{Assignment, Cause, Desk, EndCause, Explanation, Role, Roster};
use crate::cartera::{Book, Customer, Logged, Page, PurchaseView, Standing};
use crate::explain::Rule;
use crate::locate::Place;

/// Ids per `IN (...)` list: well inside both engines' parameter limits.
const IDS_PER_QUERY: usize = 500;

/// Every seller with its load and turn.
pub async fn desks(conn: &impl ConnectionTrait) -> Result<Vec<Desk>, Error> {
    let select = seller_select()
        .columns([t("load"), t("last_chosen")])
        .to_owned();
    conn.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok(Desk::of(
                &seller_of(row)?,
                row.try_get("", "load")?,
                row.try_get("", "last_chosen")?,
            ))
        })
        .collect()
}

pub(crate) const CUSTOMER_COLUMNS: [&str; 17] = [
    "id",
    "standing",
    "merged_into",
    "country_code",
    "region",
    "locality",
    "postal_code",
    "territory_code",
    "unassigned_reason",
    "first_purchase_at",
    "profile_at",
    "account_tier",
    "tier_at",
    "kam_until",
    "satisfaction",
    "activity",
    "urgency",
];

/// A row of either driver, so that each table has one decoder: sea-orm's through the
/// pool, rusqlite's on the direct SQLite reads (`super::sqlite`), whose columns hold what
/// sqlx wrote (ids as 16 bytes, instants as RFC 3339 text), which rusqlite reads back.
pub(crate) trait Row {
    fn column<T>(&self, name: &str) -> Result<T, Error>
    where
        T: sea_orm::TryGetable + rusqlite::types::FromSql;

    /// An instant that may be the earliest one (`DateTime::MIN_UTC`, a customer not yet
    /// profiled), whose year has six digits and a sign.
    fn instant(&self, name: &str) -> Result<DateTime<Utc>, Error> {
        self.column(name)
    }
}

impl Row for QueryResult {
    fn column<T>(&self, name: &str) -> Result<T, Error>
    where
        T: sea_orm::TryGetable + rusqlite::types::FromSql,
    {
        Ok(self.try_get("", name)?)
    }
}

impl Row for rusqlite::Row<'_> {
    fn column<T>(&self, name: &str) -> Result<T, Error>
    where
        T: sea_orm::TryGetable + rusqlite::types::FromSql,
    {
        self.get(name)
            .map_err(|e| Error::Internal(format!("reading column {name}: {e}")))
    }

    fn instant(&self, name: &str) -> Result<DateTime<Utc>, Error> {
        // rusqlite's parser takes a signed six-digit year for a date without a time.
        let text: String = self.column(name)?;
        DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f%:z")
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| Error::Internal(format!("reading column {name} ({text:?}): {e}")))
    }
}

pub(crate) fn customer_of(row: &impl Row) -> Result<Customer, Error> {
    let standing: String = row.column("standing")?;
    Ok(Customer {
        id: row.column("id")?,
        standing: Standing::parse(&standing)
            .ok_or_else(|| corrupt("customer standing", &standing))?,
        merged_into: row.column("merged_into")?,
        place: Place {
            country_code: row.column("country_code")?,
            region: row.column("region")?,
            locality: row.column("locality")?,
            postal_code: row.column("postal_code")?,
        },
        territory: row.column("territory_code")?,
        unassigned_reason: row.column("unassigned_reason")?,
        first_purchase_at: row.column("first_purchase_at")?,
        profile_at: row.instant("profile_at")?,
        tier: row.column("account_tier")?,
        tier_at: row.column("tier_at")?,
        kam_until: row.column("kam_until")?,
        satisfaction: row.column("satisfaction")?,
        activity: row.column("activity")?,
    })
}

fn customer_select() -> SelectStatement {
    Query::select()
        .columns(CUSTOMER_COLUMNS.map(t))
        .from(t("cartera_customers"))
        .to_owned()
}

/// Customer `id`, if the feed has described it.
pub async fn customer(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Customer>, Error> {
    let select = customer_select().and_where(col("id").eq(id)).to_owned();
    conn.query_one(&select)
        .await?
        .map(|r| customer_of(&r))
        .transpose()
}

/// The stored customers among `ids`.
pub async fn customers(conn: &impl ConnectionTrait, ids: &[Uuid]) -> Result<Vec<Customer>, Error> {
    let mut out = Vec::with_capacity(ids.len());
    for select in customers_selects(ids) {
        for row in conn.query_all(&select).await? {
            out.push(customer_of(&row)?);
        }
    }
    Ok(out)
}

/// The statements of [`customers`].
pub(crate) fn customers_selects(ids: &[Uuid]) -> Vec<SelectStatement> {
    ids.chunks(IDS_PER_QUERY)
        .map(|chunk| {
            customer_select()
                .and_where(col("id").is_in(chunk.iter().copied()))
                .to_owned()
        })
        .collect()
}

/// Of `ids`, the stored ones as a purchase reads them: the customer row's standing and
/// first purchase, and the open slots from their partial index (no assignment row read).
pub async fn purchase_views(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, PurchaseView>, Error> {
    let mut out: HashMap<Uuid, PurchaseView> = HashMap::with_capacity(ids.len());
    for select in views_selects(ids) {
        for row in conn.query_all(&select).await? {
            add_view(&mut out, &row)?;
        }
    }
    Ok(out)
}

/// The statements of [`purchase_views`].
pub(crate) fn views_selects(ids: &[Uuid]) -> Vec<SelectStatement> {
    let (c, a) = (|name| (t("c"), t(name)), |name| (t("a"), t(name)));
    ids.chunks(IDS_PER_QUERY)
        .map(|chunk| {
            Query::select()
                .columns([c("id"), c("standing"), c("first_purchase_at")])
                .columns([a("role"), a("product_line")])
                .from_as(t("cartera_customers"), t("c"))
                .join_as(
                    JoinType::LeftJoin,
                    t("assignments"),
                    t("a"),
                    Expr::col(a("customer_id"))
                        .equals(c("id"))
                        .and(open_by_customer("a")),
                )
                .and_where(Expr::col(c("id")).is_in(chunk.iter().copied()))
                .to_owned()
        })
        .collect()
}

/// Adds a row of [`views_selects`] to the views: a customer's first row makes its
/// view, each row adds an open slot.
pub(crate) fn add_view(
    views: &mut HashMap<Uuid, PurchaseView>,
    row: &impl Row,
) -> Result<(), Error> {
    let id: Uuid = row.column("id")?;
    let view = match views.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let standing: String = row.column("standing")?;
            e.insert(PurchaseView {
                standing: Standing::parse(&standing)
                    .ok_or_else(|| corrupt("customer standing", &standing))?,
                first_purchase_at: row.column("first_purchase_at")?,
                open: Vec::new(),
            })
        }
    };
    let role: Option<String> = row.column("role")?;
    if let Some(role) = role {
        let role = Role::parse(&role).ok_or_else(|| corrupt("assignment role", &role))?;
        view.open.push((role, row.column("product_line")?));
    }
    Ok(())
}

/// The customers whose KAM's grace period ended by `now`.
pub async fn kams_due(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<Uuid>, Error> {
    let select = Query::select()
        .column(t("id"))
        .from(t("cartera_customers"))
        .and_where(col("kam_until").lte(now))
        .to_owned();
    ids_of(conn, &select).await
}

/// Live KEY and BOSS accounts without a KAM.
pub async fn kams_wanted(conn: &impl ConnectionTrait) -> Result<Vec<Uuid>, Error> {
    ids_of(conn, &kam_wanted_select(None, u64::MAX)).await
}

/// Up to `limit` live KEY and BOSS accounts without a KAM after id `after`: id and
/// tier.
pub async fn kams_wanted_page(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<(Uuid, String)>, Error> {
    conn.query_all(&kam_wanted_select(after, limit))
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "account_tier")?)))
        .collect()
}

fn kam_wanted_select(after: Option<Uuid>, limit: u64) -> SelectStatement {
    let mut select = Query::select()
        .columns([(t("c"), t("id")), (t("c"), t("account_tier"))])
        .from_as(t("cartera_customers"), t("c"))
        .and_where(Expr::col((t("c"), t("account_tier"))).is_in(["KEY", "BOSS"]))
        .and_where(
            Expr::col((t("c"), t("standing")))
                .is_in([Standing::Prospect.as_str(), Standing::Customer.as_str()]),
        )
        .and_where(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from_as(t("assignments"), t("a"))
                    .and_where(Expr::col((t("a"), t("customer_id"))).equals((t("c"), t("id"))))
                    .and_where(Expr::col((t("a"), t("role"))).eq(Role::Kam.as_str()))
                    .and_where(Expr::col((t("a"), t("valid_to"))).is_null())
                    .to_owned(),
            )
            .not(),
        )
        .order_by((t("c"), t("id")), Order::Asc)
        .to_owned();
    if limit != u64::MAX {
        select.limit(limit);
    }
    if let Some(after) = after {
        select.and_where(Expr::col((t("c"), t("id"))).gt(after));
    }
    select
}

async fn ids_of(conn: &impl ConnectionTrait, select: &SelectStatement) -> Result<Vec<Uuid>, Error> {
    conn.query_all(select)
        .await?
        .iter()
        .map(|row| Ok(row.try_get("", "id")?))
        .collect()
}

/// Whether customers written back still hold the indexed columns they were stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexed {
    Kept,
    /// Or are new.
    Changed,
}

/// The columns of `cartera_customers` its indexes hold.
const INDEXED_CUSTOMER_COLUMNS: [&str; 3] = ["territory_code", "account_tier", "kam_until"];

/// Writes `rows` (new or changed). With `Indexed::Kept` the indexed columns are left
/// out of the update: SQLite rewrites an index's entry whenever a column of it is set,
/// changed or not (three random index pages more per customer of an ingest batch).
async fn upsert_customers(
    conn: &impl ConnectionTrait,
    rows: &[&Customer],
    indexed: Indexed,
) -> Result<(), Error> {
    let updated = CUSTOMER_COLUMNS[1..]
        .iter()
        .filter(|c| indexed == Indexed::Changed || !INDEXED_CUSTOMER_COLUMNS.contains(c));
    let on_conflict = OnConflict::column(t("id"))
        .update_columns(updated.map(|c| t(c)))
        .to_owned();
    // 17 values a row.
    for chunk in rows.chunks(IDS_PER_QUERY) {
        let mut insert = Query::insert()
            .into_table(t("cartera_customers"))
            .columns(CUSTOMER_COLUMNS.map(t))
            .on_conflict(on_conflict.clone())
            .to_owned();
        for c in chunk {
            insert
                .values([
                    c.id.into(),
                    c.standing.as_str().into(),
                    c.merged_into.into(),
                    c.place.country_code.clone().into(),
                    c.place.region.clone().into(),
                    c.place.locality.clone().into(),
                    c.place.postal_code.clone().into(),
                    c.territory.clone().into(),
                    c.unassigned_reason.clone().into(),
                    c.first_purchase_at.into(),
                    c.profile_at.into(),
                    c.tier.clone().into(),
                    c.tier_at.into(),
                    c.kam_until.into(),
                    c.satisfaction.clone().into(),
                    c.activity.clone().into(),
                    c.urgency().rank().into(),
                ])
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

pub(crate) const ASSIGNMENT_COLUMNS: [&str; 20] = [
    "id",
    "customer_id",
    "seller_id",
    "role",
    "product_line",
    "valid_from",
    "valid_to",
    "cause",
    "model_id",
    "model_version",
    "territory_code",
    "actor",
    "reason",
    "pinned",
    "pin_expires_at",
    "weight",
    "end_cause",
    // JSON, in rows stored before `explanation_bytes`; empty since.
    "explanation",
    "explanation_bytes",
    "sequence",
];

pub(crate) fn assignment_of(row: &impl Row) -> Result<Assignment, Error> {
    let role: String = row.column("role")?;
    let cause: String = row.column("cause")?;
    let end_cause: Option<String> = row.column("end_cause")?;
    let model_id: Option<Uuid> = row.column("model_id")?;
    let model_version: Option<i64> = row.column("model_version")?;
    let json: String = row.column("explanation")?;
    let bytes: Option<Vec<u8>> = row.column("explanation_bytes")?;
    let explanation = match bytes {
        Some(bytes) => {
            super::explanation::decode(&bytes).map_err(|e| corrupt("assignment explanation", e))?
        }
        // Neither: left out by the read (Read::ForRealignment, Read::Basic).
        None if json.is_empty() => Explanation::of(Rule::Manual),
        None => serde_json::from_str::<Explanation>(&json)
            .map_err(|e| corrupt("assignment explanation", e))?,
    };
    Ok(Assignment {
        id: row.column("id")?,
        customer: row.column("customer_id")?,
        seller: row.column("seller_id")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("assignment role", &role))?,
        product_line: row.column("product_line")?,
        valid_from: row.column("valid_from")?,
        valid_to: row.column("valid_to")?,
        cause: Cause::parse(&cause).ok_or_else(|| corrupt("assignment cause", &cause))?,
        model: model_id.zip(model_version),
        territory: row.column("territory_code")?,
        actor: row.column("actor")?,
        reason: row.column("reason")?,
        pinned: row.column("pinned")?,
        pin_expires_at: row.column("pin_expires_at")?,
        weight: row.column("weight")?,
        end_cause: end_cause
            .map(|c| EndCause::parse(&c).ok_or_else(|| corrupt("assignment end cause", &c)))
            .transpose()?,
        explanation,
        sequence: row.column("sequence")?,
    })
}

fn assignment_select() -> SelectStatement {
    Query::select()
        .columns(ASSIGNMENT_COLUMNS.map(t))
        .from(t("assignments"))
        .to_owned()
}

/// Which customers a read of assignments is about.
#[derive(Debug, Clone, Copy)]
pub enum Customers<'a> {
    These(&'a [Uuid]),
    /// Those with ids in (after, last]: a page of customers in id order, read as one
    /// range of the customer index rather than lists of ids.
    Range {
        after: Option<Uuid>,
        last: Uuid,
    },
}

impl Customers<'_> {
    /// The conditions on `customer_id`, one per statement to run.
    fn conditions(self) -> Vec<SimpleExpr> {
        match self {
            Customers::These(ids) => ids
                .chunks(IDS_PER_QUERY)
                .map(|chunk| col("customer_id").is_in(chunk.iter().copied()))
                .collect(),
            Customers::Range { after, last } => {
                let upto = col("customer_id").lte(last);
                vec![match after {
                    Some(after) => upto.and(col("customer_id").gt(after)),
                    None => upto,
                }]
            }
        }
    }
}

/// Open assignments of `table` (the table or its alias), found by customer. The
/// condition on the role (true of every row) is a range on the second column of the
/// partial index of open slots (customer, role, line): without statistics SQLite
/// otherwise reads every interval the customer ever had through its history index, and
/// with `role IN (...)` it seeks once per role.
fn open_by_customer(table: &str) -> SimpleExpr {
    Expr::col((t(table), t("valid_to")))
        .is_null()
        .and(Expr::col((t(table), t("role"))).gt(""))
}

/// The open assignments of `customers`.
pub async fn open_assignments(
    conn: &impl ConnectionTrait,
    customers: &[Uuid],
) -> Result<Vec<Assignment>, Error> {
    open_assignments_of(conn, Customers::These(customers), Read::Whole).await
}

/// How much of an assignment a read needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Whole,
    /// Without the explanation unless pinned (a preview lists the pins that hold): a
    /// realignment only closes them, and decoding every explanation's JSON was a
    /// quarter of its time.
    ForRealignment,
    /// Without the explanation (a list's BASIC view).
    Basic,
}

impl Read {
    /// The select of assignments this read makes (no explanation when left out).
    fn select(self) -> SelectStatement {
        let left_out = |column: &str, none: Value| -> SimpleExpr {
            match self {
                Read::Whole | Read::Basic => Expr::val(none),
                Read::ForRealignment => Expr::case(col("pinned").eq(true), Expr::col(t(column)))
                    .finally(none)
                    .into(),
            }
        };
        if self == Read::Whole {
            return assignment_select();
        }
        Query::select()
            .columns(
                ASSIGNMENT_COLUMNS
                    .iter()
                    .filter(|c| !c.starts_with("explanation"))
                    .map(|c| t(c)),
            )
            .expr_as(left_out("explanation", "".into()), t("explanation"))
            .expr_as(
                left_out("explanation_bytes", Value::Bytes(None)),
                t("explanation_bytes"),
            )
            .from(t("assignments"))
            .to_owned()
    }
}

/// The open assignments of `customers`, as made.
pub async fn open_assignments_of(
    conn: &impl ConnectionTrait,
    customers: Customers<'_>,
    read: Read,
) -> Result<Vec<Assignment>, Error> {
    let mut out = Vec::new();
    for select in open_selects(customers, read) {
        for row in conn.query_all(&select).await? {
            out.push(assignment_of(&row)?);
        }
    }
    Ok(out)
}

/// The statements of [`open_assignments_of`].
pub(crate) fn open_selects(customers: Customers<'_>, read: Read) -> Vec<SelectStatement> {
    customers
        .conditions()
        .into_iter()
        .map(|condition| {
            read.select()
                .and_where(condition)
                .and_where(open_by_customer("assignments"))
                .order_by(t("sequence"), Order::Asc)
                .to_owned()
        })
        .collect()
}

/// The latest end of a closed interval per (customer, role, line), of the customers
/// a condition on `customer_id` names.
fn last_ends_select() -> SelectStatement {
    Query::select()
        .columns([t("customer_id"), t("role"), t("product_line")])
        .expr_as(Expr::col(t("valid_to")).max(), t("last_end"))
        .from(t("assignments"))
        .and_where(col("valid_to").is_not_null())
        .group_by_columns([t("customer_id"), t("role"), t("product_line")])
        .to_owned()
}

/// A row of [`last_ends_select`].
pub(crate) type LastEnd = ((Uuid, Role, String), DateTime<Utc>);

pub(crate) fn last_end_of(row: &impl Row) -> Result<LastEnd, Error> {
    let role: String = row.column("role")?;
    let role = Role::parse(&role).ok_or_else(|| corrupt("assignment role", &role))?;
    Ok((
        (
            row.column("customer_id")?,
            role,
            row.column("product_line")?,
        ),
        row.column("last_end")?,
    ))
}

/// Of `customers`, the latest end of a closed interval per (customer, role, line).
pub async fn last_ends(
    conn: &impl ConnectionTrait,
    customers: Customers<'_>,
) -> Result<HashMap<(Uuid, Role, String), DateTime<Utc>>, Error> {
    let mut out = HashMap::new();
    for select in last_ends_selects(customers) {
        for row in conn.query_all(&select).await? {
            let (slot, end) = last_end_of(&row)?;
            out.insert(slot, end);
        }
    }
    Ok(out)
}

/// The statements of [`last_ends`].
pub(crate) fn last_ends_selects(customers: Customers<'_>) -> Vec<SelectStatement> {
    customers
        .conditions()
        .into_iter()
        .map(|condition| last_ends_select().and_where(condition).to_owned())
        .collect()
}

/// The page of up to `limit` customers after `after`, in three range reads (open
/// assignments as [`Read::ForRealignment`] reads them).
pub async fn page(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Page, Error> {
    let customers = customer_page(conn, after, limit).await?;
    let Some(last) = customers.last().map(|c| c.id) else {
        return Ok(Page::default());
    };
    let range = Customers::Range { after, last };
    Ok(Page {
        open: open_assignments_of(conn, range, Read::ForRealignment).await?,
        last_ends: last_ends(conn, range).await?,
        customers,
    })
}

/// Customers `ids` as a feed batch reads them: with their open assignments, whole, and
/// last ends.
pub async fn loads(conn: &impl ConnectionTrait, ids: &[Uuid]) -> Result<Page, Error> {
    Ok(Page {
        customers: customers(conn, ids).await?,
        open: open_assignments_of(conn, Customers::These(ids), Read::Whole).await?,
        last_ends: last_ends(conn, Customers::These(ids)).await?,
    })
}

/// Of `customers`, the seller and start of each one's earliest PRIMARY.
pub async fn earliest_primaries(
    conn: &impl ConnectionTrait,
    customers: &[Uuid],
) -> Result<HashMap<Uuid, (Uuid, DateTime<Utc>)>, Error> {
    let mut out: HashMap<Uuid, (Uuid, DateTime<Utc>)> = HashMap::new();
    for chunk in customers.chunks(IDS_PER_QUERY) {
        let select = Query::select()
            .columns([t("customer_id"), t("seller_id"), t("valid_from")])
            .from(t("assignments"))
            .and_where(col("customer_id").is_in(chunk.iter().copied()))
            .and_where(col("role").eq(Role::Primary.as_str()))
            .to_owned();
        for row in conn.query_all(&select).await? {
            let customer: Uuid = row.try_get("", "customer_id")?;
            let seller: Uuid = row.try_get("", "seller_id")?;
            let from: DateTime<Utc> = row.try_get("", "valid_from")?;
            let entry = out.entry(customer).or_insert((seller, from));
            if from < entry.1 {
                *entry = (seller, from);
            }
        }
    }
    Ok(out)
}

/// Up to `limit` assignments of customer `id` after `after` (start, sequence), as
/// history lists them: by start, then as made.
pub async fn customer_history(
    conn: &impl ConnectionTrait,
    id: Uuid,
    after: Option<(DateTime<Utc>, i64)>,
    limit: u64,
) -> Result<Vec<Assignment>, Error> {
    let mut select = assignment_select()
        .and_where(col("customer_id").eq(id))
        .order_by(t("valid_from"), Order::Asc)
        .order_by(t("sequence"), Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some((from, sequence)) = after {
        select.and_where(
            col("valid_from")
                .gt(from)
                .or(col("valid_from").eq(from).and(col("sequence").gt(sequence))),
        );
    }
    conn.query_all(&select)
        .await?
        .iter()
        .map(assignment_of)
        .collect()
}

/// Up to `limit` assignments of seller `id` made after sequence `after`, as made.
pub async fn seller_history(
    conn: &impl ConnectionTrait,
    id: Uuid,
    after: i64,
    limit: u64,
) -> Result<Vec<Assignment>, Error> {
    let select = assignment_select()
        .and_where(col("seller_id").eq(id))
        .and_where(col("sequence").gt(after))
        .order_by(t("sequence"), Order::Asc)
        .limit(limit)
        .to_owned();
    conn.query_all(&select)
        .await?
        .iter()
        .map(assignment_of)
        .collect()
}

/// Which assignments a cartera listing wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CarteraFilter {
    pub seller: Uuid,
    pub as_of: DateTime<Utc>,
    pub role: Option<Role>,
    pub territory_code: Option<String>,
}

/// Up to `limit` assignments `filter` wants, after (customer, sequence) `after`, by
/// customer.
pub async fn cartera(
    conn: &impl ConnectionTrait,
    filter: &CarteraFilter,
    after: Option<(Uuid, i64)>,
    limit: u64,
    read: Read,
) -> Result<Vec<Assignment>, Error> {
    let mut select = read
        .select()
        .and_where(col("seller_id").eq(filter.seller))
        .and_where(col("valid_from").lte(filter.as_of))
        .and_where(
            col("valid_to")
                .is_null()
                .or(col("valid_to").gt(filter.as_of)),
        )
        .order_by(t("customer_id"), Order::Asc)
        .order_by(t("sequence"), Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some(role) = filter.role {
        select.and_where(col("role").eq(role.as_str()));
    }
    if let Some(code) = &filter.territory_code {
        select.and_where(col("territory_code").eq(code.as_str()));
    }
    if let Some((customer, sequence)) = after {
        select.and_where(
            col("customer_id").gt(customer).or(col("customer_id")
                .eq(customer)
                .and(col("sequence").gt(sequence))),
        );
    }
    conn.query_all(&select)
        .await?
        .iter()
        .map(assignment_of)
        .collect()
}

/// Up to `limit` open assignments after assignment id `after`, by id: of the house
/// seller's PRIMARY (`house`), or of cause OVERFLOW.
pub async fn open_violations(
    conn: &impl ConnectionTrait,
    house: bool,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Assignment>, Error> {
    let mut select = assignment_select()
        .and_where(col("valid_to").is_null())
        .order_by(t("id"), Order::Asc)
        .limit(limit)
        .to_owned();
    if house {
        select
            .and_where(col("seller_id").eq(crate::model::HOUSE_SELLER))
            .and_where(col("role").eq(Role::Primary.as_str()));
    } else {
        select.and_where(col("cause").eq(Cause::Overflow.as_str()));
    }
    if let Some(after) = after {
        select.and_where(col("id").gt(after));
    }
    conn.query_all(&select)
        .await?
        .iter()
        .map(assignment_of)
        .collect()
}

/// Up to `limit` live customers in no territory after `after`, by id.
pub async fn unassigned(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Customer>, Error> {
    let select = customer_select()
        .and_where(col("territory_code").is_null())
        .and_where(
            col("standing").is_in([Standing::Prospect.as_str(), Standing::Customer.as_str()]),
        )
        .to_owned();
    customers_after(conn, select, after, limit).await
}

/// Up to `limit` of the customers `select` picks, after id `after`, by id.
async fn customers_after(
    conn: &impl ConnectionTrait,
    select: SelectStatement,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Customer>, Error> {
    conn.query_all(&after_id(select, after, limit))
        .await?
        .iter()
        .map(customer_of)
        .collect()
}

/// `select`, of customers, limited to `limit` after id `after`, by id.
fn after_id(mut select: SelectStatement, after: Option<Uuid>, limit: u64) -> SelectStatement {
    select.order_by(t("id"), Order::Asc).limit(limit);
    if let Some(after) = after {
        select.and_where(col("id").gt(after));
    }
    select
}

/// The statement of [`customer_page`].
pub(crate) fn customer_page_select(after: Option<Uuid>, limit: u64) -> SelectStatement {
    after_id(customer_select(), after, limit)
}

/// Whether seller `seller` holds any assignment of customer `customer` now.
pub async fn holds(
    conn: &impl ConnectionTrait,
    seller: Uuid,
    customer: Uuid,
) -> Result<bool, Error> {
    let select = Query::select()
        .column(t("id"))
        .from(t("assignments"))
        .and_where(col("seller_id").eq(seller))
        .and_where(col("customer_id").eq(customer))
        .and_where(col("valid_to").is_null())
        .limit(1)
        .to_owned();
    Ok(conn.query_one(&select).await?.is_some())
}

/// Assignment `id`, if stored.
pub async fn assignment(
    conn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Assignment>, Error> {
    let select = assignment_select().and_where(col("id").eq(id)).to_owned();
    conn.query_one(&select)
        .await?
        .map(|r| assignment_of(&r))
        .transpose()
}

fn assignment_values(a: &Assignment) -> Result<Vec<Value>, Error> {
    Ok(vec![
        a.id.into(),
        a.customer.into(),
        a.seller.into(),
        a.role.as_str().into(),
        a.product_line.clone().into(),
        a.valid_from.into(),
        a.valid_to.into(),
        a.cause.as_str().into(),
        a.model.map(|m| m.0).into(),
        a.model.map(|m| m.1).into(),
        a.territory.clone().into(),
        a.actor.clone().into(),
        a.reason.clone().into(),
        a.pinned.into(),
        a.pin_expires_at.into(),
        a.weight.into(),
        a.end_cause.map(EndCause::as_str).into(),
        "".into(),
        super::explanation::encode(&a.explanation).into(),
        a.sequence.into(),
    ])
}

/// Writes the customers and assignments `book` changed (its page: see
/// [`Book::next_page`]).
pub async fn write_page(conn: &impl ConnectionTrait, book: &Book) -> Result<(), Error> {
    let (kept, moved): (Vec<&Customer>, Vec<&Customer>) = book
        .dirty
        .iter()
        .filter_map(|id| book.customers.get(id))
        .partition(|c| book.stored.get(&c.id) == Some(&c.indexed()));
    upsert_customers(conn, &kept, Indexed::Kept).await?;
    upsert_customers(conn, &moved, Indexed::Changed).await?;
    // Closes first: an opened assignment may take the open slot of a closed one. Those
    // closed at one instant for one cause (a realignment's, a handover's: all of them)
    // go in one statement per 500: one per row was most of an apply's time.
    let mut by_end: BTreeMap<(DateTime<Utc>, &'static str), Vec<Uuid>> = BTreeMap::new();
    for (id, end, cause) in &book.closed {
        by_end.entry((*end, cause.as_str())).or_default().push(*id);
    }
    for ((end, cause), ids) in by_end {
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let update = Query::update()
                .table(t("assignments"))
                .value(t("valid_to"), end)
                .value(t("end_cause"), cause)
                .and_where(col("id").is_in(chunk.iter().copied()))
                .and_where(col("valid_to").is_null())
                .to_owned();
            let closed = conn.execute(&update).await?.rows_affected();
            if closed != chunk.len() as u64 {
                return Err(Error::Internal(format!(
                    "{} of {} assignments were closed by another writer",
                    chunk.len() as u64 - closed,
                    chunk.len()
                )));
            }
        }
    }
    // In the order of the indexes by customer: in the feed's order each row went to a
    // random page of them (a third of an ingest's writing, docs/BENCHMARKS.md).
    let mut opened: Vec<&Assignment> = book.opened.iter().collect();
    opened.sort_unstable_by_key(|a| (a.customer, a.role.as_str(), a.product_line.as_str()));
    // 20 values a row.
    for chunk in opened.chunks(IDS_PER_QUERY) {
        let mut insert = Query::insert()
            .into_table(t("assignments"))
            .columns(ASSIGNMENT_COLUMNS.map(t))
            .to_owned();
        for a in chunk {
            insert
                .values(assignment_values(a)?.into_iter().map(Into::into))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// Writes the loads and turns of the sellers `roster` charged since `before`.
pub async fn write_desks(
    conn: &impl ConnectionTrait,
    roster: &Roster,
    before: &[Desk],
) -> Result<(), Error> {
    let was: HashMap<Uuid, &Desk> = before.iter().map(|d| (d.id, d)).collect();
    let changed: Vec<&Desk> = roster
        .desks()
        .iter()
        .filter(|desk| {
            !was.get(&desk.id)
                .is_some_and(|w| w.load == desk.load && w.last_chosen == desk.last_chosen)
        })
        .collect();
    // One statement per thousand sellers: a feed batch moves most desks, and 2,000
    // single-row updates cost it as many round trips to the database.
    for chunk in changed.chunks(MAX_ROWS_PER_VALUES) {
        let rows = chunk
            .iter()
            .map(|d| [d.id.into(), d.load.into(), d.last_chosen.into()]);
        let mut raw = Raw::new(conn.get_database_backend(), chunk.len());
        raw.with_values("id, load, last_chosen", rows).text(
            "UPDATE sellers SET load = v.load, last_chosen = v.last_chosen \
             FROM v WHERE sellers.id = v.id",
        );
        conn.execute_raw(raw.statement()).await?;
    }
    Ok(())
}

/// How many customers the feed has described.
pub async fn customer_count(conn: &impl ConnectionTrait) -> Result<u64, Error> {
    let select = Query::select()
        .expr_as(Expr::col(t("id")).count(), t("n"))
        .from(t("cartera_customers"))
        .to_owned();
    let n: i64 = match conn.query_one(&select).await? {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Up to `limit` customers after `after`, by id.
pub async fn customer_page(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Customer>, Error> {
    customers_after(conn, customer_select(), after, limit).await
}

const CHANGE_COLUMNS: [&str; 9] = [
    "sequence",
    "assignment_id",
    "change",
    "customer_id",
    "seller_id",
    "role",
    "product_line",
    "at",
    "cause",
];

impl OutboxRecord for Logged {
    const COLUMNS: &'static [&'static str] = &CHANGE_COLUMNS;

    fn sequence(&self) -> i64 {
        self.sequence
    }

    fn values(&self) -> Result<Vec<Value>, Error> {
        Ok(vec![
            self.sequence.into(),
            self.assignment.into(),
            if self.opened { "OPENED" } else { "CLOSED" }.into(),
            self.customer.into(),
            self.seller.into(),
            self.role.as_str().into(),
            self.product_line.clone().into(),
            self.at.into(),
            self.cause.to_owned().into(),
        ])
    }

    fn decode(row: &QueryResult) -> Result<Self, Error> {
        let change: String = row.try_get("", "change")?;
        let role: String = row.try_get("", "role")?;
        let cause: String = row.try_get("", "cause")?;
        let known = Cause::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(EndCause::ALL.iter().map(|c| c.as_str()))
            .find(|c| *c == cause)
            .ok_or_else(|| corrupt("assignment change cause", &cause))?;
        Ok(Logged {
            sequence: row.try_get("", "sequence")?,
            assignment: row.try_get("", "assignment_id")?,
            opened: change == "OPENED",
            customer: row.try_get("", "customer_id")?,
            seller: row.try_get("", "seller_id")?,
            role: Role::parse(&role).ok_or_else(|| corrupt("assignment role", &role))?,
            product_line: row.try_get("", "product_line")?,
            at: row.try_get("", "at")?,
            cause: known,
        })
    }
}

/// What an applied realignment did, as kept by its preview's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub model: Uuid,
    pub archived: Option<Uuid>,
    pub customers: i64,
    pub placed: i64,
    pub moved: i64,
    pub overflowed: i64,
    pub to_house: i64,
    pub pins_held: i64,
    pub at: DateTime<Utc>,
}

const APPLIED_COLUMNS: [&str; 10] = [
    "preview_token",
    "model_id",
    "archived_model_id",
    "customers",
    "placed",
    "moved",
    "overflowed",
    "to_house",
    "pins_held",
    "applied_at",
];

/// The realignment applied from preview `token`, if any.
pub async fn applied(conn: &impl ConnectionTrait, token: &str) -> Result<Option<Applied>, Error> {
    let select = Query::select()
        .columns(APPLIED_COLUMNS.map(t))
        .from(t("realignments"))
        .and_where(col("preview_token").eq(token))
        .to_owned();
    let Some(row) = conn.query_one(&select).await? else {
        return Ok(None);
    };
    Ok(Some(Applied {
        model: row.try_get("", "model_id")?,
        archived: row.try_get("", "archived_model_id")?,
        customers: row.try_get("", "customers")?,
        placed: row.try_get("", "placed")?,
        moved: row.try_get("", "moved")?,
        overflowed: row.try_get("", "overflowed")?,
        to_house: row.try_get("", "to_house")?,
        pins_held: row.try_get("", "pins_held")?,
        at: row.try_get("", "applied_at")?,
    }))
}

/// Records that preview `token` was applied.
pub async fn record_applied(
    conn: &impl ConnectionTrait,
    token: &str,
    a: &Applied,
) -> Result<(), Error> {
    let mut insert = Query::insert()
        .into_table(t("realignments"))
        .columns(APPLIED_COLUMNS.map(t))
        .to_owned();
    insert
        .values([
            token.into(),
            a.model.into(),
            a.archived.into(),
            a.customers.into(),
            a.placed.into(),
            a.moved.into(),
            a.overflowed.into(),
            a.to_house.into(),
            a.pins_held.into(),
            a.at.into(),
        ])
        .map_err(|e| Error::Internal(e.to_string()))?;
    conn.execute(&insert).await?;
    Ok(())
}

/// Up to `limit` customers holding an open assignment of seller `seller`, after
/// `after`, by id.
pub async fn seller_customers(
    conn: &impl ConnectionTrait,
    seller: Uuid,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Uuid>, Error> {
    let mut select = Query::select()
        .distinct()
        .expr_as(Expr::col(t("customer_id")), t("id"))
        .from(t("assignments"))
        .and_where(col("seller_id").eq(seller))
        .and_where(col("valid_to").is_null())
        .order_by(t("customer_id"), Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some(after) = after {
        select.and_where(col("customer_id").gt(after));
    }
    ids_of(conn, &select).await
}

/// Up to `limit` live prospects (never bought) placed in one of `codes`, after id
/// `after`, by id; `unclaimed`: only those without a PROSPECTOR.
pub async fn prospects(
    conn: &impl ConnectionTrait,
    codes: &[String],
    unclaimed: bool,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Customer>, Error> {
    let c = |name: &str| Expr::col((t("c"), t(name)));
    let mut select = Query::select()
        .columns(CUSTOMER_COLUMNS.map(|name| (t("c"), t(name))))
        .from_as(t("cartera_customers"), t("c"))
        .and_where(c("territory_code").is_in(codes.iter().cloned()))
        .and_where(c("standing").eq(Standing::Prospect.as_str()))
        .and_where(c("first_purchase_at").is_null())
        .order_by((t("c"), t("id")), Order::Asc)
        .limit(limit)
        .to_owned();
    if unclaimed {
        select.and_where(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from_as(t("assignments"), t("a"))
                    .and_where(Expr::col((t("a"), t("customer_id"))).equals((t("c"), t("id"))))
                    .and_where(Expr::col((t("a"), t("role"))).eq(Role::Prospector.as_str()))
                    .and_where(Expr::col((t("a"), t("valid_to"))).is_null())
                    .to_owned(),
            )
            .not(),
        );
    }
    if let Some(after) = after {
        select.and_where(c("id").gt(after));
    }
    conn.query_all(&select)
        .await?
        .iter()
        .map(customer_of)
        .collect()
}

/// Up to `limit` customers holding an open assignment of seller `seller`, as its
/// worklist orders them: (urgency, customer) after `after`.
pub async fn worklist(
    conn: &impl ConnectionTrait,
    seller: Uuid,
    after: Option<(i32, Uuid)>,
    limit: u64,
) -> Result<Vec<(i32, Uuid)>, Error> {
    use sea_orm::sea_query::JoinType;
    let a = |name: &str| Expr::col((t("a"), t(name)));
    let c = |name: &str| Expr::col((t("c"), t(name)));
    let mut select = Query::select()
        .distinct()
        .column((t("c"), t("urgency")))
        .column((t("c"), t("id")))
        .from_as(t("assignments"), t("a"))
        .join_as(
            JoinType::InnerJoin,
            t("cartera_customers"),
            t("c"),
            c("id").equals((t("a"), t("customer_id"))),
        )
        .and_where(a("seller_id").eq(seller))
        .and_where(a("valid_to").is_null())
        .order_by((t("c"), t("urgency")), Order::Asc)
        .order_by((t("c"), t("id")), Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some((urgency, id)) = after {
        select.and_where(
            c("urgency")
                .gt(urgency)
                .or(c("urgency").eq(urgency).and(c("id").gt(id))),
        );
    }
    conn.query_all(&select)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "urgency")?, row.try_get("", "id")?)))
        .collect()
}
