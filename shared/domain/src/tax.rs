//! Tax identifiers validated per country: Chile's RUT (modulo-11 check digit), Mexico's
//! RFC (SAT check digit), Spain's NIF, NIE and CIF; free text elsewhere.

use serde::{Deserialize, Serialize};

/// Why a tax id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxIdError {
    /// Not an ISO 3166-1 alpha-2 code.
    #[error("{0:?} is not an ISO 3166-1 alpha-2 country code")]
    InvalidCountry(String),
    /// Nothing given.
    #[error("the tax id is empty")]
    Empty,
    /// Wrong shape for the country.
    #[error("not a valid {country} tax id: {reason}")]
    Malformed {
        /// Country code.
        country: String,
        /// What is wrong.
        reason: String,
    },
    /// The check digit does not match.
    #[error("{}", check_digit_message(.country))]
    BadCheckDigit {
        /// Country code.
        country: String,
    },
}

fn check_digit_message(country: &str) -> String {
    match country {
        "CL" => "Chilean RUT check digit does not match".to_owned(),
        "MX" => "Mexican RFC check digit does not match".to_owned(),
        "ES" => "Spanish NIF/NIE/CIF control character does not match".to_owned(),
        other => format!("{other} tax id check digit does not match"),
    }
}

/// A validated tax id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaxId {
    country_code: String,
    value: String,
    normalized: String,
}

fn malformed(country: &str, reason: &str) -> TaxIdError {
    TaxIdError::Malformed {
        country: country.to_owned(),
        reason: reason.to_owned(),
    }
}

fn bad_digit(country: &str) -> TaxIdError {
    TaxIdError::BadCheckDigit {
        country: country.to_owned(),
    }
}

impl TaxId {
    /// Validates `raw` as a tax id of `country` (ISO 3166-1 alpha-2, any case).
    pub fn parse(country: &str, raw: &str) -> Result<Self, TaxIdError> {
        let country_trimmed = country.trim();
        if country_trimmed.len() != 2 || !country_trimmed.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(TaxIdError::InvalidCountry(country.to_owned()));
        }
        let country = country_trimmed.to_ascii_uppercase();
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(TaxIdError::Empty);
        }
        let value = match country.as_str() {
            "CL" => rut(raw)?,
            "MX" => rfc(raw)?,
            "ES" => spanish(raw)?,
            _ => free_text(&country, raw)?,
        };
        // Ñ and & are letters of an RFC: dropping them would let two different RFCs
        // share one duplicate key, so Mexico keeps its canonical form.
        let normalized = if country == "MX" {
            value.clone()
        } else {
            normalize(&value)
        };
        if normalized.is_empty() {
            return Err(malformed(&country, "it has no letters or digits"));
        }
        Ok(Self {
            country_code: country,
            value,
            normalized,
        })
    }

    /// A tax id read back from storage, validated when it was written. Not parsed again:
    /// a rule tightened later must not make stored customers unreadable.
    pub fn stored(country_code: String, value: String, normalized: String) -> Self {
        Self {
            country_code,
            value,
            normalized,
        }
    }

    /// ISO 3166-1 alpha-2 code, uppercase.
    pub fn country(&self) -> &str {
        &self.country_code
    }

    /// Canonical display form ("76086428-5").
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The duplicate key: uppercase ASCII letters and digits only (Mexico also keeps
    /// the RFC letters Ñ and &).
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Chile: "12.345.678-5" → "12345678-5"; check digit by modulo 11 with weights 2..7.
fn rut(raw: &str) -> Result<String, TaxIdError> {
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, '.' | '-' | ' '))
        .collect::<String>()
        .to_ascii_uppercase();
    // Checked before splitting by byte index, which would panic inside a multi-byte char.
    if !compact.is_ascii() {
        return Err(malformed(
            "CL",
            "a RUT has only digits, a check digit 0-9 or K, dots and a dash",
        ));
    }
    if compact.len() < 2 {
        return Err(malformed(
            "CL",
            "a RUT is a number and a check digit, e.g. 12.345.678-5",
        ));
    }
    let (body, dv) = compact.split_at(compact.len() - 1);
    if body.len() > 8
        || !body.bytes().all(|b| b.is_ascii_digit())
        || !(dv == "K" || dv.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(malformed(
            "CL",
            "a RUT is up to 8 digits and a check digit 0-9 or K, e.g. 12.345.678-5",
        ));
    }
    let body = body.trim_start_matches('0');
    if body.is_empty() {
        return Err(malformed("CL", "the RUT number must not be zero"));
    }
    let sum: u32 = body
        .bytes()
        .rev()
        .zip([2, 3, 4, 5, 6, 7].into_iter().cycle())
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let expected = match 11 - sum % 11 {
        11 => '0',
        10 => 'K',
        n => char::from_digit(n, 10).unwrap_or('?'),
    };
    if !dv.starts_with(expected) {
        return Err(bad_digit("CL"));
    }
    Ok(format!("{body}-{expected}"))
}

const RFC_ALPHABET: &str = "0123456789ABCDEFGHIJKLMN&OPQRSTUVWXYZ Ñ";

/// Mexico: 12 (legal person) or 13 (natural person) characters, a real date, and the
/// SAT check digit.
fn rfc(raw: &str) -> Result<String, TaxIdError> {
    let value: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .flat_map(char::to_uppercase)
        .collect();
    if value == "XAXX010101000" || value == "XEXX010101000" {
        return Ok(value);
    }
    let chars: Vec<char> = value.chars().collect();
    let letters = match chars.len() {
        12 => 3,
        13 => 4,
        _ => {
            return Err(malformed(
                "MX",
                "an RFC has 12 characters (companies) or 13 (people)",
            ));
        }
    };
    let is_letter = |c: &char| c.is_ascii_uppercase() || *c == 'Ñ' || *c == '&';
    if !chars[..letters].iter().all(is_letter) {
        return Err(malformed("MX", "an RFC starts with 3 or 4 letters"));
    }
    let date: String = chars[letters..letters + 6].iter().collect();
    if !date.bytes().all(|b| b.is_ascii_digit())
        || chrono::NaiveDate::parse_from_str(&format!("20{date}"), "%Y%m%d").is_err()
    {
        return Err(malformed(
            "MX",
            "the 6 characters after the letters must be a date YYMMDD",
        ));
    }
    if !chars[letters + 6..]
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Err(malformed("MX", "the homoclave is 3 letters or digits"));
    }
    let padded: Vec<char> = if chars.len() == 12 {
        std::iter::once(' ').chain(chars.iter().copied()).collect()
    } else {
        chars.clone()
    };
    let mut sum: u32 = 0;
    for (i, c) in padded[..12].iter().enumerate() {
        let v = RFC_ALPHABET
            .chars()
            .position(|a| a == *c)
            .ok_or_else(|| malformed("MX", "unexpected character"))?;
        sum += u32::try_from(v).unwrap_or(0) * (13 - u32::try_from(i).unwrap_or(0));
    }
    let expected = match 11 - sum % 11 {
        11 => '0',
        10 => 'A',
        n => char::from_digit(n, 10).unwrap_or('?'),
    };
    if padded[12] != expected {
        return Err(bad_digit("MX"));
    }
    Ok(value)
}

const NIF_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// Spain: NIF (DNI), NIE and CIF.
fn spanish(raw: &str) -> Result<String, TaxIdError> {
    let value: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.'))
        .collect::<String>()
        .to_ascii_uppercase();
    let bytes = value.as_bytes();
    if bytes.len() != 9 || !value.is_ascii() {
        return Err(malformed("ES", "a NIF, NIE or CIF has 9 characters"));
    }
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let number = |s: &[u8]| s.iter().fold(0_u32, |n, b| n * 10 + u32::from(b - b'0'));
    match bytes[0] {
        b'0'..=b'9' | b'X' | b'Y' | b'Z' => {
            let lead = match bytes[0] {
                b'X' => Some(0),
                b'Y' => Some(1),
                b'Z' => Some(2),
                _ => None,
            };
            let body = &bytes[..8];
            let tail = if lead.is_some() { &body[1..] } else { body };
            if !digits(tail) || !bytes[8].is_ascii_uppercase() {
                return Err(malformed(
                    "ES",
                    "a NIF is 8 digits and a letter; a NIE is X, Y or Z, 7 digits and a letter",
                ));
            }
            let n = match lead {
                Some(l) => l * 10_000_000 + number(tail),
                None => number(tail),
            };
            let expected = NIF_LETTERS[(n % 23) as usize];
            if bytes[8] != expected {
                return Err(bad_digit("ES"));
            }
            Ok(value)
        }
        b'A'..=b'H' | b'J' | b'N' | b'P'..=b'S' | b'U' | b'V' | b'W' => {
            let body = &bytes[1..8];
            if !digits(body) {
                return Err(malformed(
                    "ES",
                    "a CIF is a letter, 7 digits and a control character",
                ));
            }
            let mut sum = 0;
            for (i, b) in body.iter().enumerate() {
                let d = u32::from(b - b'0');
                // Positions 1, 3, 5, 7 (odd, 1-based) are doubled and their digits added.
                sum += if i % 2 == 0 {
                    (d * 2) / 10 + (d * 2) % 10
                } else {
                    d
                };
            }
            let control = (10 - sum % 10) % 10;
            let as_digit = b'0' + control as u8;
            let as_letter = b"JABCDEFGHI"[control as usize];
            let ok = match bytes[0] {
                b'P' | b'Q' | b'R' | b'S' | b'N' | b'W' => bytes[8] == as_letter,
                b'A' | b'B' | b'E' | b'H' => bytes[8] == as_digit,
                _ => bytes[8] == as_digit || bytes[8] == as_letter,
            };
            if !ok {
                return Err(bad_digit("ES"));
            }
            Ok(value)
        }
        _ => Err(malformed(
            "ES",
            "a NIF starts with a digit, a NIE with X, Y or Z, a CIF with an organization letter",
        )),
    }
}

fn free_text(country: &str, raw: &str) -> Result<String, TaxIdError> {
    if raw.chars().count() > 64 || raw.chars().any(char::is_control) {
        return Err(malformed(country, "at most 64 printable characters"));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chilean_ruts_are_checked_and_canonical() {
        let t = TaxId::parse("cl", "76.086.428-5").unwrap();
        assert_eq!(
            (t.country(), t.value(), t.normalized()),
            ("CL", "76086428-5", "760864285")
        );
        assert_eq!(
            TaxId::parse("CL", "11.111.111-1").unwrap().value(),
            "11111111-1"
        );
        assert_eq!(
            TaxId::parse("CL", "123456785").unwrap().value(),
            "12345678-5"
        );
        assert_eq!(
            TaxId::parse("CL", "12.345.678-9"),
            Err(TaxIdError::BadCheckDigit {
                country: "CL".into()
            })
        );
        assert_eq!(
            TaxId::parse("CL", "10.000.013-k").unwrap().value(),
            "10000013-K"
        );
        assert!(matches!(
            TaxId::parse("CL", "12.34a.678-5"),
            Err(TaxIdError::Malformed { .. })
        ));
        assert!(matches!(
            TaxId::parse("CL", "123.456.789-0"),
            Err(TaxIdError::Malformed { .. })
        ));
        assert!(matches!(
            TaxId::parse("CL", "0-0"),
            Err(TaxIdError::Malformed { .. })
        ));
        assert_eq!(
            TaxIdError::BadCheckDigit {
                country: "CL".into()
            }
            .to_string(),
            "Chilean RUT check digit does not match"
        );
    }

    #[test]
    fn mexican_rfcs_are_checked() {
        assert_eq!(
            TaxId::parse("MX", "gode-561231-gr8").unwrap().value(),
            "GODE561231GR8"
        );
        assert_eq!(
            TaxId::parse("MX", "IBM850101AA0").unwrap().value(),
            "IBM850101AA0"
        );
        assert_eq!(
            TaxId::parse("MX", "ABC990101ABA").unwrap().value(),
            "ABC990101ABA"
        );
        assert!(TaxId::parse("MX", "XAXX010101000").is_ok());
        assert!(TaxId::parse("MX", "XEXX010101000").is_ok());
        assert_eq!(
            TaxId::parse("MX", "GODE561231GR9"),
            Err(TaxIdError::BadCheckDigit {
                country: "MX".into()
            })
        );
        assert!(matches!(
            TaxId::parse("MX", "ABC991332XY1"),
            Err(TaxIdError::Malformed { .. })
        ));
        assert!(matches!(
            TaxId::parse("MX", "AB1"),
            Err(TaxIdError::Malformed { .. })
        ));
    }

    #[test]
    fn spanish_nif_nie_and_cif_are_checked() {
        assert_eq!(
            TaxId::parse("ES", "12345678-z").unwrap().value(),
            "12345678Z"
        );
        assert_eq!(
            TaxId::parse("ES", "12345678A"),
            Err(TaxIdError::BadCheckDigit {
                country: "ES".into()
            })
        );
        assert_eq!(
            TaxId::parse("ES", "X1234567L").unwrap().value(),
            "X1234567L"
        );
        assert!(TaxId::parse("ES", "X1234567A").is_err());
        assert!(TaxId::parse("ES", "B12345674").is_ok());
        assert!(TaxId::parse("ES", "A58818501").is_ok());
        assert!(TaxId::parse("ES", "P1234567D").is_ok());
        assert!(
            TaxId::parse("ES", "P12345674").is_err(),
            "P requires the control letter"
        );
        assert!(
            TaxId::parse("ES", "B1234567D").is_err(),
            "B requires the control digit"
        );
        assert!(TaxId::parse("ES", "I12345674").is_err());
    }

    #[test]
    fn rut_accepts_every_written_form() {
        for raw in ["12.345.678-5", "12345678-5", "123456785", " 12 345 678 5 "] {
            assert_eq!(TaxId::parse("CL", raw).unwrap().value(), "12345678-5");
        }
        // Leading zeros are not part of the number.
        assert_eq!(TaxId::parse("CL", "0.000.001-9").unwrap().value(), "1-9");
        assert_eq!(
            TaxId::parse("CL", "5.126.663-3").unwrap().value(),
            "5126663-3"
        );
        assert!(matches!(
            TaxId::parse("CL", "12345678-k"),
            Err(TaxIdError::BadCheckDigit { .. })
        ));
        // Multi-byte input must be refused, not split inside a character.
        for raw in ["ñ", "1234567ñ", "12.345.678-ñ"] {
            assert!(matches!(
                TaxId::parse("CL", raw),
                Err(TaxIdError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn rfc_letters_n_tilde_and_ampersand_count() {
        let t = TaxId::parse("MX", "ñañ-010101-aba").unwrap();
        assert_eq!(
            (t.value(), t.normalized()),
            ("ÑAÑ010101ABA", "ÑAÑ010101ABA")
        );
        assert_eq!(
            TaxId::parse("MX", "A&B850315K25").unwrap().value(),
            "A&B850315K25"
        );
        assert_eq!(
            TaxId::parse("MX", "CAÑO850101XY5").unwrap().value(),
            "CAÑO850101XY5"
        );
        assert_eq!(
            TaxId::parse("MX", "A&B850315K26"),
            Err(TaxIdError::BadCheckDigit {
                country: "MX".into()
            })
        );
    }

    #[test]
    fn rfc_dates_must_exist() {
        assert!(TaxId::parse("MX", "GODE000229AB1").is_ok(), "29 Feb 2000");
        assert!(TaxId::parse("MX", "GODE010228AB8").is_ok());
        for raw in [
            "GODE010229AB8",
            "GODE560231GR8",
            "GODE561331GR8",
            "GODE5612A1GR8",
        ] {
            assert!(
                matches!(TaxId::parse("MX", raw), Err(TaxIdError::Malformed { .. })),
                "{raw}"
            );
        }
    }

    #[test]
    fn generic_rfcs_bypass_the_check_digit() {
        // XAXX010101000's last digit is not what the SAT algorithm gives (4), yet the SAT
        // publishes it for sales to the general public.
        for raw in ["XAXX010101000", "xexx-010101-000"] {
            let t = TaxId::parse("MX", raw).unwrap();
            assert_eq!(t.normalized(), raw.replace('-', "").to_uppercase());
        }
        assert!(TaxId::parse("MX", "XAXX010101004").is_ok());
        assert!(TaxId::parse("MX", "XAXX010101001").is_err());
    }

    #[test]
    fn spanish_nie_prefixes_and_cif_either_control() {
        assert_eq!(
            TaxId::parse("ES", "y-1234567-x").unwrap().value(),
            "Y1234567X"
        );
        assert_eq!(
            TaxId::parse("ES", "Z 7654321 H").unwrap().value(),
            "Z7654321H"
        );
        assert!(TaxId::parse("ES", "Z7654321J").is_err());
        // G may end in the digit or the letter.
        assert!(TaxId::parse("ES", "G12345674").is_ok());
        assert!(TaxId::parse("ES", "g-1234567-d").is_ok());
        assert!(TaxId::parse("ES", "G12345675").is_err());
        assert_eq!(
            TaxId::parse("ES", "b-1234567-4").unwrap().normalized(),
            "B12345674"
        );
        assert!(matches!(
            TaxId::parse("ES", "1234567Z"),
            Err(TaxIdError::Malformed { .. })
        ));
        assert!(matches!(
            TaxId::parse("ES", "1234567ñZ"),
            Err(TaxIdError::Malformed { .. })
        ));
    }

    #[test]
    fn other_countries_take_free_text() {
        let t = TaxId::parse("ar", " 20-12345678-3 ").unwrap();
        assert_eq!(
            (t.country(), t.value(), t.normalized()),
            ("AR", "20-12345678-3", "20123456783")
        );
        assert!(matches!(
            TaxId::parse("AR", "---"),
            Err(TaxIdError::Malformed { .. })
        ));
        assert_eq!(
            TaxId::parse("Chile", "1"),
            Err(TaxIdError::InvalidCountry("Chile".into()))
        );
        assert_eq!(TaxId::parse("CL", "  "), Err(TaxIdError::Empty));
        assert_eq!(TaxId::parse("pe", "20100047218").unwrap().country(), "PE");
        assert!(TaxId::parse("AR", &"1".repeat(64)).is_ok());
        assert!(TaxId::parse("AR", &"1".repeat(65)).is_err());
    }
}
