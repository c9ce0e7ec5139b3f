//! The rules of sellers: unique token names, the house seller that only changes its
//! name, statuses that only offboarding makes final, idempotent creates.

use std::cmp::Ordering;

use clientela_runtime::Error;
use clientela_runtime::error::check_etag;
use clientela_runtime::idempotency::RequestKey;
use clientela_runtime::time::now;
use uuid::Uuid;

use crate::model::{MAX_SELLERS, Seller, SellerFields, SellerStatus};
use crate::store;
use crate::territories::{Territories, or_replay};

/// The changes an update makes to a seller (None: kept).
#[derive(Debug, Clone, Default)]
pub struct SellerPatch {
    pub display_name: Option<String>,
    /// Some(None): cleared.
    pub email: Option<Option<String>>,
    pub token_name: Option<Option<String>>,
    pub specialties: Option<Vec<String>>,
    pub territory_codes: Option<Vec<String>>,
    pub kam: Option<bool>,
    pub capacity: Option<i64>,
    pub status: Option<SellerStatus>,
}

impl SellerPatch {
    /// Whether it changes more than the name and email (all the house seller takes).
    fn beyond_contact(&self) -> bool {
        self.token_name.is_some()
            || self.specialties.is_some()
            || self.territory_codes.is_some()
            || self.kam.is_some()
            || self.capacity.is_some()
            || self.status.is_some()
    }
}

/// Which sellers a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SellerFilter {
    /// Empty: ACTIVE and ON_LEAVE.
    pub statuses: Vec<SellerStatus>,
    pub territory_code: Option<String>,
    pub specialty: Option<String>,
}

impl SellerFilter {
    fn matches(&self, s: &Seller) -> bool {
        let statuses: &[SellerStatus] = if self.statuses.is_empty() {
            &[SellerStatus::Active, SellerStatus::OnLeave]
        } else {
            &self.statuses
        };
        statuses.contains(&s.fields.status)
            && self
                .territory_code
                .as_ref()
                .is_none_or(|code| s.fields.territory_codes.contains(code))
            && self
                .specialty
                .as_ref()
                .is_none_or(|line| s.specialises_in(line))
    }
}

/// Where a listing of sellers resumes: after this seller in listing order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SellerCursor {
    pub house: bool,
    pub display_name: String,
    pub id: Uuid,
}

impl SellerCursor {
    pub fn of(s: &Seller) -> Self {
        Self {
            house: s.house,
            display_name: s.fields.display_name.clone(),
            id: s.id,
        }
    }

    /// The listing order: the house first, then by display name and id (as stored).
    fn cmp_seller(&self, s: &Seller) -> Ordering {
        s.house
            .cmp(&self.house)
            .then_with(|| {
                self.display_name
                    .as_str()
                    .cmp(s.fields.display_name.as_str())
            })
            .then_with(|| self.id.cmp(&s.id))
    }
}

fn seller_not_found(id: Uuid) -> Error {
    Error::not_found("seller", format!("sellers/{id}"))
}

impl Territories {
    /// Adds a seller; with a request key seen before, the seller it created and false.
    pub async fn create_seller(
        &self,
        fields: SellerFields,
        request: Option<RequestKey>,
    ) -> Result<(Seller, bool), Error> {
        let outcome = self.try_create_seller(&fields, request.as_ref()).await;
        or_replay(outcome, request.as_ref(), |id| async move {
            store::seller_by_request(self.db().conn(), &id).await
        })
        .await
    }

    async fn try_create_seller(
        &self,
        fields: &SellerFields,
        request: Option<&RequestKey>,
    ) -> Result<(Seller, bool), Error> {
        let tx = self.db().begin_write().await?;
        if let Some(key) = request
            && let Some((seller, fingerprint)) =
                store::seller_by_request(tx.conn(), &key.id).await?
        {
            key.check_replay(fingerprint)?;
            return Ok((seller, false));
        }
        if store::seller_count(tx.conn()).await? >= MAX_SELLERS as i64 {
            return Err(Error::precondition(
                "TOO_MANY_SELLERS",
                format!("at most {MAX_SELLERS} sellers"),
            ));
        }
        check_token_free(tx.conn(), fields.token_name.as_deref(), None).await?;
        let at = now();
        let seller = Seller {
            id: Uuid::now_v7(),
            fields: fields.clone(),
            house: false,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        store::insert_seller(tx.conn(), &seller, request).await?;
        tx.commit().await?;
        Ok((seller, true))
    }

    pub async fn seller(&self, id: Uuid) -> Result<Seller, Error> {
        store::seller(self.db().conn(), id)
            .await?
            .ok_or_else(|| seller_not_found(id))
    }

    /// Up to `limit` sellers `filter` accepts, after `after`.
    pub async fn sellers(
        &self,
        filter: &SellerFilter,
        after: Option<&SellerCursor>,
        limit: usize,
    ) -> Result<Vec<Seller>, Error> {
        let all = store::sellers(self.db().conn()).await?;
        Ok(all
            .into_iter()
            .filter(|s| after.is_none_or(|a| a.cmp_seller(s) == Ordering::Less))
            .filter(|s| filter.matches(s))
            .take(limit)
            .collect())
    }

    pub async fn update_seller(
        &self,
        id: Uuid,
        patch: SellerPatch,
        etag: Option<&str>,
    ) -> Result<Seller, Error> {
        let tx = self.db().begin_write().await?;
        let mut seller = store::seller(tx.conn(), id)
            .await?
            .ok_or_else(|| seller_not_found(id))?;
        check_etag(&seller.etag(), etag, "seller")?;
        if seller.house && patch.beyond_contact() {
            return Err(Error::precondition(
                "HOUSE_SELLER",
                format!(
                    "{} is the house seller, which stands for the company: only its \
                     display_name and email change",
                    seller.name()
                ),
            ));
        }
        if seller.fields.status == SellerStatus::Departed {
            return Err(Error::precondition(
                "SELLER_DEPARTED",
                format!("{} has departed: a departed seller is final", seller.name()),
            ));
        }
        if let Some(token) = &patch.token_name {
            check_token_free(tx.conn(), token.as_deref(), Some(id)).await?;
        }
        let f = &mut seller.fields;
        let SellerPatch {
            display_name,
            email,
            token_name,
            specialties,
            territory_codes,
            kam,
            capacity,
            status,
        } = patch;
        if let Some(v) = display_name {
            f.display_name = v;
        }
        if let Some(v) = email {
            f.email = v;
        }
        if let Some(v) = token_name {
            f.token_name = v;
        }
        if let Some(v) = specialties {
            f.specialties = v;
        }
        if let Some(v) = territory_codes {
            f.territory_codes = v;
        }
        if let Some(v) = kam {
            f.kam = v;
        }
        if let Some(v) = capacity {
            f.capacity = v;
        }
        if let Some(v) = status {
            f.status = v;
        }
        let expected = seller.version;
        seller.version += 1;
        seller.updated_at = now();
        if !store::update_seller(tx.conn(), &seller, expected).await? {
            return Err(Error::aborted(
                "CONCURRENT_UPDATE",
                "the seller changed concurrently; retry",
            ));
        }
        tx.commit().await?;
        Ok(seller)
    }
}

/// ALREADY_EXISTS when another seller than `me` answers to token `name`.
async fn check_token_free(
    conn: &impl clientela_runtime::Conn,
    name: Option<&str>,
    me: Option<Uuid>,
) -> Result<(), Error> {
    let Some(name) = name else {
        return Ok(());
    };
    match store::seller_by_token(conn, name).await? {
        Some(other) if Some(other) != me => Err(Error::already_exists(
            "TOKEN_NAME_TAKEN",
            format!("sellers/{other} already calls with token {name:?}"),
        )),
        _ => Ok(()),
    }
}
