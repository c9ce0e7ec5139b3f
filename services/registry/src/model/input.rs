//! What callers write, validated. Each constructor applies its record's rules (limits,
//! ranges, one currency a purchase) and names a bad field relative to the record; the
//! api only translates the wire message and prefixes the request's field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clientela_domain::error::under;
use clientela_domain::taxonomy::{DecisionRole, SalesChannel, SurveyKind};
use clientela_domain::text::quote;
use clientela_domain::{
    Address, Email, FieldViolation, Money, Phone, TaxId, TaxIdError, Violations,
};

use super::{CostToServe, FieldValue, Influence, PurchaseLine, ReturnLine};

/// Display and legal names, subjects.
pub const NAME_MAX: usize = 200;
/// Request ids, order ids, return ids, external ids.
pub const IDENT_MAX: usize = 128;
pub const EMAILS_MAX: usize = 10;
pub const PHONES_MAX: usize = 10;
pub const TAGS_MAX: usize = 50;
pub const TAG_MAX: usize = 64;
pub const ATTRIBUTES_MAX: usize = 50;
pub const ATTRIBUTE_KEY_MAX: usize = 64;
pub const ATTRIBUTE_VALUE_MAX: usize = 1024;
pub const PURCHASE_LINES_MAX: usize = 500;
/// Product lines and SKUs.
pub const PRODUCT_MAX: usize = 100;
pub const RETURN_REASON_MAX: usize = 1000;
pub const SURVEY_COMMENT_MAX: usize = 2000;
/// Complaint descriptions and resolutions.
pub const COMPLAINT_TEXT_MAX: usize = 4000;
/// List filters: search text, region, tag.
pub const SEARCH_MAX: usize = 200;
/// Entries of a list of enum values in a filter (there are fewer values than this).
pub const ENUM_LIST_MAX: usize = 16;

/// A list filter's text, folded for search (case and accents ignored); empty is `None`.
/// Bounded before it reaches a LIKE pattern, which SQLite refuses past 50,000 bytes, and
/// printable.
pub fn search(field: &str, s: &str) -> Result<Option<String>, FieldViolation> {
    let count = s.chars().count();
    if count > SEARCH_MAX {
        return Err(FieldViolation::new(
            field,
            format!("at most {SEARCH_MAX} characters (got {count})"),
        ));
    }
    // PostgreSQL refuses NUL in text, and no stored text holds a control character.
    if s.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(clientela_domain::text::fold(s)).filter(|s| !s.is_empty()))
}

/// Trimmed text of at most `max` characters without control characters; empty is
/// "required" when `required`, else the empty string.
pub fn text(field: &str, s: &str, max: usize, required: bool) -> Result<String, FieldViolation> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return if required {
            Err(FieldViolation::new(field, "required"))
        } else {
            Ok(String::new())
        };
    }
    clientela_domain::text::validate_name(field, trimmed, max)
}

/// An identifier-like string (request ids, order ids): at most 128 printable characters;
/// empty is `None` unless `required`.
pub fn ident(field: &str, s: &str, required: bool) -> Result<Option<String>, FieldViolation> {
    let s = s.trim();
    if s.is_empty() {
        return if required {
            Err(FieldViolation::new(field, "required"))
        } else {
            Ok(None)
        };
    }
    if s.chars().count() > IDENT_MAX || s.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            format!("at most {IDENT_MAX} printable characters"),
        ));
    }
    Ok(Some(s.to_owned()))
}

/// Parses each item of a list of at most `max`; violations are named `[i]`.
fn list<T>(
    items: &[String],
    max: usize,
    parse: impl Fn(&str) -> Result<T, FieldViolation>,
) -> Result<Vec<T>, Vec<FieldViolation>> {
    if items.len() > max {
        return Err(vec![FieldViolation::new(
            "",
            format!("at most {max} entries"),
        )]);
    }
    let mut v = Violations::default();
    let parsed: Vec<T> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| v.check(parse(item).map_err(|e| e.under(&format!("[{i}]")))))
        .collect();
    v.done(Some(parsed))
}

/// The first of items that are equal ignoring ASCII case, in order.
fn dedup<T: AsRef<str>>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out
            .iter()
            .any(|x| x.as_ref().eq_ignore_ascii_case(item.as_ref()))
        {
            out.push(item);
        }
    }
    out
}

/// The customer fields whose value needs checking; the rest (kind, channel role,
/// business kind, consent) are whatever the wire's enum or flags say.
impl FieldValue {
    pub fn display_name(s: &str) -> Result<Self, FieldViolation> {
        text("", s, NAME_MAX, true).map(FieldValue::DisplayName)
    }

    pub fn legal_name(s: &str) -> Result<Self, FieldViolation> {
        text("", s, NAME_MAX, false).map(FieldValue::LegalName)
    }

    /// Both parts empty clears the tax id.
    pub fn tax_id(country_code: &str, value: &str) -> Result<Self, FieldViolation> {
        if country_code.trim().is_empty() && value.trim().is_empty() {
            return Ok(FieldValue::TaxId(None));
        }
        match TaxId::parse(country_code, value) {
            Ok(id) => Ok(FieldValue::TaxId(Some(id))),
            Err(TaxIdError::InvalidCountry(_)) => Err(FieldViolation::new(
                "country_code",
                "must be an ISO 3166-1 alpha-2 country code such as CL",
            )),
            Err(e) => Err(FieldViolation::new("value", e.to_string())),
        }
    }

    /// At most 10; repeats (ignoring case) dropped.
    pub fn emails(items: &[String]) -> Result<Self, Vec<FieldViolation>> {
        list(items, EMAILS_MAX, Email::parse).map(|e| FieldValue::Emails(dedup(e)))
    }

    /// At most 10, E.164; repeats dropped.
    pub fn phones(items: &[String]) -> Result<Self, Vec<FieldViolation>> {
        list(items, PHONES_MAX, Phone::parse).map(|p| FieldValue::Phones(dedup(p)))
    }

    /// Every part empty clears the address; otherwise the country is required.
    pub fn address(
        country_code: &str,
        region: &str,
        locality: &str,
        postal_code: &str,
        street: &str,
    ) -> Result<Self, FieldViolation> {
        if [country_code, region, locality, postal_code, street]
            .iter()
            .all(|p| p.is_empty())
        {
            return Ok(FieldValue::Address(None));
        }
        Address::new(country_code, region, locality, postal_code, street)
            .map(|a| FieldValue::Address(Some(a)))
    }

    pub fn influence(
        audience_reach: i64,
        public_figure: bool,
        decision_role: Option<DecisionRole>,
    ) -> Result<Self, FieldViolation> {
        if audience_reach < 0 {
            return Err(FieldViolation::new(
                "audience_reach",
                "must not be negative",
            ));
        }
        Ok(FieldValue::Influence(Influence {
            audience_reach,
            public_figure,
            decision_role,
        }))
    }

    /// At most 50 of at most 64 characters each; repeats dropped.
    pub fn tags(items: &[String]) -> Result<Self, Vec<FieldViolation>> {
        list(items, TAGS_MAX, |t| text("", t, TAG_MAX, true)).map(|t| FieldValue::Tags(dedup(t)))
    }

    /// At most 50; keys of a-z, 0-9, '_', '.', '-'; values of printable characters.
    pub fn attributes<'a>(
        entries: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, Vec<FieldViolation>> {
        if entries.len() > ATTRIBUTES_MAX {
            return Err(vec![FieldViolation::new(
                "",
                format!("at most {ATTRIBUTES_MAX} attributes"),
            )]);
        }
        let mut v = Violations::default();
        let mut out = BTreeMap::new();
        for (key, value) in entries {
            let key_ok = !key.is_empty()
                && key.len() <= ATTRIBUTE_KEY_MAX
                && key
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "_.-".contains(ch));
            if !key_ok {
                v.push(
                    format!("[{}]", quote(key)),
                    format!("keys are 1-{ATTRIBUTE_KEY_MAX} characters of a-z, 0-9, '_', '.', '-'"),
                );
            } else if let Some(field) = super::legacy_field(key) {
                // Once read as these fields: stored, it would be read as the field again.
                v.push(
                    format!("[{}]", quote(key)),
                    format!("a field of its own now: set customer.{field}"),
                );
            } else if value.chars().count() > ATTRIBUTE_VALUE_MAX
                || value.chars().any(char::is_control)
            {
                v.push(
                    format!("[{}]", quote(key)),
                    format!("values are at most {ATTRIBUTE_VALUE_MAX} printable characters"),
                );
            } else {
                out.insert(key.clone(), value.clone());
            }
        }
        v.done(Some(FieldValue::Attributes(out)))
    }

    /// "es" (also the default when empty) or "en".
    pub fn language_code(s: &str) -> Result<Self, FieldViolation> {
        match s.trim() {
            "" | "es" => Ok(FieldValue::LanguageCode("es".to_owned())),
            "en" => Ok(FieldValue::LanguageCode("en".to_owned())),
            _ => Err(FieldViolation::new("", "must be \"es\" or \"en\"")),
        }
    }

    pub fn external_id(s: &str) -> Result<Self, FieldViolation> {
        ident("", s, false).map(FieldValue::ExternalId)
    }

    /// A known currency and an amount of at least zero.
    pub fn cost_to_serve(cost: Option<Money>) -> Result<Self, FieldViolation> {
        match cost {
            Some(m) if m.is_negative() => Err(FieldViolation::new(
                "amount_minor",
                "a cost to serve is not negative",
            )),
            cost => Ok(FieldValue::CostToServe(cost.map(|m| CostToServe {
                currency_code: m.currency_code().to_owned(),
                amount_minor: m.amount_minor(),
            }))),
        }
    }
}

/// One line of a purchase as the caller gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDraft {
    pub product_line: String,
    pub sku: String,
    pub quantity: i64,
    /// `None` when the caller gave none (or one the api could not read: it said why).
    pub unit_price: Option<Money>,
    pub discounted: bool,
}

/// A purchase to record, validated: at least one line, every line in one currency, the
/// total within 64-bit minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPurchase {
    /// The caller's order id.
    pub order_id: String,
    pub occurred_at: DateTime<Utc>,
    /// Lines, none returned yet.
    pub lines: Vec<PurchaseLine>,
    pub channel: Option<SalesChannel>,
    /// Sum of quantity × unit price, in the currency of every line.
    pub total: Money,
}

/// A purchase has at most [`PURCHASE_LINES_MAX`] lines; checked before its lines are
/// read, so a request with thousands is refused for its size, not for each line.
pub fn line_count(count: usize) -> Result<(), FieldViolation> {
    if count > PURCHASE_LINES_MAX {
        return Err(FieldViolation::new(
            "lines",
            format!("at most {PURCHASE_LINES_MAX} lines (got {count})"),
        ));
    }
    Ok(())
}

impl NewPurchase {
    /// `occurred_at` is `None` when the caller gave none (or one the api could not read).
    pub fn new(
        order_id: &str,
        occurred_at: Option<DateTime<Utc>>,
        channel: Option<SalesChannel>,
        lines: &[LineDraft],
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut v = Violations::default();
        let order_id = v.check(ident("order_id", order_id, true)).flatten();
        if occurred_at.is_none() {
            v.push("occur_time", "required");
        }
        if lines.is_empty() {
            v.push("lines", "at least one line");
        }
        v.check(line_count(lines.len()));
        let mut total: Option<Money> = None;
        let mut out = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let at = format!("lines[{i}]");
            let checked =
                v.check_all(purchase_line(line, total.as_ref()).map_err(|e| under(&at, e)));
            if let Some((line, amount)) = checked {
                total = match &total {
                    None => Some(amount),
                    Some(t) => v.check(
                        t.checked_add(&amount)
                            .map_err(|_| FieldViolation::new("lines", "the total overflows")),
                    ),
                };
                out.push(line);
            }
        }
        let built = match (order_id, occurred_at, total) {
            (Some(order_id), Some(occurred_at), Some(total)) => Some(NewPurchase {
                order_id,
                occurred_at,
                lines: out,
                channel,
                total,
            }),
            _ => None,
        };
        v.done(built)
    }
}

/// One line and its amount; `first` is the amount so far, whose currency every line shares.
fn purchase_line(
    line: &LineDraft,
    so_far: Option<&Money>,
) -> Result<(PurchaseLine, Money), Vec<FieldViolation>> {
    let mut v = Violations::default();
    let product_line = v.check(text("product_line", &line.product_line, PRODUCT_MAX, true));
    let sku = v.check(text("sku", &line.sku, PRODUCT_MAX, false));
    if line.quantity < 1 {
        v.push("quantity", "at least 1");
    }
    let mut amount = None;
    match &line.unit_price {
        None => v.push("unit_price", "required"),
        Some(price) if price.is_negative() => {
            v.push("unit_price.amount_minor", "must not be negative")
        }
        Some(price) => match so_far {
            Some(t) if t.currency_code() != price.currency_code() => v.push(
                "unit_price.currency_code",
                format!("every line must be in {}", t.currency_code()),
            ),
            _ if line.quantity >= 1 => {
                amount = v.check(
                    price
                        .checked_mul(line.quantity)
                        .map_err(|_| FieldViolation::new("", "quantity × unit price overflows")),
                );
            }
            _ => {}
        },
    }
    let built = match (product_line, sku, &line.unit_price, amount) {
        (Some(product_line), Some(sku), Some(price), Some(amount)) => Some((
            PurchaseLine {
                product_line,
                sku,
                quantity: line.quantity,
                unit_price_minor: price.amount_minor(),
                discounted: line.discounted,
                returned_quantity: 0,
            },
            amount,
        )),
        _ => None,
    };
    v.done(built)
}

/// A return to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReturn {
    /// The caller's return id.
    pub return_id: String,
    pub occurred_at: DateTime<Utc>,
    /// Lines; empty means everything not yet returned.
    pub lines: Vec<ReturnLine>,
    pub reason: String,
}

impl NewReturn {
    /// `lines` are (1-based line number, quantity) pairs.
    pub fn new(
        return_id: &str,
        occurred_at: Option<DateTime<Utc>>,
        lines: &[(i64, i64)],
        reason: &str,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut v = Violations::default();
        let return_id = v.check(ident("return_id", return_id, true)).flatten();
        if occurred_at.is_none() {
            v.push("occur_time", "required");
        }
        let reason = v.check(text("reason", reason, RETURN_REASON_MAX, false));
        let mut out = Vec::with_capacity(lines.len());
        for (i, &(line_number, quantity)) in lines.iter().enumerate() {
            match u32::try_from(line_number) {
                Ok(n) if n >= 1 => {
                    if quantity < 1 {
                        v.push(format!("lines[{i}].quantity"), "at least 1");
                    } else {
                        out.push(ReturnLine {
                            line_number: n,
                            quantity,
                        });
                    }
                }
                _ => v.push(
                    format!("lines[{i}].line_number"),
                    "lines are numbered from 1",
                ),
            }
        }
        let built = match (return_id, occurred_at, reason) {
            (Some(return_id), Some(occurred_at), Some(reason)) => Some(NewReturn {
                return_id,
                occurred_at,
                lines: out,
                reason,
            }),
            _ => None,
        };
        v.done(built)
    }
}

/// A survey answer to record: the score within its kind's scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSurvey {
    pub kind: SurveyKind,
    pub score: i32,
    pub occurred_at: DateTime<Utc>,
    pub comment: String,
}

impl NewSurvey {
    /// NPS scores are 0 to 10, CSAT 1 to 5.
    pub fn new(
        kind: Option<SurveyKind>,
        score: i32,
        occurred_at: Option<DateTime<Utc>>,
        comment: &str,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut v = Violations::default();
        match kind {
            None => v.push("kind", "required: SURVEY_KIND_NPS or SURVEY_KIND_CSAT"),
            Some(SurveyKind::Nps) if !(0..=10).contains(&score) => {
                v.push("score", "NPS scores are 0 to 10")
            }
            Some(SurveyKind::Csat) if !(1..=5).contains(&score) => {
                v.push("score", "CSAT scores are 1 to 5")
            }
            Some(_) => {}
        }
        if occurred_at.is_none() {
            v.push("occur_time", "required");
        }
        let comment = v.check(text("comment", comment, SURVEY_COMMENT_MAX, false));
        let built = match (kind, occurred_at, comment) {
            (Some(kind), Some(occurred_at), Some(comment)) => Some(NewSurvey {
                kind,
                score,
                occurred_at,
                comment,
            }),
            _ => None,
        };
        v.done(built)
    }
}

/// A complaint to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewComplaint {
    pub subject: String,
    pub description: String,
    /// When it was opened; `None` means now.
    pub opened_at: Option<DateTime<Utc>>,
}

impl NewComplaint {
    pub fn new(
        subject: &str,
        description: &str,
        opened_at: Option<DateTime<Utc>>,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut v = Violations::default();
        let subject = v.check(text("subject", subject, NAME_MAX, true));
        let description = v.check(text("description", description, COMPLAINT_TEXT_MAX, false));
        let built = match (subject, description) {
            (Some(subject), Some(description)) => Some(NewComplaint {
                subject,
                description,
                opened_at,
            }),
            _ => None,
        };
        v.done(built)
    }
}

/// The text that resolves a complaint: required.
pub fn resolution(s: &str) -> Result<String, FieldViolation> {
    text("", s, COMPLAINT_TEXT_MAX, true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn clp(amount: i64) -> Option<Money> {
        Some(Money::new("CLP", amount).unwrap())
    }

    fn line(quantity: i64, unit_price: Option<Money>) -> LineDraft {
        LineDraft {
            product_line: "Lubricantes".into(),
            sku: String::new(),
            quantity,
            unit_price,
            discounted: false,
        }
    }

    fn fields(e: Vec<FieldViolation>) -> Vec<String> {
        e.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_purchase_adds_up_in_one_currency() {
        let p = NewPurchase::new(
            "o-1",
            Some(Utc::now()),
            None,
            &[line(2, clp(1500)), line(1, clp(990))],
        )
        .unwrap();
        assert_eq!(p.total, Money::new("CLP", 3990).unwrap());
        assert_eq!(p.lines[0].unit_price_minor, 1500);
    }

    #[test]
    fn a_purchase_names_every_bad_field_once() {
        let usd = Some(Money::new("USD", 5).unwrap());
        let e = NewPurchase::new(
            " ",
            None,
            None,
            &[
                line(1, clp(10)),
                line(0, usd),
                line(1, None),
                line(1, clp(-1)),
            ],
        )
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "order_id",
                "occur_time",
                "lines[1].quantity",
                "lines[1].unit_price.currency_code",
                "lines[2].unit_price",
                "lines[3].unit_price.amount_minor"
            ]
        );
        let usd = Some(Money::new("USD", 5).unwrap());
        let e = NewPurchase::new(
            "o",
            Some(Utc::now()),
            None,
            &[line(1, clp(1)), line(1, usd)],
        )
        .unwrap_err();
        assert_eq!(e[0].field, "lines[1].unit_price.currency_code");
        assert!(e[0].description.contains("CLP"));
        assert_eq!(
            fields(NewPurchase::new("o", Some(Utc::now()), None, &[]).unwrap_err()),
            ["lines"]
        );
    }

    #[test]
    fn purchase_amounts_never_overflow() {
        let e =
            NewPurchase::new("o", Some(Utc::now()), None, &[line(2, clp(i64::MAX))]).unwrap_err();
        assert_eq!(fields(e), ["lines[0]"]);
        let e = NewPurchase::new(
            "o",
            Some(Utc::now()),
            None,
            &[line(1, clp(i64::MAX)), line(1, clp(1))],
        )
        .unwrap_err();
        assert_eq!(e[0].description, "the total overflows");
    }

    #[test]
    fn survey_scores_follow_their_scale() {
        let at = Some(Utc::now());
        assert!(NewSurvey::new(Some(SurveyKind::Nps), 0, at, "").is_ok());
        assert!(NewSurvey::new(Some(SurveyKind::Nps), 10, at, "").is_ok());
        assert!(NewSurvey::new(Some(SurveyKind::Csat), 5, at, "").is_ok());
        for (kind, score) in [
            (SurveyKind::Nps, 11),
            (SurveyKind::Nps, -1),
            (SurveyKind::Csat, 0),
            (SurveyKind::Csat, 6),
        ] {
            let e = NewSurvey::new(Some(kind), score, at, "").unwrap_err();
            assert_eq!(fields(e), ["score"], "{kind:?} {score}");
        }
        let e = NewSurvey::new(None, 3, None, &"x".repeat(2001)).unwrap_err();
        assert_eq!(fields(e), ["kind", "occur_time", "comment"]);
    }

    #[test]
    fn returns_number_lines_from_one() {
        let e = NewReturn::new("r", Some(Utc::now()), &[(0, 1), (1, 0), (i64::MAX, 1)], "")
            .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "lines[0].line_number",
                "lines[1].quantity",
                "lines[2].line_number"
            ]
        );
        let r = NewReturn::new("r", Some(Utc::now()), &[(2, 1)], " broken ").unwrap();
        assert_eq!((r.lines[0].line_number, r.reason.as_str()), (2, "broken"));
    }

    #[test]
    fn customer_fields_check_their_limits() {
        let many: Vec<String> = (0..11).map(|i| format!("a{i}@b.cl")).collect();
        assert_eq!(fields(FieldValue::emails(&many).unwrap_err()), [""]);
        let e = FieldValue::emails(&["ok@b.cl".into(), "bad".into()]).unwrap_err();
        assert_eq!(
            e[0].clone().under("customer.emails").field,
            "customer.emails[1]"
        );
        assert_eq!(
            FieldValue::emails(&["A@b.cl".into(), "a@B.cl".into()]).unwrap(),
            FieldValue::Emails(vec![Email::parse("A@b.cl").unwrap()])
        );
        assert_eq!(
            FieldValue::tax_id("", " ").unwrap(),
            FieldValue::TaxId(None)
        );
        assert_eq!(
            FieldValue::tax_id("CHL", "1").unwrap_err().field,
            "country_code"
        );
        assert_eq!(
            FieldValue::tax_id("CL", "12.345.678-9").unwrap_err().field,
            "value"
        );
        assert_eq!(
            FieldValue::address("", "", "", "", "").unwrap(),
            FieldValue::Address(None)
        );
        assert_eq!(
            FieldValue::address("", "Maule", "", "", "")
                .unwrap_err()
                .field,
            "country_code"
        );
        assert_eq!(
            FieldValue::influence(-1, false, None).unwrap_err().field,
            "audience_reach"
        );
        assert!(FieldValue::language_code("fr").is_err());
        assert_eq!(
            FieldValue::language_code("").unwrap(),
            FieldValue::LanguageCode("es".into())
        );
        let bad_key = std::collections::HashMap::from([("Bad Key".to_owned(), "v".to_owned())]);
        assert_eq!(
            fields(FieldValue::attributes(bad_key.iter()).unwrap_err()),
            // Quoted (and cut short): a key is the caller's text.
            ["[\"Bad Key\"]"]
        );
        assert!(FieldValue::display_name(&"x".repeat(201)).is_err());
        assert!(FieldValue::external_id(&"x".repeat(129)).is_err());
        assert!(resolution(" ").is_err());
    }
}
