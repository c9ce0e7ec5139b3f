//! An assignment's explanation as stored: protobuf bytes, through prost's derive on
//! these private messages (a storage format, not part of the API, so no `.proto`). As
//! JSON it was ~440 of a PRIMARY's ~500 bytes a row (every considered seller's id in
//! hex, every field named), written by every ingest and realignment and decoded by
//! every full read; rows stored as JSON before are still read (`assignment_of`).

use chrono::{DateTime, Utc};
use prost::Message;
use uuid::Uuid;

use crate::assign::{Considered, Explanation};
use crate::explain::{Rule, TieBreak};

#[derive(Clone, PartialEq, Message)]
struct StoredExplanation {
    /// The rule's number ([`rule_number`]).
    #[prost(uint32, tag = "1")]
    rule: u32,
    /// HOUSE's deepest territory.
    #[prost(string, optional, tag = "2")]
    rule_territory: Option<String>,
    /// EARLIER_PURCHASE's first purchase, seconds and nanoseconds since the epoch.
    #[prost(int64, tag = "3")]
    rule_at_seconds: i64,
    #[prost(uint32, tag = "4")]
    rule_at_nanos: u32,
    /// MERGED's or HANDOVER's seller.
    #[prost(bytes = "vec", tag = "5")]
    rule_from: Vec<u8>,
    #[prost(string, optional, tag = "6")]
    territory: Option<String>,
    #[prost(message, repeated, tag = "7")]
    considered: Vec<StoredConsidered>,
    #[prost(uint64, tag = "8")]
    considered_count: u64,
    /// 0 none, 1 round robin, 2 lowest id.
    #[prost(uint32, tag = "9")]
    tie_break: u32,
    #[prost(uint64, tag = "10")]
    tied: u64,
}

#[derive(Clone, PartialEq, Message)]
struct StoredConsidered {
    #[prost(bytes = "vec", tag = "1")]
    seller: Vec<u8>,
    #[prost(int64, tag = "2")]
    load: i64,
    #[prost(int64, tag = "3")]
    capacity: i64,
}

/// Rule numbers as stored: never reuse one.
fn rule_number(rule: &Rule) -> u32 {
    match rule {
        Rule::LeastLoaded => 1,
        Rule::Overflow => 2,
        Rule::House { .. } => 3,
        Rule::EarlierPurchase { .. } => 4,
        Rule::Merged { .. } => 5,
        Rule::Manual => 6,
        Rule::Handover { .. } => 7,
    }
}

/// `e` as stored.
pub(crate) fn encode(e: &Explanation) -> Vec<u8> {
    let mut stored = StoredExplanation {
        rule: rule_number(&e.rule),
        territory: e.territory.clone(),
        considered: e
            .considered
            .iter()
            .map(|c| StoredConsidered {
                seller: c.seller.as_bytes().to_vec(),
                load: c.load,
                capacity: c.capacity,
            })
            .collect(),
        considered_count: e.considered_count as u64,
        ..Default::default()
    };
    match &e.rule {
        Rule::House { last } => stored.rule_territory = last.clone(),
        Rule::EarlierPurchase { first } => {
            stored.rule_at_seconds = first.timestamp();
            stored.rule_at_nanos = first.timestamp_subsec_nanos();
        }
        Rule::Merged { from } | Rule::Handover { from } => {
            stored.rule_from = from.as_bytes().to_vec()
        }
        Rule::LeastLoaded | Rule::Overflow | Rule::Manual => {}
    }
    (stored.tie_break, stored.tied) = match e.tie_break {
        TieBreak::None => (0, 0),
        TieBreak::RoundRobin { tied } => (1, tied as u64),
        TieBreak::LowestId { tied } => (2, tied as u64),
    };
    stored.encode_to_vec()
}

/// The explanation stored as `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Explanation, String> {
    let stored = StoredExplanation::decode(bytes).map_err(|e| e.to_string())?;
    let uuid = |b: &[u8]| Uuid::from_slice(b).map_err(|e| format!("a seller id: {e}"));
    let rule = match stored.rule {
        1 => Rule::LeastLoaded,
        2 => Rule::Overflow,
        3 => Rule::House {
            last: stored.rule_territory,
        },
        4 => Rule::EarlierPurchase {
            first: DateTime::<Utc>::from_timestamp(stored.rule_at_seconds, stored.rule_at_nanos)
                .ok_or("a first purchase out of range")?,
        },
        5 => Rule::Merged {
            from: uuid(&stored.rule_from)?,
        },
        6 => Rule::Manual,
        7 => Rule::Handover {
            from: uuid(&stored.rule_from)?,
        },
        n => return Err(format!("unknown rule {n}")),
    };
    let tied = usize::try_from(stored.tied).map_err(|e| e.to_string())?;
    let tie_break = match stored.tie_break {
        0 => TieBreak::None,
        1 => TieBreak::RoundRobin { tied },
        2 => TieBreak::LowestId { tied },
        n => return Err(format!("unknown tie-break {n}")),
    };
    Ok(Explanation {
        rule,
        territory: stored.territory,
        considered: stored
            .considered
            .iter()
            .map(|c| {
                Ok(Considered {
                    seller: uuid(&c.seller)?,
                    load: c.load,
                    capacity: c.capacity,
                })
            })
            .collect::<Result<_, String>>()?,
        considered_count: usize::try_from(stored.considered_count).map_err(|e| e.to_string())?,
        tie_break,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn every_rule() -> Vec<Rule> {
        let seller = Uuid::now_v7();
        vec![
            Rule::LeastLoaded,
            Rule::Overflow,
            Rule::House { last: None },
            Rule::House {
                last: Some("CL-05".into()),
            },
            Rule::EarlierPurchase {
                first: DateTime::from_timestamp(1_764_000_000, 123_456_789).unwrap(),
            },
            Rule::Merged { from: seller },
            Rule::Manual,
            Rule::Handover { from: seller },
        ]
    }

    #[test]
    fn every_rule_and_tie_break_reads_back_as_written() {
        let considered: Vec<Considered> = (0..4)
            .map(|i| Considered {
                seller: Uuid::now_v7(),
                load: 40 + i,
                capacity: 50,
            })
            .collect();
        for rule in every_rule() {
            for tie_break in [
                TieBreak::None,
                TieBreak::RoundRobin { tied: 3 },
                TieBreak::LowestId { tied: 2 },
            ] {
                let e = Explanation {
                    rule: rule.clone(),
                    territory: Some("CL-05-VAL".into()),
                    considered: considered.clone(),
                    considered_count: 12,
                    tie_break,
                };
                assert_eq!(decode(&encode(&e)), Ok(e.clone()));
                let bare = Explanation::of(rule.clone());
                assert_eq!(decode(&encode(&bare)), Ok(bare));
            }
        }
    }

    #[test]
    fn a_primary_takes_a_third_of_its_json() {
        let e = Explanation {
            rule: Rule::LeastLoaded,
            territory: Some("CL-05-VAL".into()),
            considered: (0..4)
                .map(|i| Considered {
                    seller: Uuid::now_v7(),
                    load: 480 + i,
                    capacity: 500,
                })
                .collect(),
            considered_count: 4,
            tie_break: TieBreak::RoundRobin { tied: 2 },
        };
        let json = serde_json::to_vec(&e).unwrap().len();
        let stored = encode(&e).len();
        assert!(stored * 3 <= json, "{stored} bytes against {json} as JSON");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0x08, 99]).unwrap_err().contains("unknown rule 99"));
    }
}
