//! Round trips of the stored forms.

#![allow(clippy::unwrap_used)]

use chrono::TimeZone;
use clientela_domain::taxonomy::CustomerKind;

use super::*;
use crate::facts::{ComplaintFact, PurchaseFact, ReturnFact};

#[test]
fn codes_round_trip_and_keep_a_code_this_taxonomy_does_not_know() {
    let codes = Codes::read(
        ["FREQUENT", "ACTIVE", "", "HIGH", "NONE", "KEY", "CHAMPIONS"],
        ["PRICE_SENSITIVE", "RETIRED_TRAIT"],
    );
    let text = write_codes(&codes);
    assert_eq!(
        text,
        "FREQUENT|ACTIVE||HIGH|NONE|KEY|CHAMPIONS|,PRICE_SENSITIVE,RETIRED_TRAIT,"
    );
    assert_eq!(read_codes(&text).unwrap(), codes);
    assert!(matches!(codes.labels[0], std::borrow::Cow::Borrowed(_)));
    assert!(read_codes("A|B").is_err());
    assert_eq!(read_codes("|||||||").unwrap().traits.len(), 0);
}

#[test]
fn inputs_round_trip_with_the_gaps_the_rules_read() {
    let inputs = Inputs {
        kind: CustomerKind::Organization,
        high_expectations: true,
        key_account: false,
        features: crate::facts::Features {
            purchases_total: 3,
            gap_secs: vec![86_400, 3 * 86_400],
            latest_nps: Some((9, Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap())),
            ..Default::default()
        },
        left_out: vec![crate::classification::LeftOut {
            currency_code: "USD".into(),
            purchases: 2,
            amount_minor: 3_500,
        }],
    };
    let data = encode_inputs(&inputs).unwrap();
    assert_eq!(data[0], INPUTS_FORMAT);
    assert_eq!(postcard::from_bytes::<Inputs>(&data[1..]).unwrap(), inputs);
}

#[test]
fn inputs_of_format_1_still_read() {
    let features = crate::facts::Features {
        purchases_total: 2,
        revenue_in_window: 700,
        ..Default::default()
    };
    let v1 = InputsV1 {
        kind: CustomerKind::Person,
        high_expectations: false,
        key_account: true,
        features: features.clone(),
    };
    let row = StoredRow {
        customer: Uuid::from_u128(1),
        policy_version: 1,
        population_id: Some(1),
        company_revenue: None,
        as_of: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
        region: String::new(),
        inputs: Some(encode_binary(1, &v1, "v1").unwrap()),
        data: None,
        body: String::new(),
    };
    let Stored::Inputs { inputs, .. } = row.decode().unwrap() else {
        panic!("not inputs")
    };
    assert_eq!(inputs.features, features);
    assert!(inputs.key_account && inputs.left_out.is_empty());
}

#[test]
fn facts_round_trip_in_their_binary_form() {
    let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
        + chrono::Duration::microseconds(123_456);
    let mut facts = CustomerFacts::new(Uuid::from_u128(1), CustomerKind::Organization);
    facts.region = "Ñuble".into();
    facts.cost_to_serve = Some(crate::facts::Cost {
        currency_code: "USD".into(),
        amount_minor: 5,
    });
    facts.profile_at = Some(at);
    facts.referred_by = vec![Uuid::from_u128(2)];
    facts.purchases.push(PurchaseFact {
        id: Uuid::from_u128(3),
        at,
        currency_code: "CLP".into(),
        total_minor: 12_345,
        discounted: true,
        returns: vec![ReturnFact {
            id: Uuid::from_u128(4),
            at,
            amount_minor: 345,
        }],
    });
    facts.complaints.push(ComplaintFact {
        id: Uuid::from_u128(5),
        opened_at: at,
        resolved_at: None,
    });
    let data = encode_facts(&facts).unwrap();
    assert_eq!(data[0], FACTS_FORMAT);
    assert!(data.len() < serde_json::to_vec(&facts).unwrap().len() / 3);
    assert_eq!(decode_facts(&data).unwrap(), facts);
    let mut other = data.clone();
    other[0] = FACTS_FORMAT + 1;
    assert!(decode_facts(&other).is_err());
    assert!(decode_facts(&[]).is_err());
    assert!(decode_facts(&data[..data.len() - 3]).is_err());
}
