//! The service's records and the rules on their fields, free of proto and SQL.

use chrono::{DateTime, Utc};
use clientela_domain::contact::CountryCode;
use clientela_domain::text::{fold, validate_name};
use clientela_domain::{FieldViolation, Violations};
use uuid::Uuid;

use crate::locate::{Criteria, postal_key};

/// Territories one model may hold: enough for every commune of a country, few enough to
/// be placed against in memory.
pub const MAX_TERRITORIES: usize = 5_000;
/// Characters of a territory code.
pub const CODE_MAX: usize = 64;
/// The highest territory priority.
pub const PRIORITY_MAX: i32 = 1_000;

/// Where a model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelState {
    Planning,
    Active,
    Archived,
}

impl ModelState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Planning => "PLANNING",
            ModelState::Active => "ACTIVE",
            ModelState::Archived => "ARCHIVED",
        }
    }

    /// From what is stored.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Planning, Self::Active, Self::Archived]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// A territory model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerritoryModel {
    pub id: Uuid,
    pub display_name: String,
    pub state: ModelState,
    pub copied_from: Option<Uuid>,
    pub territory_count: i64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TerritoryModel {
    /// "territoryModels/{id}".
    pub fn name(&self) -> String {
        model_name(self.id)
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// "territoryModels/{id}".
/// "sellers/{id}".
pub fn seller_name(id: Uuid) -> String {
    format!("sellers/{id}")
}

pub fn model_name(id: Uuid) -> String {
    format!("territoryModels/{id}")
}

/// A territory of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Territory {
    pub model_id: Uuid,
    pub code: String,
    pub fields: TerritoryFields,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Territory {
    /// "territoryModels/{model}/territories/{code}".
    pub fn name(&self) -> String {
        format!("{}/territories/{}", model_name(self.model_id), self.code)
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// What a caller sets on a territory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TerritoryFields {
    pub display_name: String,
    /// None: top level.
    pub parent_code: Option<String>,
    pub criteria: Criteria,
    pub priority: i32,
}

/// A territory code: upper-case letters, digits, '-' and '_', at most [`CODE_MAX`].
pub fn validate_code(field: &str, code: &str) -> Result<String, FieldViolation> {
    if code.is_empty() {
        return Err(FieldViolation::new(field, "required"));
    }
    if code.chars().count() > CODE_MAX
        || !code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(FieldViolation::new(
            field,
            format!(
                "upper-case letters, digits, '-' and '_', at most {CODE_MAX} characters, e.g. \
                 \"CL-RM-SUR\""
            ),
        ));
    }
    Ok(code.to_owned())
}

/// The display name of a model or territory.
pub fn validate_display_name(field: &str, name: &str) -> Result<String, FieldViolation> {
    validate_name(field, name, 200)
}

/// The priority between matching siblings.
pub fn validate_priority(field: &str, priority: i32) -> Result<i32, FieldViolation> {
    if (0..=PRIORITY_MAX).contains(&priority) {
        Ok(priority)
    } else {
        Err(FieldViolation::new(
            field,
            format!("must be 0-{PRIORITY_MAX}"),
        ))
    }
}

/// The address criteria as given, stored folded; `field` names them in errors.
pub struct CriteriaInput<'a> {
    pub country_codes: &'a [String],
    pub regions: &'a [String],
    pub localities: &'a [String],
    pub postal_code_prefixes: &'a [String],
}

impl CriteriaInput<'_> {
    /// Validated and folded, or every violation.
    pub fn validate(&self, field: &str, v: &mut Violations) -> Criteria {
        let mut criteria = Criteria::default();
        let mut list =
            |name: &str,
             values: &[String],
             max: usize,
             out: &mut Vec<String>,
             each: &dyn Fn(&str, &str) -> Result<String, FieldViolation>| {
                if values.len() > max {
                    v.push(
                        format!("{field}.{name}"),
                        format!("at most {max} entries (got {})", values.len()),
                    );
                    return;
                }
                for (i, value) in values.iter().enumerate() {
                    let at = format!("{field}.{name}[{i}]");
                    if let Some(value) = v.check(each(&at, value))
                        && !out.contains(&value)
                    {
                        out.push(value);
                    }
                }
            };
        list(
            "country_codes",
            self.country_codes,
            50,
            &mut criteria.country_codes,
            &|at, s| {
                CountryCode::parse(s)
                    .map(|c| c.as_str().to_owned())
                    .map_err(|e| e.under(at))
            },
        );
        let text = |at: &str, s: &str| validate_name(at, s, 200).map(|s| fold(&s));
        list("regions", self.regions, 100, &mut criteria.regions, &text);
        list(
            "localities",
            self.localities,
            500,
            &mut criteria.localities,
            &text,
        );
        list(
            "postal_code_prefixes",
            self.postal_code_prefixes,
            500,
            &mut criteria.postal_code_prefixes,
            &|at, s| {
                let key = postal_key(s);
                let allowed = s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
                if key.is_empty() || !allowed || s.chars().count() > 20 {
                    Err(FieldViolation::new(
                        at,
                        "letters, digits, spaces and '-', at most 20 characters, not empty",
                    ))
                } else {
                    Ok(key)
                }
            },
        );
        criteria
    }
}

/// The built-in seller that stands for the company (seed 003's cartera "por la
/// empresa"): the migration creates it.
pub const HOUSE_SELLER: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001);
/// Its display name as created.
pub const HOUSE_NAME: &str = "Cartera de la empresa (house)";
/// The most sellers one installation keeps in view at once (they are listed and chosen
/// among in memory).
pub const MAX_SELLERS: usize = 10_000;
/// The most a seller's capacity may be.
pub const CAPACITY_MAX: i64 = 1_000_000;

/// Whether a seller takes customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SellerStatus {
    Active,
    OnLeave,
    Departed,
}

impl SellerStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SellerStatus::Active => "ACTIVE",
            SellerStatus::OnLeave => "ON_LEAVE",
            SellerStatus::Departed => "DEPARTED",
        }
    }

    /// From what is stored.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::OnLeave, Self::Departed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// What a caller sets on a seller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SellerFields {
    pub display_name: String,
    pub email: Option<String>,
    pub token_name: Option<String>,
    /// Product lines, as given (trimmed), one per folded spelling.
    pub specialties: Vec<String>,
    /// Territory codes.
    pub territory_codes: Vec<String>,
    pub kam: bool,
    pub capacity: i64,
    pub status: SellerStatus,
}

/// A seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seller {
    pub id: Uuid,
    pub fields: SellerFields,
    pub house: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Seller {
    /// "sellers/{id}".
    pub fn name(&self) -> String {
        seller_name(self.id)
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// Whether it specialises in product line `line` (case and accents aside).
    pub fn specialises_in(&self, line: &str) -> bool {
        let line = fold(line);
        self.fields.specialties.iter().any(|s| fold(s) == line)
    }
}

/// A token name: letters, digits, '.', '_' and '-', at most 128 characters.
pub fn validate_token_name(field: &str, name: &str) -> Result<String, FieldViolation> {
    let ok = !name.is_empty()
        && name.chars().count() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(FieldViolation::new(
            field,
            "letters, digits, '.', '_' and '-', at most 128 characters (the NAME of \
             auth.tokens.NAME)",
        ))
    }
}

/// A seller's specialties: trimmed names, one per folded spelling.
pub fn validate_specialties(field: &str, lines: &[String], v: &mut Violations) -> Vec<String> {
    if lines.len() > 50 {
        v.push(field, format!("at most 50 entries (got {})", lines.len()));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(line) = v.check(validate_name(&format!("{field}[{i}]"), line, 64))
            && !out.iter().any(|o| fold(o) == fold(&line))
        {
            out.push(line);
        }
    }
    out
}

/// A seller's territory codes, each once.
pub fn validate_codes(field: &str, codes: &[String], v: &mut Violations) -> Vec<String> {
    if codes.len() > 200 {
        v.push(field, format!("at most 200 entries (got {})", codes.len()));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        if let Some(code) = v.check(validate_code(&format!("{field}[{i}]"), code))
            && !out.contains(&code)
        {
            out.push(code);
        }
    }
    out
}

/// A capacity: 0 to [`CAPACITY_MAX`].
pub fn validate_capacity(field: &str, capacity: i64) -> Result<i64, FieldViolation> {
    if (0..=CAPACITY_MAX).contains(&capacity) {
        Ok(capacity)
    } else {
        Err(FieldViolation::new(
            field,
            format!("must be 0-{CAPACITY_MAX}"),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_canonical() {
        assert_eq!(validate_code("code", "CL-RM_2").unwrap(), "CL-RM_2");
        assert!(validate_code("code", "cl-rm").is_err(), "lower case");
        assert!(validate_code("code", "").is_err());
        assert!(validate_code("code", "CL RM").is_err());
        assert!(validate_code("code", &"A".repeat(65)).is_err());
    }

    #[test]
    fn criteria_are_folded_and_every_bad_entry_is_named() {
        let regions = vec![
            "Región de Valparaíso".to_owned(),
            "REGION DE VALPARAISO".to_owned(),
        ];
        let bad_country = vec!["Chile".to_owned()];
        let prefixes = vec!["82-1".to_owned(), "".to_owned()];
        let mut v = Violations::default();
        let criteria = CriteriaInput {
            country_codes: &bad_country,
            regions: &regions,
            localities: &[],
            postal_code_prefixes: &prefixes,
        }
        .validate("territory.criteria", &mut v);
        assert_eq!(
            criteria.regions,
            ["region de valparaiso"],
            "one entry once folded"
        );
        assert_eq!(criteria.postal_code_prefixes, ["821"]);
        let fields: Vec<String> = v
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(
            fields,
            [
                "territory.criteria.country_codes[0]",
                "territory.criteria.postal_code_prefixes[1]"
            ]
        );
    }
}
