//! Exact money: integer minor units of an ISO 4217 currency, never floating point.
//! Arithmetic is checked: overflow and currency mismatches are errors, not surprises.

use std::fmt;

use iso_currency::Currency;

/// What can go wrong with money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an ISO 4217 code.
    #[error("{0:?} is not an ISO 4217 currency code (e.g. CLP, MXN, EUR)")]
    UnknownCurrency(String),
    /// Adding pesos to euros.
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch {
        /// One currency.
        left: String,
        right: String,
    },
    /// Beyond what 64-bit minor units hold.
    #[error("the amount overflows")]
    Overflow,
}

/// Whether `code` is a known ISO 4217 alphabetic code (uppercase).
pub fn is_known_currency(code: &str) -> bool {
    code.len() == 3
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && Currency::from_code(code).is_some()
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    currency: Currency,
    amount_minor: i64,
}

impl Money {
    /// `amount_minor` of the currency `currency_code` ("CLP", "USD"...).
    pub fn new(currency_code: &str, amount_minor: i64) -> Result<Self, MoneyError> {
        if !is_known_currency(currency_code) {
            return Err(MoneyError::UnknownCurrency(currency_code.to_owned()));
        }
        let currency = Currency::from_code(currency_code)
            .ok_or_else(|| MoneyError::UnknownCurrency(currency_code.to_owned()))?;
        Ok(Self {
            currency,
            amount_minor,
        })
    }

    /// Zero of a currency.
    pub fn zero(currency_code: &str) -> Result<Self, MoneyError> {
        Self::new(currency_code, 0)
    }

    /// The ISO 4217 code.
    pub fn currency_code(&self) -> &'static str {
        self.currency.code()
    }

    /// The amount in minor units.
    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    /// Digits of the minor unit: CLP 0, USD 2, BHD 3; 0 where ISO defines none (XAU).
    pub fn exponent(&self) -> u32 {
        self.currency.exponent().map_or(0, u32::from)
    }

    /// Below zero.
    pub fn is_negative(&self) -> bool {
        self.amount_minor < 0
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency_code().to_owned(),
                right: other.currency_code().to_owned(),
            })
        }
    }

    /// Sum, in the same currency.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount_minor,
            ..*self
        })
    }

    /// Difference, in the same currency.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount_minor,
            ..*self
        })
    }

    /// Times a quantity.
    pub fn checked_mul(&self, quantity: i64) -> Result<Money, MoneyError> {
        let amount_minor = self
            .amount_minor
            .checked_mul(quantity)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount_minor,
            ..*self
        })
    }
}

impl fmt::Display for Money {
    /// "129.90 USD", "12990 CLP", "-0.05 USD".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = self.exponent();
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        if exponent == 0 {
            return write!(f, "{sign}{abs} {}", self.currency_code());
        }
        let scale = 10_u64.pow(exponent);
        let width = exponent as usize;
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale,
            abs % scale,
            self.currency_code()
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_the_currency_minor_unit() {
        assert_eq!(Money::new("USD", 12990).unwrap().to_string(), "129.90 USD");
        assert_eq!(Money::new("CLP", 12990).unwrap().to_string(), "12990 CLP");
        assert_eq!(Money::new("USD", -5).unwrap().to_string(), "-0.05 USD");
        assert_eq!(Money::new("BHD", 1234).unwrap().to_string(), "1.234 BHD");
        assert_eq!(Money::new("CLP", 1).unwrap().exponent(), 0);
        assert_eq!(Money::new("MXN", 1).unwrap().exponent(), 2);
    }

    #[test]
    fn exponents_follow_iso_4217() {
        for (code, exponent) in [
            ("CLP", 0),
            ("USD", 2),
            ("MXN", 2),
            ("EUR", 2),
            ("JPY", 0),
            ("BHD", 3),
            ("XAU", 0),
        ] {
            assert_eq!(Money::zero(code).unwrap().exponent(), exponent, "{code}");
        }
        assert_eq!(Money::new("XAU", 7).unwrap().to_string(), "7 XAU");
        assert_eq!(Money::new("EUR", 5).unwrap().to_string(), "0.05 EUR");
        assert_eq!(Money::new("CLP", -12990).unwrap().to_string(), "-12990 CLP");
        assert_eq!(
            Money::new("USD", i64::MIN).unwrap().to_string(),
            "-92233720368547758.08 USD"
        );
        let m = Money::new("MXN", 1).unwrap();
        assert_eq!((m.currency_code(), m.amount_minor()), ("MXN", 1));
        assert!(!Money::zero("MXN").unwrap().is_negative());
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::new("CLP", 1000).unwrap();
        let b = Money::new("CLP", 250).unwrap();
        assert_eq!(a.checked_add(&b).unwrap().amount_minor(), 1250);
        assert_eq!(b.checked_sub(&a).unwrap().amount_minor(), -750);
        assert!(b.checked_sub(&a).unwrap().is_negative());
        assert_eq!(a.checked_mul(3).unwrap().amount_minor(), 3000);
        let eur = Money::new("EUR", 1).unwrap();
        assert_eq!(
            a.checked_add(&eur),
            Err(MoneyError::CurrencyMismatch {
                left: "CLP".into(),
                right: "EUR".into()
            })
        );
        assert_eq!(
            Money::new("CLP", i64::MAX)
                .unwrap()
                .checked_add(&Money::new("CLP", 1).unwrap()),
            Err(MoneyError::Overflow)
        );
        assert_eq!(a.checked_mul(i64::MAX), Err(MoneyError::Overflow));
        assert_eq!(
            Money::new("CLP", i64::MIN)
                .unwrap()
                .checked_sub(&Money::new("CLP", 1).unwrap()),
            Err(MoneyError::Overflow)
        );
        assert!(matches!(
            a.checked_sub(&eur),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn unknown_currencies_are_refused() {
        assert_eq!(
            Money::new("clp", 1),
            Err(MoneyError::UnknownCurrency("clp".into()))
        );
        assert!(Money::new("XYZ", 1).is_err());
        assert!(Money::new("PESOS", 1).is_err());
        assert!(is_known_currency("EUR"));
        assert!(!is_known_currency(""));
    }
}
