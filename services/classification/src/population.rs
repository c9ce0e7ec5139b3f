//! The population-relative cut-offs: ABC volume bands, the top buyers that are KEY
//! accounts, the company's revenue (share of sales) and the RFM quintiles, computed over
//! the whole customer base at an instant.
//!
//! Every ranking orders customers by value, best first, and breaks ties by customer id
//! (smaller first). A cut-off is the (value, id) of the last customer inside a band, so
//! one customer can be placed against it without ranking everyone again.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::facts::Features;
use crate::policy::{BP, Policy};

/// A customer's place in a ranking: higher value first, then smaller id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rank {
    /// The ranked value.
    pub value: i64,
    pub id: Uuid,
}

impl Rank {
    /// Whether `self` ranks at or before `bound` (inside the band `bound` closes).
    pub fn within(&self, bound: &Rank) -> bool {
        self.cmp_rank(bound) != Ordering::Greater
    }

    fn cmp_rank(&self, other: &Rank) -> Ordering {
        other
            .value
            .cmp(&self.value)
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// Cut-offs of one RFM metric: the last customer with score ≥ 5, ≥ 4, ≥ 3, ≥ 2.
pub type QuintileBounds = [Option<Rank>; 4];

/// The population's cut-offs at an instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Population {
    /// Live customers.
    pub customers: i64,
    /// Of them, with a counted purchase.
    pub buyers: i64,
    /// Company net revenue in the window (policy currency).
    pub revenue_in_window: i64,
    /// Last customer of the HIGH band (ABC).
    pub abc_high: Option<Rank>,
    /// Last customer of the MEDIUM band (ABC).
    pub abc_medium: Option<Rank>,
    /// Last of the top buyers that are KEY accounts.
    pub key: Option<Rank>,
    /// The ABC ranking in steps of 1 % of revenue: for each percent the revenue ranked
    /// before a buyer first reaches, that buyer and the exact share (basis points). A
    /// buyer's running share lies between the checkpoints around it, which is what its
    /// volume explanation says without ranking everyone again.
    #[serde(default)]
    pub abc_curve: Vec<(Rank, i64)>,
    /// Recency (time of the last purchase, seconds).
    pub recency: QuintileBounds,
    /// Frequency (purchases).
    pub frequency: QuintileBounds,
    /// Monetary (net revenue).
    pub monetary: QuintileBounds,
}

/// A population as stored: its cut-offs, when and under which policy version they were
/// computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulationSnapshot {
    /// Policy version.
    pub policy_version: i64,
    pub as_of: DateTime<Utc>,
    /// Cut-offs.
    pub population: Population,
    /// The company revenue ledger's total when it was stored, which the revenue moving
    /// since is measured against (None: stored before the ledger was kept; its
    /// `revenue_in_window` stands in).
    #[serde(default)]
    pub company_revenue: Option<i64>,
}

impl PopulationSnapshot {
    /// The company revenue it was stored with.
    pub fn baseline_revenue(&self) -> i64 {
        self.company_revenue
            .unwrap_or(self.population.revenue_in_window)
    }
}

fn sorted(mut ranks: Vec<Rank>) -> Vec<Rank> {
    ranks.sort_unstable_by(Rank::cmp_rank);
    ranks
}

/// The last rank of each quintile score 5..2 over `ranks` (sorted best first): position
/// i of n scores 5 − ⌊5i/n⌋.
fn quintiles(ranks: &[Rank]) -> QuintileBounds {
    let n = ranks.len();
    let mut bounds = [None; 4];
    for (slot, score) in (2..=5usize).rev().enumerate() {
        // Positions with 5 − ⌊5i/n⌋ ≥ score: i < (6 − score)·n/5, rounded up.
        let count = ((6 - score) * n).div_ceil(5);
        bounds[slot] = count
            .checked_sub(1)
            .and_then(|last| ranks.get(last))
            .copied();
    }
    bounds
}

/// The score (1-5) of `rank` against quintile bounds.
pub fn quintile_score(rank: &Rank, bounds: &QuintileBounds) -> u8 {
    1 + bounds
        .iter()
        .filter(|b| b.is_some_and(|b| rank.within(&b)))
        .count() as u8
}

/// The population counted one customer at a time: keeps four ranks per buyer, not
/// their features.
#[derive(Debug, Default)]
pub struct Tally {
    population: Population,
    revenue: Vec<Rank>,
    recency: Vec<Rank>,
    frequency: Vec<Rank>,
    monetary: Vec<Rank>,
}

impl Tally {
    /// Counts live customer `id` with features `f`.
    pub fn add(&mut self, id: Uuid, f: &Features) {
        self.population.customers += 1;
        if f.purchases_total == 0 {
            return;
        }
        self.population.buyers += 1;
        self.population.revenue_in_window += f.revenue_in_window;
        self.revenue.push(Rank {
            value: f.revenue_in_window,
            id,
        });
        self.recency.push(Rank {
            value: f.last_purchase_at.map_or(i64::MIN, |t| t.timestamp()),
            id,
        });
        self.frequency.push(Rank {
            value: f.purchases_total,
            id,
        });
        self.monetary.push(Rank {
            value: f.revenue_total,
            id,
        });
    }

    /// The cut-offs under `policy` over the customers counted.
    pub fn finish(self, policy: &Policy) -> Population {
        let mut population = self.population;
        let revenue = sorted(self.revenue);
        let total = i128::from(population.revenue_in_window);
        let mut before: i128 = 0;
        for r in revenue.iter().filter(|r| r.value > 0) {
            let before_bp = (before * i128::from(BP) / total.max(1)) as i64;
            if population
                .abc_curve
                .last()
                .is_none_or(|(_, last)| before_bp / 100 > last / 100)
            {
                population.abc_curve.push((*r, before_bp));
            }
            // Inside a band while the revenue ranked before it is below the band's share.
            if before * i128::from(BP) < total * i128::from(policy.abc_high_cumulative_bp) {
                population.abc_high = Some(*r);
            }
            if before * i128::from(BP) < total * i128::from(policy.abc_medium_cumulative_bp) {
                population.abc_medium = Some(*r);
            }
            before += i128::from(r.value);
        }
        // The top share of buyers by revenue; a slot that falls on a buyer with no revenue
        // in the window moves the cut-off up to the last one with revenue (it used to
        // leave no KEY by rank at all).
        let key_count = (revenue.len() * policy.key_top_buyers_bp as usize).div_ceil(BP as usize);
        population.key = revenue
            .iter()
            .take(key_count)
            .rev()
            .find(|r| r.value > 0)
            .copied();
        population.recency = quintiles(&sorted(self.recency));
        population.frequency = quintiles(&sorted(self.frequency));
        population.monetary = quintiles(&sorted(self.monetary));
        population
    }
}

impl Population {
    /// Whether it ranks any buyer with revenue in the window: one computed before anyone
    /// bought cannot place a buyer who has (it would read LOW, not a KEY account).
    pub fn ranks_revenue(&self) -> bool {
        self.abc_high.is_some()
    }

    /// Where the revenue ranked before `rank` lies, in basis points of the population's
    /// revenue: at least the first, below the second (the ABC curve's checkpoints around
    /// it, both the same when `rank` is one; 10 000 past the last buyer). None when it
    /// keeps no curve (no buyer with revenue, or stored before the curve was kept).
    pub fn running_share_bp(&self, rank: &Rank) -> Option<(i64, i64)> {
        if self.abc_curve.is_empty() {
            return None;
        }
        let at = self.abc_curve.partition_point(|(r, _)| r.within(rank));
        let Some((before, low)) = at.checked_sub(1).map(|i| self.abc_curve[i]) else {
            return Some((0, 0));
        };
        if before == *rank {
            return Some((low, low));
        }
        // The checkpoint ranks above it, so its revenue is before it too.
        let own =
            i128::from(before.value) * i128::from(BP) / i128::from(self.revenue_in_window.max(1));
        let high = self.abc_curve.get(at).map_or(BP, |(_, bp)| *bp);
        Some(((low + own as i64).min(high), high))
    }

    /// The cut-offs over every live customer's features.
    pub fn compute<'a>(
        customers: impl IntoIterator<Item = (Uuid, &'a Features)>,
        policy: &Policy,
    ) -> Self {
        let mut tally = Tally::default();
        for (id, f) in customers {
            tally.add(id, f);
        }
        tally.finish(policy)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rank(value: i64, id: u128) -> Rank {
        Rank {
            value,
            id: Uuid::from_u128(id),
        }
    }

    #[test]
    fn ties_are_broken_by_customer_id() {
        assert!(rank(10, 1).within(&rank(10, 2)));
        assert!(!rank(10, 3).within(&rank(10, 2)));
        assert!(rank(11, 9).within(&rank(10, 2)));
    }

    #[test]
    fn ten_customers_make_two_per_quintile() {
        let ranks = sorted((1..=10).map(|v| rank(v, v as u128)).collect());
        let bounds = quintiles(&ranks);
        let scores: Vec<u8> = (1..=10)
            .map(|v| quintile_score(&rank(v, v as u128), &bounds))
            .collect();
        assert_eq!(scores, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn equal_values_still_split_by_the_fixed_tie_break() {
        let ranks = sorted((1..=5).map(|id| rank(7, id)).collect());
        let bounds = quintiles(&ranks);
        let scores: Vec<u8> = (1..=5)
            .map(|id| quintile_score(&rank(7, id), &bounds))
            .collect();
        assert_eq!(scores, vec![5, 4, 3, 2, 1]);
    }

    #[test]
    fn abc_bands_follow_cumulative_revenue() {
        // Revenues 50, 30, 10, 5, 5 of 100: A takes 50 and 30 (80 %), B the 10 and the
        // first 5 (95 %), C the last 5.
        let features: Vec<(Uuid, Features)> = [(1, 50), (2, 30), (3, 10), (4, 5), (5, 5)]
            .into_iter()
            .map(|(id, revenue)| {
                (
                    Uuid::from_u128(id),
                    Features {
                        purchases_total: 1,
                        revenue_in_window: revenue,
                        revenue_total: revenue,
                        ..Features::default()
                    },
                )
            })
            .collect();
        let p = Population::compute(features.iter().map(|(id, f)| (*id, f)), &Policy::default());
        assert_eq!(p.revenue_in_window, 100);
        assert_eq!(
            p.abc_curve,
            vec![
                (rank(50, 1), 0),
                (rank(30, 2), 5_000),
                (rank(10, 3), 8_000),
                (rank(5, 4), 9_000),
                (rank(5, 5), 9_500)
            ]
        );
        assert_eq!(
            p.running_share_bp(&rank(10, 3)),
            Some((8_000, 8_000)),
            "exact at a checkpoint"
        );
        assert_eq!(
            p.running_share_bp(&rank(20, 9)),
            Some((8_000, 8_000)),
            "between two: 50 + 30 above"
        );
        assert_eq!(
            p.running_share_bp(&rank(5, 9)),
            Some((BP, BP)),
            "after the last"
        );
        assert_eq!(
            p.running_share_bp(&rank(90, 9)),
            Some((0, 0)),
            "above everyone"
        );
        assert_eq!(
            Population::default().running_share_bp(&rank(5, 9)),
            None,
            "no curve"
        );
        assert_eq!(p.abc_high, Some(rank(30, 2)));
        assert_eq!(p.abc_medium, Some(rank(5, 4)));
        assert_eq!(
            p.key,
            Some(rank(50, 1)),
            "top 5 % of 5 buyers, rounded up: one"
        );
    }

    #[test]
    fn key_goes_to_the_top_buyers_with_revenue_when_the_slots_reach_buyers_without() {
        // 100 buyers, 5 KEY slots, only 3 with revenue in the window.
        let features: Vec<(Uuid, Features)> = (1..=100u128)
            .map(|id| {
                let revenue = if id <= 3 { 1_000 * id as i64 } else { 0 };
                (
                    Uuid::from_u128(id),
                    Features {
                        purchases_total: 1,
                        revenue_in_window: revenue,
                        revenue_total: revenue.max(1),
                        ..Features::default()
                    },
                )
            })
            .collect();
        let p = Population::compute(features.iter().map(|(id, f)| (*id, f)), &Policy::default());
        assert_eq!(
            p.key,
            Some(rank(1_000, 1)),
            "the three with revenue are KEY"
        );
    }
}
