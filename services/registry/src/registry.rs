//! The registry's rules: what a create, update, purchase, return or merge may do, the
//! status a first purchase gives, idempotency, and the events each write appends.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use clientela_domain::Labeled;
use clientela_domain::ids::{ComplaintId, CustomerId, PurchaseId, ReferralId, ReturnId, SurveyId};
use clientela_runtime::cache::GenerationCache;
use clientela_runtime::error::check_etag;
use clientela_runtime::idempotency::RequestKey;
use clientela_runtime::{Conn, Db, Error, WriteTx};
use tokio::sync::watch;

use crate::model::WireEncoder;
use crate::model::input::{NewComplaint, NewPurchase, NewReturn, NewSurvey};
use crate::model::query::{Cursor, CustomerFilter, HistoryCursor, OrderBy, Owner};
use crate::model::{
    Complaint, Customer, CustomerFields, EventPayload, FieldValue, Purchase, Referral, Return,
    ReturnLine, Status, Survey,
};
use crate::store::customers;
use crate::store::events;
use crate::store::history::{self, Moved};

/// How far in the future an `occur_time` may be: clocks differ a little.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// What a merge did (or would do).
#[derive(Debug, Clone)]
pub struct MergeOutcome {
    /// Survivor after the merge.
    pub survivor: Customer,
    pub merged: Customer,
    /// Moved records.
    pub moved: Moved,
}

/// The registry's logic over its database.
#[derive(Clone, Debug)]
pub struct Registry {
    db: Db,
    events: events::Events,
    /// GetCustomer's cache (SQLite only: see [`GenerationCache`]).
    cache: Option<Arc<GenerationCache<CustomerId, Arc<Customer>>>>,
    wire: Option<WireEncoder>,
}

pub use clientela_runtime::time::{now, truncate_micros};

fn check_not_future(at: DateTime<Utc>, now: DateTime<Utc>, field: &str) -> Result<(), Error> {
    if at > now + CLOCK_SKEW {
        return Err(Error::invalid(field, "must not be in the future"));
    }
    Ok(())
}

fn require_live(c: &Customer, action: &str) -> Result<(), Error> {
    match c.status {
        Status::Prospect | Status::Customer => Ok(()),
        Status::Archived => Err(Error::precondition(
            "CUSTOMER_ARCHIVED",
            format!("customers/{} is archived: restore it to {action}", c.id),
        )),
        Status::Merged => Err(Error::precondition(
            "CUSTOMER_MERGED",
            format!(
                "customers/{} was merged into customers/{}: {action} there",
                c.id,
                c.merged_into.map(|m| m.to_string()).unwrap_or_default()
            ),
        )),
    }
}

/// The error of a write that lost an optimistic-concurrency race.
fn concurrent(what: &str) -> Error {
    Error::aborted(
        "CONCURRENT_UPDATE",
        format!("the {what} changed concurrently; retry"),
    )
}

/// Writes a changed customer under optimistic concurrency: bumps its version and
/// `updated_at`, and fails with ABORTED if someone else wrote it since it was read.
async fn save_customer(
    conn: &impl Conn,
    customer: &mut Customer,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let expected = customer.version;
    customers::touch(customer, now);
    if customers::update(conn, customer, expected).await? {
        Ok(())
    } else {
        Err(concurrent("customer"))
    }
}

impl Registry {
    /// The logic over a migrated database.
    pub async fn new(db: Db) -> Result<Self, Error> {
        let events = events::outbox(db.clone()).await?;
        Ok(Self {
            db,
            events,
            cache: None,
            wire: None,
        })
    }

    /// Caches up to `capacity` customers for [`Registry::get_customer_shared`] when the
    /// database is SQLite, whose one writer is this process (see [`GenerationCache`]). On
    /// PostgreSQL other replicas write too, so there is no cache; neither with 0.
    pub fn with_customer_cache(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0 && self.db.single_writer())
            .then(|| Arc::new(GenerationCache::new(capacity)));
        self
    }

    /// Stores each new event in its wire form too, encoded by `encode`, so the feed sends
    /// stored bytes ([`Registry::events_wire_after`]).
    pub fn with_wire_encoder(mut self, encode: WireEncoder) -> Self {
        self.wire = Some(encode);
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The feed sequence at which a write that just returned is visible: for one that
    /// appended its event, the last this process committed (at least its own); for one
    /// that appended nothing (a replay, a dry run), the feed's head as stored, which may
    /// be another replica's.
    pub async fn visible_at(&self, appended: bool) -> Result<i64, Error> {
        if appended {
            Ok(self.events.committed())
        } else {
            self.events.last_sequence().await
        }
    }

    /// Wakes feed watchers when a write commits.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.events.subscribe()
    }

    /// Loads a customer for writing: its row stays locked until the transaction ends.
    async fn load(&self, tx: &WriteTx, id: CustomerId) -> Result<Customer, Error> {
        load(tx.conn(), id).await
    }

    /// Appends the events and commits, then wakes the watchers.
    async fn commit(
        &self,
        tx: WriteTx,
        payloads: Vec<EventPayload>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if let Some(cache) = &self.cache {
            let changed: Vec<CustomerId> = payloads.iter().flat_map(changed_customers).collect();
            if !changed.is_empty() {
                // Registered before the outbox's wake-up, so it runs first: a watcher that
                // sees the event and reads the customer never reads the cached one.
                let cache = cache.clone();
                tx.after_commit(move || cache.invalidate(changed));
            }
        }
        events::append(&self.events, &tx, payloads, now, self.wire.as_ref()).await?;
        Ok(tx.commit().await?)
    }

    // ---- customers ----

    /// Creates a customer; with a `request_id` seen before, returns that customer and false.
    pub async fn create_customer(
        &self,
        fields: CustomerFields,
        request_id: Option<String>,
    ) -> Result<(Customer, bool), Error> {
        single(self.create_customers(vec![(fields, request_id)]).await)
    }

    /// Creates customers in one transaction, each in its own savepoint: a row that fails
    /// leaves the others untouched. Results come in the order of the rows; `Err` as a
    /// whole means nothing was committed.
    pub async fn create_customers(
        &self,
        rows: Vec<(CustomerFields, Option<String>)>,
    ) -> Result<Vec<Result<(Customer, bool), Error>>, Error> {
        let now = now();
        let tx = self.db.begin_write().await?;
        let mut results = Vec::with_capacity(rows.len());
        let mut payloads = Vec::new();
        for (fields, request_id) in rows {
            let request = match request_id
                .map(|id| RequestKey::new(id, &fields))
                .transpose()
            {
                Ok(request) => request,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            let savepoint = tx.savepoint().await?;
            match create_in(savepoint.conn(), fields, request.as_ref(), now).await {
                Ok((customer, created)) => {
                    savepoint.commit().await?;
                    if created {
                        payloads.push(EventPayload::CustomerCreated(customer.clone()));
                    }
                    results.push(Ok((customer, created)));
                }
                Err(e) => {
                    savepoint.rollback().await?;
                    // A concurrent create with the same request_id won the race: same answer.
                    let existing = match (&e, &request) {
                        (Error::AlreadyExists { .. }, Some(key)) => {
                            customers::get_by_request_id(tx.conn(), &key.id).await?
                        }
                        _ => None,
                    };
                    results.push(match (existing, &request) {
                        (Some((c, fingerprint)), Some(key)) => {
                            key.check_replay(fingerprint).map(|()| (c, false))
                        }
                        _ => Err(e),
                    });
                }
            }
        }
        self.commit(tx, payloads, now).await?;
        Ok(results)
    }

    /// One customer, whatever its status, shared: from the cache when there is one.
    pub async fn get_customer_shared(&self, id: CustomerId) -> Result<Arc<Customer>, Error> {
        let Some(cache) = &self.cache else {
            return self.get_customer(id).await.map(Arc::new);
        };
        if let Some(customer) = cache.get(&id) {
            return Ok(customer);
        }
        let generation = cache.generation();
        let customer = Arc::new(self.get_customer(id).await?);
        cache.fill(generation, [(id, customer.clone())]);
        Ok(customer)
    }

    /// One customer, whatever its status.
    pub async fn get_customer(&self, id: CustomerId) -> Result<Customer, Error> {
        customers::get(self.db.conn(), id)
            .await?
            .ok_or_else(|| Error::not_found("customer", format!("customers/{id}")))
    }

    /// A page of customers.
    pub async fn list_customers(
        &self,
        filter: &CustomerFilter,
        order: OrderBy,
        descending: bool,
        after: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<Customer>, Error> {
        // Planned per call: how selective a filter is decides the plan.
        let tx = self.db.begin_planned_read().await?;
        let page = customers::list(&tx, filter, order, descending, after, limit).await?;
        tx.commit().await?;
        Ok(page)
    }

    /// Writes the given fields. Archived and merged customers are read-only.
    pub async fn update_customer(
        &self,
        id: CustomerId,
        patch: Vec<FieldValue>,
        etag: Option<&str>,
    ) -> Result<Customer, Error> {
        let tx = self.db.begin_write().await?;
        let mut customer = self.load(&tx, id).await?;
        check_etag(&customer.etag(), etag, "customer")?;
        require_live(&customer, "update it")?;
        let before = customer.fields.clone();
        for value in patch {
            customer.fields.apply(value);
        }
        if customer.fields == before {
            return Ok(customer);
        }
        let now = now();
        save_customer(tx.conn(), &mut customer, now).await?;
        self.commit(
            tx,
            vec![EventPayload::CustomerUpdated(customer.clone())],
            now,
        )
        .await?;
        Ok(customer)
    }

    async fn set_status(
        &self,
        id: CustomerId,
        etag: Option<&str>,
        from: &[Status],
        to: Status,
        reason: &'static str,
    ) -> Result<Customer, Error> {
        let tx = self.db.begin_write().await?;
        let mut customer = self.load(&tx, id).await?;
        check_etag(&customer.etag(), etag, "customer")?;
        if customer.status == to {
            return Ok(customer);
        }
        if !from.contains(&customer.status) {
            return Err(Error::precondition(
                reason,
                format!("customers/{id} is {}", customer.status.code()),
            ));
        }
        let now = now();
        customer.status = to;
        save_customer(tx.conn(), &mut customer, now).await?;
        self.commit(
            tx,
            vec![EventPayload::CustomerUpdated(customer.clone())],
            now,
        )
        .await?;
        Ok(customer)
    }

    /// Soft-deletes a live customer (idempotent).
    pub async fn archive_customer(
        &self,
        id: CustomerId,
        etag: Option<&str>,
    ) -> Result<Customer, Error> {
        self.set_status(
            id,
            etag,
            &[Status::Prospect, Status::Customer],
            Status::Archived,
            "CUSTOMER_NOT_LIVE",
        )
        .await
    }

    /// Brings an archived customer back as PROSPECT or CUSTOMER (by its purchases).
    /// Fails if a live customer took its tax id or external id meanwhile.
    pub async fn restore_customer(
        &self,
        id: CustomerId,
        etag: Option<&str>,
    ) -> Result<Customer, Error> {
        let bought = history::has_purchases(self.db.conn(), id).await?;
        let to = if bought {
            Status::Customer
        } else {
            Status::Prospect
        };
        let current = self.get_customer(id).await?;
        if current.status.is_live() {
            check_etag(&current.etag(), etag, "customer")?;
            return Ok(current);
        }
        self.set_status(id, etag, &[Status::Archived], to, "CUSTOMER_NOT_ARCHIVED")
            .await
            .map_err(|e| match e {
                Error::AlreadyExists { .. } => Error::already_exists(
                    "CUSTOMER_KEY_TAKEN",
                    format!("a live customer now has the tax id or external id of customers/{id}"),
                ),
                other => other,
            })
    }

    /// Live customers sharing a key with `id`.
    pub async fn find_duplicates(
        &self,
        id: CustomerId,
    ) -> Result<Vec<(Customer, Vec<&'static str>)>, Error> {
        let customer = self.get_customer(id).await?;
        customers::find_duplicates(self.db.conn(), &customer).await
    }

    /// Folds `merged` into `survivor`. With `dry_run`, everything runs in a transaction
    /// that is rolled back, so the report is exactly what the merge would do.
    pub async fn merge_customers(
        &self,
        survivor: CustomerId,
        merged: CustomerId,
        dry_run: bool,
    ) -> Result<MergeOutcome, Error> {
        if survivor == merged {
            return Err(Error::invalid("merged", "must differ from survivor"));
        }
        let tx = self.db.begin_write().await?;
        // Lock both rows in id order, so two opposite merges cannot deadlock.
        let (mut keep, mut gone) = if survivor < merged {
            let keep = self.load(&tx, survivor).await?;
            (keep, self.load(&tx, merged).await?)
        } else {
            let gone = self.load(&tx, merged).await?;
            (self.load(&tx, survivor).await?, gone)
        };
        require_live(&keep, "merge into it")?;
        require_live(&gone, "merge it")?;
        let now = now();
        let moved = history::move_history(tx.conn(), merged, survivor).await?;

        // The tombstone first, so its unique keys no longer block the survivor.
        let gone_was_customer = gone.status == Status::Customer;
        gone.status = Status::Merged;
        gone.merged_into = Some(survivor);
        save_customer(tx.conn(), &mut gone, now).await?;
        keep.fields.absorb(&gone.fields);
        if gone_was_customer || !moved.purchases.is_empty() {
            keep.status = Status::Customer;
        }
        save_customer(tx.conn(), &mut keep, now).await?;
        let outcome = MergeOutcome {
            survivor: keep.clone(),
            merged: gone.clone(),
            moved: moved.clone(),
        };
        if dry_run {
            // Dropping the transaction rolls it back.
            drop(tx);
            return Ok(outcome);
        }
        self.commit(
            tx,
            vec![
                EventPayload::CustomersMerged {
                    survivor,
                    merged,
                    moved_purchases: moved.purchases,
                },
                EventPayload::CustomerUpdated(gone),
                EventPayload::CustomerUpdated(keep),
            ],
            now,
        )
        .await?;
        Ok(outcome)
    }

    // ---- purchases and returns ----

    /// Records a purchase; an order id recorded before returns the first purchase and
    /// false. The first purchase makes a PROSPECT a CUSTOMER.
    pub async fn record_purchase(
        &self,
        customer_id: CustomerId,
        new: NewPurchase,
    ) -> Result<(Purchase, bool), Error> {
        single(self.record_purchases(vec![(customer_id, new)]).await)
    }

    /// Records purchases in one transaction. Results come in the order of the rows, each
    /// exactly what [`Registry::record_purchase`] would answer for it; `Err` as a whole
    /// means nothing was committed.
    ///
    /// The batch runs set-based (one query for its order ids, one for its customers,
    /// multi-row inserts). Only if that meets a concurrent writer (an order id inserted
    /// since it looked, on PostgreSQL) does it roll back and run again row by row, each
    /// row in its own savepoint. (Not a savepoint around the set-based run: on SQLite a
    /// savepoint copies every page it changes to a sub-journal, a third of the cost.)
    pub async fn record_purchases(
        &self,
        rows: Vec<(CustomerId, NewPurchase)>,
    ) -> Result<Vec<Result<(Purchase, bool), Error>>, Error> {
        let now = now();
        let tx = self.db.begin_write().await?;
        match purchases_set_based(tx.conn(), &rows, now).await {
            Ok((results, payloads)) => {
                self.commit(tx, payloads, now).await?;
                return Ok(results);
            }
            Err(Error::AlreadyExists { .. } | Error::Aborted { .. }) => {
                tracing::debug!(
                    rows = rows.len(),
                    "a purchase batch met a concurrent writer; row by row"
                );
                tx.rollback().await?;
            }
            Err(e) => return Err(e),
        }
        let tx = self.db.begin_write().await?;
        let (results, payloads) = purchases_row_by_row(&tx, rows, now).await?;
        self.commit(tx, payloads, now).await?;
        Ok(results)
    }

    /// A page of purchases, newest first.
    pub async fn list_purchases(
        &self,
        owner: Owner,
        after: Option<&HistoryCursor>,
        limit: u64,
    ) -> Result<Vec<Purchase>, Error> {
        if let Owner::Customer(id) = owner {
            self.get_customer(id).await?;
        }
        history::list_purchases(self.db.conn(), owner, after, limit).await
    }

    /// Records a return against a purchase of `customer_id`: never more than was bought
    /// minus what came back already.
    pub async fn record_return(
        &self,
        customer_id: CustomerId,
        purchase_id: PurchaseId,
        new: NewReturn,
    ) -> Result<(Return, Purchase, bool), Error> {
        let now = now();
        check_not_future(new.occurred_at, now, "return.occur_time")?;
        let purchase_name = format!("customers/{customer_id}/purchases/{purchase_id}");
        if let Some(existing) = history::return_by_return_id(self.db.conn(), &new.return_id).await?
        {
            if existing.purchase_id != purchase_id {
                return Err(Error::already_exists(
                    "RETURN_ID_TAKEN",
                    format!(
                        "return_id {} was recorded against another purchase",
                        new.return_id
                    ),
                ));
            }
            let purchase = history::get_purchase(self.db.conn(), purchase_id)
                .await?
                .ok_or_else(|| Error::not_found("purchase", purchase_name))?;
            return Ok((existing, purchase, false));
        }
        let tx = self.db.begin_write().await?;
        let mut purchase = history::get_purchase_for_update(tx.conn(), purchase_id)
            .await?
            .filter(|p| p.customer_id == customer_id)
            .ok_or_else(|| Error::not_found("purchase", purchase_name.clone()))?;
        if new.occurred_at < purchase.occurred_at {
            return Err(Error::invalid(
                "return.occur_time",
                "must not be before the purchase",
            ));
        }
        let lines = if new.lines.is_empty() {
            purchase
                .lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.quantity > l.returned_quantity)
                .map(|(i, l)| ReturnLine {
                    line_number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    quantity: l.quantity - l.returned_quantity,
                })
                .collect()
        } else {
            new.lines.clone()
        };
        if lines.is_empty() {
            return Err(Error::precondition(
                "NOTHING_TO_RETURN",
                format!("everything of {purchase_name} was returned already"),
            ));
        }
        let mut amount: i64 = 0;
        for (i, line) in lines.iter().enumerate() {
            let index = usize::try_from(line.line_number)
                .unwrap_or(usize::MAX)
                .wrapping_sub(1);
            let Some(bought) = purchase.lines.get_mut(index) else {
                return Err(Error::invalid(
                    format!("return.lines[{i}].line_number"),
                    format!("the purchase has lines 1 to {}", purchase.lines.len()),
                ));
            };
            let left = bought.quantity - bought.returned_quantity;
            if line.quantity > left {
                return Err(Error::precondition(
                    "RETURN_EXCEEDS_PURCHASE",
                    format!(
                        "line {} of {purchase_name}: {} units would come back but only {left} of {} bought remain",
                        line.line_number, line.quantity, bought.quantity
                    ),
                ));
            }
            bought.returned_quantity += line.quantity;
            amount = line
                .quantity
                .checked_mul(bought.unit_price_minor)
                .and_then(|a| a.checked_add(amount))
                .ok_or_else(|| Error::invalid("return.lines", "the amount overflows"))?;
        }
        purchase.returned_minor += amount;
        let ret = Return {
            id: ReturnId::new(),
            customer_id,
            purchase_id,
            return_id: new.return_id,
            occurred_at: new.occurred_at,
            lines,
            currency_code: purchase.currency_code.clone(),
            amount_minor: amount,
            reason: new.reason,
            created_at: now,
        };
        history::insert_return(tx.conn(), &ret).await?;
        history::update_purchase_returns(tx.conn(), &purchase).await?;
        self.commit(tx, vec![EventPayload::ReturnRecorded(ret.clone())], now)
            .await?;
        Ok((ret, purchase, true))
    }

    /// A page of returns, newest first.
    pub async fn list_returns(
        &self,
        customer: CustomerId,
        after: Option<&HistoryCursor>,
        limit: u64,
    ) -> Result<Vec<Return>, Error> {
        self.get_customer(customer).await?;
        history::list_returns(self.db.conn(), customer, after, limit).await
    }

    // ---- surveys, complaints, referrals ----

    /// Records a survey answer.
    pub async fn record_survey(
        &self,
        customer_id: CustomerId,
        new: NewSurvey,
        request_id: Option<String>,
    ) -> Result<(Survey, bool), Error> {
        let NewSurvey {
            kind,
            score,
            occurred_at,
            comment,
        } = new;
        let now = now();
        check_not_future(occurred_at, now, "survey.occur_time")?;
        // What the request says, so the same request_id with another survey is refused.
        let body = (
            customer_id.as_uuid(),
            kind.code(),
            score,
            occurred_at.timestamp_micros(),
            &comment,
        );
        let request = request_id
            .map(|id| RequestKey::new(id, &body))
            .transpose()?;
        if let Some(key) = &request
            && let Some((existing, fingerprint)) =
                history::survey_by_request_id(self.db.conn(), &key.id).await?
        {
            key.check_replay(fingerprint)?;
            return Ok((existing, false));
        }
        let tx = self.db.begin_write().await?;
        let customer = self.load(&tx, customer_id).await?;
        require_live(&customer, "record surveys")?;
        let survey = Survey {
            id: SurveyId::new(),
            customer_id,
            kind,
            score,
            occurred_at,
            comment,
            created_at: now,
        };
        history::insert_survey(tx.conn(), &survey, request.as_ref()).await?;
        self.commit(tx, vec![EventPayload::SurveyRecorded(survey.clone())], now)
            .await?;
        Ok((survey, true))
    }

    /// A page of surveys, newest first.
    pub async fn list_surveys(
        &self,
        customer: CustomerId,
        after: Option<&HistoryCursor>,
        limit: u64,
    ) -> Result<Vec<Survey>, Error> {
        self.get_customer(customer).await?;
        history::list_surveys(self.db.conn(), customer, after, limit).await
    }

    /// Opens a complaint.
    pub async fn open_complaint(
        &self,
        customer_id: CustomerId,
        new: NewComplaint,
        request_id: Option<String>,
    ) -> Result<(Complaint, bool), Error> {
        let NewComplaint {
            subject,
            description,
            opened_at,
        } = new;
        // What the request says (an open time left out stays left out: a retry later
        // is the same request).
        let body = (
            customer_id.as_uuid(),
            &subject,
            &description,
            opened_at.map(|t| t.timestamp_micros()),
        );
        let request = request_id
            .map(|id| RequestKey::new(id, &body))
            .transpose()?;
        let now = now();
        let opened_at = opened_at.unwrap_or(now);
        check_not_future(opened_at, now, "complaint.open_time")?;
        if let Some(key) = &request
            && let Some((existing, fingerprint)) =
                history::complaint_by_request_id(self.db.conn(), &key.id).await?
        {
            key.check_replay(fingerprint)?;
            return Ok((existing, false));
        }
        let tx = self.db.begin_write().await?;
        let customer = self.load(&tx, customer_id).await?;
        require_live(&customer, "open complaints")?;
        let complaint = Complaint {
            id: ComplaintId::new(),
            customer_id,
            subject,
            description,
            resolved: false,
            opened_at,
            resolved_at: None,
            resolution: String::new(),
            version: 1,
        };
        history::insert_complaint(tx.conn(), &complaint, request.as_ref()).await?;
        self.commit(
            tx,
            vec![EventPayload::ComplaintOpened(complaint.clone())],
            now,
        )
        .await?;
        Ok((complaint, true))
    }

    /// Resolves an open complaint.
    pub async fn resolve_complaint(
        &self,
        customer_id: CustomerId,
        complaint_id: ComplaintId,
        resolution: String,
        etag: Option<&str>,
    ) -> Result<Complaint, Error> {
        let name = format!("customers/{customer_id}/complaints/{complaint_id}");
        let tx = self.db.begin_write().await?;
        let mut complaint = history::get_complaint_for_update(tx.conn(), complaint_id)
            .await?
            .filter(|c| c.customer_id == customer_id)
            .ok_or_else(|| Error::not_found("complaint", name.clone()))?;
        check_etag(&complaint.etag(), etag, "complaint")?;
        if complaint.resolved {
            return Err(Error::precondition(
                "COMPLAINT_RESOLVED",
                format!("{name} is resolved already"),
            ));
        }
        let now = now();
        let expected = complaint.version;
        complaint.resolved = true;
        complaint.resolved_at = Some(now.max(complaint.opened_at));
        complaint.resolution = resolution;
        complaint.version += 1;
        if !history::resolve_complaint(tx.conn(), &complaint, expected).await? {
            return Err(concurrent("complaint"));
        }
        self.commit(
            tx,
            vec![EventPayload::ComplaintResolved(complaint.clone())],
            now,
        )
        .await?;
        Ok(complaint)
    }

    /// A page of complaints, newest first.
    pub async fn list_complaints(
        &self,
        customer: CustomerId,
        after: Option<&HistoryCursor>,
        limit: u64,
    ) -> Result<Vec<Complaint>, Error> {
        self.get_customer(customer).await?;
        history::list_complaints(self.db.conn(), customer, after, limit).await
    }

    /// Records that `referrer` brought `referred`. A customer is referred once.
    pub async fn record_referral(
        &self,
        referrer: CustomerId,
        referred: CustomerId,
        occurred_at: DateTime<Utc>,
    ) -> Result<(Referral, bool), Error> {
        let now = now();
        check_not_future(occurred_at, now, "referral.occur_time")?;
        if referrer == referred {
            return Err(Error::invalid(
                "referral.referred",
                "a customer cannot refer itself",
            ));
        }
        if let Some(existing) = history::referral_of(self.db.conn(), referred).await? {
            if existing.referrer_id == referrer {
                return Ok((existing, false));
            }
            return Err(Error::already_exists(
                "ALREADY_REFERRED",
                format!(
                    "customers/{referred} was referred by customers/{} already",
                    existing.referrer_id
                ),
            ));
        }
        let tx = self.db.begin_write().await?;
        let who = self.load(&tx, referrer).await?;
        require_live(&who, "record referrals")?;
        let whom = customers::get(tx.conn(), referred).await?.ok_or_else(|| {
            Error::invalid(
                "referral.referred",
                format!("customers/{referred} does not exist"),
            )
        })?;
        require_live(&whom, "record its referral")?;
        let referral = Referral {
            id: ReferralId::new(),
            referrer_id: referrer,
            referred_id: referred,
            occurred_at,
            created_at: now,
        };
        history::insert_referral(tx.conn(), &referral).await?;
        self.commit(
            tx,
            vec![EventPayload::ReferralRecorded(referral.clone())],
            now,
        )
        .await?;
        Ok((referral, true))
    }

    /// A page of the referrals a customer made, newest first.
    pub async fn list_referrals(
        &self,
        referrer: CustomerId,
        after: Option<&HistoryCursor>,
        limit: u64,
    ) -> Result<Vec<Referral>, Error> {
        self.get_customer(referrer).await?;
        history::list_referrals(self.db.conn(), referrer, after, limit).await
    }

    // ---- feed ----

    /// Up to `limit` events after `after`.
    pub async fn events_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<crate::model::Event>, Error> {
        events::read_after(&self.events, after, limit).await
    }

    /// Up to `limit` events after `after` as `(sequence, wire form)`, encoded by `encode`
    /// where the stored row has no wire form.
    pub async fn events_wire_after(
        &self,
        after: i64,
        limit: u64,
        encode: &WireEncoder,
    ) -> Result<Vec<(i64, Vec<u8>)>, Error> {
        events::read_wire_after(&self.events, after, limit, encode).await
    }
}

/// The customers whose stored row an event's write changed.
fn changed_customers(payload: &EventPayload) -> Vec<CustomerId> {
    match payload {
        EventPayload::CustomerCreated(c) | EventPayload::CustomerUpdated(c) => vec![c.id],
        EventPayload::CustomersMerged {
            survivor, merged, ..
        } => vec![*survivor, *merged],
        _ => Vec::new(),
    }
}

/// The one result of a batch of one.
fn single<T>(batch: Result<Vec<Result<T, Error>>, Error>) -> Result<T, Error> {
    batch?
        .pop()
        .unwrap_or_else(|| Err(Error::Internal("a batch of one returned nothing".into())))
}

/// Outcomes of a batch of purchases, in row order, and the events they append.
type PurchaseOutcomes = (Vec<Result<(Purchase, bool), Error>>, Vec<EventPayload>);

/// [`Registry::record_purchases`] with a constant number of statements per batch. Rows
/// the caller got wrong fail alone; a database error (a concurrent writer's order id)
/// fails the batch.
async fn purchases_set_based(
    conn: &impl Conn,
    rows: &[(CustomerId, NewPurchase)],
    now: DateTime<Utc>,
) -> Result<PurchaseOutcomes, Error> {
    let totals: Vec<Result<i64, Error>> = rows
        .iter()
        .map(|(_, new)| purchase_total(new, now))
        .collect();
    let order_ids: Vec<&str> = rows.iter().map(|(_, new)| new.order_id.as_str()).collect();
    let mut by_order: HashMap<String, Purchase> = history::purchases_by_orders(conn, &order_ids)
        .await?
        .into_iter()
        .map(|p| (p.order_id.clone(), p))
        .collect();
    let buyers: Vec<CustomerId> = rows
        .iter()
        .filter(|(_, new)| !by_order.contains_key(&new.order_id))
        .map(|(customer_id, _)| *customer_id)
        .collect();
    // Each customer as the batch leaves it, with the version stored before the batch.
    let mut customers: HashMap<CustomerId, (Customer, i64)> =
        customers::get_many_for_update(conn, &buyers)
            .await?
            .into_iter()
            .map(|c| (c.id, (c.clone(), c.version)))
            .collect();

    let mut results = Vec::with_capacity(rows.len());
    let mut payloads = Vec::new();
    let mut inserts = Vec::new();
    for ((customer_id, new), total) in rows.iter().zip(totals) {
        let total = match total {
            Ok(total) => total,
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        if let Some(existing) = by_order.get(&new.order_id) {
            results.push(same_purchase(existing.clone(), *customer_id, new, total));
            continue;
        }
        let Some((customer, _)) = customers.get_mut(customer_id) else {
            results.push(Err(Error::not_found(
                "customer",
                format!("customers/{customer_id}"),
            )));
            continue;
        };
        if let Err(e) = require_live(customer, "record purchases") {
            results.push(Err(e));
            continue;
        }
        let purchase = new_purchase(*customer_id, new, total, now);
        payloads.push(EventPayload::PurchaseRecorded(purchase.clone()));
        if customer.status == Status::Prospect {
            customer.status = Status::Customer;
            customers::touch(customer, now);
            payloads.push(EventPayload::CustomerUpdated(customer.clone()));
        }
        by_order.insert(new.order_id.clone(), purchase.clone());
        inserts.push(purchase.clone());
        results.push(Ok((purchase, true)));
    }
    history::insert_purchases(conn, &inserts).await?;
    for (customer, stored_version) in customers.values() {
        if customer.version != *stored_version
            && !customers::update_status(conn, customer, *stored_version).await?
        {
            return Err(concurrent("customer"));
        }
    }
    Ok((results, payloads))
}

/// [`Registry::record_purchases`] one row at a time, each in its own savepoint: the way
/// through a batch that raced a concurrent writer.
async fn purchases_row_by_row(
    tx: &WriteTx,
    rows: Vec<(CustomerId, NewPurchase)>,
    now: DateTime<Utc>,
) -> Result<PurchaseOutcomes, Error> {
    let mut results = Vec::with_capacity(rows.len());
    let mut payloads = Vec::new();
    for (customer_id, new) in rows {
        let total = match purchase_total(&new, now) {
            Ok(total) => total,
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        let savepoint = tx.savepoint().await?;
        match purchase_in(savepoint.conn(), customer_id, &new, total, now).await {
            Ok((purchase, created, events)) => {
                savepoint.commit().await?;
                payloads.extend(events);
                results.push(Ok((purchase, created)));
            }
            Err(e) => {
                savepoint.rollback().await?;
                // A concurrent writer recorded the same order id first: compare with it.
                let existing = match &e {
                    Error::AlreadyExists { .. } => {
                        history::purchase_by_order(tx.conn(), &new.order_id).await?
                    }
                    _ => None,
                };
                results.push(match existing {
                    Some(existing) => same_purchase(existing, customer_id, &new, total),
                    None => Err(e),
                });
            }
        }
    }
    Ok((results, payloads))
}

/// A new purchase record.
fn new_purchase(
    customer_id: CustomerId,
    new: &NewPurchase,
    total: i64,
    now: DateTime<Utc>,
) -> Purchase {
    Purchase {
        id: PurchaseId::new(),
        customer_id,
        order_id: new.order_id.clone(),
        occurred_at: new.occurred_at,
        lines: new.lines.clone(),
        channel: new.channel,
        currency_code: new.total.currency_code().to_owned(),
        total_minor: total,
        returned_minor: 0,
        created_at: now,
    }
}

/// Inserts a customer unless its request was seen (the same key with other fields is
/// ALREADY_EXISTS); returns it and whether it is new.
async fn create_in(
    conn: &impl Conn,
    fields: CustomerFields,
    request: Option<&RequestKey>,
    now: DateTime<Utc>,
) -> Result<(Customer, bool), Error> {
    if let Some(key) = request
        && let Some((existing, fingerprint)) = customers::get_by_request_id(conn, &key.id).await?
    {
        key.check_replay(fingerprint)?;
        return Ok((existing, false));
    }
    let customer = Customer {
        id: CustomerId::new(),
        fields,
        status: Status::Prospect,
        merged_into: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    customers::insert(conn, &customer, request).await?;
    Ok((customer, true))
}

/// A new purchase's total, once its time is checked against the clock (its lines were
/// added up, without overflow, when it was built).
fn purchase_total(new: &NewPurchase, now: DateTime<Utc>) -> Result<i64, Error> {
    check_not_future(new.occurred_at, now, "purchase.occur_time")?;
    Ok(new.total.amount_minor())
}

/// Records one purchase (or finds its order id recorded) and returns the events it
/// makes: the purchase, and the customer's change to CUSTOMER on a first purchase.
async fn purchase_in(
    conn: &impl Conn,
    customer_id: CustomerId,
    new: &NewPurchase,
    total: i64,
    now: DateTime<Utc>,
) -> Result<(Purchase, bool, Vec<EventPayload>), Error> {
    if let Some(existing) = history::purchase_by_order(conn, &new.order_id).await? {
        let (purchase, created) = same_purchase(existing, customer_id, new, total)?;
        return Ok((purchase, created, Vec::new()));
    }
    let mut customer = load(conn, customer_id).await?;
    require_live(&customer, "record purchases")?;
    let purchase = new_purchase(customer_id, new, total, now);
    history::insert_purchase(conn, &purchase).await?;
    let mut events = vec![EventPayload::PurchaseRecorded(purchase.clone())];
    if customer.status == Status::Prospect {
        let expected = customer.version;
        customer.status = Status::Customer;
        customers::touch(&mut customer, now);
        if !customers::update_status(conn, &customer, expected).await? {
            return Err(concurrent("customer"));
        }
        events.push(EventPayload::CustomerUpdated(customer));
    }
    Ok((purchase, true, events))
}

/// Loads a customer for writing: its row stays locked until the transaction ends.
async fn load(conn: &impl Conn, id: CustomerId) -> Result<Customer, Error> {
    customers::get_for_update(conn, id)
        .await?
        .ok_or_else(|| Error::not_found("customer", format!("customers/{id}")))
}

fn same_purchase(
    existing: Purchase,
    customer_id: CustomerId,
    new: &NewPurchase,
    total: i64,
) -> Result<(Purchase, bool), Error> {
    if existing.customer_id == customer_id
        && existing.total_minor == total
        && existing.currency_code == new.total.currency_code()
    {
        Ok((existing, false))
    } else {
        Err(Error::already_exists(
            "ORDER_ID_TAKEN",
            format!(
                "order_id {} was recorded with other content (another customer or amount)",
                new.order_id
            ),
        ))
    }
}
