//! A territory's prospect list (TERRITORY.md, "Prospect list"): the customers placed in
//! it or below who never bought, each with its PROSPECTOR if one claimed it.

use clientela_runtime::Error;
use uuid::Uuid;

use crate::assign::{Assignment, Role};
use crate::cartera::Customer;
use crate::store;
use crate::territories::Territories;

/// Which prospects a listing wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProspectFilter {
    /// A territory code of the active model: its prospects and those below it.
    pub territory: String,
    /// Only those no PROSPECTOR has claimed.
    pub unclaimed: bool,
}

impl Territories {
    /// Up to `limit` prospects of `filter` after id `after`, each with its PROSPECTOR;
    /// `scope`, a sales caller's seller, may list only territories it covers.
    pub async fn prospects(
        &self,
        filter: &ProspectFilter,
        scope: Option<Uuid>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<(Customer, Option<Assignment>)>, Error> {
        let tx = self.db().begin_planned_read().await?;
        let active = self.active_model(&tx).await?;
        if active.id.is_none() {
            return Err(Error::precondition(
                "NO_ACTIVE_MODEL",
                "no territory model is active: prospects are in no territory yet",
            ));
        }
        let path = active.paths.get(&filter.territory).ok_or_else(|| {
            Error::not_found(
                "territory",
                format!("{} (in the active model)", filter.territory),
            )
        })?;
        if let Some(me) = scope {
            let seller = store::seller(&tx, me)
                .await?
                .ok_or_else(|| Error::Internal("the caller's seller vanished".into()))?;
            if !path
                .iter()
                .any(|code| seller.fields.territory_codes.contains(code))
            {
                return Err(Error::PermissionDenied(format!(
                    "{} does not cover territory {}: a sales token lists its own \
                     territories' prospects",
                    seller.name(),
                    filter.territory
                )));
            }
        }
        let mut codes: Vec<String> = active
            .paths
            .iter()
            .filter(|(_, p)| p.contains(&filter.territory))
            .map(|(code, _)| code.clone())
            .collect();
        codes.sort_unstable();
        let customers =
            store::cartera::prospects(&tx, &codes, filter.unclaimed, after, limit).await?;
        let ids: Vec<Uuid> = customers.iter().map(|c| c.id).collect();
        let mut prospectors = store::cartera::open_assignments(&tx, &ids).await?;
        prospectors.retain(|a| a.role == Role::Prospector);
        Ok(customers
            .into_iter()
            .map(|c| {
                let prospector = prospectors.iter().find(|a| a.customer == c.id).cloned();
                (c, prospector)
            })
            .collect())
    }
}
