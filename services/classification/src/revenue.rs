//! The company's revenue, the denominator of every share of sales, kept current with
//! the feed: each transaction that applies registry events adds what the customers it
//! changed contribute now minus what they contributed before, per currency and UTC hour
//! of purchase (`company_revenue`). The revenue in a window is then a sum of at most a
//! window's hours, read in the transaction that classifies, so a share is measured
//! against the same facts as the customer's own revenue.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::facts::CustomerFacts;
use crate::policy::{BP, Policy};

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
        if !facts.is_live() {
            return;
        }
        for p in &facts.purchases {
            let net = p.net_at(DateTime::<Utc>::MAX_UTC);
            if net <= 0 {
                continue;
            }
            let hour = p.at.timestamp().div_euclid(BUCKET_SECS);
            let by_hour = match self.0.get_mut(p.currency_code.as_str()) {
                Some(by_hour) => by_hour,
                None => self.0.entry(p.currency_code.clone()).or_default(),
            };
            *by_hour.entry(hour).or_default() += sign * net;
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
