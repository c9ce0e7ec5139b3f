//! The projection: what each registry event changes in the customers' facts.
//!
//! Events arrive as [`Change`]s (the api layer converts the registry's feed, so no proto
//! type reaches here) and are applied to a [`Workspace`] of loaded facts. Records are
//! keyed by their registry ids, so applying an event twice changes nothing, and a
//! customer's profile is replaced only by a newer one.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use clientela_domain::taxonomy::{CustomerKind, DecisionRole};
use uuid::Uuid;

use crate::facts::{
    ComplaintFact, Cost, CustomerFacts, PurchaseFact, ReferralFact, ReturnFact, Standing,
    SurveyFact,
};

/// A customer's profile as the registry last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Registry id.
    pub id: Uuid,
    pub standing: Standing,
    /// Person or organization.
    pub kind: CustomerKind,
    /// Region of the address ("" if none).
    pub region: String,
    /// Audience reach.
    pub audience_reach: i64,
    /// Public figure.
    pub public_figure: bool,
    /// Decision role.
    pub decision_role: Option<DecisionRole>,
    /// Flagged as expecting more than most.
    pub high_expectations: bool,
    /// Flagged as a key account.
    pub key_account: bool,
    /// Cost to serve.
    pub cost_to_serve: Option<Cost>,
    /// When the registry last changed it.
    pub updated_at: DateTime<Utc>,
}

/// What one registry event says, as far as the engine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A customer was created or changed.
    Profile(Profile),
    /// `merged` was merged into `survivor`: its history moved.
    Merged { survivor: Uuid, merged: Uuid },
    Purchase {
        customer: Uuid,
        purchase: PurchaseFact,
    },
    /// A return against a purchase.
    Return {
        customer: Uuid,
        purchase: Uuid,
        /// Registry return id.
        id: Uuid,
        at: DateTime<Utc>,
        /// Amount returned, minor units.
        amount_minor: i64,
    },
    /// A survey answer.
    Survey {
        /// Who answered.
        customer: Uuid,
        survey: SurveyFact,
    },
    /// A complaint opened or resolved.
    Complaint {
        /// Who complained.
        customer: Uuid,
        /// The complaint as it stands.
        complaint: ComplaintFact,
    },
    Referral {
        /// Who referred.
        referrer: Uuid,
        referral: ReferralFact,
    },
}

impl Change {
    /// Whether the change is a merge: the one change whose effect on a customer depends on
    /// the facts of others (the tombstone's history moves), so it is applied on its own.
    pub fn is_merge(&self) -> bool {
        matches!(self, Change::Merged { .. })
    }

    /// When what the change records happened (a merge records nothing of its own).
    pub fn instant(&self) -> Option<DateTime<Utc>> {
        match self {
            Change::Profile(p) => Some(p.updated_at),
            Change::Merged { .. } => None,
            Change::Purchase { purchase, .. } => Some(purchase.at),
            Change::Return { at, .. } => Some(*at),
            Change::Survey { survey, .. } => Some(survey.at),
            Change::Complaint { complaint, .. } => Some(complaint.opened_at),
            Change::Referral { referral, .. } => Some(referral.at),
        }
    }

    /// The customers whose facts the change reads or writes (before a merge is known
    /// in full: see [`Workspace::apply`]).
    pub fn customers(&self) -> Vec<Uuid> {
        match self {
            Change::Profile(p) => vec![p.id],
            Change::Merged { survivor, merged } => vec![*survivor, *merged],
            Change::Purchase { customer, .. }
            | Change::Return { customer, .. }
            | Change::Survey { customer, .. }
            | Change::Complaint { customer, .. } => vec![*customer],
            Change::Referral { referrer, referral } => vec![*referrer, referral.referred],
        }
    }
}

/// Facts loaded for a batch of changes, and which of them changed.
#[derive(Debug, Default)]
pub struct Workspace {
    facts: HashMap<Uuid, CustomerFacts>,
    changed: BTreeSet<Uuid>,
}

impl Workspace {
    /// Adds facts loaded from the store.
    pub fn insert(&mut self, facts: CustomerFacts) {
        self.facts.insert(facts.id, facts);
    }

    /// Whether `id`'s facts are loaded (or known not to exist yet).
    pub fn has(&self, id: Uuid) -> bool {
        self.facts.contains_key(&id)
    }

    /// The loaded facts of `id`.
    pub fn get(&self, id: Uuid) -> Option<&CustomerFacts> {
        self.facts.get(&id)
    }

    /// Every customer's facts it holds, loaded or created.
    pub fn loaded(&self) -> impl Iterator<Item = &CustomerFacts> {
        self.facts.values()
    }

    /// The facts that changed, in id order.
    pub fn changed(&self) -> impl Iterator<Item = &CustomerFacts> {
        self.changed.iter().filter_map(|id| self.facts.get(id))
    }

    /// The ids that changed.
    pub fn changed_ids(&self) -> Vec<Uuid> {
        self.changed.iter().copied().collect()
    }

    /// The facts of `id` for writing, created if the engine has not heard of it.
    fn entry(&mut self, id: Uuid) -> &mut CustomerFacts {
        self.changed.insert(id);
        self.facts
            .entry(id)
            .or_insert_with(|| CustomerFacts::new(id, CustomerKind::Person))
    }

    /// Customers besides those named by `change` whose facts applying it touches: for a
    /// merge, the customers the tombstone referred (their `referred_by` moves). Load
    /// them before [`Workspace::apply`].
    pub fn also_needed(&self, change: &Change) -> Vec<Uuid> {
        match change {
            Change::Merged { merged, .. } => self
                .facts
                .get(merged)
                .map(|m| m.referrals.iter().map(|r| r.referred).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Applies one change. Every customer it names (and [`Workspace::also_needed`])
    /// must be loaded first, or the store's facts would be overwritten.
    pub fn apply(&mut self, change: Change) {
        if let Change::Merged { survivor, merged } = change {
            return self.merge(survivor, merged);
        }
        let mut named = change.customers();
        named.dedup();
        if let Some((last, others)) = named.split_last() {
            for id in others {
                apply_to(self.entry(*id), change.clone());
            }
            apply_to(self.entry(*last), change);
        }
    }

    /// The registry's merge (`move_history`): every purchase, survey and complaint moves
    /// to the survivor; referrals the tombstone made move unless they referred the
    /// survivor; the referral that brought the tombstone moves unless the survivor has
    /// one or made it.
    fn merge(&mut self, survivor: Uuid, merged: Uuid) {
        let tomb = std::mem::replace(
            self.entry(merged),
            CustomerFacts::new(merged, CustomerKind::Person),
        );
        let (made_moving, made_staying): (Vec<_>, Vec<_>) = tomb
            .referrals
            .iter()
            .cloned()
            .partition(|r| r.referred != survivor);
        let brought_moves =
            !tomb.referred_by.is_empty() && self.entry(survivor).referred_by.is_empty();
        let (referred_by_moving, referred_by_staying): (Vec<Uuid>, Vec<Uuid>) = if brought_moves {
            tomb.referred_by.iter().partition(|r| **r != survivor)
        } else {
            (Vec::new(), tomb.referred_by.clone())
        };
        {
            let t = self.entry(merged);
            *t = CustomerFacts {
                id: merged,
                purchases: Vec::new(),
                surveys: Vec::new(),
                complaints: Vec::new(),
                referrals: made_staying,
                referred_by: referred_by_staying,
                ..tomb.clone()
            };
            t.standing = Standing::Merged;
        }
        for r in &made_moving {
            let referred = self.entry(r.referred);
            referred.referred_by.retain(|x| *x != merged);
            add_referrer(referred, survivor);
        }
        for referrer in &referred_by_moving {
            let f = self.entry(*referrer);
            for r in f.referrals.iter_mut().filter(|r| r.referred == merged) {
                r.referred = survivor;
            }
        }
        let s = self.entry(survivor);
        for p in tomb.purchases {
            s.add_purchase(p);
        }
        s.surveys.extend(tomb.surveys);
        s.surveys.sort_unstable_by_key(|x| (x.at, x.id));
        s.surveys.dedup_by_key(|x| x.id);
        s.complaints.extend(tomb.complaints);
        s.complaints.sort_unstable_by_key(|x| (x.opened_at, x.id));
        s.complaints.dedup_by_key(|x| x.id);
        s.referrals.extend(made_moving);
        s.referrals.sort_unstable_by_key(|x| (x.at, x.id));
        s.referrals.dedup_by_key(|x| x.id);
        for r in referred_by_moving {
            add_referrer(s, r);
        }
    }
}

/// Applies to `f` what `change` (not a merge: see [`Change::is_merge`]) says of that
/// customer. A change names one customer, or two for a referral (the referrer gains the
/// referral, the referred customer gains a referrer), so the changes of a run without
/// merges can be applied one customer at a time, in any order of customers, as long as
/// each customer's come in feed order.
pub fn apply_to(f: &mut CustomerFacts, change: Change) {
    match change {
        Change::Profile(p) => {
            if f.profile_at.is_some_and(|at| at > p.updated_at) {
                return;
            }
            f.profile_at = Some(p.updated_at);
            f.standing = p.standing;
            f.kind = p.kind;
            f.region = p.region;
            f.audience_reach = p.audience_reach;
            f.public_figure = p.public_figure;
            f.decision_role = p.decision_role;
            f.high_expectations = p.high_expectations;
            f.key_account = p.key_account;
            f.cost_to_serve.clone_from(&p.cost_to_serve);
        }
        Change::Merged { .. } => {
            tracing::error!(customer = %f.id, "a merge applied as a change of one customer");
        }
        Change::Purchase { purchase, .. } => f.add_purchase(purchase),
        Change::Return {
            customer,
            purchase,
            id,
            at,
            amount_minor,
        } => match f.purchases.iter_mut().find(|p| p.id == purchase) {
            Some(p) if !p.returns.iter().any(|r| r.id == id) => {
                p.returns.push(ReturnFact {
                    id,
                    at,
                    amount_minor,
                });
                p.returns.sort_unstable();
            }
            Some(_) => {}
            None => tracing::warn!(%customer, %purchase, "a return for an unknown purchase"),
        },
        Change::Survey { survey, .. } => {
            if !f.surveys.iter().any(|s| s.id == survey.id) {
                f.surveys.push(survey);
                f.surveys.sort_unstable_by_key(|s| (s.at, s.id));
            }
        }
        Change::Complaint { complaint, .. } => {
            match f.complaints.iter_mut().find(|c| c.id == complaint.id) {
                // Resolution is final: an "opened" seen after "resolved" keeps it.
                Some(c) => c.resolved_at = c.resolved_at.or(complaint.resolved_at),
                None => {
                    f.complaints.push(complaint);
                    f.complaints.sort_unstable_by_key(|c| (c.opened_at, c.id));
                }
            }
        }
        Change::Referral { referrer, referral } => {
            if f.id == referral.referred {
                add_referrer(f, referrer);
            }
            if f.id == referrer && !f.referrals.iter().any(|r| r.id == referral.id) {
                f.referrals.push(referral);
                f.referrals.sort_unstable_by_key(|r| (r.at, r.id));
            }
        }
    }
}

fn add_referrer(f: &mut CustomerFacts, referrer: Uuid) {
    if let Err(at) = f.referred_by.binary_search(&referrer) {
        f.referred_by.insert(at, referrer);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + Duration::days(d)
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn purchase(customer: u128, n: u128, d: i64) -> Change {
        Change::Purchase {
            customer: id(customer),
            purchase: PurchaseFact {
                id: id(n),
                at: day(d),
                currency_code: "CLP".into(),
                total_minor: 1_000,
                discounted: false,
                returns: Vec::new(),
            },
        }
    }

    fn referral(referrer: u128, referred: u128, n: u128) -> Change {
        Change::Referral {
            referrer: id(referrer),
            referral: ReferralFact {
                id: id(n),
                referred: id(referred),
                at: day(1),
            },
        }
    }

    fn profile(n: u128, at: i64, region: &str) -> Change {
        Change::Profile(Profile {
            id: id(n),
            standing: Standing::Prospect,
            kind: CustomerKind::Organization,
            region: region.into(),
            audience_reach: 0,
            public_figure: false,
            decision_role: None,
            high_expectations: false,
            key_account: false,
            cost_to_serve: None,
            updated_at: day(at),
        })
    }

    #[test]
    fn applying_an_event_twice_changes_nothing() {
        let mut once = Workspace::default();
        let mut twice = Workspace::default();
        for c in [purchase(1, 10, 0), referral(1, 2, 20)] {
            once.apply(c.clone());
            twice.apply(c.clone());
            twice.apply(c);
        }
        assert_eq!(once.get(id(1)), twice.get(id(1)));
        assert_eq!(twice.get(id(2)).unwrap().referred_by, vec![id(1)]);
    }

    #[test]
    fn an_older_profile_does_not_replace_a_newer_one() {
        let mut w = Workspace::default();
        w.apply(profile(1, 5, "Biobío"));
        w.apply(profile(1, 3, "Maule"));
        assert_eq!(w.get(id(1)).unwrap().region, "Biobío");
    }

    #[test]
    fn a_merge_moves_history_like_the_registry() {
        let mut w = Workspace::default();
        w.apply(purchase(2, 10, 0));
        w.apply(purchase(1, 11, 1));
        // 2 referred 3 and 1; 4 referred 2.
        w.apply(referral(2, 3, 20));
        w.apply(referral(2, 1, 21));
        w.apply(referral(4, 2, 22));
        w.apply(Change::Merged {
            survivor: id(1),
            merged: id(2),
        });
        let s = w.get(id(1)).unwrap();
        assert_eq!(
            s.purchases.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![id(10), id(11)]
        );
        assert_eq!(s.referrals.len(), 1, "the referral of 3 moved");
        assert_eq!(s.referrals[0].referred, id(3));
        assert_eq!(
            s.referred_by,
            vec![id(2)],
            "the survivor was referred (by the tombstone): 4's referral does not move"
        );
        let t = w.get(id(2)).unwrap();
        assert_eq!(t.standing, Standing::Merged);
        assert!(t.purchases.is_empty());
        assert_eq!(
            t.referrals.iter().map(|r| r.referred).collect::<Vec<_>>(),
            vec![id(1)],
            "the referral of the survivor stays with the tombstone"
        );
        assert_eq!(w.get(id(3)).unwrap().referred_by, vec![id(1)]);
        assert_eq!(w.get(id(4)).unwrap().referrals[0].referred, id(2));
    }

    #[test]
    fn a_merge_moves_the_referral_that_brought_the_tombstone() {
        let mut w = Workspace::default();
        w.apply(referral(4, 2, 22));
        w.apply(Change::Merged {
            survivor: id(1),
            merged: id(2),
        });
        assert_eq!(w.get(id(1)).unwrap().referred_by, vec![id(4)]);
        assert!(w.get(id(2)).unwrap().referred_by.is_empty());
        assert_eq!(w.get(id(4)).unwrap().referrals[0].referred, id(1));
    }
}
