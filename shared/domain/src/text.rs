//! Text rules: folding for search and duplicate keys (case and accents ignored), and
//! the validation of names.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::FieldViolation;

/// Lowercase, accents removed, white space collapsed: "  Peñalolén  Ñuñoa" → "penalolen nunoa".
pub fn fold(s: &str) -> String {
    let stripped: String = s
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .collect::<String>()
        .to_lowercase();
    stripped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A trimmed, non-empty name of at most `max` characters without control characters.
pub fn validate_name(field: &str, s: &str, max: usize) -> Result<String, FieldViolation> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(FieldViolation::new(field, "required"));
    }
    if trimmed.chars().count() > max {
        return Err(FieldViolation::new(
            field,
            format!("at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fold_drops_case_accents_and_extra_space() {
        assert_eq!(fold("  Peñalolén   Ñuñoa "), "penalolen nunoa");
        assert_eq!(fold("Región del BIOBÍO"), "region del biobio");
        assert_eq!(fold(""), "");
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(validate_name("n", "  Ana  ", 10).unwrap(), "Ana");
        assert_eq!(validate_name("n", "   ", 10).unwrap_err().field, "n");
        assert!(validate_name("n", "abcdefghijk", 10).is_err());
        assert!(validate_name("n", "a\u{7}b", 10).is_err());
    }
}
