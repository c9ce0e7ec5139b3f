//! Contact data: country codes, email addresses, E.164 phone numbers and postal
//! addresses, each validated with the field that is wrong named.

use serde::{Deserialize, Serialize};

use crate::FieldViolation;

/// An ISO 3166-1 alpha-2 country code, uppercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CountryCode(String);

impl CountryCode {
    /// Two ASCII letters, any case.
    pub fn parse(s: &str) -> Result<Self, FieldViolation> {
        let s = s.trim();
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(Self(s.to_ascii_uppercase()))
        } else {
            Err(FieldViolation::new(
                "",
                "must be an ISO 3166-1 alpha-2 country code such as CL",
            ))
        }
    }

    /// "CL".
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address; the domain is stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    /// Validates with the `email_address` crate (RFC 5322 addr-spec).
    pub fn parse(s: &str) -> Result<Self, FieldViolation> {
        let s = s.trim();
        if s.len() > 254 {
            return Err(FieldViolation::new(
                "",
                "an email address has at most 254 characters",
            ));
        }
        // A stored contact address must be bare and routable: no "Name <addr>" display
        // text, no IP literals, and a dotted domain ("ana@localhost" reaches no customer).
        let options = email_address::Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        let parsed = email_address::EmailAddress::parse_with_options(s, options)
            .map_err(|e| FieldViolation::new("", format!("not an email address: {e}")))?;
        Ok(Self(format!(
            "{}@{}",
            parsed.local_part(),
            parsed.domain().to_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Lowercased whole address: the duplicate key.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form: "+56912345678".
///
/// Written by hand: E.164 is a plus sign and 8 to 15 digits, which is all we promise to
/// check; a numbering-plan library (per-country lengths and prefixes) is far heavier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Phone(String);

impl Phone {
    /// Accepts spaces, dashes, dots and parentheses between the digits.
    pub fn parse(s: &str) -> Result<Self, FieldViolation> {
        let s = s.trim();
        let Some(rest) = s.strip_prefix('+') else {
            return Err(FieldViolation::new(
                "",
                "use E.164 with the country code, e.g. +56 9 1234 5678",
            ));
        };
        let digits: String = rest
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldViolation::new(
                "",
                "a phone number has only digits after the +",
            ));
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(FieldViolation::new(
                "",
                "E.164 numbers have 8 to 15 digits and no leading 0",
            ));
        }
        Ok(Self(format!("+{digits}")))
    }

    /// "+56912345678".
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Phone {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub country_code: CountryCode,
    /// Region or state.
    pub region: String,
    /// Commune or city.
    pub locality: String,
    /// Postal code.
    pub postal_code: String,
    /// Street and number.
    pub street: String,
}

impl Address {
    /// Validates an address; the country is required.
    pub fn new(
        country_code: &str,
        region: &str,
        locality: &str,
        postal_code: &str,
        street: &str,
    ) -> Result<Self, FieldViolation> {
        let country_code = CountryCode::parse(country_code).map_err(|e| e.under("country_code"))?;
        let part = |field: &str, value: &str| -> Result<String, FieldViolation> {
            let value = value.trim();
            if value.chars().count() > 200 {
                return Err(FieldViolation::new(field, "at most 200 characters"));
            }
            if value.chars().any(char::is_control) {
                return Err(FieldViolation::new(
                    field,
                    "must not contain control characters",
                ));
            }
            Ok(value.to_owned())
        };
        let region = part("region", region)?;
        let locality = part("locality", locality)?;
        let postal_code = part("postal_code", postal_code)?;
        if !postal_code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
        {
            return Err(FieldViolation::new(
                "postal_code",
                "letters, digits, spaces and '-' only",
            ));
        }
        Ok(Self {
            country_code,
            region,
            locality,
            postal_code,
            street: part("street", street)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_e164() {
        assert_eq!(
            Phone::parse("+56 9 1234 5678").unwrap().as_str(),
            "+56912345678"
        );
        assert_eq!(
            Phone::parse("+1 (415) 555-0100").unwrap().as_str(),
            "+14155550100"
        );
        assert!(Phone::parse("912345678").is_err(), "no plus");
        assert!(Phone::parse("+5691234").is_err(), "too short");
        assert!(Phone::parse("+5691234567890123").is_err(), "too long");
        assert!(Phone::parse("+0912345678").is_err(), "leading zero");
        assert!(Phone::parse("+56 9 ABCD 5678").is_err());
    }

    #[test]
    fn emails_are_validated_and_normalized() {
        let e = Email::parse(" Ventas@LubriSur.CL ").unwrap();
        assert_eq!(e.as_str(), "Ventas@lubrisur.cl");
        assert_eq!(e.normalized(), "ventas@lubrisur.cl");
        assert!(Email::parse("no-at-sign").is_err());
        assert!(Email::parse("@").is_err());
        // Bare, routable addresses only.
        assert!(Email::parse("Ana <ana@lubrisur.cl>").is_err());
        assert!(Email::parse("ana@[10.0.0.1]").is_err());
        assert!(Email::parse("ana@localhost").is_err());
        // Valid labels (at most 63 each), but 255 characters in all.
        let domain = format!("{0}.{0}.{0}.{0}.cl", "b".repeat(61));
        let fits = format!("{}@{domain}", "a".repeat(3));
        assert_eq!(fits.len(), 254);
        assert!(Email::parse(&fits).is_ok());
        let too_long = format!("a{fits}");
        let v = Email::parse(&too_long).unwrap_err();
        assert_eq!(v.field, "");
        assert!(v.description.contains("254"));
    }

    #[test]
    fn addresses_name_the_bad_part() {
        let a = Address::new(
            "cl",
            " Región de Valparaíso ",
            "Viña del Mar",
            "2520000",
            "Av. Libertad 1",
        )
        .unwrap();
        assert_eq!(
            (a.country_code.as_str(), a.region.as_str()),
            ("CL", "Región de Valparaíso")
        );
        assert_eq!(
            Address::new("", "Maule", "", "", "").unwrap_err().field,
            "country_code"
        );
        assert_eq!(
            Address::new("CL", "", "", "25#00", "").unwrap_err().field,
            "postal_code"
        );
        assert_eq!(
            Address::new("CL", &"x".repeat(201), "", "", "")
                .unwrap_err()
                .field,
            "region"
        );
        for (args, field) in [
            (["CL", "", &"x".repeat(201), "", ""], "locality"),
            (["CL", "", "", "", &"x".repeat(201)], "street"),
            (["CL", "", "", &"1".repeat(201), ""], "postal_code"),
        ] {
            let [c, r, l, p, s] = args;
            assert_eq!(Address::new(c, r, l, p, s).unwrap_err().field, field);
        }
        assert_eq!(
            Address::new("mx", "", "", " 06600 ", "")
                .unwrap()
                .postal_code,
            "06600"
        );
        assert_eq!(
            Address::new("GB", "", "", "SW1A 1AA", "")
                .unwrap()
                .postal_code,
            "SW1A 1AA"
        );
    }

    #[test]
    fn country_codes_are_two_letters() {
        assert_eq!(CountryCode::parse(" es ").unwrap().as_str(), "ES");
        for bad in ["CHL", "C", "", "C1", "ÑA"] {
            let v = CountryCode::parse(bad).unwrap_err();
            assert_eq!(v.field, "", "{bad}");
            assert!(v.description.contains("ISO 3166-1"));
        }
    }
}
