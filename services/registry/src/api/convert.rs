//! Proto ↔ registry records. Input conversions validate every field and name the field
//! that is wrong; output conversions cannot fail.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clientela_domain::taxonomy::{CustomerKind, SurveyKind};
use clientela_domain::{Address, Email, FieldViolation, Phone, TaxId};
use clientela_proto::clientela::common::v1 as common;
use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::maps;
use clientela_runtime::Error;

use crate::model::{
    AddressValue, Complaint, Consent, Customer, CustomerFields, Event, EventPayload, FieldValue,
    Influence, Purchase, PurchaseLine, Referral, Return, ReturnLine, Status, Survey, TaxIdValue,
};
use crate::names;
use crate::registry::{NewPurchase, NewReturn};

/// Collects violations so one response names every bad field, not just the first.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Keeps `Ok` values, records errors.
    pub fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// Records one violation.
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// `Err` with every violation, if any.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }
}

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation::new(field, description)
}

// ---- time ----

pub use clientela_runtime::time::{required_time, timestamp, to_time};

// ---- strings ----

fn text(field: &str, s: &str, max: usize, required: bool) -> Result<String, FieldViolation> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return if required {
            Err(violation(field, "required"))
        } else {
            Ok(String::new())
        };
    }
    clientela_domain::text::validate_name(field, trimmed, max)
}

/// Optional identifier-like string (request ids, order ids): at most 128 printable characters.
pub fn ident(field: &str, s: &str, required: bool) -> Result<Option<String>, FieldViolation> {
    let s = s.trim();
    if s.is_empty() {
        return if required {
            Err(violation(field, "required"))
        } else {
            Ok(None)
        };
    }
    if s.chars().count() > 128 || s.chars().any(char::is_control) {
        return Err(violation(field, "at most 128 printable characters"));
    }
    Ok(Some(s.to_owned()))
}

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
    values
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
        .collect()
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
        _ => false,
    }
}

fn list<T>(
    field: &str,
    items: &[String],
    max: usize,
    v: &mut Violations,
    parse: impl Fn(&str) -> Result<T, FieldViolation>,
) -> Vec<T> {
    if items.len() > max {
        v.push(field, format!("at most {max} entries"));
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| v.check(parse(item).map_err(|e| e.under(&format!("{field}[{i}]")))))
        .collect()
}

/// Validates one field of `c` (`prefix` is the request's field holding the customer).
/// On error the violations are in `v` and `None` is returned.
pub fn parse_field(
    c: &pb::Customer,
    field: &str,
    prefix: &str,
    v: &mut Violations,
) -> Option<FieldValue> {
    let path = format!("{prefix}.{field}");
    let path = path.as_str();
    match field {
        "kind" => match maps::customer_kind_from(c.kind) {
            Ok(Some(k)) => Some(FieldValue::Kind(k)),
            Ok(None) | Err(_) => {
                v.push(
                    path,
                    "required: CUSTOMER_KIND_PERSON or CUSTOMER_KIND_ORGANIZATION",
                );
                None
            }
        },
        "display_name" => v
            .check(text(path, &c.display_name, 200, true))
            .map(FieldValue::DisplayName),
        "legal_name" => v
            .check(text(path, &c.legal_name, 200, false))
            .map(FieldValue::LegalName),
        "tax_id" => match &c.tax_id {
            None => Some(FieldValue::TaxId(None)),
            Some(t) if t.value.trim().is_empty() && t.country_code.trim().is_empty() => {
                Some(FieldValue::TaxId(None))
            }
            Some(t) => match TaxId::parse(&t.country_code, &t.value) {
                Ok(id) => Some(FieldValue::TaxId(Some(TaxIdValue {
                    country_code: id.country().to_owned(),
                    value: id.value().to_owned(),
                    normalized: id.normalized().to_owned(),
                }))),
                Err(clientela_domain::TaxIdError::InvalidCountry(_)) => {
                    v.push(
                        format!("{path}.country_code"),
                        "must be an ISO 3166-1 alpha-2 country code such as CL",
                    );
                    None
                }
                Err(e) => {
                    v.push(format!("{path}.value"), e.to_string());
                    None
                }
            },
        },
        "emails" => {
            let before = v.0.len();
            let emails: Vec<String> = list(path, &c.emails, 10, v, |e| {
                Email::parse(e).map(|e| e.as_str().to_owned())
            });
            (v.0.len() == before).then_some(FieldValue::Emails(dedup(emails)))
        }
        "phones" => {
            let before = v.0.len();
            let phones: Vec<String> = list(path, &c.phones, 10, v, |p| {
                Phone::parse(p).map(|p| p.as_str().to_owned())
            });
            (v.0.len() == before).then_some(FieldValue::Phones(dedup(phones)))
        }
        "address" => match &c.address {
            None => Some(FieldValue::Address(None)),
            Some(a) => {
                let empty = a.country_code.is_empty()
                    && a.region.is_empty()
                    && a.locality.is_empty()
                    && a.postal_code.is_empty()
                    && a.street.is_empty();
                if empty {
                    return Some(FieldValue::Address(None));
                }
                v.check(
                    Address::new(
                        &a.country_code,
                        &a.region,
                        &a.locality,
                        &a.postal_code,
                        &a.street,
                    )
                    .map_err(|mut e| {
                        if e.field == "country" {
                            e.field = "country_code".to_owned();
                        }
                        e.under(path)
                    }),
                )
                .map(|a| {
                    FieldValue::Address(Some(AddressValue {
                        country_code: a.country.as_str().to_owned(),
                        region: a.region,
                        locality: a.locality,
                        postal_code: a.postal_code,
                        street: a.street,
                    }))
                })
            }
        },
        "channel_role" => v
            .check(optional_enum(c.channel_role, path, maps::channel_role_from))
            .map(FieldValue::ChannelRole),
        "business_kind" => v
            .check(optional_enum(
                c.business_kind,
                path,
                maps::business_kind_from,
            ))
            .map(FieldValue::BusinessKind),
        "influence" => {
            let i = c.influence.unwrap_or_default();
            let before = v.0.len();
            if i.audience_reach < 0 {
                v.push(format!("{path}.audience_reach"), "must not be negative");
            }
            let role = v.check(optional_enum(
                i.decision_role,
                &format!("{path}.decision_role"),
                maps::decision_role_from,
            ));
            (v.0.len() == before).then(|| {
                FieldValue::Influence(Influence {
                    audience_reach: i.audience_reach,
                    public_figure: i.public_figure,
                    decision_role: role.flatten(),
                })
            })
        }
        "tags" => {
            let before = v.0.len();
            let tags = list(path, &c.tags, 50, v, |t| text("", t, 64, true));
            (v.0.len() == before).then(|| FieldValue::Tags(dedup(tags)))
        }
        "attributes" => {
            if c.attributes.len() > 50 {
                v.push(path, "at most 50 attributes");
                return None;
            }
            let before = v.0.len();
            let mut out = BTreeMap::new();
            for (key, value) in &c.attributes {
                let key_ok = !key.is_empty()
                    && key.len() <= 64
                    && key.chars().all(|ch| {
                        ch.is_ascii_lowercase() || ch.is_ascii_digit() || "_.-".contains(ch)
                    });
                if !key_ok {
                    v.push(
                        format!("{path}[{key}]"),
                        "keys are 1-64 characters of a-z, 0-9, '_', '.', '-'",
                    );
                } else if value.chars().count() > 1024 || value.chars().any(char::is_control) {
                    v.push(
                        format!("{path}[{key}]"),
                        "values are at most 1024 printable characters",
                    );
                } else {
                    out.insert(key.clone(), value.clone());
                }
            }
            (v.0.len() == before).then_some(FieldValue::Attributes(out))
        }
        "consent" => {
            let c = c.consent.unwrap_or_default();
            Some(FieldValue::Consent(Consent {
                marketing_email: c.marketing_email,
                marketing_sms: c.marketing_sms,
                marketing_phone: c.marketing_phone,
                data_processing: c.data_processing,
            }))
        }
        "language_code" => match c.language_code.trim() {
            "" | "es" => Some(FieldValue::LanguageCode("es".to_owned())),
            "en" => Some(FieldValue::LanguageCode("en".to_owned())),
            _ => {
                v.push(path, "must be \"es\" or \"en\"");
                None
            }
        },
        "external_id" => v
            .check(ident(path, &c.external_id, false))
            .map(FieldValue::ExternalId),
        other => {
            v.push(path, format!("{other} cannot be written"));
            None
        }
    }
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.iter().any(|x| x.eq_ignore_ascii_case(&item)) {
            out.push(item);
        }
    }
    out
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
    v.finish()?;
    Ok(fields)
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
            country_code: t.country_code.clone(),
            value: t.value.clone(),
        }),
        emails: f.emails.clone(),
        phones: f.phones.clone(),
        address: f.address.as_ref().map(|a| pb::Address {
            country_code: a.country_code.clone(),
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
    }
}

// ---- purchases and returns ----

fn money(m: Option<&common::Money>, field: &str) -> Result<(String, i64), FieldViolation> {
    let m = m.ok_or_else(|| violation(field, "required"))?;
    if !clientela_domain::money::is_known_currency(&m.currency_code) {
        return Err(violation(
            &format!("{field}.currency_code"),
            format!(
                "{:?} is not an ISO 4217 currency code (e.g. CLP, MXN, EUR)",
                m.currency_code
            ),
        ));
    }
    Ok((m.currency_code.clone(), m.amount_minor))
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
        order_id: _,
        occur_time: _,
        lines: _,
        channel: _,
        name: _,        // output only
        total: _,       // output only
        returned: _,    // output only
        create_time: _, // output only
    } = p;
    let mut v = Violations::default();
    let order_id = v
        .check(ident("purchase.order_id", &p.order_id, true))
        .flatten();
    let occurred_at = v.check(required_time(p.occur_time.as_ref(), "purchase.occur_time"));
    let channel = v
        .check(optional_enum(
            p.channel,
            "purchase.channel",
            maps::sales_channel_from,
        ))
        .flatten();
    if p.lines.is_empty() {
        v.push("purchase.lines", "at least one line");
    } else if p.lines.len() > 500 {
        v.push("purchase.lines", "at most 500 lines");
    }
    let mut currency: Option<String> = None;
    let mut lines = Vec::with_capacity(p.lines.len());
    for (i, line) in p.lines.iter().enumerate() {
        let pb::PurchaseLine {
            product_line: _,
            sku: _,
            quantity: _,
            unit_price: _,
            discounted: _,
            returned_quantity: _, // output only
        } = line;
        let at = format!("purchase.lines[{i}]");
        let product_line = v.check(text(
            &format!("{at}.product_line"),
            &line.product_line,
            100,
            true,
        ));
        let sku = v.check(text(&format!("{at}.sku"), &line.sku, 100, false));
        if line.quantity < 1 {
            v.push(format!("{at}.quantity"), "at least 1");
        }
        let price = v.check(money(line.unit_price.as_ref(), &format!("{at}.unit_price")));
        if let Some((code, amount)) = &price {
            if *amount < 0 {
                v.push(
                    format!("{at}.unit_price.amount_minor"),
                    "must not be negative",
                );
            }
            match &currency {
                None => currency = Some(code.clone()),
                Some(c) if c != code => {
                    v.push(
                        format!("{at}.unit_price.currency_code"),
                        format!("every line must be in {c}"),
                    );
                }
                Some(_) => {}
            }
        }
        if let (Some(product_line), Some(sku), Some((_, unit_price_minor))) =
            (product_line, sku, price)
        {
            lines.push(PurchaseLine {
                product_line,
                sku,
                quantity: line.quantity,
                unit_price_minor,
                discounted: line.discounted,
                returned_quantity: 0,
            });
        }
    }
    v.finish()?;
    match (order_id, occurred_at, currency) {
        (Some(order_id), Some(occurred_at), Some(currency_code)) => Ok(NewPurchase {
            order_id,
            occurred_at,
            lines,
            channel,
            currency_code,
        }),
        _ => Err(Error::invalid("purchase", "incomplete")),
    }
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
        return_id: _,
        occur_time: _,
        lines: _,
        reason: _,
        name: _,        // output only
        purchase: _,    // output only: the request names the purchase
        amount: _,      // output only
        create_time: _, // output only
    } = r;
    let mut v = Violations::default();
    let return_id = v
        .check(ident("return.return_id", &r.return_id, true))
        .flatten();
    let occurred_at = v.check(required_time(r.occur_time.as_ref(), "return.occur_time"));
    let reason = v.check(text("return.reason", &r.reason, 1000, false));
    let mut lines = Vec::new();
    for (i, line) in r.lines.iter().enumerate() {
        let pb::ReturnLine {
            line_number: _,
            quantity: _,
        } = line;
        match u32::try_from(line.line_number) {
            Ok(n) if n >= 1 => {
                if line.quantity < 1 {
                    v.push(format!("return.lines[{i}].quantity"), "at least 1");
                } else {
                    lines.push(ReturnLine {
                        line_number: n,
                        quantity: line.quantity,
                    });
                }
            }
            _ => v.push(
                format!("return.lines[{i}].line_number"),
                "lines are numbered from 1",
            ),
        }
    }
    v.finish()?;
    match (return_id, occurred_at, reason) {
        (Some(return_id), Some(occurred_at), Some(reason)) => Ok(NewReturn {
            return_id,
            occurred_at,
            lines,
            reason,
        }),
        _ => Err(Error::invalid("return", "incomplete")),
    }
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

/// A survey answer from a request: kind, score in range, time, comment.
pub fn new_survey(
    s: Option<&pb::Survey>,
) -> Result<(SurveyKind, i32, DateTime<Utc>, String), Error> {
    let Some(s) = s else {
        return Err(Error::invalid("survey", "required"));
    };
    // Every field, so one added to the proto does not compile until it is handled here.
    let pb::Survey {
        kind: _,
        score: _,
        occur_time: _,
        comment: _,
        name: _,        // output only
        create_time: _, // output only
    } = s;
    let mut v = Violations::default();
    let kind = match maps::survey_kind_from(s.kind) {
        Ok(Some(kind)) => Some(kind),
        Ok(None) | Err(_) => {
            v.push(
                "survey.kind",
                "required: SURVEY_KIND_NPS or SURVEY_KIND_CSAT",
            );
            None
        }
    };
    match kind {
        Some(SurveyKind::Nps) if !(0..=10).contains(&s.score) => {
            v.push("survey.score", "NPS scores are 0 to 10")
        }
        Some(SurveyKind::Csat) if !(1..=5).contains(&s.score) => {
            v.push("survey.score", "CSAT scores are 1 to 5")
        }
        _ => {}
    }
    let at = v.check(required_time(s.occur_time.as_ref(), "survey.occur_time"));
    let comment = v.check(text("survey.comment", &s.comment, 2000, false));
    v.finish()?;
    match (kind, at, comment) {
        (Some(kind), Some(at), Some(comment)) => Ok((kind, s.score, at, comment)),
        _ => Err(Error::invalid("survey", "incomplete")),
    }
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

/// A complaint from a request: subject, description, open time.
pub fn new_complaint(
    c: Option<&pb::Complaint>,
) -> Result<(String, String, Option<DateTime<Utc>>), Error> {
    let Some(c) = c else {
        return Err(Error::invalid("complaint", "required"));
    };
    // Every field, so one added to the proto does not compile until it is handled here.
    let pb::Complaint {
        subject: _,
        description: _,
        open_time: _,
        name: _,         // output only
        state: _,        // output only
        resolve_time: _, // output only
        resolution: _,   // ResolveComplaint's
        etag: _,         // output only
    } = c;
    let mut v = Violations::default();
    let subject = v.check(text("complaint.subject", &c.subject, 200, true));
    let description = v.check(text("complaint.description", &c.description, 4000, false));
    let opened = v.check(to_time(c.open_time.as_ref(), "complaint.open_time"));
    v.finish()?;
    match (subject, description, opened) {
        (Some(s), Some(d), Some(o)) => Ok((s, d, o)),
        _ => Err(Error::invalid("complaint", "incomplete")),
    }
}

/// Free text of a resolution.
pub fn resolution(s: &str) -> Result<String, Error> {
    Ok(text("resolution", s, 4000, true)?)
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
