//! Assignments and how a seller is chosen for one (TERRITORY.md, "Choosing a seller"):
//! the sellers covering the nearest territory of the customer's path that has any,
//! those with capacity left, least loaded, ties to the one chosen longest ago; else
//! OVERFLOW to the least overloaded; else the house. Pure, so a preview and an apply
//! decide alike.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use clientela_domain::text::fold;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::explain::{Rule, TieBreak};
use crate::model::{HOUSE_SELLER, Seller, SellerStatus};

// An enum stored and shown by its upper-case code (a few lines, not a derive crate).
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// As stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

codes! {
    /// What a seller is to a customer.
    Role {
        /// The responsible salesperson (seed 003).
        Primary = "PRIMARY",
        /// The specialist of one product line.
        Specialist = "SPECIALIST",
        /// The Key Account Manager (seed 004).
        Kam = "KAM",
        /// Develops a prospect.
        Prospector = "PROSPECTOR",
    }
}

codes! {
    /// Why an assignment was made.
    Cause {
        Rule = "RULE",
        Manual = "MANUAL",
        Handover = "HANDOVER",
        /// No seller of the territory had capacity left.
        Overflow = "OVERFLOW",
        Merge = "MERGE",
        TierChange = "TIER_CHANGE",
    }
}

codes! {
    /// Why an assignment ended.
    EndCause {
        /// The customer moved to a territory its seller does not cover.
        AddressChange = "ADDRESS_CHANGE",
        /// A model's activation realigned it.
        Realignment = "REALIGNMENT",
        /// Merged into another customer.
        Merge = "MERGE",
        /// The customer was archived.
        Archived = "ARCHIVED",
        /// Replaced by hand.
        Manual = "MANUAL",
        /// Handed to a successor (transfer or offboarding).
        Handover = "HANDOVER",
        /// The account tier fell below KEY for the grace period.
        TierChange = "TIER_CHANGE",
        /// The same seller carries on in the next interval.
        Continued = "CONTINUED",
    }
}

/// A seller as choices read it, with its load kept current through a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desk {
    pub id: Uuid,
    pub status: SellerStatus,
    pub house: bool,
    pub territory_codes: Vec<String>,
    /// Folded.
    pub specialties: Vec<String>,
    pub kam: bool,
    pub capacity: i64,
    /// The weight of its open assignments.
    pub load: i64,
    /// The sequence of its last automatic assignment (0: never).
    pub last_chosen: i64,
}

impl Desk {
    pub fn of(seller: &Seller, load: i64, last_chosen: i64) -> Self {
        Self {
            id: seller.id,
            status: seller.fields.status,
            house: seller.house,
            territory_codes: seller.fields.territory_codes.clone(),
            specialties: seller.fields.specialties.iter().map(|s| fold(s)).collect(),
            kam: seller.fields.kam,
            capacity: seller.fields.capacity,
            load,
            last_chosen,
        }
    }

    /// Whether it may take `need` now (ACTIVE, not the house, with the specialty or the
    /// KAM flag it asks for).
    pub fn serves(&self, need: &Need) -> bool {
        self.status == SellerStatus::Active
            && !self.house
            && match need {
                Need::Primary => true,
                Need::Specialist(line) => self.specialties.iter().any(|s| s == line),
                Need::Kam => self.kam,
            }
    }
}

/// What a choice is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Primary,
    /// A product line, folded.
    Specialist(String),
    Kam,
}

/// A seller a choice looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Considered {
    pub seller: Uuid,
    pub load: i64,
    pub capacity: i64,
}

/// Why a choice fell where it did: stored with the assignment (as data: see
/// [`crate::explain`] for its sentences), shown by ExplainAssignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub rule: Rule,
    /// The territory whose sellers were considered (None: none of the path had any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub territory: Option<String>,
    /// The first [`CONSIDERED_LISTED`] sellers considered, in the order of the choice
    /// (the chosen one first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub considered: Vec<Considered>,
    /// How many were considered (0 in explanations stored before the count, which list
    /// them all).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub considered_count: usize,
    #[serde(default)]
    pub tie_break: TieBreak,
}

/// How many of the sellers a choice considered its explanation lists.
pub const CONSIDERED_LISTED: usize = 10;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Explanation {
    /// How many sellers the choice considered, listed or not.
    pub fn considered_total(&self) -> usize {
        self.considered_count.max(self.considered.len())
    }
}

impl Explanation {
    /// `rule`, with nothing considered.
    pub fn of(rule: Rule) -> Self {
        Self {
            rule,
            territory: None,
            considered: Vec::new(),
            considered_count: 0,
            tie_break: TieBreak::None,
        }
    }
}

/// Where a choice fell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub seller: Uuid,
    pub cause: Cause,
    pub territory: Option<String>,
    pub explanation: Explanation,
}

/// The sellers, indexed by the territories they cover.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    desks: Vec<Desk>,
    index: HashMap<Uuid, usize>,
    by_territory: HashMap<String, Vec<usize>>,
    /// The specialists of each (folded) line, and the KAMs: a need nobody on the path
    /// serves looks here, not through every seller (a line without specialists, asked
    /// for by most purchases, was most of an ingest's time).
    by_specialty: HashMap<String, Vec<usize>>,
    kams: Vec<usize>,
}

impl Roster {
    pub fn new(mut desks: Vec<Desk>) -> Self {
        desks.sort_by_key(|d| d.id);
        let index = desks.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        let mut by_territory: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_specialty: HashMap<String, Vec<usize>> = HashMap::new();
        let mut kams = Vec::new();
        for (i, desk) in desks.iter().enumerate() {
            for code in &desk.territory_codes {
                by_territory.entry(code.clone()).or_default().push(i);
            }
            for line in &desk.specialties {
                by_specialty.entry(line.clone()).or_default().push(i);
            }
            if desk.kam {
                kams.push(i);
            }
        }
        Self {
            desks,
            index,
            by_territory,
            by_specialty,
            kams,
        }
    }

    pub fn get(&self, id: Uuid) -> Option<&Desk> {
        self.index.get(&id).map(|&i| &self.desks[i])
    }

    /// Sets a seller's status for the choices that follow (a seller being offboarded,
    /// or left out of a transfer of their own cartera).
    pub fn set_status(&mut self, id: Uuid, status: SellerStatus) {
        if let Some(&i) = self.index.get(&id) {
            self.desks[i].status = status;
        }
    }

    pub fn desks(&self) -> &[Desk] {
        &self.desks
    }

    /// Moves a seller's load by `weight` (an assignment opened or closed); `chosen`, the
    /// sequence of an automatic choice of it.
    pub fn charge(&mut self, id: Uuid, weight: i64, chosen: Option<i64>) {
        if let Some(&i) = self.index.get(&id) {
            self.desks[i].load += weight;
            if let Some(sequence) = chosen {
                self.desks[i].last_chosen = sequence;
            }
        }
    }

    /// Whether `seller` would be among the candidates for `need` on `path` (so a move
    /// within its territories keeps it).
    pub fn covers(&self, seller: Uuid, path: &[String], need: &Need) -> bool {
        self.candidates(path, need)
            .1
            .iter()
            .any(|&i| self.desks[i].id == seller)
    }

    /// The sellers serving `need` in the deepest territory of `path` that has any; for
    /// a specialist or KAM with none on the path, those of the whole company.
    fn candidates(&self, path: &[String], need: &Need) -> (Option<String>, Vec<usize>) {
        let pool: &[usize] = match need {
            Need::Primary => &[],
            Need::Specialist(line) => self.by_specialty.get(line).map_or(&[], Vec::as_slice),
            Need::Kam => &self.kams,
        };
        if *need != Need::Primary && pool.is_empty() {
            return (None, Vec::new());
        }
        for code in path.iter().rev() {
            let here: Vec<usize> = self
                .by_territory
                .get(code)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&i| self.desks[i].serves(need))
                .collect();
            if !here.is_empty() {
                return (Some(code.clone()), here);
            }
        }
        if *need == Need::Primary {
            return (None, Vec::new());
        }
        let anywhere = pool
            .iter()
            .copied()
            .filter(|&i| self.desks[i].serves(need))
            .collect();
        (None, anywhere)
    }

    /// Whether some seller may take `need` somewhere: otherwise [`Roster::choose`] gives
    /// None for a specialist or KAM wherever the customer is.
    pub fn anyone_serves(&self, need: &Need) -> bool {
        let pool: &[usize] = match need {
            Need::Primary => return true,
            Need::Specialist(line) => self.by_specialty.get(line).map_or(&[], Vec::as_slice),
            Need::Kam => &self.kams,
        };
        pool.iter().any(|&i| self.desks[i].serves(need))
    }

    /// The seller for `need` of a customer of `weight` on territory `path` (None for a
    /// specialist or KAM nobody serves; the house for a PRIMARY nobody covers).
    pub fn choose(&self, path: &[String], need: &Need, weight: i64) -> Option<Choice> {
        let (territory, candidates) = self.candidates(path, need);
        if candidates.is_empty() {
            if *need != Need::Primary {
                return None;
            }
            return Some(Choice {
                seller: HOUSE_SELLER,
                cause: Cause::Rule,
                territory: None,
                explanation: Explanation::of(Rule::House {
                    last: path.last().cloned(),
                }),
            });
        }
        let with_room: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.desks[i].load + weight <= self.desks[i].capacity)
            .collect();
        let (pool, cause, rule) = if with_room.is_empty() {
            // Capacity 0 takes nothing automatically, overflow included, unless every
            // candidate has 0.
            let sized: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| self.desks[i].capacity > 0)
                .collect();
            let pool = if sized.is_empty() {
                candidates.clone()
            } else {
                sized
            };
            (pool, Cause::Overflow, Rule::Overflow)
        } else {
            (with_room, Cause::Rule, Rule::LeastLoaded)
        };
        let key = |i: usize| {
            let d = &self.desks[i];
            let load = if cause == Cause::Overflow {
                d.load - d.capacity
            } else {
                d.load
            };
            (load, d.last_chosen, d.id)
        };
        let mut ranked = pool.clone();
        ranked.sort_unstable_by_key(|&i| key(i));
        let best = *ranked.first()?;
        let (best_load, best_turn, _) = key(best);
        let tied = pool.iter().filter(|&&i| key(i).0 == best_load).count();
        let tie_break = if tied < 2 {
            TieBreak::None
        } else if pool
            .iter()
            .filter(|&&i| key(i).0 == best_load && key(i).1 == best_turn)
            .count()
            > 1
        {
            TieBreak::LowestId { tied }
        } else {
            TieBreak::RoundRobin { tied }
        };
        // The pool in the order of the choice, then those without room; only the first
        // CONSIDERED_LISTED are kept (a specialist's pool may be every specialist in the
        // company: a hundred, 7 KB of every assignment).
        let mut rest: Vec<usize> = Vec::new();
        if ranked.len() < CONSIDERED_LISTED {
            rest.extend(candidates.iter().copied().filter(|i| !ranked.contains(i)));
            rest.sort_unstable_by_key(|&i| (self.desks[i].load, self.desks[i].id));
        }
        let considered = ranked
            .iter()
            .chain(&rest)
            .take(CONSIDERED_LISTED)
            .map(|&i| Considered {
                seller: self.desks[i].id,
                load: self.desks[i].load,
                capacity: self.desks[i].capacity,
            })
            .collect();
        Some(Choice {
            seller: self.desks[best].id,
            cause,
            territory: territory.clone(),
            explanation: Explanation {
                rule,
                territory: territory.clone(),
                considered,
                considered_count: candidates.len(),
                tie_break,
            },
        })
    }
}

/// An assignment: an interval of a seller's role for a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub id: Uuid,
    pub customer: Uuid,
    pub seller: Uuid,
    pub role: Role,
    /// Folded; "" unless a SPECIALIST.
    pub product_line: String,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
    pub cause: Cause,
    /// The model (id, version) whose rule chose it.
    pub model: Option<(Uuid, i64)>,
    pub territory: Option<String>,
    pub actor: Option<String>,
    pub reason: Option<String>,
    pub pinned: bool,
    pub pin_expires_at: Option<DateTime<Utc>>,
    pub weight: i64,
    pub end_cause: Option<EndCause>,
    pub explanation: Explanation,
    pub sequence: i64,
}

impl Assignment {
    pub fn name(&self) -> String {
        format!("assignments/{}", self.id)
    }

    /// Whether it holds at `at`.
    pub fn holds_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_from <= at && self.valid_to.is_none_or(|to| at < to)
    }

    /// Whether a pin on it stands at `at`.
    pub fn pinned_at(&self, at: DateTime<Utc>) -> bool {
        self.pinned && self.pin_expires_at.is_none_or(|until| at < until)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn desk(n: u128, codes: &[&str], capacity: i64, load: i64) -> Desk {
        Desk {
            id: Uuid::from_u128(n),
            status: SellerStatus::Active,
            house: false,
            territory_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
            specialties: Vec::new(),
            kam: false,
            capacity,
            load,
            last_chosen: 0,
        }
    }

    fn path(codes: &[&str]) -> Vec<String> {
        codes.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn the_nearest_territory_with_sellers_decides_and_the_least_loaded_wins() {
        let roster = Roster::new(vec![
            desk(1, &["CL"], 10, 0),
            desk(2, &["CL-V"], 10, 5),
            desk(3, &["CL-V"], 10, 3),
        ]);
        let choice = roster
            .choose(&path(&["CL", "CL-V"]), &Need::Primary, 1)
            .unwrap();
        assert_eq!(choice.seller, Uuid::from_u128(3));
        assert_eq!(choice.cause, Cause::Rule);
        assert_eq!(choice.territory.as_deref(), Some("CL-V"));
        assert_eq!(
            choice.explanation.considered.len(),
            2,
            "CL's seller not looked at"
        );
        let up = roster
            .choose(&path(&["CL", "CL-RM"]), &Need::Primary, 1)
            .unwrap();
        assert_eq!(up.seller, Uuid::from_u128(1), "the parent's sellers");
    }

    #[test]
    fn ties_go_round_robin_and_a_full_territory_overflows() {
        let mut a = desk(1, &["Z"], 2, 1);
        a.last_chosen = 9;
        let mut b = desk(2, &["Z"], 2, 1);
        b.last_chosen = 4;
        let mut roster = Roster::new(vec![a, b]);
        let first = roster.choose(&path(&["Z"]), &Need::Primary, 1).unwrap();
        assert_eq!(first.seller, Uuid::from_u128(2), "chosen longest ago");
        assert_eq!(
            first.explanation.tie_break,
            TieBreak::RoundRobin { tied: 2 }
        );
        roster.charge(first.seller, 1, Some(10));
        let second = roster.choose(&path(&["Z"]), &Need::Primary, 1).unwrap();
        assert_eq!(second.seller, Uuid::from_u128(1));
        roster.charge(second.seller, 1, Some(11));
        let over = roster.choose(&path(&["Z"]), &Need::Primary, 1).unwrap();
        assert_eq!(over.cause, Cause::Overflow);
        assert_eq!(
            over.seller,
            Uuid::from_u128(2),
            "equally over: chosen longest ago"
        );
    }

    #[test]
    fn nobody_covering_means_the_house_and_leave_or_departure_means_skipped() {
        let mut away = desk(1, &["Z"], 10, 0);
        away.status = SellerStatus::OnLeave;
        let roster = Roster::new(vec![away]);
        let choice = roster.choose(&path(&["Z"]), &Need::Primary, 1).unwrap();
        assert_eq!(choice.seller, HOUSE_SELLER);
        assert_eq!(
            choice.explanation.rule,
            Rule::House {
                last: Some("Z".into())
            }
        );
        assert_eq!(
            roster.choose(&[], &Need::Primary, 1).map(|c| c.seller),
            Some(HOUSE_SELLER)
        );
    }

    #[test]
    fn specialists_come_from_the_territory_or_else_the_company() {
        let mut far = desk(1, &["NORTE"], 10, 0);
        far.specialties = vec!["paneles solares".into()];
        let roster = Roster::new(vec![far, desk(2, &["SUR"], 10, 0)]);
        let line = Need::Specialist("paneles solares".into());
        let choice = roster.choose(&path(&["SUR"]), &line, 1).unwrap();
        assert_eq!(choice.seller, Uuid::from_u128(1));
        assert_eq!(choice.territory, None);
        assert!(
            roster
                .choose(&path(&["SUR"]), &Need::Specialist("otra".into()), 1)
                .is_none()
        );
    }

    #[test]
    fn an_explanation_lists_the_first_ten_considered_in_the_order_of_the_choice() {
        // Forty specialists company-wide, loads 39 down to 0; the four least loaded full.
        let desks: Vec<Desk> = (1..=40u128)
            .map(|n| {
                let load = 40 - i64::try_from(n).unwrap();
                let mut d = desk(n, &["NORTE"], if load < 4 { load } else { 100 }, load);
                d.specialties = vec!["baterias".into()];
                d
            })
            .collect();
        let roster = Roster::new(desks);
        let line = Need::Specialist("baterias".into());
        let e = roster
            .choose(&path(&["SUR"]), &line, 1)
            .unwrap()
            .explanation;
        assert_eq!(e.considered_total(), 40);
        let loads: Vec<i64> = e.considered.iter().map(|c| c.load).collect();
        assert_eq!(
            loads,
            (4..14).collect::<Vec<i64>>(),
            "with room, least loaded first"
        );
        assert_eq!(e.considered[0].seller, Uuid::from_u128(36));
        // A pool smaller than ten is followed by those without room.
        let few = Roster::new(vec![
            desk(1, &["Z"], 1, 1),
            desk(2, &["Z"], 5, 3),
            desk(3, &["Z"], 5, 2),
        ]);
        let e = few
            .choose(&path(&["Z"]), &Need::Primary, 1)
            .unwrap()
            .explanation;
        let order: Vec<u128> = e.considered.iter().map(|c| c.seller.as_u128()).collect();
        assert_eq!((order, e.considered_total()), (vec![3, 2, 1], 3));
    }

    #[test]
    fn capacity_zero_takes_overflow_only_when_all_have_zero() {
        let roster = Roster::new(vec![desk(1, &["Z"], 0, 0), desk(2, &["Z"], 1, 5)]);
        let choice = roster.choose(&path(&["Z"]), &Need::Primary, 1).unwrap();
        assert_eq!(
            (choice.seller, choice.cause),
            (Uuid::from_u128(2), Cause::Overflow)
        );
        let zeros = Roster::new(vec![desk(1, &["Z"], 0, 0)]);
        assert_eq!(
            zeros
                .choose(&path(&["Z"]), &Need::Primary, 1)
                .unwrap()
                .cause,
            Cause::Overflow
        );
    }
}
