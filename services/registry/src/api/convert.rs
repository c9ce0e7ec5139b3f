//! Proto ↔ registry records. Input conversions translate the wire (enums, timestamps,
//! money) and hand the values to the model's constructors, which hold the rules; they
//! prefix each violation with the request's field. Output conversions cannot fail.

use clientela_domain::error::under;
use clientela_domain::taxonomy::CustomerKind;
use clientela_domain::{FieldViolation, Money, Violations};
use clientela_proto::clientela::common::v1 as common;
use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::maps;
use clientela_runtime::Error;

use crate::model::input::{self, LineDraft, NewComplaint, NewPurchase, NewReturn, NewSurvey};
pub use crate::model::input::{ENUM_LIST_MAX, ident, search};
use crate::model::{
    Complaint, Consent, Customer, CustomerFields, Event, EventPayload, FieldValue, Purchase,
    Referral, Return, Status, Survey,
};
use crate::names;

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation::new(field, description)
}

// ---- time ----

pub use clientela_runtime::time::{required_time, timestamp, to_time};

// ---- enums ----

/// Proto kind of a domain kind.
pub fn kind_to(k: CustomerKind) -> pb::CustomerKind {
    maps::customer_kind_to(Some(k))
}

/// A filter value: UNSPECIFIED means no filter; unknown numbers are an error.
pub fn kind_filter(v: i32, field: &str) -> Result<Option<CustomerKind>, FieldViolation> {
    maps::customer_kind_from(v).map_err(|v| violation(field, format!("unknown customer kind {v}")))
}

/// An optional enum field: UNSPECIFIED is none; unknown numbers are an error.
fn optional_enum<D>(
    v: i32,
    field: &str,
    from: fn(i32) -> Result<Option<D>, i32>,
) -> Result<Option<D>, FieldViolation> {
    from(v).map_err(|v| violation(field, format!("unknown value {v}")))
}

/// Proto status of a registry status.
pub fn status_to(s: Status) -> pb::CustomerStatus {
    match s {
        Status::Prospect => pb::CustomerStatus::Prospect,
        Status::Customer => pb::CustomerStatus::Customer,
        Status::Archived => pb::CustomerStatus::Archived,
        Status::Merged => pb::CustomerStatus::Merged,
    }
}

/// Status filter; empty means the live ones.
pub fn status_filter(values: &[i32], field: &str) -> Result<Vec<Status>, FieldViolation> {
    if values.is_empty() {
        return Ok(vec![Status::Prospect, Status::Customer]);
    }
    if values.len() > ENUM_LIST_MAX {
        return Err(violation(field, format!("at most {ENUM_LIST_MAX} entries")));
    }
    let parsed: Vec<Status> = values
        .iter()
        .enumerate()
        .map(|(i, v)| match pb::CustomerStatus::try_from(*v) {
            Ok(pb::CustomerStatus::Prospect) => Ok(Status::Prospect),
            Ok(pb::CustomerStatus::Customer) => Ok(Status::Customer),
            Ok(pb::CustomerStatus::Archived) => Ok(Status::Archived),
            Ok(pb::CustomerStatus::Merged) => Ok(Status::Merged),
            _ => Err(violation(
                &format!("{field}[{i}]"),
                format!("unknown or unspecified status {v}"),
            )),
        })
        .collect::<Result<_, _>>()?;
    let mut statuses = Vec::with_capacity(parsed.len());
    for status in parsed {
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    Ok(statuses)
}

// ---- customer fields ----

/// The writable fields of a customer, by their proto names (the FieldMask paths).
pub const CUSTOMER_FIELDS: &[&str] = &[
    "kind",
    "display_name",
    "legal_name",
    "tax_id",
    "emails",
    "phones",
    "address",
    "channel_role",
    "business_kind",
    "influence",
    "tags",
    "attributes",
    "consent",
    "language_code",
    "external_id",
    "cost_to_serve",
    "key_account",
    "high_expectations",
];

/// Whether a field of `c` holds something (for an update without a mask).
pub fn is_populated(c: &pb::Customer, field: &str) -> bool {
    match field {
        "kind" => c.kind != 0,
        "display_name" => !c.display_name.is_empty(),
        "legal_name" => !c.legal_name.is_empty(),
        "tax_id" => c.tax_id.is_some(),
        "emails" => !c.emails.is_empty(),
        "phones" => !c.phones.is_empty(),
        "address" => c.address.is_some(),
        "channel_role" => c.channel_role != 0,
        "business_kind" => c.business_kind != 0,
        "influence" => c.influence.is_some(),
        "tags" => !c.tags.is_empty(),
        "attributes" => !c.attributes.is_empty(),
        "consent" => c.consent.is_some(),
        "language_code" => !c.language_code.is_empty(),
        "external_id" => !c.external_id.is_empty(),
        "cost_to_serve" => c.cost_to_serve.is_some(),
        "key_account" => c.key_account,
        "high_expectations" => c.high_expectations,
        _ => false,
    }
}

/// Translates one field of `c` and builds its value (`prefix` is the request's field
/// holding the customer). On error the violations are in `v` and `None` is returned.
pub fn parse_field(
    c: &pb::Customer,
    field: &str,
    prefix: &str,
    v: &mut Violations,
) -> Option<FieldValue> {
    let path = format!("{prefix}.{field}");
    let path = path.as_str();
    let one = |r: Result<FieldValue, FieldViolation>| r.map_err(|e| vec![e.under(path)]);
    let all = |r: Result<FieldValue, Vec<FieldViolation>>| r.map_err(|e| under(path, e));
    let value = match field {
        "kind" => match maps::customer_kind_from(c.kind) {
            Ok(Some(k)) => Ok(FieldValue::Kind(k)),
            Ok(None) | Err(_) => Err(vec![violation(
                path,
                "required: CUSTOMER_KIND_PERSON or CUSTOMER_KIND_ORGANIZATION",
            )]),
        },
        "display_name" => one(FieldValue::display_name(&c.display_name)),
        "legal_name" => one(FieldValue::legal_name(&c.legal_name)),
        "tax_id" => match &c.tax_id {
            None => Ok(FieldValue::TaxId(None)),
            Some(t) => one(FieldValue::tax_id(&t.country_code, &t.value)),
        },
        "emails" => all(FieldValue::emails(&c.emails)),
        "phones" => all(FieldValue::phones(&c.phones)),
        "address" => match &c.address {
            None => Ok(FieldValue::Address(None)),
            Some(a) => one(FieldValue::address(
                &a.country_code,
                &a.region,
                &a.locality,
                &a.postal_code,
                &a.street,
            )),
        },
        "channel_role" => optional_enum(c.channel_role, path, maps::channel_role_from)
            .map(FieldValue::ChannelRole)
            .map_err(|e| vec![e]),
        "business_kind" => optional_enum(c.business_kind, path, maps::business_kind_from)
            .map(FieldValue::BusinessKind)
            .map_err(|e| vec![e]),
        "influence" => {
            let pb::Influence {
                audience_reach,
                public_figure,
                decision_role,
            } = c.influence.unwrap_or_default();
            optional_enum(
                decision_role,
                &format!("{path}.decision_role"),
                maps::decision_role_from,
            )
            .map_err(|e| vec![e])
            .and_then(|role| one(FieldValue::influence(audience_reach, public_figure, role)))
        }
        "tags" => all(FieldValue::tags(&c.tags)),
        "attributes" => all(FieldValue::attributes(c.attributes.iter())),
        "consent" => {
            let pb::Consent {
                marketing_email,
                marketing_sms,
                marketing_phone,
                data_processing,
            } = c.consent.unwrap_or_default();
            Ok(FieldValue::Consent(Consent {
                marketing_email,
                marketing_sms,
                marketing_phone,
                data_processing,
            }))
        }
        "language_code" => one(FieldValue::language_code(&c.language_code)),
        "external_id" => one(FieldValue::external_id(&c.external_id)),
        "cost_to_serve" => match &c.cost_to_serve {
            None => Ok(FieldValue::CostToServe(None)),
            Some(m) => Money::new(&m.currency_code, m.amount_minor)
                .map_err(|e| violation(&format!("{path}.currency_code"), e.to_string()))
                .and_then(|m| FieldValue::cost_to_serve(Some(m)).map_err(|e| e.under(path)))
                .map_err(|e| vec![e]),
        },
        "key_account" => Ok(FieldValue::KeyAccount(c.key_account)),
        "high_expectations" => Ok(FieldValue::HighExpectations(c.high_expectations)),
        other => Err(vec![violation(path, format!("{other} cannot be written"))]),
    };
    v.check_all(value)
}

/// Every field of a new customer.
pub fn customer_fields(c: Option<&pb::Customer>, prefix: &str) -> Result<CustomerFields, Error> {
    let Some(c) = c else {
        return Err(Error::invalid(prefix, "required"));
    };
    // Every field, so one added to the proto does not compile until it is placed: the
    // input fields are read by name through CUSTOMER_FIELDS (a test keeps the two lists
    // equal), the rest are output only.
    let pb::Customer {
        kind: _,
        display_name: _,
        legal_name: _,
        tax_id: _,
        emails: _,
        phones: _,
        address: _,
        channel_role: _,
        business_kind: _,
        influence: _,
        tags: _,
        attributes: _,
        consent: _,
        language_code: _,
        external_id: _,
        cost_to_serve: _,
        key_account: _,
        high_expectations: _,
        name: _,
        status: _,
        merged_into: _,
        create_time: _,
        update_time: _,
        etag: _,
    } = c;
    let mut v = Violations::default();
    let mut fields = CustomerFields::default();
    for field in CUSTOMER_FIELDS {
        if let Some(value) = parse_field(c, field, prefix, &mut v) {
            fields.apply(value);
        }
    }
    Ok(v.done(Some(fields))?)
}

/// Registry customer → proto.
pub fn customer_to(c: &Customer) -> pb::Customer {
    let f = &c.fields;
    pb::Customer {
        name: names::customer(c.id),
        kind: kind_to(f.kind) as i32,
        display_name: f.display_name.clone(),
        legal_name: f.legal_name.clone(),
        tax_id: f.tax_id.as_ref().map(|t| pb::TaxId {
            country_code: t.country().to_owned(),
            value: t.value().to_owned(),
        }),
        emails: f.emails.iter().map(|e| e.as_str().to_owned()).collect(),
        phones: f.phones.iter().map(|p| p.as_str().to_owned()).collect(),
        address: f.address.as_ref().map(|a| pb::Address {
            country_code: a.country_code.as_str().to_owned(),
            region: a.region.clone(),
            locality: a.locality.clone(),
            postal_code: a.postal_code.clone(),
            street: a.street.clone(),
        }),
        channel_role: maps::channel_role_to(f.channel_role) as i32,
        business_kind: maps::business_kind_to(f.business_kind) as i32,
        influence: Some(pb::Influence {
            audience_reach: f.influence.audience_reach,
            public_figure: f.influence.public_figure,
            decision_role: maps::decision_role_to(f.influence.decision_role) as i32,
        }),
        tags: f.tags.clone(),
        attributes: f.attributes.clone(),
        consent: Some(pb::Consent {
            marketing_email: f.consent.marketing_email,
            marketing_sms: f.consent.marketing_sms,
            marketing_phone: f.consent.marketing_phone,
            data_processing: f.consent.data_processing,
        }),
        status: status_to(c.status) as i32,
        merged_into: c.merged_into.map(names::customer).unwrap_or_default(),
        language_code: f.language_code.clone(),
        external_id: f.external_id.clone().unwrap_or_default(),
        create_time: Some(timestamp(c.created_at)),
        update_time: Some(timestamp(c.updated_at)),
        etag: c.etag(),
        cost_to_serve: f.cost_to_serve.as_ref().map(|m| common::Money {
            currency_code: m.currency_code.clone(),
            amount_minor: m.amount_minor,
        }),
        key_account: f.key_account,
        high_expectations: f.high_expectations,
    }
}

// ---- purchases and returns ----

/// Wire money → domain money; `None` (after saying why) when absent or unknown.
fn money(m: Option<&common::Money>, field: &str, v: &mut Violations) -> Option<Money> {
    let Some(common::Money {
        currency_code,
        amount_minor,
    }) = m
    else {
        v.push(field, "required");
        return None;
    };
    v.check(
        Money::new(currency_code, *amount_minor)
            .map_err(|e| violation(&format!("{field}.currency_code"), e.to_string())),
    )
}

/// Money of the purchase currency.
pub fn money_to(currency: &str, amount_minor: i64) -> common::Money {
    common::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    }
}

/// A new purchase from a request.
pub fn new_purchase(p: Option<&pb::Purchase>) -> Result<NewPurchase, Error> {
    let Some(p) = p else {
        return Err(Error::invalid("purchase", "required"));
    };
    // Every field, so one added to the proto does not compile until it is handled here.
    let pb::Purchase {
        order_id,
        occur_time,
        lines,
        channel,
        name: _,        // output only
        total: _,       // output only
        returned: _,    // output only
        create_time: _, // output only
    } = p;
    input::line_count(lines.len()).map_err(|e| Error::from(e.under("purchase")))?;
    let mut v = Violations::default();
    let occurred_at = v
        .check(to_time(occur_time.as_ref(), "purchase.occur_time"))
        .flatten();
    let channel = v
        .check(optional_enum(
            *channel,
            "purchase.channel",
            maps::sales_channel_from,
        ))
        .flatten();
    let lines: Vec<LineDraft> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let pb::PurchaseLine {
                product_line,
                sku,
                quantity,
                unit_price,
                discounted,
                returned_quantity: _, // output only
            } = line;
            let field = format!("purchase.lines[{i}].unit_price");
            LineDraft {
                product_line: product_line.clone(),
                sku: sku.clone(),
                quantity: *quantity,
                unit_price: money(unit_price.as_ref(), &field, &mut v),
                discounted: *discounted,
            }
        })
        .collect();
    let new = v.check_all(
        NewPurchase::new(order_id, occurred_at, channel, &lines).map_err(|e| under("purchase", e)),
    );
    // A translation failure is in `v` already, so `done` refuses the purchase it spoiled.
    Ok(v.done(new)?)
}

/// Registry purchase → proto.
pub fn purchase_to(p: &Purchase) -> pb::Purchase {
    pb::Purchase {
        name: names::child(p.customer_id, "purchases", p.id),
        order_id: p.order_id.clone(),
        occur_time: Some(timestamp(p.occurred_at)),
        lines: p
            .lines
            .iter()
            .map(|l| pb::PurchaseLine {
                product_line: l.product_line.clone(),
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price: Some(money_to(&p.currency_code, l.unit_price_minor)),
                discounted: l.discounted,
                returned_quantity: l.returned_quantity,
            })
            .collect(),
        channel: maps::sales_channel_to(p.channel) as i32,
        total: Some(money_to(&p.currency_code, p.total_minor)),
        returned: Some(money_to(&p.currency_code, p.returned_minor)),
        create_time: Some(timestamp(p.created_at)),
    }
}

/// A new return from a request.
pub fn new_return(r: Option<&pb::Return>) -> Result<NewReturn, Error> {
    let Some(r) = r else {
        return Err(Error::invalid("return", "required"));
    };
    // Every field, so one added to the proto does not compile until it is handled here.
    let pb::Return {
        return_id,
        occur_time,
        lines,
        reason,
        name: _,        // output only
        purchase: _,    // output only: the request names the purchase
        amount: _,      // output only
        create_time: _, // output only
    } = r;
    let mut v = Violations::default();
    let occurred_at = v
        .check(to_time(occur_time.as_ref(), "return.occur_time"))
        .flatten();
    let lines: Vec<(i64, i64)> = lines
        .iter()
        .map(
            |pb::ReturnLine {
                 line_number,
                 quantity,
             }| (i64::from(*line_number), *quantity),
        )
        .collect();
    let new = v.check_all(
        NewReturn::new(return_id, occurred_at, &lines, reason).map_err(|e| under("return", e)),
    );
    Ok(v.done(new)?)
}

/// Registry return → proto.
pub fn return_to(r: &Return) -> pb::Return {
    pb::Return {
        name: names::child(r.customer_id, "returns", r.id),
        purchase: names::child(r.customer_id, "purchases", r.purchase_id),
        return_id: r.return_id.clone(),
        occur_time: Some(timestamp(r.occurred_at)),
        lines: r
            .lines
            .iter()
            .map(|l| pb::ReturnLine {
                line_number: i32::try_from(l.line_number).unwrap_or(i32::MAX),
                quantity: l.quantity,
            })
            .collect(),
        amount: Some(money_to(&r.currency_code, r.amount_minor)),
        reason: r.reason.clone(),
        create_time: Some(timestamp(r.created_at)),
    }
}

// ---- surveys, complaints, referrals ----

/// A survey answer from a request.
pub fn new_survey(s: Option<&pb::Survey>) -> Result<NewSurvey, Error> {
    let Some(s) = s else {
        return Err(Error::invalid("survey", "required"));
    };
    // Every field, so one added to the proto does not compile until it is handled here.
    let pb::Survey {
        kind,
        score,
        occur_time,
        comment,
        name: _,        // output only
        create_time: _, // output only
    } = s;
    let mut v = Violations::default();
    // An unknown number is as good as none: the constructor says which kinds there are.
    let kind = maps::survey_kind_from(*kind).ok().flatten();
    let occurred_at = v
        .check(to_time(occur_time.as_ref(), "survey.occur_time"))
        .flatten();
    let new = v.check_all(
        NewSurvey::new(kind, *score, occurred_at, comment).map_err(|e| under("survey", e)),
    );
    Ok(v.done(new)?)
}

/// Registry survey → proto.
pub fn survey_to(s: &Survey) -> pb::Survey {
    pb::Survey {
        name: names::child(s.customer_id, "surveys", s.id),
        kind: maps::survey_kind_to(Some(s.kind)) as i32,
        score: s.score,
        occur_time: Some(timestamp(s.occurred_at)),
        comment: s.comment.clone(),
        create_time: Some(timestamp(s.created_at)),
    }
}

/// A complaint from a request.
pub fn new_complaint(c: Option<&pb::Complaint>) -> Result<NewComplaint, Error> {
    let Some(c) = c else {
        return Err(Error::invalid("complaint", "required"));
    };
    // Every field, so one added to the proto does not compile until it is handled here.
    let pb::Complaint {
        subject,
        description,
        open_time,
        name: _,         // output only
        state: _,        // output only
        resolve_time: _, // output only
        resolution: _,   // ResolveComplaint's
        etag: _,         // output only
    } = c;
    let mut v = Violations::default();
    let opened_at = v
        .check(to_time(open_time.as_ref(), "complaint.open_time"))
        .flatten();
    let new = v.check_all(
        NewComplaint::new(subject, description, opened_at).map_err(|e| under("complaint", e)),
    );
    Ok(v.done(new)?)
}

/// Free text of a resolution.
pub fn resolution(s: &str) -> Result<String, Error> {
    Ok(input::resolution(s).map_err(|e| e.under("resolution"))?)
}

/// Registry complaint → proto.
pub fn complaint_to(c: &Complaint) -> pb::Complaint {
    pb::Complaint {
        name: names::child(c.customer_id, "complaints", c.id),
        subject: c.subject.clone(),
        description: c.description.clone(),
        state: if c.resolved {
            pb::ComplaintState::Resolved
        } else {
            pb::ComplaintState::Open
        } as i32,
        open_time: Some(timestamp(c.opened_at)),
        resolve_time: c.resolved_at.map(timestamp),
        resolution: c.resolution.clone(),
        etag: c.etag(),
    }
}

/// Registry referral → proto.
pub fn referral_to(r: &Referral) -> pb::Referral {
    pb::Referral {
        name: names::child(r.referrer_id, "referrals", r.id),
        referrer: names::customer(r.referrer_id),
        referred: names::customer(r.referred_id),
        occur_time: Some(timestamp(r.occurred_at)),
        create_time: Some(timestamp(r.created_at)),
    }
}

// ---- events ----

/// Registry event → proto.
pub fn event_to(e: &Event) -> pb::Event {
    use pb::event::Payload;
    let payload = match &e.payload {
        EventPayload::CustomerCreated(c) => Payload::CustomerCreated(customer_to(c)),
        EventPayload::CustomerUpdated(c) => Payload::CustomerUpdated(customer_to(c)),
        EventPayload::CustomersMerged {
            survivor,
            merged,
            moved_purchases,
        } => Payload::CustomersMerged(pb::CustomersMerged {
            survivor: names::customer(*survivor),
            merged: names::customer(*merged),
            moved_purchases: moved_purchases
                .iter()
                .map(|p| names::child(*survivor, "purchases", p))
                .collect(),
        }),
        EventPayload::PurchaseRecorded(p) => Payload::PurchaseRecorded(purchase_to(p)),
        EventPayload::ReturnRecorded(r) => Payload::ReturnRecorded(return_to(r)),
        EventPayload::SurveyRecorded(s) => Payload::SurveyRecorded(survey_to(s)),
        EventPayload::ComplaintOpened(c) => Payload::ComplaintOpened(complaint_to(c)),
        EventPayload::ComplaintResolved(c) => Payload::ComplaintResolved(complaint_to(c)),
        EventPayload::ReferralRecorded(r) => Payload::ReferralRecorded(referral_to(r)),
    };
    pb::Event {
        sequence: e.sequence,
        event_id: e.id.to_string(),
        record_time: Some(timestamp(e.recorded_at)),
        customer: names::customer(e.payload.customer_id()),
        payload: Some(payload),
    }
}

#[cfg(test)]
mod field_tests {
    use super::*;

    /// The fields of `pb::Customer` that are output only (see `customer_fields`).
    const CUSTOMER_OUTPUT_FIELDS: &[&str] = &[
        "name",
        "status",
        "merged_into",
        "create_time",
        "update_time",
        "etag",
    ];

    #[test]
    fn customer_fields_lists_every_input_field_of_the_proto() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(clientela_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let customer = set
            .file
            .iter()
            .filter(|f| f.package() == "clientela.registry.v1")
            .flat_map(|f| f.message_type.iter())
            .find(|m| m.name() == "Customer")
            .expect("Customer message");
        let mut inputs: Vec<&str> = customer
            .field
            .iter()
            .map(|f| f.name())
            .filter(|f| !CUSTOMER_OUTPUT_FIELDS.contains(f))
            .collect();
        inputs.sort_unstable();
        let mut listed = CUSTOMER_FIELDS.to_vec();
        listed.sort_unstable();
        assert_eq!(listed, inputs);
    }
}
