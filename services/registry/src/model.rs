//! The registry's records as the rules see them: validated values, no proto and no SQL.
//! Events carry these records as they stand after each change.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clientela_domain::ids::{
    ComplaintId, CustomerId, EventId, PurchaseId, ReferralId, ReturnId, SurveyId,
};
use clientela_domain::taxonomy::{
    BusinessKind, ChannelRole, CustomerKind, DecisionRole, SalesChannel, SurveyKind,
};
use clientela_domain::{Address, Email, Phone, TaxId};
use serde::{Deserialize, Serialize};

pub mod input;
pub mod query;

/// Where a customer stands in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Never bought.
    Prospect,
    /// Bought at least once.
    Customer,
    /// Soft-deleted.
    Archived,
    /// Folded into another customer.
    Merged,
}

impl Status {
    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            Status::Prospect => "PROSPECT",
            Status::Customer => "CUSTOMER",
            Status::Archived => "ARCHIVED",
            Status::Merged => "MERGED",
        }
    }

    /// From the stored code.
    pub fn from_code(code: &str) -> Option<Self> {
        [
            Status::Prospect,
            Status::Customer,
            Status::Archived,
            Status::Merged,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// Live customers take part in business: not archived, not merged.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Prospect | Status::Customer)
    }
}

/// Influence attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Influence {
    /// Audience size, not negative.
    pub audience_reach: i64,
    /// A person of public life.
    pub public_figure: bool,
    /// Role in an organization's purchase decisions.
    pub decision_role: Option<DecisionRole>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Marketing email.
    pub marketing_email: bool,
    /// Marketing SMS.
    pub marketing_sms: bool,
    /// Marketing calls.
    pub marketing_phone: bool,
    /// Processing of personal data.
    pub data_processing: bool,
}

/// The fields of a customer that callers write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerFields {
    /// Person or organization.
    pub kind: CustomerKind,
    /// Display name, non-empty.
    pub display_name: String,
    /// Legal name, may be empty.
    pub legal_name: String,
    pub tax_id: Option<TaxId>,
    /// The first is primary.
    pub emails: Vec<Email>,
    pub phones: Vec<Phone>,
    pub address: Option<Address>,
    /// Channel role.
    pub channel_role: Option<ChannelRole>,
    /// B2B / B2C.
    pub business_kind: Option<BusinessKind>,
    /// Influence attributes.
    pub influence: Influence,
    /// Tags, unique, in the order given.
    pub tags: Vec<String>,
    /// Custom attributes.
    pub attributes: BTreeMap<String, String>,
    pub consent: Consent,
    /// "es" or "en".
    pub language_code: String,
    /// The caller's id for the customer.
    pub external_id: Option<String>,
    /// What serving the customer costs (seed 004: SMALL against TRANSACTIONAL). Events
    /// stored before it was a field have none (see [`CustomerFields::lift_legacy`]).
    #[serde(default)]
    pub cost_to_serve: Option<CostToServe>,
    /// Flagged as a key account (KEY tier, a Key Account Manager).
    #[serde(default)]
    pub key_account: bool,
    /// Flagged as expecting more than most (DEMANDING trait).
    #[serde(default)]
    pub high_expectations: bool,
}

/// A cost to serve: an amount of a known currency, never negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostToServe {
    pub currency_code: String,
    pub amount_minor: i64,
}

/// The field an attribute key once stood for.
pub fn legacy_field(key: &str) -> Option<&'static str> {
    match key {
        "cost_to_serve" | "cost_to_serve_minor" => Some("cost_to_serve"),
        "key_account" => Some("key_account"),
        "high_expectations" => Some("high_expectations"),
        _ => None,
    }
}

/// The currency a legacy `cost_to_serve` attribute was read in: the default policy's
/// (it was "minor units of the policy currency", and nobody had changed that).
const LEGACY_COST_CURRENCY: &str = "CLP";

impl Default for CustomerFields {
    fn default() -> Self {
        Self {
            kind: CustomerKind::Person,
            display_name: String::new(),
            legal_name: String::new(),
            tax_id: None,
            emails: Vec::new(),
            phones: Vec::new(),
            address: None,
            channel_role: None,
            business_kind: None,
            influence: Influence::default(),
            tags: Vec::new(),
            attributes: BTreeMap::new(),
            consent: Consent::default(),
            language_code: "es".to_owned(),
            external_id: None,
            cost_to_serve: None,
            key_account: false,
            high_expectations: false,
        }
    }
}

/// One field's new value: what an update (or, field by field, a create) writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// `kind`
    Kind(CustomerKind),
    /// `display_name`
    DisplayName(String),
    /// `legal_name`
    LegalName(String),
    /// `tax_id`
    TaxId(Option<TaxId>),
    /// `emails`
    Emails(Vec<Email>),
    /// `phones`
    Phones(Vec<Phone>),
    /// `address`
    Address(Option<Address>),
    /// `channel_role`
    ChannelRole(Option<ChannelRole>),
    /// `business_kind`
    BusinessKind(Option<BusinessKind>),
    /// `influence`
    Influence(Influence),
    /// `tags`
    Tags(Vec<String>),
    /// `attributes`
    Attributes(BTreeMap<String, String>),
    /// `consent`
    Consent(Consent),
    /// `language_code`
    LanguageCode(String),
    /// `external_id`
    ExternalId(Option<String>),
    /// `cost_to_serve`
    CostToServe(Option<CostToServe>),
    /// `key_account`
    KeyAccount(bool),
    /// `high_expectations`
    HighExpectations(bool),
}

impl CustomerFields {
    /// Writes one field.
    pub fn apply(&mut self, value: FieldValue) {
        match value {
            FieldValue::Kind(v) => self.kind = v,
            FieldValue::DisplayName(v) => self.display_name = v,
            FieldValue::LegalName(v) => self.legal_name = v,
            FieldValue::TaxId(v) => self.tax_id = v,
            FieldValue::Emails(v) => self.emails = v,
            FieldValue::Phones(v) => self.phones = v,
            FieldValue::Address(v) => self.address = v,
            FieldValue::ChannelRole(v) => self.channel_role = v,
            FieldValue::BusinessKind(v) => self.business_kind = v,
            FieldValue::Influence(v) => self.influence = v,
            FieldValue::Tags(v) => self.tags = v,
            FieldValue::Attributes(v) => self.attributes = v,
            FieldValue::Consent(v) => self.consent = v,
            FieldValue::LanguageCode(v) => self.language_code = v,
            FieldValue::ExternalId(v) => self.external_id = v,
            FieldValue::CostToServe(v) => self.cost_to_serve = v,
            FieldValue::KeyAccount(v) => self.key_account = v,
            FieldValue::HighExpectations(v) => self.high_expectations = v,
        }
    }

    /// Moves the attributes that stood for the cost to serve and the two flags before
    /// they were fields into the fields, where the fields are unset: applied to every
    /// stored customer and event as it is read, so no label depends on a magic attribute
    /// key and old events replay the same. A value that does not parse stays an
    /// attribute.
    pub fn lift_legacy(&mut self) {
        if !self.attributes.keys().any(|k| legacy_field(k).is_some()) {
            return;
        }
        let flag = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        for (key, field) in [
            ("key_account", &mut self.key_account),
            ("high_expectations", &mut self.high_expectations),
        ] {
            if let Some(value) = self.attributes.get(key).and_then(|v| flag(v)) {
                *field |= value;
                self.attributes.remove(key);
            }
        }
        for key in ["cost_to_serve", "cost_to_serve_minor"] {
            let amount = self
                .attributes
                .get(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0);
            if let Some(amount_minor) = amount {
                self.attributes.remove(key);
                self.cost_to_serve.get_or_insert(CostToServe {
                    currency_code: LEGACY_COST_CURRENCY.to_owned(),
                    amount_minor,
                });
            }
        }
    }

    /// Folds `other` into `self` for a merge: lists are joined without repeats, empty
    /// fields take `other`'s value, attributes `self` lacks are added.
    pub fn absorb(&mut self, other: &CustomerFields) {
        fn union<T: AsRef<str> + Clone>(into: &mut Vec<T>, from: &[T]) {
            for item in from {
                if !into
                    .iter()
                    .any(|x| x.as_ref().eq_ignore_ascii_case(item.as_ref()))
                {
                    into.push(item.clone());
                }
            }
        }
        union(&mut self.emails, &other.emails);
        union(&mut self.phones, &other.phones);
        union(&mut self.tags, &other.tags);
        for (k, v) in &other.attributes {
            self.attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        if self.legal_name.is_empty() {
            self.legal_name.clone_from(&other.legal_name);
        }
        if self.tax_id.is_none() {
            self.tax_id.clone_from(&other.tax_id);
        }
        if self.address.is_none() {
            self.address.clone_from(&other.address);
        }
        self.channel_role = self.channel_role.or(other.channel_role);
        self.business_kind = self.business_kind.or(other.business_kind);
        if self.external_id.is_none() {
            self.external_id.clone_from(&other.external_id);
        }
        if self.cost_to_serve.is_none() {
            self.cost_to_serve.clone_from(&other.cost_to_serve);
        }
        self.key_account |= other.key_account;
        self.high_expectations |= other.high_expectations;
        self.influence.audience_reach = self
            .influence
            .audience_reach
            .max(other.influence.audience_reach);
        self.influence.public_figure |= other.influence.public_figure;
        self.influence.decision_role = self
            .influence
            .decision_role
            .or(other.influence.decision_role);
    }
}

/// A customer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    /// What callers write.
    pub fields: CustomerFields,
    pub status: Status,
    /// Survivor of a merge.
    pub merged_into: Option<CustomerId>,
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Incremented on every change; the etag.
    pub version: i64,
}

impl Customer {
    /// The etag callers send back.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// One line of a purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseLine {
    /// Product line.
    pub product_line: String,
    /// SKU, may be empty.
    pub sku: String,
    /// Units, ≥ 1.
    pub quantity: i64,
    /// Unit price in the purchase currency's minor units, ≥ 0.
    pub unit_price_minor: i64,
    /// Sold with a discount or promotion.
    pub discounted: bool,
    /// Units returned so far.
    pub returned_quantity: i64,
}

/// A recorded purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    pub id: PurchaseId,
    pub customer_id: CustomerId,
    /// The caller's order id (unique).
    pub order_id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    pub lines: Vec<PurchaseLine>,
    pub channel: Option<SalesChannel>,
    /// ISO 4217 code of every amount of the purchase.
    pub currency_code: String,
    /// Sum of quantity × unit price.
    pub total_minor: i64,
    /// Value returned so far.
    pub returned_minor: i64,
    pub created_at: DateTime<Utc>,
}

/// Units returned of one purchase line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    /// 1-based line of the purchase.
    pub line_number: u32,
    pub quantity: i64,
}

/// A recorded return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    pub id: ReturnId,
    pub customer_id: CustomerId,
    /// Purchase returned against.
    pub purchase_id: PurchaseId,
    /// The caller's return id (unique).
    pub return_id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// What came back.
    pub lines: Vec<ReturnLine>,
    pub currency_code: String,
    /// Value given back.
    pub amount_minor: i64,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// A survey answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Survey {
    pub id: SurveyId,
    pub customer_id: CustomerId,
    /// NPS or CSAT.
    pub kind: SurveyKind,
    /// Score within the kind's range.
    pub score: i32,
    pub occurred_at: DateTime<Utc>,
    pub comment: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    pub id: ComplaintId,
    pub customer_id: CustomerId,
    pub subject: String,
    pub description: String,
    /// Open until resolved.
    pub resolved: bool,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: String,
    /// Optimistic concurrency.
    pub version: i64,
}

impl Complaint {
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    pub id: ReferralId,
    /// Who referred.
    pub referrer_id: CustomerId,
    /// Who was referred.
    pub referred_id: CustomerId,
    pub occurred_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// What an event says happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventPayload {
    CustomerCreated(Customer),
    /// Changed (update, status change, archive, restore, merge).
    CustomerUpdated(Customer),
    CustomersMerged {
        survivor: CustomerId,
        merged: CustomerId,
        /// Purchases that moved.
        moved_purchases: Vec<PurchaseId>,
    },
    PurchaseRecorded(Purchase),
    ReturnRecorded(Return),
    SurveyRecorded(Survey),
    /// Complaint opened.
    ComplaintOpened(Complaint),
    /// Complaint resolved.
    ComplaintResolved(Complaint),
    ReferralRecorded(Referral),
}

impl EventPayload {
    /// The customer the event is about.
    /// [`CustomerFields::lift_legacy`] for the customer an event carries.
    pub fn lift_legacy(&mut self) {
        if let EventPayload::CustomerCreated(c) | EventPayload::CustomerUpdated(c) = self {
            c.fields.lift_legacy();
        }
    }

    pub fn customer_id(&self) -> CustomerId {
        match self {
            EventPayload::CustomerCreated(c) | EventPayload::CustomerUpdated(c) => c.id,
            EventPayload::CustomersMerged { survivor, .. } => *survivor,
            EventPayload::PurchaseRecorded(p) => p.customer_id,
            EventPayload::ReturnRecorded(r) => r.customer_id,
            EventPayload::SurveyRecorded(s) => s.customer_id,
            EventPayload::ComplaintOpened(c) | EventPayload::ComplaintResolved(c) => c.customer_id,
            EventPayload::ReferralRecorded(r) => r.referrer_id,
        }
    }

    /// A short name for the stored `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            EventPayload::CustomerCreated(_) => "CustomerCreated",
            EventPayload::CustomerUpdated(_) => "CustomerUpdated",
            EventPayload::CustomersMerged { .. } => "CustomersMerged",
            EventPayload::PurchaseRecorded(_) => "PurchaseRecorded",
            EventPayload::ReturnRecorded(_) => "ReturnRecorded",
            EventPayload::SurveyRecorded(_) => "SurveyRecorded",
            EventPayload::ComplaintOpened(_) => "ComplaintOpened",
            EventPayload::ComplaintResolved(_) => "ComplaintResolved",
            EventPayload::ReferralRecorded(_) => "ReferralRecorded",
        }
    }
}

/// One entry of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Gap-free position, from 1.
    pub sequence: i64,
    /// Unique id.
    pub id: EventId,
    pub recorded_at: DateTime<Utc>,
    /// What happened.
    pub payload: EventPayload,
}

/// Encodes an event as the feed sends it. The api layer provides it, so no proto type
/// reaches the store.
#[derive(Clone)]
pub struct WireEncoder(Arc<EncodeFn>);

type EncodeFn = dyn Fn(&Event) -> Vec<u8> + Send + Sync;

impl WireEncoder {
    /// An encoder calling `encode`.
    pub fn new(encode: impl Fn(&Event) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Self(Arc::new(encode))
    }

    /// `event` in its wire form.
    pub fn encode(&self, event: &Event) -> Vec<u8> {
        (self.0)(event)
    }
}

impl std::fmt::Debug for WireEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WireEncoder")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Stored events hold customers as JSON: the domain types must keep the shape the
    /// registry wrote before it used them, or old events stop reading.
    #[test]
    fn contact_data_keeps_its_stored_shape() {
        let fields = CustomerFields {
            tax_id: Some(TaxId::parse("cl", "76.086.428-5").unwrap()),
            emails: vec![Email::parse("Ana@X.cl").unwrap()],
            phones: vec![Phone::parse("+56 9 1234 5678").unwrap()],
            address: Some(Address::new("cl", "Maule", "Talca", "", "").unwrap()),
            ..CustomerFields::default()
        };
        let json = serde_json::to_value(&fields).unwrap();
        assert_eq!(
            json["tax_id"],
            serde_json::json!({"country_code": "CL", "value": "76086428-5", "normalized": "760864285"})
        );
        assert_eq!(json["emails"], serde_json::json!(["Ana@x.cl"]));
        assert_eq!(json["phones"], serde_json::json!(["+56912345678"]));
        assert_eq!(
            json["address"],
            serde_json::json!({"country_code": "CL", "region": "Maule", "locality": "Talca",
                "postal_code": "", "street": ""})
        );
        let back: CustomerFields = serde_json::from_value(json).unwrap();
        assert_eq!(back, fields);
    }

    #[test]
    fn fields_stored_before_the_account_fields_read_and_lift_their_attributes() {
        // An event as stored before cost_to_serve, key_account and high_expectations
        // were fields: the three were attributes, and none of the new keys exists.
        let mut json = serde_json::to_value(CustomerFields::default()).unwrap();
        for key in ["cost_to_serve", "key_account", "high_expectations"] {
            json.as_object_mut().unwrap().remove(key);
        }
        json["attributes"] = serde_json::json!({
            "key_account": "TRUE", "high_expectations": "yes", "cost_to_serve": "1500",
            "crm_segment": "norte"
        });
        let mut old: CustomerFields = serde_json::from_value(json).unwrap();
        old.lift_legacy();
        assert!(old.key_account);
        assert_eq!(
            old.cost_to_serve,
            Some(CostToServe {
                currency_code: "CLP".into(),
                amount_minor: 1500
            })
        );
        // "yes" is not a flag: it stays an attribute, and the field stays unset.
        assert!(!old.high_expectations);
        let left: Vec<&str> = old.attributes.keys().map(String::as_str).collect();
        assert_eq!(left, ["crm_segment", "high_expectations"]);
    }
}
