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

/// Characters of a caller's text an error quotes.
pub const QUOTE_MAX: usize = 40;

/// A caller's text as an error quotes it: escaped and in double quotes, cut after
/// [`QUOTE_MAX`] characters with its length said, so an error never echoes a megabyte
/// (gRPC sends the message in a header, and clients cap headers at a few KB).
pub fn quote(s: &str) -> String {
    let count = s.chars().count();
    if count <= QUOTE_MAX {
        return format!("{s:?}");
    }
    let prefix: String = s.chars().take(QUOTE_MAX).collect();
    let open = format!("{prefix:?}");
    format!("{}…\" ({count} characters)", &open[..open.len() - 1])
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

    #[test]
    fn quotes_are_short_and_escaped() {
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        let long = "ñ".repeat(1_000_000);
        let quoted = quote(&long);
        assert_eq!(
            quoted,
            format!("\"{}…\" (1000000 characters)", "ñ".repeat(QUOTE_MAX))
        );
    }
}
