//! The company's revenue, the denominator of every share of sales, kept current with
//! the feed: each transaction that applies registry events adds what the customers it
//! changed contribute now minus what they contributed before, per currency and UTC hour
//! of purchase (`company_revenue`). The revenue in a window is then a sum of at most a
//! window's hours, read in the transaction that classifies, so a share is measured
//! against the same facts as the customer's own revenue.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::facts::{CustomerFacts, PurchaseFact};
use crate::policy::{BP, Policy};
use crate::projection::{Change, apply_to};

/// The width of one bucket of the ledger. The window's first hour is counted whole, so
/// the company revenue can include up to an hour of purchases just outside the window
/// (a share is understated by that much, never overstated); a finer bucket would cost
/// more rows to sum for every page classified.
pub const BUCKET_SECS: i64 = 3_600;

/// Changes to the company revenue per currency and hour, gathered over a transaction.
#[derive(Debug, Default)]
pub struct RevenueDelta(HashMap<String, HashMap<i64, i64>>);

impl RevenueDelta {
    /// Adds what `facts` contribute, times `sign` (−1 before a change, +1 after): the net
    /// amount after every known return of each purchase, while the customer is live
    /// (archived and merged customers are outside the population, as in its tally).
    pub fn add(&mut self, facts: &CustomerFacts, sign: i64) {
        if facts.is_live() {
            self.add_purchases(facts, sign);
        }
    }

    /// Adds what every purchase of `facts` nets, times `sign`, live or not.
    fn add_purchases(&mut self, facts: &CustomerFacts, sign: i64) {
        for p in &facts.purchases {
            if let Some((hour, net)) = contribution(p) {
                self.bump(&p.currency_code, hour, sign * net);
            }
        }
    }

    fn bump(&mut self, currency: &str, hour: i64, amount: i64) {
        let by_hour = match self.0.get_mut(currency) {
            Some(by_hour) => by_hour,
            None => self.0.entry(currency.to_owned()).or_default(),
        };
        *by_hour.entry(hour).or_default() += amount;
    }

    /// Applies `change` to `facts`, adding what it moves. Only what the change can move is
    /// looked at: one purchase for a purchase or a return, every purchase when a profile
    /// change makes the customer live or not, nothing for the rest. (Summing every
    /// purchase of the customer before and after each batch made a replay's work grow
    /// with the square of a customer's purchases.)
    pub fn apply(&mut self, facts: &mut CustomerFacts, change: Change) {
        let purchase = match &change {
            Change::Purchase { purchase, .. } => Some(purchase.id),
            Change::Return { purchase, .. } => Some(*purchase),
            Change::Profile(_) => {
                let was_live = facts.is_live();
                apply_to(facts, change);
                if facts.is_live() != was_live {
                    self.add_purchases(facts, if was_live { -1 } else { 1 });
                }
                return;
            }
            _ => None,
        };
        let Some(id) = purchase else {
            apply_to(facts, change);
            return;
        };
        let net = |f: &CustomerFacts| {
            f.is_live()
                .then(|| f.purchases.iter().find(|p| p.id == id))
                .flatten()
                .and_then(|p| {
                    contribution(p).map(|(hour, net)| (p.currency_code.clone(), hour, net))
                })
        };
        let before = net(facts);
        apply_to(facts, change);
        let after = net(facts);
        if before != after {
            if let Some((currency, hour, net)) = before {
                self.bump(&currency, hour, -net);
            }
            if let Some((currency, hour, net)) = after {
                self.bump(&currency, hour, net);
            }
        }
    }

    /// The (currency, hour, amount) that moved.
    pub fn into_rows(self) -> Vec<(String, i64, i64)> {
        let mut rows: Vec<(String, i64, i64)> = self
            .0
            .into_iter()
            .flat_map(|(currency, by_hour)| {
                by_hour
                    .into_iter()
                    .filter(|(_, amount)| *amount != 0)
                    .map(move |(hour, amount)| (currency.clone(), hour, amount))
            })
            .collect();
        // One order for every writer, so two transactions never wait on each other's rows.
        rows.sort_unstable();
        rows
    }
}

/// The hour and net amount a purchase adds to the company revenue (None: nothing, its
/// net after every known return not positive).
fn contribution(p: &PurchaseFact) -> Option<(i64, i64)> {
    let net = p.net_at(DateTime::<Utc>::MAX_UTC);
    (net > 0).then(|| (p.at.timestamp().div_euclid(BUCKET_SECS), net))
}

/// The hours (first and last, inclusive) whose purchases make the company revenue of
/// `policy`'s window at `as_of`.
pub fn window_hours(policy: &Policy, as_of: DateTime<Utc>) -> (i64, i64) {
    let start = as_of
        .checked_sub_signed(Duration::days(i64::from(policy.window_days)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    (
        start.timestamp().div_euclid(BUCKET_SECS),
        as_of.timestamp().div_euclid(BUCKET_SECS),
    )
}

/// `revenue` over `company`, in basis points: 0 without company revenue, and never above
/// 100 % (a purchase returned after `as_of` counts in full in the customer's revenue at
/// `as_of` but net in the ledger, which knows the return).
pub fn share_bp(revenue: i64, company: i64) -> i64 {
    if company <= 0 || revenue <= 0 {
        return 0;
    }
    (i128::from(revenue.min(company)) * i128::from(BP) / i128::from(company)) as i64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;
    use clientela_domain::taxonomy::CustomerKind;
    use uuid::Uuid;

    use super::*;
    use crate::facts::{PurchaseFact, ReturnFact, Standing};

    fn purchase(n: u128, at: DateTime<Utc>, currency: &str, total: i64) -> PurchaseFact {
        PurchaseFact {
            id: Uuid::from_u128(n),
            at,
            currency_code: currency.into(),
            total_minor: total,
            discounted: false,
            returns: Vec::new(),
        }
    }

    #[test]
    fn a_change_adds_what_it_moved_per_currency_and_hour() {
        let t = Utc.with_ymd_and_hms(2026, 5, 1, 10, 30, 0).unwrap();
        let mut before = CustomerFacts::new(Uuid::from_u128(1), CustomerKind::Person);
        before.add_purchase(purchase(1, t, "CLP", 1_000));
        let mut after = before.clone();
        after.add_purchase(purchase(2, t + Duration::minutes(10), "CLP", 500));
        after.add_purchase(purchase(3, t, "USD", 7));
        after.purchases[0].returns.push(ReturnFact {
            id: Uuid::from_u128(9),
            at: t + Duration::days(1),
            amount_minor: 400,
        });
        let mut delta = RevenueDelta::default();
        delta.add(&before, -1);
        delta.add(&after, 1);
        let hour = t.timestamp() / BUCKET_SECS;
        assert_eq!(
            delta.into_rows(),
            vec![("CLP".into(), hour, 100), ("USD".into(), hour, 7)],
            "+500 bought, −400 returned in CLP; 7 USD"
        );
        let mut archived = after.clone();
        archived.standing = Standing::Archived;
        let mut delta = RevenueDelta::default();
        delta.add(&after, -1);
        delta.add(&archived, 1);
        assert_eq!(
            delta.into_rows(),
            vec![("CLP".into(), hour, -1_100), ("USD".into(), hour, -7)],
            "an archived customer leaves the company revenue"
        );
    }

    /// Applying changes one at a time moves the ledger exactly as summing the customer
    /// before and after does, for every kind of change, repeats included.
    #[test]
    fn applying_a_change_moves_what_summing_before_and_after_moves() {
        use crate::projection::{Change, Profile};
        let t = Utc.with_ymd_and_hms(2026, 5, 1, 10, 30, 0).unwrap();
        let id = Uuid::from_u128(1);
        let profile = |standing: Standing, minutes: i64| {
            Change::Profile(Profile {
                id,
                standing,
                kind: CustomerKind::Person,
                region: String::new(),
                audience_reach: 0,
                public_figure: false,
                decision_role: None,
                high_expectations: false,
                key_account: false,
                cost_to_serve: None,
                updated_at: t + Duration::minutes(minutes),
            })
        };
        let bought = |n: u128, currency: &str, total: i64| Change::Purchase {
            customer: id,
            purchase: purchase(n, t + Duration::hours(n as i64), currency, total),
        };
        let returned = |purchase: u128, n: u128, amount_minor: i64| Change::Return {
            customer: id,
            purchase: Uuid::from_u128(purchase),
            id: Uuid::from_u128(100 + n),
            at: t + Duration::days(2),
            amount_minor,
        };
        let changes = vec![
            profile(Standing::Prospect, 0),
            bought(1, "CLP", 1_000),
            bought(1, "CLP", 1_000),
            bought(2, "USD", 70),
            returned(1, 1, 400),
            returned(1, 1, 400),
            returned(1, 2, 600),
            returned(9, 3, 5),
            profile(Standing::Customer, 1),
            profile(Standing::Archived, 2),
            bought(3, "CLP", 300),
            profile(Standing::Archived, 3),
            profile(Standing::Customer, 4),
        ];
        let mut facts = CustomerFacts::new(id, CustomerKind::Person);
        for (step, change) in changes.into_iter().enumerate() {
            let mut summed = RevenueDelta::default();
            summed.add(&facts, -1);
            let mut applied = RevenueDelta::default();
            applied.apply(&mut facts, change);
            summed.add(&facts, 1);
            assert_eq!(applied.into_rows(), summed.into_rows(), "step {step}");
        }
    }

    #[test]
    fn the_window_counts_its_first_hour_whole() {
        let policy = Policy {
            window_days: 1,
            ..Policy::default()
        };
        let at = Utc.with_ymd_and_hms(2026, 5, 2, 10, 30, 0).unwrap();
        let (first, last) = window_hours(&policy, at);
        assert_eq!(last - first, 24);
        assert_eq!(
            first * BUCKET_SECS,
            (at - Duration::minutes(30 + 24 * 60)).timestamp()
        );
        assert_eq!(
            window_hours(&policy, DateTime::<Utc>::MIN_UTC).0,
            DateTime::<Utc>::MIN_UTC.timestamp().div_euclid(BUCKET_SECS)
        );
    }

    #[test]
    fn a_share_is_never_above_the_whole() {
        assert_eq!(share_bp(250, 1_000), 2_500);
        assert_eq!(share_bp(1_200, 1_000), BP);
        assert_eq!(share_bp(5, 0), 0);
        assert_eq!(share_bp(-5, 100), 0);
    }
}
