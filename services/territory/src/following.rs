//! How the service follows the registry's feed: creation and address changes place a
//! customer, the first purchase gives it a PRIMARY in the transaction that applies it,
//! purchase lines their SPECIALISTs, merges and archives end assignments; and the
//! classification engine's label feed: account tiers KEY and BOSS get a KAM
//! (TERRITORY.md, "What it follows").

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use clientela_proto::clientela::classification::v1 as classification;
use clientela_proto::clientela::registry::v1 as registry;
use clientela_runtime::db::transaction_lock;
use clientela_runtime::feed::consumer::{Cursor, Projection};
use clientela_runtime::feed::decode::{child, corrupt, customer, time};
use clientela_runtime::feed::outbox::read_sequence;
use clientela_runtime::{Conn, Error, WriteTx};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::assign::{Desk, Roster};
use crate::cartera::{
    ActiveModel, Book, Change, Settled, Standing, Worklisted, lines_of, purchasers_only,
    quiet_customers,
};
use crate::locate::{Forest, Node, Place};
use crate::model::ModelState;
use crate::store;
use crate::territories::Territories;

/// The cursor over the registry's feed.
pub const REGISTRY_FEED: Cursor = Cursor {
    table: "registry_cursor",
    lock: "territory-registry-consumer",
};

/// The cursor over the classification engine's label feed.
pub const CLASSIFICATION_FEED: Cursor = Cursor {
    table: "classification_cursor",
    lock: "territory-classification-consumer",
};

/// Held by every transaction that writes assignments (the feed, manual commands, an
/// activation), so each decides on the loads the one before it left.
pub const CARTERA_LOCK: &str = "territory-cartera";

/// The counter of the assignment changes' feed.
pub const CHANGE_COUNTER: &str = "assignment_change_counter";

/// What a registry event is to carteras (None: nothing).
pub fn change_from(event: &registry::Event) -> Result<Option<Change>, Error> {
    use registry::CustomerStatus as S;
    use registry::event::Payload;
    let seq = event.sequence;
    let payload = event
        .payload
        .as_ref()
        .ok_or_else(|| corrupt(seq, "no payload"))?;
    Ok(Some(match payload {
        Payload::CustomerCreated(c) | Payload::CustomerUpdated(c) => {
            let standing = match S::try_from(c.status) {
                Ok(S::Prospect) => Standing::Prospect,
                Ok(S::Customer) => Standing::Customer,
                Ok(S::Archived) => Standing::Archived,
                Ok(S::Merged) => Standing::Merged,
                _ => return Err(corrupt(seq, "customer without a status")),
            };
            let place = c.address.as_ref().map_or_else(Place::default, |a| {
                Place::new(&a.country_code, &a.region, &a.locality, &a.postal_code)
            });
            Change::Profile {
                id: customer(&c.name, seq)?,
                standing,
                place,
                at: time(c.update_time.as_ref(), seq)?,
            }
        }
        Payload::CustomersMerged(m) => Change::Merged {
            survivor: customer(&m.survivor, seq)?,
            merged: customer(&m.merged, seq)?,
            at: time(event.record_time.as_ref(), seq)?,
        },
        Payload::PurchaseRecorded(p) => {
            let (customer, _) = child(&p.name, "purchases", seq)?;
            Change::Purchase {
                customer,
                at: time(p.occur_time.as_ref(), seq)?,
                lines: lines_of(p.lines.iter().map(|l| l.product_line.as_str())),
            }
        }
        _ => return Ok(None),
    }))
}

/// What a label change is to carteras: an account tier (KAMs), a satisfaction or an
/// activity (the worklist's order); None: another dimension.
pub fn label_from(change: &classification::LabelChange) -> Result<Option<Change>, Error> {
    use classification::Dimension as D;
    let seq = change.sequence;
    let label = change
        .new_label
        .as_ref()
        .map(|l| l.code.clone())
        .filter(|code| !code.is_empty());
    let id = customer(&change.customer, seq)?;
    let worklisted = match D::try_from(change.dimension) {
        Ok(D::AccountTier) => {
            return Ok(Some(Change::Tier {
                customer: id,
                tier: label,
                at: time(change.change_time.as_ref(), seq)?,
            }));
        }
        Ok(D::Satisfaction) => Worklisted::Satisfaction,
        Ok(D::Activity) => Worklisted::Activity,
        _ => return Ok(None),
    };
    Ok(Some(Change::Label {
        customer: id,
        dimension: worklisted,
        label,
    }))
}

impl Territories {
    /// Under the cartera lock, a book over the active model, the sellers with their
    /// loads and the last change's sequence; and the sellers as read (to write back
    /// only what moved).
    pub(crate) async fn open_book(&self, conn: &impl Conn) -> Result<(Book, Vec<Desk>), Error> {
        transaction_lock(conn, CARTERA_LOCK).await?;
        let model = self.active_model(conn).await?;
        self.book_over(conn, model).await
    }

    /// A book over `model` (the active one, or one a preview tries), the sellers and the
    /// last change's sequence, without the lock (a preview only reads).
    pub(crate) async fn book_over(
        &self,
        conn: &impl Conn,
        model: Arc<ActiveModel>,
    ) -> Result<(Book, Vec<Desk>), Error> {
        let desks = store::cartera::desks(conn).await?;
        let sequence = read_sequence(conn, CHANGE_COUNTER).await?;
        let mut book = Book::new(model, Roster::new(desks.clone()), sequence);
        book.kam_grace = self.kam_grace();
        Ok((book, desks))
    }

    /// Ends the KAMs whose grace period ended by `now`, and gives a KAM to key accounts
    /// waiting for one (a KAM seller added or freed since); how many changed. The
    /// scheduled sweep.
    pub async fn sweep_kams(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let tx = self.db().begin_write().await?;
        let conn = tx.conn();
        let (mut book, desks) = self.open_book(conn).await?;
        let mut due = store::cartera::kams_due(conn, now).await?;
        due.extend(store::cartera::kams_wanted(conn).await?);
        if due.is_empty() {
            return Ok(0);
        }
        due.sort_unstable();
        due.dedup();
        Self::load(conn, &mut book, &due).await?;
        let mut changed = 0;
        for id in &due {
            changed += usize::from(book.expire_kam(*id, now));
            changed += usize::from(book.ensure_kam(*id, now));
        }
        self.write_page(&tx, &mut book).await?;
        store::cartera::write_desks(conn, &book.roster, &desks).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// The active model as assignments read it.
    pub(crate) async fn active_model(&self, conn: &impl Conn) -> Result<Arc<ActiveModel>, Error> {
        let Some(model) = store::models(conn, Some(ModelState::Active), None, 1)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(Arc::default());
        };
        if let Some(cached) = self.cached_model(Some((model.id, model.version))) {
            return Ok(cached);
        }
        let loaded = Arc::new(Self::model_for(conn, &model).await?);
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = Some(loaded.clone());
        Ok(loaded)
    }

    /// The cached active model if it is version `key` (id, version).
    pub(crate) fn cached_model(&self, key: Option<(Uuid, i64)>) -> Option<Arc<ActiveModel>> {
        key?;
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|m| m.id == key)
    }

    /// `model` as assignments read it.
    pub(crate) async fn model_for(
        conn: &impl Conn,
        model: &crate::model::TerritoryModel,
    ) -> Result<ActiveModel, Error> {
        let nodes = store::territories(conn, model.id)
            .await?
            .into_iter()
            .map(|t| Node {
                code: t.code,
                parent: t.fields.parent_code,
                criteria: t.fields.criteria,
                priority: t.fields.priority,
            })
            .collect();
        Ok(ActiveModel::new(
            Some((model.id, model.version)),
            Forest::new(nodes),
        ))
    }

    /// Loads customers `ids` into `book`: their rows, open assignments and the latest
    /// end of each slot.
    pub(crate) async fn load(conn: &impl Conn, book: &mut Book, ids: &[Uuid]) -> Result<(), Error> {
        book.take_page(store::cartera::loads(conn, ids).await?);
        Ok(())
    }

    /// Applies feed changes (the registry's or the label feed's) inside the feed's
    /// transaction; how many customers they touched.
    pub async fn apply_changes(&self, tx: &WriteTx, changes: Vec<Change>) -> Result<usize, Error> {
        let conn = tx.conn();
        let started = Instant::now();
        let received = changes.len();
        let (mut book, desks) = self.open_book(conn).await?;
        // Purchases that change nothing are dropped before anything else is loaded: of
        // customers settled in an earlier batch, or whose view shows it.
        let mut unread = purchasers_only(&changes);
        let mut cached = Vec::new();
        if let Some(cache) = &self.settled {
            unread.retain(|id| match cache.get(id) {
                Some(settled) => {
                    cached.push((*id, settled.view()));
                    false
                }
                None => true,
            });
        }
        // Through sqlx, reads of a batch's customers were a third of its time: each row
        // crossed threads and was decoded on the task. Nothing is written before them.
        let reading = unread.clone();
        let views = store::sqlite::on_direct(self.db(), move |c| {
            store::sqlite::purchase_views(c, &reading)
        });
        let mut views = match views.await {
            Some(views) => views?,
            None => store::cartera::purchase_views(conn, &unread).await?,
        };
        let hits = cached.len();
        views.extend(cached);
        let quiet = quiet_customers(&changes, &views, &book.roster);
        // Quiet customers read now: unchanged by this batch, cached once it commits.
        let fresh: Vec<(Uuid, Settled)> = unread
            .iter()
            .filter(|id| quiet.contains(id))
            .filter_map(|id| Some((*id, Settled::of(views.get(id)?)?)))
            .collect();
        let changes: Vec<Change> = changes
            .into_iter()
            .filter(|c| !matches!(c, Change::Purchase { customer, .. } if quiet.contains(customer)))
            .collect();
        let viewed = started.elapsed();
        let mut ids: Vec<Uuid> = changes.iter().flat_map(Change::customers).collect();
        ids.sort_unstable();
        ids.dedup();
        let reading = ids.clone();
        let page = store::sqlite::on_direct(self.db(), move |c| store::sqlite::loads(c, &reading));
        let page = match page.await {
            Some(page) => page?,
            None => store::cartera::loads(conn, &ids).await?,
        };
        book.take_page(page);
        // Purchases dated before a stored customer's first need its earliest PRIMARY.
        let mut backdated: Vec<Uuid> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Purchase { customer, at, .. } => book
                    .customers
                    .get(customer)
                    .and_then(|s| s.first_purchase_at)
                    .filter(|first| at < first)
                    .map(|_| *customer),
                _ => None,
            })
            .collect();
        backdated.sort_unstable();
        backdated.dedup();
        book.earliest_primary = store::cartera::earliest_primaries(conn, &backdated).await?;
        let loaded = started.elapsed();
        for change in &changes {
            tracing::trace!(?change, "registry change");
            book.apply(change);
        }
        let touched = book.dirty.len();
        let decided = started.elapsed();
        self.write_page(tx, &mut book).await?;
        store::cartera::write_desks(conn, &book.roster, &desks).await?;
        if let Some(cache) = self.settled.clone() {
            // After this batch's own writes: a write after it makes the fill a no-op.
            let generation = cache.generation();
            tx.after_commit(move || cache.fill(generation, fresh));
        }
        // Where a batch's time goes, cumulative from its start (docs/BENCHMARKS.md).
        tracing::debug!(
            received,
            settled_hits = hits,
            applied = changes.len(),
            touched,
            viewed_ms = viewed.as_millis() as u64,
            loaded_ms = loaded.as_millis() as u64,
            decided_ms = decided.as_millis() as u64,
            written_ms = started.elapsed().as_millis() as u64,
            "registry batch applied"
        );
        Ok(touched)
    }

    /// Writes `book`'s page and appends its changes to the feed, leaving it ready for the
    /// next page.
    pub(crate) async fn write_page(&self, tx: &WriteTx, book: &mut Book) -> Result<(), Error> {
        if let Some(cache) = &self.settled {
            // Before the write, and whether or not it commits: forgetting is always safe.
            let changed = book.log.iter().map(|l| l.customer);
            cache.invalidate(book.dirty.iter().copied().chain(changed));
        }
        store::cartera::write_page(tx.conn(), book).await?;
        let log = book.next_page();
        let mut mismatch = false;
        self.changes()
            .append(tx, log, |logged, sequence| {
                mismatch |= logged.sequence != sequence;
                logged
            })
            .await?;
        if mismatch {
            return Err(Error::Internal(
                "the assignment changes' counter moved under the cartera lock".into(),
            ));
        }
        Ok(())
    }
}

/// The service as the projection of the feeds it follows.
#[derive(Debug, Clone)]
pub struct Following(pub Territories);

impl Projection for Following {
    type Event = Change;

    fn apply<'a>(
        &'a self,
        tx: &'a WriteTx,
        events: Vec<Change>,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        Box::pin(self.0.apply_changes(tx, events))
    }
}
