//! What the engine knows of a customer from the registry's feed (the projection), and
//! the features docs/CLASSIFICATION.md lists, computed from it at an `as_of` instant.
//!
//! Facts keep every dated record (purchases with their returns, surveys, complaints,
//! referrals) rather than running totals, so features at any instant are exact and do
//! not depend on the order events arrived in.

use chrono::{DateTime, Duration, Utc};
use clientela_domain::taxonomy::{CustomerKind, DecisionRole, SurveyKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::classification::LeftOut;
use crate::policy::{BP, Policy};

/// Where the customer stands in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standing {
    /// Never bought.
    Prospect,
    /// Has bought.
    Customer,
    /// Archived: not classified.
    Archived,
    /// Merged into another customer: not classified.
    Merged,
}

/// A purchase as the engine needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseFact {
    /// Registry purchase id.
    pub id: Uuid,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub currency_code: String,
    /// Gross total, minor units.
    pub total_minor: i64,
    /// Whether any line was discounted or on promotion.
    pub discounted: bool,
    /// Returns against it, in (id, time) order.
    pub returns: Vec<ReturnFact>,
}

/// A return against a purchase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReturnFact {
    /// Registry return id.
    pub id: Uuid,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    /// Amount returned, minor units.
    pub amount_minor: i64,
}

impl PurchaseFact {
    /// Net amount after the returns made up to `as_of`.
    pub fn net_at(&self, as_of: DateTime<Utc>) -> i64 {
        self.total_minor
            - self
                .returns
                .iter()
                .filter(|r| r.at <= as_of)
                .map(|r| r.amount_minor)
                .sum::<i64>()
    }

    /// Counted as a purchase at `as_of`: made by then and not fully returned by then.
    pub fn counts_at(&self, as_of: DateTime<Utc>) -> bool {
        self.at <= as_of && (self.total_minor == 0 || self.net_at(as_of) > 0)
    }
}

/// A satisfaction survey answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyFact {
    /// Registry survey id.
    pub id: Uuid,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    /// NPS or CSAT.
    pub kind: SurveyKind,
    pub score: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintFact {
    /// Registry complaint id.
    pub id: Uuid,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub opened_at: DateTime<Utc>,
    /// Resolved, if it was.
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A referral this customer made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralFact {
    /// Registry referral id.
    pub id: Uuid,
    /// The referred customer.
    pub referred: Uuid,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
}

/// An amount of money in a currency (the registry's cost to serve).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    pub currency_code: String,
    pub amount_minor: i64,
}

/// Everything the engine knows of one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerFacts {
    /// Registry customer id.
    pub id: Uuid,
    pub standing: Standing,
    /// Person or organization.
    pub kind: CustomerKind,
    /// Region of the address, as the registry has it ("" if none).
    pub region: String,
    /// Audience reach.
    pub audience_reach: i64,
    /// Public figure.
    pub public_figure: bool,
    /// Decision role inside an organization.
    pub decision_role: Option<DecisionRole>,
    /// The registry flags high expectations.
    pub high_expectations: bool,
    /// The registry flags a key account.
    pub key_account: bool,
    /// The registry's cost to serve.
    pub cost_to_serve: Option<Cost>,
    /// Purchases, in (time, id) order.
    pub purchases: Vec<PurchaseFact>,
    pub surveys: Vec<SurveyFact>,
    pub complaints: Vec<ComplaintFact>,
    /// Referrals made.
    pub referrals: Vec<ReferralFact>,
    /// Customers who referred this one (their converted referrals change when this one
    /// first buys), in id order.
    pub referred_by: Vec<Uuid>,
    /// When the registry last changed the profile (a stale update is ignored).
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub profile_at: Option<DateTime<Utc>>,
}

impl CustomerFacts {
    /// A customer the engine has only just heard of.
    pub fn new(id: Uuid, kind: CustomerKind) -> Self {
        Self {
            id,
            standing: Standing::Prospect,
            kind,
            region: String::new(),
            audience_reach: 0,
            public_figure: false,
            decision_role: None,
            high_expectations: false,
            key_account: false,
            cost_to_serve: None,
            purchases: Vec::new(),
            surveys: Vec::new(),
            complaints: Vec::new(),
            referrals: Vec::new(),
            referred_by: Vec::new(),
            profile_at: None,
        }
    }

    /// Whether the engine classifies this customer (archived and merged ones: no).
    pub fn is_live(&self) -> bool {
        matches!(self.standing, Standing::Prospect | Standing::Customer)
    }

    /// Adds a purchase unless it is known; keeps (time, id) order.
    pub fn add_purchase(&mut self, p: PurchaseFact) {
        if self.purchases.iter().any(|q| q.id == p.id) {
            return;
        }
        let at = self
            .purchases
            .partition_point(|q| (q.at, q.id) < (p.at, p.id));
        self.purchases.insert(at, p);
    }

    /// Time of the first counted purchase at `as_of`.
    pub fn first_purchase_at(&self, as_of: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.purchases
            .iter()
            .find(|p| p.counts_at(as_of))
            .map(|p| p.at)
    }

    /// The counted purchases in `policy`'s window at `as_of` in other currencies than
    /// its own, per currency (in code order): what its revenue leaves out.
    pub fn left_out(&self, as_of: DateTime<Utc>, policy: &Policy) -> Vec<LeftOut> {
        let start = as_of
            .checked_sub_signed(Duration::days(i64::from(policy.window_days)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut out: Vec<LeftOut> = Vec::new();
        for p in self.purchases.iter().filter(|p| {
            p.currency_code != policy.currency_code && p.at > start && p.counts_at(as_of)
        }) {
            let at = out.partition_point(|l| l.currency_code < p.currency_code);
            if out
                .get(at)
                .is_none_or(|l| l.currency_code != p.currency_code)
            {
                out.insert(
                    at,
                    LeftOut {
                        currency_code: p.currency_code.clone(),
                        purchases: 0,
                        amount_minor: 0,
                    },
                );
            }
            out[at].purchases += 1;
            out[at].amount_minor += p.net_at(as_of);
        }
        out
    }

    /// The features at `as_of` under `policy`. `first_purchase_of` tells when another
    /// customer first bought (for converted referrals).
    pub fn features(
        &self,
        as_of: DateTime<Utc>,
        policy: &Policy,
        first_purchase_of: &dyn Fn(Uuid) -> Option<DateTime<Utc>>,
    ) -> Features {
        let window = Duration::days(i64::from(policy.window_days));
        // Saturating: an as_of the API accepts is after year 1 and windows are at most
        // ten years, but no date arithmetic may panic.
        let back = |t: DateTime<Utc>| {
            t.checked_sub_signed(window)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        let window_start = back(as_of);
        let prev_start = back(window_start);
        let counted: Vec<&PurchaseFact> = self
            .purchases
            .iter()
            .filter(|p| p.counts_at(as_of))
            .collect();
        let in_currency = |p: &&&PurchaseFact| p.currency_code == policy.currency_code;
        let revenue = |from: DateTime<Utc>, to: DateTime<Utc>| -> i64 {
            counted
                .iter()
                .filter(in_currency)
                .filter(|p| p.at > from && p.at <= to)
                .map(|p| p.net_at(as_of))
                .sum()
        };
        let times: Vec<DateTime<Utc>> = counted.iter().map(|p| p.at).collect();
        let gaps: Vec<i64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).num_seconds())
            .collect();
        let (mean_gap_secs, cv_bp) = gap_stats(&gaps);
        let latest = |kind: SurveyKind| {
            self.surveys
                .iter()
                .filter(|s| s.kind == kind && s.at <= as_of)
                .max_by_key(|s| (s.at, s.id))
        };
        let latest_nps = latest(SurveyKind::Nps);
        let latest_csat = latest(SurveyKind::Csat);
        let complaints_in_window = self
            .complaints
            .iter()
            .filter(|c| c.opened_at > window_start && c.opened_at <= as_of)
            .count() as i64;
        let open_complaints = self
            .complaints
            .iter()
            .filter(|c| c.opened_at <= as_of && c.resolved_at.is_none_or(|r| r > as_of))
            .count() as i64;
        // Referred customers who went on to buy: a first purchase at or after the
        // (earliest) referral, by `as_of`; one who had bought before is no conversion.
        let mut referred: std::collections::BTreeMap<Uuid, DateTime<Utc>> = Default::default();
        for r in self.referrals.iter().filter(|r| r.at <= as_of) {
            let at = referred.entry(r.referred).or_insert(r.at);
            *at = (*at).min(r.at);
        }
        let referrals_converted = referred
            .into_iter()
            .filter(|(id, at)| first_purchase_of(*id).is_some_and(|t| t >= *at && t <= as_of))
            .count() as i64;
        let discounted = counted.iter().filter(|p| p.discounted).count() as i64;
        Features {
            purchases_total: counted.len() as i64,
            purchases_in_window: counted.iter().filter(|p| p.at > window_start).count() as i64,
            revenue_in_window: revenue(window_start, as_of),
            revenue_prev_window: revenue(prev_start, window_start),
            revenue_total: counted
                .iter()
                .filter(in_currency)
                .map(|p| p.net_at(as_of))
                .sum(),
            first_purchase_at: times.first().copied(),
            last_purchase_at: times.last().copied(),
            gap_secs: gaps,
            mean_gap_secs,
            cv_interpurchase_bp: cv_bp,
            discounted_share_bp: if counted.is_empty() {
                0
            } else {
                discounted * BP / counted.len() as i64
            },
            discounted_purchases: discounted,
            complaints_in_window,
            open_complaints,
            latest_nps: latest_nps.map(|s| (s.score, s.at)),
            latest_csat: latest_csat.map(|s| (s.score, s.at)),
            referrals_converted,
            audience_reach: self.audience_reach,
            public_figure: self.public_figure,
            decision_role: self.decision_role,
            // Compared with revenue, so only in the policy's currency; another one
            // is as good as unknown.
            cost_to_serve_minor: self
                .cost_to_serve
                .as_ref()
                .filter(|c| c.currency_code == policy.currency_code)
                .map(|c| c.amount_minor),
        }
    }
}

/// Mean gap in seconds and coefficient of variation in basis points (sample standard
/// deviation, n − 1, over the mean; 0 with fewer than two gaps), from integer sums: the
/// same gaps always give the same numbers.
fn gap_stats(gaps: &[i64]) -> (i64, i64) {
    if gaps.is_empty() {
        return (0, 0);
    }
    let n = gaps.len() as i128;
    let sum: i128 = gaps.iter().map(|g| i128::from(*g)).sum();
    let mean = sum / n;
    if sum == 0 {
        return (0, 0);
    }
    if n < 2 {
        return (mean as i64, 0);
    }
    // Sample variance × n(n − 1) = n·Σg² − (Σg)², exact in integers.
    let sum_sq: i128 = gaps.iter().map(|g| i128::from(*g) * i128::from(*g)).sum();
    let scaled = n * sum_sq - sum * sum;
    // cv = sqrt(var) / mean = sqrt(scaled / (n(n − 1))) · n / sum; sqrt is correctly
    // rounded (IEEE 754).
    let cv = (scaled as f64 / (n * (n - 1)) as f64).sqrt() * n as f64 / sum as f64;
    (mean as i64, (cv * BP as f64).round() as i64)
}

/// The inputs of the rules for one customer at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Features {
    /// Purchases counted (made by then, not fully returned).
    pub purchases_total: i64,
    /// Of those, in the window.
    pub purchases_in_window: i64,
    /// Net revenue in the window, policy currency.
    pub revenue_in_window: i64,
    /// Net revenue in the window before.
    pub revenue_prev_window: i64,
    /// Net revenue of every counted purchase, policy currency.
    pub revenue_total: i64,
    /// First purchase.
    #[serde(with = "instant::optional")]
    pub first_purchase_at: Option<DateTime<Utc>>,
    /// Last purchase.
    #[serde(with = "instant::optional")]
    pub last_purchase_at: Option<DateTime<Utc>>,
    /// Seconds between consecutive purchases (results stored before these were kept
    /// have none: their explanations were stored whole).
    #[serde(default)]
    pub gap_secs: Vec<i64>,
    /// Their mean.
    pub mean_gap_secs: i64,
    /// Their coefficient of variation, basis points.
    pub cv_interpurchase_bp: i64,
    /// Share of purchases with a discount, basis points.
    pub discounted_share_bp: i64,
    /// Purchases with a discount.
    pub discounted_purchases: i64,
    /// Complaints opened in the window.
    pub complaints_in_window: i64,
    /// Complaints open at the instant.
    pub open_complaints: i64,
    /// Latest NPS score and when.
    #[serde(with = "instant::scored")]
    pub latest_nps: Option<(i32, DateTime<Utc>)>,
    /// Latest CSAT score and when.
    #[serde(with = "instant::scored")]
    pub latest_csat: Option<(i32, DateTime<Utc>)>,
    /// Referred customers who bought.
    pub referrals_converted: i64,
    /// Audience reach.
    pub audience_reach: i64,
    /// Public figure.
    pub public_figure: bool,
    /// Decision role.
    pub decision_role: Option<DecisionRole>,
    /// Cost to serve, when in the policy's currency.
    pub cost_to_serve_minor: Option<i64>,
}

/// The instants of [`Features`] as stored: RFC 3339 where people read them (JSON), and
/// the decimal microseconds since the epoch in the binary form, a third of the size and
/// a fraction of the time to write and read (a Reclassify writes every customer's).
/// Either text reads back in either form, so results stored before (RFC 3339 in both)
/// still read.
mod instant {
    use chrono::{DateTime, Utc};
    use serde::de::{Error, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct Write<'a>(&'a DateTime<Utc>);

    impl Serialize for Write<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                self.0.serialize(s)
            } else {
                s.collect_str(&self.0.timestamp_micros())
            }
        }
    }

    struct Read(DateTime<Utc>);

    impl<'de> Deserialize<'de> for Read {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Text;
            impl Visitor<'_> for Text {
                type Value = Read;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("microseconds since the epoch or an RFC 3339 instant")
                }
                fn visit_str<E: Error>(self, text: &str) -> Result<Read, E> {
                    let at = match text.parse::<i64>() {
                        Ok(micros) => DateTime::from_timestamp_micros(micros),
                        Err(_) => text.parse::<DateTime<Utc>>().ok(),
                    };
                    at.map(Read)
                        .ok_or_else(|| E::custom(format!("not an instant: {text:?}")))
                }
            }
            d.deserialize_str(Text)
        }
    }

    /// `Option<DateTime<Utc>>`.
    pub mod optional {
        use super::*;

        pub fn serialize<S: Serializer>(
            v: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            v.as_ref().map(Write).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Ok(Option::<Read>::deserialize(d)?.map(|r| r.0))
        }
    }

    /// `Option<(score, DateTime<Utc>)>`.
    pub mod scored {
        use super::*;

        pub fn serialize<S: Serializer>(
            v: &Option<(i32, DateTime<Utc>)>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            v.as_ref()
                .map(|(score, at)| (score, Write(at)))
                .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<(i32, DateTime<Utc>)>, D::Error> {
            Ok(Option::<(i32, Read)>::deserialize(d)?.map(|(score, r)| (score, r.0)))
        }
    }
}

impl Features {
    /// Revenue growth over the previous window, basis points (None without one).
    pub fn revenue_growth_bp(&self) -> Option<i64> {
        (self.revenue_prev_window > 0).then(|| {
            let diff = i128::from(self.revenue_in_window) - i128::from(self.revenue_prev_window);
            (diff * i128::from(BP) / i128::from(self.revenue_prev_window)) as i64
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + Duration::days(d)
    }

    fn purchase(n: u128, d: i64, total: i64) -> PurchaseFact {
        PurchaseFact {
            id: Uuid::from_u128(n),
            at: day(d),
            currency_code: "CLP".into(),
            total_minor: total,
            discounted: n.is_multiple_of(2),
            returns: Vec::new(),
        }
    }

    #[test]
    fn purchases_keep_time_order_and_are_added_once() {
        let mut f = CustomerFacts::new(Uuid::from_u128(1), CustomerKind::Person);
        f.add_purchase(purchase(2, 10, 100));
        f.add_purchase(purchase(1, 5, 100));
        f.add_purchase(purchase(2, 10, 100));
        let ids: Vec<_> = f.purchases.iter().map(|p| p.id.as_u128()).collect();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn a_return_after_as_of_does_not_change_the_past() {
        let mut f = CustomerFacts::new(Uuid::from_u128(1), CustomerKind::Person);
        let mut p = purchase(1, 0, 1_000);
        p.returns.push(ReturnFact {
            id: Uuid::from_u128(9),
            at: day(20),
            amount_minor: 1_000,
        });
        f.add_purchase(p);
        f.add_purchase(purchase(2, 1, 500));
        let policy = Policy::default();
        let none = |_| None;
        let before = f.features(day(10), &policy, &none);
        assert_eq!(
            (before.purchases_total, before.revenue_in_window),
            (2, 1_500)
        );
        let after = f.features(day(30), &policy, &none);
        assert_eq!(
            (after.purchases_total, after.revenue_in_window),
            (1, 500),
            "a fully returned purchase no longer counts"
        );
    }

    #[test]
    fn a_referral_converts_when_the_referred_customer_first_buys_after_it() {
        let mut f = CustomerFacts::new(Uuid::from_u128(1), CustomerKind::Person);
        let refer = |n: u128, d: i64| ReferralFact {
            id: Uuid::from_u128(100 + n),
            referred: Uuid::from_u128(n),
            at: day(d),
        };
        // 2 first bought on day 15, after the referral on day 10; 3 had bought on day 5;
        // 4 buys on day 40, after as_of; 5 was referred twice, first on day 1.
        f.referrals = vec![
            refer(2, 10),
            refer(3, 10),
            refer(4, 10),
            refer(5, 20),
            refer(5, 1),
        ];
        let firsts = |id: Uuid| match id.as_u128() {
            2 => Some(day(15)),
            3 => Some(day(5)),
            4 => Some(day(40)),
            5 => Some(day(3)),
            _ => None,
        };
        let features = f.features(day(30), &Policy::default(), &firsts);
        assert_eq!(features.referrals_converted, 2, "2 and 5");
    }

    #[test]
    fn gaps_of_a_regular_buyer_have_no_variation() {
        assert_eq!(gap_stats(&[86_400, 86_400, 86_400]), (86_400, 0));
        // Gaps 1 and 3 days: mean 2, sample sd √2, cv 0.7071.
        assert_eq!(gap_stats(&[86_400, 3 * 86_400]), (2 * 86_400, 7_071));
        // TAXONOMY's example: three purchases with gaps of 10 and 80 days are OCCASIONAL
        // (cv ≥ 1.0); the population sd gave 0.78.
        let day = 86_400;
        assert_eq!(gap_stats(&[10 * day, 80 * day]), (45 * day, 10_999));
        // One gap: no variation to measure.
        assert_eq!(gap_stats(&[5 * day]), (5 * day, 0));
        assert_eq!(gap_stats(&[]), (0, 0));
    }

    #[test]
    fn revenue_growth_needs_a_previous_window() {
        let f = Features {
            revenue_in_window: 120,
            revenue_prev_window: 100,
            ..Features::default()
        };
        assert_eq!(f.revenue_growth_bp(), Some(2_000));
        let g = Features {
            revenue_in_window: 120,
            ..Features::default()
        };
        assert_eq!(g.revenue_growth_bp(), None);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod instant_tests {
    use chrono::TimeZone;

    use super::*;

    /// The instants as every version before wrote them: RFC 3339 text in both forms.
    #[derive(Serialize)]
    struct Before {
        at: Option<DateTime<Utc>>,
        nps: Option<(i32, DateTime<Utc>)>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Now {
        #[serde(with = "instant::optional")]
        at: Option<DateTime<Utc>>,
        #[serde(with = "instant::scored")]
        nps: Option<(i32, DateTime<Utc>)>,
    }

    #[test]
    fn instants_are_microseconds_in_binary_and_rfc_3339_in_json_and_both_read_back() {
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap() + Duration::microseconds(89);
        let now = Now {
            at: Some(at),
            nps: Some((9, at)),
        };
        let (before, none) = (
            Before {
                at: Some(at),
                nps: Some((9, at)),
            },
            Now {
                at: None,
                nps: None,
            },
        );
        let binary = postcard::to_allocvec(&now).unwrap();
        let old_binary = postcard::to_allocvec(&before).unwrap();
        assert!(binary.len() * 3 / 2 < old_binary.len(), "{binary:?}");
        for bytes in [&binary, &old_binary] {
            assert_eq!(postcard::from_bytes::<Now>(bytes).unwrap(), now);
        }
        let json = serde_json::to_string(&now).unwrap();
        assert_eq!(json, serde_json::to_string(&before).unwrap());
        assert!(json.contains("2026-03-04T05:06:07.000089Z"), "{json}");
        assert_eq!(serde_json::from_str::<Now>(&json).unwrap(), now);
        let empty = postcard::to_allocvec(&none).unwrap();
        assert_eq!(postcard::from_bytes::<Now>(&empty).unwrap(), none);
        let bad = serde_json::from_str::<Now>(r#"{"at":"yesterday","nps":null}"#);
        assert!(bad.unwrap_err().to_string().contains("not an instant"));
    }
}
