//! Realignments: what re-running a model's rules over every customer would move
//! (`PreviewRealignment`), and doing exactly that (`ApplyRealignment` with the preview's
//! token, or `ActivateTerritoryModel` in one step). A realignment is a pure function of
//! (model, customers, pins, loads) (TERRITORY.md invariant 6): the token names the model
//! and sellers it saw and the digest of its moves, and an apply that would move anything
//! else is ABORTED, so what a preview shows is what an apply does.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clientela_runtime::error::check_etag;
use clientela_runtime::idempotency::fnv1a;
use clientela_runtime::pagination;
use clientela_runtime::time::now;
use clientela_runtime::{Conn, Db, Error, WriteTx};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::assign::{Assignment, Cause, Desk, Role};
use crate::cartera::{ActiveModel, Book, Page};
use crate::following::CARTERA_LOCK;
use crate::model::{HOUSE_SELLER, ModelState, TerritoryModel, model_name};
use crate::store;
use crate::territories::Territories;

/// Customers realigned per page (one transaction in all).
const REALIGN_PAGE: u64 = 2_000;

/// One assignment a realignment hands to another seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub customer: Uuid,
    pub role: Role,
    pub product_line: String,
    /// None: the slot was empty (a buyer without its PRIMARY).
    pub from: Option<Uuid>,
    pub to: Uuid,
    pub cause: Cause,
    /// The territory the customer is placed in.
    pub territory: Option<String>,
}

impl Move {
    /// The digest of the moves so far, `before`, extended by this one (fields hashed
    /// as bytes: formatting them cost ~7 % of a preview).
    fn digest(&self, before: u64) -> u64 {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&before.to_le_bytes());
        bytes.extend_from_slice(self.customer.as_bytes());
        bytes.extend_from_slice(self.from.unwrap_or_default().as_bytes());
        bytes.extend_from_slice(self.to.as_bytes());
        for text in [
            self.role.as_str(),
            self.cause.as_str(),
            &self.product_line,
            self.territory.as_deref().unwrap_or(""),
        ] {
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(0);
        }
        fnv1a(&bytes)
    }
}

/// How a realignment changes one seller's cartera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub seller: Uuid,
    pub load_before: i64,
    pub load_after: i64,
    pub capacity: i64,
    pub gained: u64,
    pub lost: u64,
}

/// What a realignment does (a preview) or did (an apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realignment {
    /// The model realigned to (after an apply of a PLANNING model: ACTIVE).
    pub model: TerritoryModel,
    /// The model an activation replaced, now ARCHIVED.
    pub archived: Option<Uuid>,
    pub at: DateTime<Utc>,
    pub customers: u64,
    pub placed: u64,
    pub moved: u64,
    pub overflowed: u64,
    pub to_house: u64,
    pub pins_held: u64,
    /// The first moves, by customer.
    pub moves: Vec<Move>,
    /// The first pins that held against it.
    pub pins: Vec<Assignment>,
    /// Every seller whose cartera changes, by id.
    pub shifts: Vec<Shift>,
    /// For ApplyRealignment (a preview's).
    pub token: String,
}

/// How far an apply has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub moved: u64,
}

/// What a preview's token holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Token {
    model: Uuid,
    /// The model and sellers it saw.
    state: u64,
    /// Its moves, in order.
    digest: u64,
    moved: u64,
}

/// The token's query fingerprint (tokens of other requests are refused).
fn token_query() -> u64 {
    pagination::fingerprint(&"realignment")
}

/// The model's and the sellers' versions: a preview made on other ones is stale.
async fn state(conn: &impl Conn, model: &TerritoryModel) -> Result<u64, Error> {
    let active = store::models(conn, Some(ModelState::Active), None, 1)
        .await?
        .into_iter()
        .next()
        .map(|m| (m.id, m.version));
    let sellers: Vec<(Uuid, i64)> = store::sellers(conn)
        .await?
        .iter()
        .map(|s| (s.id, s.version))
        .collect();
    Ok(pagination::fingerprint(&(
        model.id,
        model.version,
        model.state.as_str(),
        active,
        sellers,
    )))
}

/// What the pages of a realignment add up to.
#[derive(Debug, Default)]
struct Tally {
    customers: u64,
    placed: u64,
    moved: u64,
    overflowed: u64,
    to_house: u64,
    pins_held: u64,
    digest: u64,
    moves: Vec<Move>,
    pins: Vec<Assignment>,
    gained: BTreeMap<Uuid, u64>,
    lost: BTreeMap<Uuid, u64>,
}

impl Tally {
    /// Takes in a page's changes (before the book moves to the next page); `keep`: how
    /// many moves and pins to list.
    fn page(&mut self, book: &Book, keep: usize) {
        let mut closed: BTreeMap<(Uuid, Role, &str), Uuid> = BTreeMap::new();
        for change in &book.log {
            let slot = (change.customer, change.role, change.product_line.as_str());
            if !change.opened {
                closed.insert(slot, change.seller);
                *self.lost.entry(change.seller).or_default() += 1;
                continue;
            }
            let m = Move {
                customer: change.customer,
                role: change.role,
                product_line: change.product_line.clone(),
                from: closed.remove(&slot),
                to: change.seller,
                cause: Cause::parse(change.cause).unwrap_or(Cause::Rule),
                territory: book
                    .customers
                    .get(&change.customer)
                    .and_then(|c| c.territory.clone()),
            };
            *self.gained.entry(m.to).or_default() += 1;
            self.moved += 1;
            self.overflowed += u64::from(m.cause == Cause::Overflow);
            self.to_house += u64::from(m.to == HOUSE_SELLER);
            self.digest = m.digest(self.digest);
            if self.moves.len() < keep {
                self.moves.push(m);
            }
        }
        self.pins_held += book.pins_held.len() as u64;
        let room = keep.saturating_sub(self.pins.len());
        self.pins.extend(book.pins_held.iter().take(room).cloned());
    }

    fn shifts(&self, before: &[Desk], book: &Book) -> Vec<Shift> {
        before
            .iter()
            .filter_map(|d| {
                let after = book.roster.get(d.id)?;
                let gained = self.gained.get(&d.id).copied().unwrap_or(0);
                let lost = self.lost.get(&d.id).copied().unwrap_or(0);
                (gained + lost > 0).then_some(Shift {
                    seller: d.id,
                    load_before: d.load,
                    load_after: after.load,
                    capacity: d.capacity,
                    gained,
                    lost,
                })
            })
            .collect()
    }
}

/// How a realignment runs: writing (inside this transaction) or only looking.
struct Run<'a> {
    write: Option<&'a WriteTx>,
    keep: usize,
    progress: Option<&'a mpsc::Sender<Progress>>,
}

/// That `token` is a preview token this server issued (checked before an apply starts).
pub fn check_preview_token(token: &str) -> Result<(), Error> {
    pagination::decode::<Token>(token, token_query(), "preview_token")?
        .map(|_| ())
        .ok_or_else(|| Error::invalid("preview_token", "required: PreviewRealignment's"))
}

impl Territories {
    /// What realigning every customer to `model` (a PLANNING model: what activating it
    /// would do; the ACTIVE one: what re-running its rules would move) would do, with
    /// the first `keep` moves and pins and a token for ApplyRealignment. Nothing is
    /// written.
    pub async fn preview_realignment(&self, id: Uuid, keep: usize) -> Result<Realignment, Error> {
        // The pages may be read on a connection of their own: both begin while no write
        // can commit, so they see the same one.
        let held = self.db().hold_writes().await;
        let tx = self.db().begin_snapshot_read().await?;
        let model = Self::realignable(&tx, id).await?;
        let pages = Pages::start(self.db()).await?;
        drop(held);
        let state = state(&tx, &model).await?;
        let (book, desks) = self
            .book_over(&tx, Self::model_for(&tx, &model).await?.into())
            .await?;
        let run = Run {
            write: None,
            keep,
            progress: None,
        };
        let (tally, book) = self.realign_all(&tx, book, pages, now(), &run).await?;
        Ok(Self::outcome(model, None, &tally, &desks, &book, state))
    }

    /// Applies the preview `token` named, reporting progress on `progress`; ABORTED
    /// if the model or the sellers changed since, or the moves would differ.
    pub async fn apply_realignment(
        &self,
        token: &str,
        progress: Option<&mpsc::Sender<Progress>>,
    ) -> Result<Realignment, Error> {
        let decoded: Token = pagination::decode(token, token_query(), "preview_token")?
            .ok_or_else(|| Error::invalid("preview_token", "required: PreviewRealignment's"))?;
        if let Some(done) = self.applied(token).await? {
            return Ok(done);
        }
        self.realign(decoded.model, None, Some((decoded, token)), progress)
            .await
    }

    /// What applying preview `token` did, if it was applied (a retry's answer).
    async fn applied(&self, token: &str) -> Result<Option<Realignment>, Error> {
        let tx = self.db().begin_planned_read().await?;
        let Some(a) = store::cartera::applied(&tx, token).await? else {
            return Ok(None);
        };
        let model = store::model(&tx, a.model)
            .await?
            .ok_or_else(|| Error::Internal("a realigned model vanished".into()))?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Some(Realignment {
            model,
            archived: a.archived,
            at: a.at,
            customers: count(a.customers),
            placed: count(a.placed),
            moved: count(a.moved),
            overflowed: count(a.overflowed),
            to_house: count(a.to_house),
            pins_held: count(a.pins_held),
            moves: Vec::new(),
            pins: Vec::new(),
            shifts: Vec::new(),
            token: token.to_owned(),
        }))
    }

    /// Activates PLANNING model `id` and realigns every customer in one transaction
    /// (a preview and its apply in one step).
    pub async fn activate_model(&self, id: Uuid, etag: Option<&str>) -> Result<Realignment, Error> {
        self.realign(id, etag, None, None).await
    }

    /// The model a realignment may target.
    async fn realignable(conn: &impl Conn, id: Uuid) -> Result<TerritoryModel, Error> {
        let model = store::model(conn, id)
            .await?
            .ok_or_else(|| Error::not_found("territory model", model_name(id)))?;
        if model.state == ModelState::Archived {
            return Err(Error::precondition(
                "MODEL_ARCHIVED",
                format!(
                    "{} is ARCHIVED: create a copy of it with copy_from and activate that",
                    model.name()
                ),
            ));
        }
        Ok(model)
    }

    async fn realign(
        &self,
        id: Uuid,
        etag: Option<&str>,
        expected: Option<(Token, &str)>,
        progress: Option<&mpsc::Sender<Progress>>,
    ) -> Result<Realignment, Error> {
        let tx = self.db().begin_write().await?;
        let conn = tx.conn();
        clientela_runtime::db::transaction_lock(conn, CARTERA_LOCK).await?;
        if let Some((_, token)) = expected
            && store::cartera::applied(conn, token).await?.is_some()
        {
            // Applied by a racing retry meanwhile.
            drop(tx);
            return self
                .applied(token)
                .await?
                .ok_or_else(|| Error::Internal("an applied realignment vanished".into()));
        }
        let model = Self::realignable(conn, id).await?;
        check_etag(&model.etag(), etag, "territory model")?;
        let state = state(conn, &model).await?;
        if let Some((token, _)) = expected
            && token.state != state
        {
            return Err(stale(&model, "the model or the sellers changed since"));
        }
        if expected.is_none() && model.state == ModelState::Active {
            // Activating the active model again: nothing to do.
            return Ok(Self::outcome(
                model,
                None,
                &Tally::default(),
                &[],
                &Book::new(ActiveModel::default(), Default::default(), 0),
                state,
            ));
        }
        let at = now();
        let mut archived = None;
        if model.state == ModelState::Planning {
            archived = Self::swap_active(conn, &model, at).await?;
        }
        let (book, desks) = self.open_book(conn).await?;
        let run = Run {
            write: Some(&tx),
            keep: 0,
            progress,
        };
        // The transaction holds the write gate: pages read on a connection of their own
        // see what it started from, and a page is not written before it is read.
        let pages = Pages::start(self.db()).await?;
        let (tally, book) = self.realign_all(conn, book, pages, at, &run).await?;
        if let Some((token, _)) = expected
            && (token.digest, token.moved) != (tally.digest, tally.moved)
        {
            return Err(stale(
                &model,
                &format!(
                    "the customers changed since: it would move {} assignments, not the {} \
                     previewed",
                    tally.moved, token.moved
                ),
            ));
        }
        store::cartera::write_desks(conn, &book.roster, &desks).await?;
        let model = store::model(conn, id)
            .await?
            .ok_or_else(|| Error::Internal("the realigned model vanished".into()))?;
        let done = Self::outcome(model, archived, &tally, &desks, &book, state);
        if let Some((_, token)) = expected {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let applied = store::cartera::Applied {
                model: id,
                archived,
                customers: count(done.customers),
                placed: count(done.placed),
                moved: count(done.moved),
                overflowed: count(done.overflowed),
                to_house: count(done.to_house),
                pins_held: count(done.pins_held),
                at,
            };
            store::cartera::record_applied(conn, token, &applied).await?;
        }
        tx.commit().await?;
        Ok(Realignment {
            token: expected.map_or(done.token.clone(), |(_, t)| t.to_owned()),
            ..done
        })
    }

    /// Archives the active model and makes PLANNING `model` ACTIVE; the archived one.
    async fn swap_active(
        conn: &impl Conn,
        model: &TerritoryModel,
        at: DateTime<Utc>,
    ) -> Result<Option<Uuid>, Error> {
        let previous = store::models(conn, Some(ModelState::Active), None, 1)
            .await?
            .into_iter()
            .next();
        if let Some(previous) = &previous {
            store::bump_model(
                conn,
                previous.id,
                ModelState::Active,
                None,
                ModelState::Archived,
                at,
            )
            .await?;
        }
        if !store::bump_model(
            conn,
            model.id,
            ModelState::Planning,
            Some(model.version),
            ModelState::Active,
            at,
        )
        .await?
        {
            return Err(Error::aborted(
                "CONCURRENT_UPDATE",
                "the territory model changed concurrently; retry",
            ));
        }
        Ok(previous.map(|p| p.id))
    }

    /// Realigns every customer, page by page, into `book`'s model.
    async fn realign_all(
        &self,
        conn: &impl Conn,
        mut book: Book,
        mut pages: Pages,
        at: DateTime<Utc>,
        run: &Run<'_>,
    ) -> Result<(Tally, Book), Error> {
        let total = store::cartera::customer_count(conn).await?;
        let mut tally = Tally::default();
        loop {
            let ids = book.take_page(pages.next(conn).await?);
            if ids.is_empty() {
                break;
            }
            for id in &ids {
                book.realign(*id, at);
                tally.customers += 1;
                tally.placed += u64::from(book.customers[id].territory.is_some());
            }
            tally.page(&book, run.keep);
            match run.write {
                Some(tx) => self.write_page(tx, &mut book).await?,
                None => {
                    book.next_page();
                }
            }
            if let Some(progress) = run.progress {
                // A caller that stopped listening does not stop the realignment.
                let _ = progress.try_send(Progress {
                    done: tally.customers,
                    total,
                    moved: tally.moved,
                });
            }
        }
        Ok((tally, book))
    }

    fn outcome(
        model: TerritoryModel,
        archived: Option<Uuid>,
        tally: &Tally,
        desks: &[Desk],
        book: &Book,
        state: u64,
    ) -> Realignment {
        let token = pagination::encode(
            token_query(),
            &Token {
                model: model.id,
                state,
                digest: tally.digest,
                moved: tally.moved,
            },
        );
        Realignment {
            archived,
            at: now(),
            customers: tally.customers,
            placed: tally.placed,
            moved: tally.moved,
            overflowed: tally.overflowed,
            to_house: tally.to_house,
            pins_held: tally.pins_held,
            moves: tally.moves.clone(),
            pins: tally.pins.clone(),
            shifts: tally.shifts(desks, book),
            token,
            model,
        }
    }
}

/// Where a realignment's pages come from, in customer order.
struct Pages {
    /// A SQLite file's pages, read ahead on a thread and a connection of their own in
    /// one read transaction, while the ones before are realigned and written: read
    /// through sqlx, each row crossed to the task by a channel and was decoded there, and
    /// the writes waited for it (docs/BENCHMARKS.md).
    ahead: Option<mpsc::Receiver<Result<Page, Error>>>,
    /// The first page read ahead.
    first: Option<Page>,
    /// Otherwise: the last customer read through the transaction.
    after: Option<Uuid>,
}

/// Pages read ahead of the one realigned.
const PAGES_AHEAD: usize = 2;

impl Pages {
    /// Starts reading; on a SQLite file, returns once the reader's snapshot is taken.
    async fn start(db: &Db) -> Result<Self, Error> {
        let mut pages = Self {
            ahead: None,
            first: None,
            after: None,
        };
        if !db.has_sqlite_reads() {
            return Ok(pages);
        }
        let (send, ahead) = mpsc::channel(PAGES_AHEAD);
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let read = db.sqlite_read(|conn| {
                let snapshot = conn.unchecked_transaction()?;
                let mut after = None;
                loop {
                    let page = store::sqlite::page(&snapshot, after, REALIGN_PAGE);
                    let last = page
                        .as_ref()
                        .ok()
                        .and_then(|p| p.customers.last())
                        .map(|c| c.id);
                    // Ends after the last page or an error, or when the realignment did.
                    if send.blocking_send(page).is_err() || last.is_none() {
                        return Ok(());
                    }
                    after = last;
                }
            });
            if let Some(Err(e)) = read {
                let _ = send.blocking_send(Err(e.into()));
            }
        });
        pages.ahead = Some(ahead);
        pages.first = Some(pages.received().await?);
        Ok(pages)
    }

    async fn received(&mut self) -> Result<Page, Error> {
        let ahead = self.ahead.as_mut();
        match ahead {
            Some(ahead) => ahead.recv().await.unwrap_or_else(|| {
                Err(Error::Internal(
                    "the realignment's page reader stopped".into(),
                ))
            }),
            None => Err(Error::Internal("no page reader".into())),
        }
    }

    /// The next page (empty after the last).
    async fn next(&mut self, conn: &impl Conn) -> Result<Page, Error> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        if self.ahead.is_some() {
            return self.received().await;
        }
        let page = store::cartera::page(conn, self.after, REALIGN_PAGE).await?;
        if let Some(last) = page.customers.last() {
            self.after = Some(last.id);
        }
        Ok(page)
    }
}

fn stale(model: &TerritoryModel, why: &str) -> Error {
    Error::aborted(
        "STALE_PREVIEW",
        format!(
            "the preview of {} is stale ({why}): preview again",
            model.name()
        ),
    )
}
