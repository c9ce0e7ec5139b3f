//! The rules of territory models: what may be edited when, the hierarchy kept a forest,
//! idempotent creates, and where an address belongs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use clientela_runtime::cache::GenerationCache;
use clientela_runtime::error::check_etag;
use clientela_runtime::feed::Outbox;
use clientela_runtime::idempotency::{REUSED_REASON, RequestKey};
use clientela_runtime::time::now;
use clientela_runtime::{Db, Error, WriteTx};
use uuid::Uuid;

use crate::cartera::{ActiveModel, DEFAULT_KAM_GRACE_DAYS, Logged, Settled};
use crate::following::CHANGE_COUNTER;
use crate::locate::{self, Located, Node, Place};
use crate::model::{
    MAX_TERRITORIES, ModelState, Territory, TerritoryFields, TerritoryModel, model_name,
};
use crate::store;

/// The changes an update makes to a territory (None: kept).
#[derive(Debug, Clone, Default)]
pub struct TerritoryPatch {
    pub display_name: Option<String>,
    /// Some(None): move to the top level.
    pub parent_code: Option<Option<String>>,
    pub criteria: Option<locate::Criteria>,
    pub priority: Option<i32>,
}

/// Where an address belongs under a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// From the top-level territory down.
    In(Vec<Territory>),
    Unassigned(String),
}

fn model_not_found(id: Uuid) -> Error {
    Error::not_found("territory model", model_name(id))
}

fn territory_not_found(model: Uuid, code: &str) -> Error {
    Error::not_found(
        "territory",
        format!("{}/territories/{code}", model_name(model)),
    )
}

/// The order territories are listed in: parents before children, siblings by priority
/// (higher first) then code.
pub fn tree_order(mut territories: Vec<Territory>) -> Vec<Territory> {
    territories.sort_by(|a, b| {
        b.fields
            .priority
            .cmp(&a.fields.priority)
            .then_with(|| a.code.cmp(&b.code))
    });
    let mut children: HashMap<Option<String>, Vec<Territory>> = HashMap::new();
    for territory in territories {
        children
            .entry(territory.fields.parent_code.clone())
            .or_default()
            .push(territory);
    }
    let mut out = Vec::new();
    let mut stack: Vec<Territory> = children.remove(&None).unwrap_or_default();
    stack.reverse();
    while let Some(territory) = stack.pop() {
        if let Some(mut kids) = children.remove(&Some(territory.code.clone())) {
            kids.reverse();
            stack.extend(kids);
        }
        out.push(territory);
    }
    out
}

/// The territory service's logic over its database.
#[derive(Debug, Clone)]
pub struct Territories {
    db: Db,
    changes: Outbox<Logged>,
    kam_grace: chrono::Duration,
    /// The active model last read, by (id, version): a version's territories never
    /// change, and reading all of them made every GetCoverage and feed batch pay for
    /// the whole map.
    pub(crate) active: Arc<Mutex<Option<Arc<ActiveModel>>>>,
    /// Customers a purchase cannot change, between feed batches (SQLite only: see
    /// [`GenerationCache`]); every write of a customer or its assignments forgets it.
    pub(crate) settled: Option<Arc<GenerationCache<Uuid, Settled>>>,
}

/// Customers the settled cache holds by default (~100 bytes each).
pub const DEFAULT_SETTLED_CACHE_CAPACITY: usize = 1_000_000;

impl Territories {
    /// The service over a migrated database.
    pub async fn open(db: Db) -> Result<Self, Error> {
        let changes = Outbox::open(db.clone(), "assignment_changes", CHANGE_COUNTER).await?;
        Ok(Self {
            db,
            changes,
            kam_grace: chrono::Duration::days(DEFAULT_KAM_GRACE_DAYS),
            active: Arc::default(),
            settled: None,
        }
        .with_settled_cache(DEFAULT_SETTLED_CACHE_CAPACITY))
    }

    /// The same caching up to `capacity` settled customers between feed batches when the
    /// database is SQLite, whose one writer is this process. On PostgreSQL other
    /// replicas write too, so there is no cache; neither with 0.
    pub fn with_settled_cache(mut self, capacity: usize) -> Self {
        self.settled = (capacity > 0 && self.db.single_writer())
            .then(|| Arc::new(GenerationCache::new(capacity)));
        self
    }

    /// The same with KAMs kept `days` after their account falls below KEY.
    pub fn with_kam_grace_days(mut self, days: i64) -> Self {
        self.kam_grace = chrono::Duration::days(days);
        self
    }

    /// How long a KAM outlives its account's fall below KEY.
    pub fn kam_grace(&self) -> chrono::Duration {
        self.kam_grace
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The feed of assignment changes.
    pub fn changes(&self) -> &Outbox<Logged> {
        &self.changes
    }

    /// Creates a model in PLANNING, as a copy of `copy_from`'s territories if given; with
    /// a request key seen before, the model it created and false.
    pub async fn create_model(
        &self,
        display_name: String,
        copy_from: Option<Uuid>,
        request: Option<RequestKey>,
    ) -> Result<(TerritoryModel, bool), Error> {
        let outcome = self
            .try_create_model(&display_name, copy_from, request.as_ref())
            .await;
        or_replay(outcome, request.as_ref(), |id| async move {
            store::model_by_request(self.db.conn(), &id).await
        })
        .await
    }

    async fn try_create_model(
        &self,
        display_name: &str,
        copy_from: Option<Uuid>,
        request: Option<&RequestKey>,
    ) -> Result<(TerritoryModel, bool), Error> {
        let tx = self.db.begin_write().await?;
        if let Some(key) = request
            && let Some((model, fingerprint)) = store::model_by_request(tx.conn(), &key.id).await?
        {
            key.check_replay(fingerprint)?;
            return Ok((model, false));
        }
        let at = now();
        let id = Uuid::now_v7();
        let copied = match copy_from {
            Some(source) => {
                if store::model(tx.conn(), source).await?.is_none() {
                    return Err(model_not_found(source));
                }
                store::territories(tx.conn(), source).await?
            }
            None => Vec::new(),
        };
        let model = TerritoryModel {
            id,
            display_name: display_name.to_owned(),
            state: ModelState::Planning,
            copied_from: copy_from,
            territory_count: copied.len() as i64,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        store::insert_model(tx.conn(), &model, request).await?;
        let copies: Vec<Territory> = copied
            .into_iter()
            .map(|t| Territory {
                model_id: id,
                version: 1,
                created_at: at,
                updated_at: at,
                ..t
            })
            .collect();
        store::insert_territories(tx.conn(), &copies).await?;
        tx.commit().await?;
        Ok((model, true))
    }

    pub async fn model(&self, id: Uuid) -> Result<TerritoryModel, Error> {
        store::model(self.db.conn(), id)
            .await?
            .ok_or_else(|| model_not_found(id))
    }

    pub async fn models(
        &self,
        state: Option<ModelState>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<TerritoryModel>, Error> {
        store::models(self.db.conn(), state, after, limit).await
    }

    /// Archives a PLANNING model; an archived one is returned as it is.
    pub async fn archive_model(
        &self,
        id: Uuid,
        etag: Option<&str>,
    ) -> Result<TerritoryModel, Error> {
        let tx = self.db.begin_write().await?;
        let model = store::model(tx.conn(), id)
            .await?
            .ok_or_else(|| model_not_found(id))?;
        check_etag(&model.etag(), etag, "territory model")?;
        match model.state {
            ModelState::Archived => return Ok(model),
            ModelState::Active => {
                return Err(Error::precondition(
                    "MODEL_ACTIVE",
                    format!(
                        "{} is ACTIVE: it is archived when another model is activated",
                        model.name()
                    ),
                ));
            }
            ModelState::Planning => {}
        }
        let at = now();
        if !store::bump_model(
            tx.conn(),
            id,
            ModelState::Planning,
            Some(model.version),
            ModelState::Archived,
            at,
        )
        .await?
        {
            return Err(Error::aborted(
                "CONCURRENT_UPDATE",
                "the territory model changed concurrently; retry",
            ));
        }
        tx.commit().await?;
        Ok(TerritoryModel {
            state: ModelState::Archived,
            version: model.version + 1,
            updated_at: at,
            ..model
        })
    }

    /// Opens a write on model `id`'s territories: the model's row locked and its etag
    /// moved, or why it cannot be edited.
    async fn edit(&self, id: Uuid, at: DateTime<Utc>) -> Result<WriteTx, Error> {
        let tx = self.db.begin_write().await?;
        if store::bump_model(
            tx.conn(),
            id,
            ModelState::Planning,
            None,
            ModelState::Planning,
            at,
        )
        .await?
        {
            return Ok(tx);
        }
        let model = store::model(tx.conn(), id)
            .await?
            .ok_or_else(|| model_not_found(id))?;
        Err(Error::precondition(
            "MODEL_NOT_PLANNING",
            format!(
                "{} is {}: territories are edited only while a model is PLANNING (create a \
                 copy of it with copy_from to change it)",
                model.name(),
                model.state.as_str()
            ),
        ))
    }

    pub async fn create_territory(
        &self,
        model: Uuid,
        code: String,
        fields: TerritoryFields,
    ) -> Result<Territory, Error> {
        let at = now();
        let tx = self.edit(model, at).await?;
        let existing = store::territories(tx.conn(), model).await?;
        if existing.iter().any(|t| t.code == code) {
            return Err(Error::already_exists(
                "TERRITORY_EXISTS",
                format!("{}/territories/{code} exists", model_name(model)),
            ));
        }
        if existing.len() >= MAX_TERRITORIES {
            return Err(Error::precondition(
                "TOO_MANY_TERRITORIES",
                format!("a model holds at most {MAX_TERRITORIES} territories"),
            ));
        }
        check_parent(
            &existing,
            &code,
            fields.parent_code.as_deref(),
            "territory.parent_code",
        )?;
        let territory = Territory {
            model_id: model,
            code,
            fields,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        store::insert_territories(tx.conn(), std::slice::from_ref(&territory)).await?;
        tx.commit().await?;
        Ok(territory)
    }

    pub async fn territory(&self, model: Uuid, code: &str) -> Result<Territory, Error> {
        if store::model(self.db.conn(), model).await?.is_none() {
            return Err(model_not_found(model));
        }
        store::territory(self.db.conn(), model, code)
            .await?
            .ok_or_else(|| territory_not_found(model, code))
    }

    /// Every territory of `model` in [`tree_order`], and the model's version (what a
    /// page token is bound to).
    pub async fn territories(&self, model: Uuid) -> Result<(Vec<Territory>, i64), Error> {
        let tx = self.db.begin_planned_read().await?;
        let found = store::model(&tx, model)
            .await?
            .ok_or_else(|| model_not_found(model))?;
        let territories = store::territories(&tx, model).await?;
        Ok((tree_order(territories), found.version))
    }

    pub async fn update_territory(
        &self,
        model: Uuid,
        code: &str,
        patch: TerritoryPatch,
        etag: Option<&str>,
    ) -> Result<Territory, Error> {
        let at = now();
        let tx = self.edit(model, at).await?;
        let existing = store::territories(tx.conn(), model).await?;
        let mut territory = existing
            .iter()
            .find(|t| t.code == code)
            .cloned()
            .ok_or_else(|| territory_not_found(model, code))?;
        check_etag(&territory.etag(), etag, "territory")?;
        if let Some(parent) = patch.parent_code {
            check_parent(&existing, code, parent.as_deref(), "territory.parent_code")?;
            territory.fields.parent_code = parent;
        }
        if let Some(name) = patch.display_name {
            territory.fields.display_name = name;
        }
        if let Some(criteria) = patch.criteria {
            territory.fields.criteria = criteria;
        }
        if let Some(priority) = patch.priority {
            territory.fields.priority = priority;
        }
        territory.version += 1;
        territory.updated_at = at;
        store::update_territory(tx.conn(), &territory).await?;
        tx.commit().await?;
        Ok(territory)
    }

    pub async fn delete_territory(
        &self,
        model: Uuid,
        code: &str,
        etag: Option<&str>,
    ) -> Result<(), Error> {
        let tx = self.edit(model, now()).await?;
        let existing = store::territories(tx.conn(), model).await?;
        let territory = existing
            .iter()
            .find(|t| t.code == code)
            .ok_or_else(|| territory_not_found(model, code))?;
        check_etag(&territory.etag(), etag, "territory")?;
        let children: Vec<&str> = existing
            .iter()
            .filter(|t| t.fields.parent_code.as_deref() == Some(code))
            .map(|t| t.code.as_str())
            .collect();
        if !children.is_empty() {
            return Err(Error::precondition(
                "TERRITORY_HAS_CHILDREN",
                format!(
                    "{} has {} children ({}): delete or move them first",
                    territory.name(),
                    children.len(),
                    children
                        .iter()
                        .take(10)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        store::delete_territory(tx.conn(), model, code).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Where `place` belongs under `model`.
    pub async fn locate(&self, model: Uuid, place: &Place) -> Result<Location, Error> {
        let (territories, _) = self.territories(model).await?;
        let nodes: Vec<Node> = territories
            .iter()
            .map(|t| Node {
                code: t.code.clone(),
                parent: t.fields.parent_code.clone(),
                criteria: t.fields.criteria.clone(),
                priority: t.fields.priority,
            })
            .collect();
        Ok(match locate::locate(&nodes, place) {
            Located::Unassigned(reason) => Location::Unassigned(reason),
            Located::In(codes) => {
                let by_code: BTreeMap<&str, &Territory> =
                    territories.iter().map(|t| (t.code.as_str(), t)).collect();
                Location::In(
                    codes
                        .iter()
                        .filter_map(|c| by_code.get(c.as_str()).map(|t| (*t).clone()))
                        .collect(),
                )
            }
        })
    }
}

/// The outcome of a create keyed by `request`, where a create that lost a race on its
/// key (another call with it committed after this one looked for the key, so a unique
/// key or check refused this one: the request id's, or a token name's) is answered as
/// the replay of the winner, found by `find`.
pub(crate) async fn or_replay<T, Fut>(
    outcome: Result<(T, bool), Error>,
    request: Option<&RequestKey>,
    find: impl FnOnce(String) -> Fut,
) -> Result<(T, bool), Error>
where
    Fut: std::future::Future<Output = Result<Option<(T, Option<i64>)>, Error>>,
{
    match outcome {
        Err(e) if e.code() == tonic::Code::AlreadyExists && e.reason() != REUSED_REASON => {
            let Some(key) = request else {
                return Err(e);
            };
            let (found, fingerprint) = find(key.id.clone()).await?.ok_or(e)?;
            key.check_replay(fingerprint)?;
            Ok((found, false))
        }
        other => other,
    }
}

/// That `parent` (None: top level) may be `code`'s parent among `existing`: it exists,
/// and is neither `code` nor one of its descendants.
fn check_parent(
    existing: &[Territory],
    code: &str,
    parent: Option<&str>,
    field: &str,
) -> Result<(), Error> {
    let Some(parent) = parent else {
        return Ok(());
    };
    let parents: HashMap<&str, Option<&str>> = existing
        .iter()
        .map(|t| (t.code.as_str(), t.fields.parent_code.as_deref()))
        .collect();
    if !parents.contains_key(parent) {
        return Err(Error::invalid(
            field,
            format!("the model has no territory {parent}"),
        ));
    }
    let mut at = Some(parent);
    while let Some(current) = at {
        if current == code {
            return Err(Error::invalid(
                field,
                format!(
                    "{parent} is {code} or lies under it: a territory cannot be its own ancestor"
                ),
            ));
        }
        at = parents.get(current).copied().flatten();
    }
    Ok(())
}
